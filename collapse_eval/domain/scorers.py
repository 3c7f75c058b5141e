"""Scorers for domain items, one per ``output_format``, in a decorator-filled registry.

Every scorer maps (raw model output, reference) to a ``ScoreResult``: a score in [0, 1],
``format_ok`` (did the output follow the requested format) and what was parsed. Scoring
is a pure function of the saved prediction, so runs can be re-scored without a model.

Scorers are lenient about *reading* an answer (code fences, "Answer:" prefixes, trailing
explanations, full-width characters) and strict about *format_ok*: a correct answer
buried in prose scores 1 but is not format_ok. Chinese text is handled throughout:
NFKC folds full-width characters, 万/亿 multiply numbers, a bare answer may be written in
Chinese numerals (三, 两百万), 不确定 is no answer rather than "no", 、，； separate list
items (and 和/及 before the last one), JSON with full-width punctuation is read (not
format_ok), and token-based metrics (span F1, ROUGE-L) treat each CJK character as a
token.
"""

from __future__ import annotations

import ast
import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from collapse_eval.errors import UsageError, did_you_mean

__all__ = [
    "ScoreResult",
    "Scorer",
    "ReferenceCheck",
    "register_scorer",
    "get_scorer",
    "output_formats",
    "score_prediction",
    "check_reference",
    "normalize_text",
    "parse_number",
    "extract_json_object",
    "split_list_items",
    "mixed_tokens",
    "script_counts",
]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """``score`` in [0, 1]; ``parsed`` is what the scorer read from the output (or None)."""

    score: float
    format_ok: bool
    parsed: Any = None


Scorer = Callable[[str, Any], ScoreResult]
# Returns a problem description for a reference of the wrong type, or None when it is fine.
ReferenceCheck = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class _Entry:
    scorer: Scorer
    check_reference: ReferenceCheck | None


_REGISTRY: dict[str, _Entry] = {}


def register_scorer(
    output_format: str, *, check_reference: ReferenceCheck | None = None
) -> Callable[[Scorer], Scorer]:
    """Register ``fn(prediction, reference) -> ScoreResult`` for ``output_format``.

    ``check_reference`` lets the dataset validator reject references of the wrong type
    for this format when the file is loaded, instead of scoring 0 at run time.
    """

    def decorate(fn: Scorer) -> Scorer:
        if output_format in _REGISTRY:
            raise ValueError(f"a scorer for output_format {output_format!r} is already registered")
        _REGISTRY[output_format] = _Entry(fn, check_reference)
        return fn

    return decorate


def output_formats() -> tuple[str, ...]:
    """The registered output formats, in registration order."""
    return tuple(_REGISTRY)


def get_scorer(output_format: str) -> Scorer:
    try:
        return _REGISTRY[output_format].scorer
    except KeyError:
        raise UsageError(
            f"unknown output_format {output_format!r}.{did_you_mean(output_format, _REGISTRY)} "
            f"Known formats: {', '.join(_REGISTRY)}."
        ) from None


def check_reference(output_format: str, reference: Any) -> str | None:
    """A description of what is wrong with ``reference`` for this format, or None."""
    entry = _REGISTRY.get(output_format)
    if entry is None or entry.check_reference is None:
        return None
    return entry.check_reference(reference)


def score_prediction(output_format: str, prediction: str, reference: Any) -> ScoreResult:
    """Score one raw model output against the item's reference."""
    result = get_scorer(output_format)(prediction if prediction is not None else "", reference)
    # A scorer bug must not leak a score outside [0, 1] into the statistics.
    if not 0.0 <= result.score <= 1.0 or math.isnan(result.score):
        raise AssertionError(f"{output_format} scorer returned {result.score!r}")
    return result


# ------------------------------------------------------------------ shared text helpers

# ASCII punctuation plus the CJK / typographic marks that survive NFKC.
_PUNCT = set(string.punctuation) | set("。、「」『』【】〈〉《》〔〕…—–‘’“”·・～〜")
# The same characters as one string for str.strip (joined once, not once per token).
_PUNCT_CHARS = "".join(sorted(_PUNCT))
_CJK_RE = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN_RE = re.compile(rf"[{_CJK_RE}]|[^\s{_CJK_RE}]+")
_CJK_CHAR_RE = re.compile(rf"[{_CJK_RE}]")
_ANSWER_PREFIX_RE = re.compile(
    r"^\s*(?:the\s+)?(?:final\s+)?(?:answer|label|output|result|intent|category|"
    r"答案|答|回答|标签|类别|结果|输出)\s*(?:is\s*|是\s*|为\s*)?[:：]\s*"
    r"|^\s*(?:答案|标签|类别|结果)\s*(?:是|为)\s*",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)


def _nfkc(text: str) -> str:
    # Folds full-width letters, digits and punctuation (common in Chinese output) to ASCII.
    return unicodedata.normalize("NFKC", text)


def normalize_text(text: str) -> str:
    """Casefolded, NFKC, punctuation-stripped at both ends, whitespace collapsed."""
    text = _nfkc(text).casefold()
    text = " ".join(text.split())
    return text.strip("".join(_PUNCT) + " ")


def _strip_fences(text: str) -> str:
    """The body of the first code fence, or the text itself when there is none."""
    match = _FENCE_RE.search(text)
    return match.group(1) if match else text


def _first_line(text: str) -> str:
    for line in _strip_fences(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _count_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _strip_answer_prefix(text: str) -> str:
    return _ANSWER_PREFIX_RE.sub("", text, count=1)


def mixed_tokens(text: str) -> list[str]:
    """Tokens for F1 / ROUGE: each CJK character alone, other runs split on whitespace.

    Text is NFKC-normalised and casefolded; punctuation-only tokens are dropped and
    punctuation is stripped from the ends of word tokens ("price," -> "price").
    """
    out = []
    for tok in _TOKEN_RE.findall(_nfkc(text).casefold()):
        tok = tok.strip(_PUNCT_CHARS)
        if tok:
            out.append(tok)
    return out


def script_counts(text: str) -> tuple[int, int]:
    """(CJK characters, other word tokens) of ``text``, as ``mixed_tokens`` counts them."""
    tokens = mixed_tokens(text)
    cjk = sum(1 for tok in tokens if len(tok) == 1 and _CJK_CHAR_RE.match(tok))
    return cjk, len(tokens) - cjk


def _f1(true_positive: float, n_pred: int, n_ref: int) -> float:
    if n_pred == 0 and n_ref == 0:
        return 1.0
    if true_positive == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = true_positive / n_pred, true_positive / n_ref
    return 2 * precision * recall / (precision + recall)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------ label

_LABEL_SEP_RE = re.compile(r"[\s_\-]+")


def _normalize_label(text: str) -> str:
    # "Price_Inquiry", "price-inquiry" and "price inquiry" are the same label.
    return _LABEL_SEP_RE.sub(" ", normalize_text(text)).strip()


def _check_string(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {json.dumps(value, ensure_ascii=False)}"
    return None


# A Chinese label is a word or two (租房, 安排看房); a longer run is a sentence.
_MAX_LABEL_CJK = 12


@register_scorer("label", check_reference=_check_string)
def score_label(prediction: str, reference: Any) -> ScoreResult:
    """Normalised exact match of the first non-empty line (after an 'Answer:' prefix)."""
    line = _strip_answer_prefix(_first_line(prediction))
    parsed = _normalize_label(line)
    # Label-like: one short line, a few words at most.
    format_ok = (
        bool(parsed)
        and _count_lines(prediction) == 1
        and len(parsed) <= 64
        and len(parsed.split()) <= 6
        and script_counts(parsed)[0] <= _MAX_LABEL_CJK
    )
    score = float(bool(parsed) and parsed == _normalize_label(str(reference)))
    return ScoreResult(score, format_ok, parsed or None)


# ------------------------------------------------------------------ yes_no

_YES_WORDS = {"yes", "y", "true", "correct", "right", "yeah", "yep", "affirmative"}
_NO_WORDS = {"no", "n", "false", "incorrect", "wrong", "nope"}  # not "not": "Not sure"
# Chinese has no spaces: match by prefix, negatives first so that 不是 is not read as 是.
_ZH_NO = (
    "不是",
    "不对",
    "不正确",
    "不符合",
    "不合规",
    "不",
    "否",
    "没有",
    "没",
    "错误",
    "错",
    "无",
)
_ZH_YES = ("是的", "是", "对的", "对", "正确", "符合", "合规", "有", "可以", "同意")
# "Not sure" starts like a no (不, 无) but answers neither way.
_ZH_UNSURE = (
    "不确定",
    "不知道",
    "不清楚",
    "不好说",
    "不一定",
    "说不准",
    "无法确定",
    "无法判断",
    "难以判断",
)


def _yes_no_value(text: str) -> bool | None:
    """True for yes, False for no, None when the leading word is neither."""
    norm = normalize_text(_strip_answer_prefix(_first_line(text)))
    if not norm:
        return None
    if re.match(rf"[{_CJK_RE}]", norm):
        if norm.startswith(("是否", *_ZH_UNSURE)):  # "whether" restates the question
            return None
        for word in _ZH_NO:
            if norm.startswith(word):
                return False
        for word in _ZH_YES:
            if norm.startswith(word):
                return True
        return None
    first = re.match(r"[a-z]+", norm)
    if first is None:
        return None
    word = first.group(0)
    if word in _YES_WORDS:
        return True
    if word in _NO_WORDS:
        return False
    return None


def _check_yes_no(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _yes_no_value(value) is not None:
        return None
    return f"must be yes/no (or true/false, 是/否), got {json.dumps(value, ensure_ascii=False)}"


@register_scorer("yes_no", check_reference=_check_yes_no)
def score_yes_no(prediction: str, reference: Any) -> ScoreResult:
    """Yes/no read from the leading word (English or Chinese); format_ok if nothing else."""
    parsed = _yes_no_value(prediction)
    expected = reference if isinstance(reference, bool) else _yes_no_value(str(reference))
    bare = normalize_text(prediction)
    format_ok = parsed is not None and (
        bare in _YES_WORDS | _NO_WORDS or bare in _ZH_YES or bare in _ZH_NO
    )
    score = float(parsed is not None and parsed == expected)
    return ScoreResult(score, format_ok, None if parsed is None else ("yes" if parsed else "no"))


# ------------------------------------------------------------------ number

_MULTIPLIERS: dict[str, float] = {
    "万": 1e4,
    "亿": 1e8,
    "千": 1e3,
    "百万": 1e6,
    "千万": 1e7,
    "万亿": 1e12,
    "k": 1e3,
    "thousand": 1e3,
    "million": 1e6,
    "mn": 1e6,
    "bn": 1e9,
    "billion": 1e9,
}
_MULT_ALT = "|".join(sorted((re.escape(m) for m in _MULTIPLIERS), key=len, reverse=True))
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9.])(?P<sign>[-+−])?\s*(?P<cur>[$¥€£₩]|rmb|usd|cny|hk\$)?\s*"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?)"
    rf"(?:\s*(?P<mult>{_MULT_ALT})(?![a-z]))?",
    re.IGNORECASE,
)
# What may follow the number in a bare answer: a unit such as 元, 平方米, m² (NFKC: m2),
# sq ft, %, yuan; then at most a full stop.
_UNIT_TAIL_RE = re.compile(
    rf"^\s*(?:[%a-z/{_CJK_RE}][%a-z/{_CJK_RE}. ]{{0,15}}[23]?)?\s*[.。]?$", re.IGNORECASE
)


_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_ZH_DIGITS.update({"五": 5, "六": 6, "七": 7, "八": 8, "九": 9})
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_SECTIONS = {"万": 1e4, "亿": 1e8}
_ZH_NUMERAL_RE = re.compile(r"\s*[零〇一二两三四五六七八九十百千万亿]+")


@dataclass(frozen=True, slots=True)
class _NumberSpan:
    value: float
    start: int
    end: int


def _zh_numeral_value(numeral: str) -> float:
    """两百万 -> 2000000, 十五 -> 15, 一亿五千万 -> 150000000."""
    total, section, digit = 0.0, 0.0, 0
    for ch in numeral:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_UNITS:
            section += (digit or 1) * _ZH_UNITS[ch]  # 十五: a bare 十 is ten
            digit = 0
        else:
            total += (section + digit) * _ZH_SECTIONS[ch]
            section, digit = 0.0, 0
    return total + section + digit


def _find_number(text: str) -> _NumberSpan | None:
    """The first number of ``text`` (NFKC-folded by the caller), or a Chinese numeral that
    opens it (in prose, 一 and 十 are mostly words: 一下, 十分)."""
    match = _NUMBER_RE.search(text)
    if match is not None:
        return _NumberSpan(_match_value(match), match.start(), match.end())
    numeral = _ZH_NUMERAL_RE.match(text)
    if numeral is None or set(numeral.group().strip()) <= set(_ZH_SECTIONS):
        return None
    return _NumberSpan(_zh_numeral_value(numeral.group().strip()), 0, numeral.end())


def _match_value(match: re.Match[str]) -> float:
    value = float(match.group("num").replace(",", ""))
    mult = match.group("mult")
    if mult:
        value *= _MULTIPLIERS[mult.lower()]
    if match.group("sign") in ("-", "−"):
        value = -value
    return value


def parse_number(text: str) -> float | None:
    """The first number in ``text``: '1,200', '$3.5k', '350万' (3500000), '-2.5', '三'."""
    found = _find_number(_nfkc(text))
    return None if found is None else found.value


def _bare_number(text: str) -> _NumberSpan | None:
    """The number of a bare answer: nothing before it but a currency, only a unit after."""
    found = _find_number(text)
    if found is None or text[: found.start].strip():
        return None
    return found if _UNIT_TAIL_RE.match(text[found.end :]) else None


def _numeric_reference(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        found = _bare_number(_nfkc(value.strip()))
        return None if found is None else found.value
    return None


def _check_number(value: Any) -> str | None:
    if _numeric_reference(value) is None:
        shown = json.dumps(value, ensure_ascii=False)
        return f'must be a number (e.g. 3500000 or "350万"), got {shown}'
    return None


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@register_scorer("number", check_reference=_check_number)
def score_number(prediction: str, reference: Any) -> ScoreResult:
    """First number in the output (commas, currency, 万/亿/k multipliers) vs the reference."""
    text = _strip_answer_prefix(_nfkc(prediction).strip())
    found = _find_number(text)
    expected = _numeric_reference(reference)
    if found is None or expected is None:
        return ScoreResult(0.0, False, None)
    format_ok = _bare_number(text) is not None
    return ScoreResult(float(_numbers_equal(found.value, expected)), format_ok, found.value)


# ------------------------------------------------------------------ json

_MAX_JSON_STARTS = 200  # bound the work on very long outputs with many braces


def _decode_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch == "{"][:_MAX_JSON_STARTS]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):  # JSONDecodeError, 4300+ digit ints, deep nesting
            continue
        if isinstance(value, dict):
            return value
    return None


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``: inside a ```json fence, bare, or within prose."""
    for fenced in _FENCE_RE.findall(text):
        found = _decode_object(fenced)
        if found is not None:
            return found
    return _decode_object(text)


_CJK_QUOTES = str.maketrans({"“": '"', "”": '"', "「": '"', "」": '"'})


def _fold_json_punctuation(text: str) -> str:
    """｛"城市"："上海"，…｝ and “curly” quotes, as Chinese keyboards type JSON: read (the
    score counts) but not valid JSON, so never format_ok."""
    return _nfkc(text).translate(_CJK_QUOTES)


def _python_dict_fallback(text: str) -> dict[str, Any] | None:
    """{'a': 1} written as a Python literal: scored, but never format_ok."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _normalize_leaf(value: Any) -> Any:
    """Comparable form of a JSON leaf: numbers as floats, strings normalised."""
    if isinstance(value, bool) or value is None:
        return value
    if _is_number(value):
        return round(float(value), 9)
    if isinstance(value, str):
        number = _numeric_reference(value)
        if number is not None:
            return round(number, 9)
        norm = normalize_text(value)
        return {"true": True, "false": False, "null": None, "": None}.get(norm, norm)
    if isinstance(value, list):
        return frozenset(_freeze(v) for v in value)
    return _freeze(value)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return frozenset((str(k).casefold(), _freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return frozenset(_freeze(v) for v in value)
    return _normalize_leaf(value)


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-path leaves of a nested object; lists are leaves compared as sets."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        path = f"{prefix}{str(key).strip().casefold()}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = _normalize_leaf(value)
    return out


def _check_object(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a JSON object for output_format json, got {type(value).__name__}"
    return None


def _leaves_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return _numbers_equal(a, b)
    return bool(a == b)


@register_scorer("json", check_reference=_check_object)
def score_json(prediction: str, reference: Any) -> ScoreResult:
    """Field-level F1: a field counts when its (dotted) key and normalised value match."""
    parsed = extract_json_object(prediction)
    format_ok = parsed is not None
    if parsed is None:
        parsed = extract_json_object(_fold_json_punctuation(prediction))
    if parsed is None:
        parsed = _python_dict_fallback(prediction)
    if parsed is None or not isinstance(reference, dict):
        return ScoreResult(0.0, False, None)
    pred_fields, ref_fields = _flatten(parsed), _flatten(reference)
    hits = sum(
        1
        for key, value in ref_fields.items()
        if key in pred_fields and _leaves_equal(pred_fields[key], value)
    )
    return ScoreResult(_f1(hits, len(pred_fields), len(ref_fields)), format_ok, parsed)


# ------------------------------------------------------------------ list

_BULLET_RE = re.compile(r"^\s*(?:[-*•·●▪]|\d{1,3}[.)、]|\(\d{1,3}\)|[a-z][.)])\s+", re.IGNORECASE)
_ITEM_SPLIT_RE = re.compile(r"[\n,;，；、]")
# "A, B and C" / "A, B, and C": the last item loses its conjunction. Chinese 和/及 are
# not split on: they occur inside names (和平区).
_CONJUNCTION_RE = re.compile(r"^(?:and|or)\s+|\s+(?:and|or)\s+(?=\S+$)", re.IGNORECASE)
# "电梯、停车位和阳台": 和/及/以及 joins the last item of a list, between CJK words.
_ZH_LAST_ITEM_RE = re.compile(rf"(?<=[{_CJK_RE}]{{2}})(?:以及|及|和|与)(?=[{_CJK_RE}]{{2}})")
_EMPTY_LIST_WORDS = {"none", "n/a", "na", "nothing", "empty", "无", "没有", "[]"}


def split_list_items(text: str) -> list[str]:
    """Items of a list answer: a JSON array, or text split on newlines, commas, 、, bullets."""
    body = _strip_fences(text).strip()
    start = body.find("[")
    if start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(body, start)
        except (ValueError, RecursionError):  # model output: any text, any depth
            value = None
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
    items: list[str] = []
    for line in body.splitlines():
        line = _BULLET_RE.sub("", _strip_answer_prefix(line))
        line_items: list[str] = []
        for part in _ITEM_SPLIT_RE.split(line):
            part = _CONJUNCTION_RE.sub(",", part.strip()).strip(",")
            line_items += [p.strip() for p in part.split(",") if p.strip()]
        if len(line_items) >= 2:  # a lone "A和B" may be one name (和平路和中山路口)
            line_items[-1:] = _ZH_LAST_ITEM_RE.split(line_items[-1], maxsplit=1)
        items += line_items
    return items


def _item_set(items: Iterable[Any]) -> set[Any]:
    out = set()
    for item in items:
        norm = _normalize_leaf(item if not isinstance(item, str) else item.strip())
        if norm is not None and norm not in _EMPTY_LIST_WORDS:
            out.add(norm)
    return out


def _check_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) or _is_number(v) for v in value):
        return "must be a JSON array of strings or numbers for output_format list"
    return None


@register_scorer("list", check_reference=_check_list)
def score_list(prediction: str, reference: Any) -> ScoreResult:
    """Set F1 over normalised items; order and duplicates do not matter."""
    items = split_list_items(prediction)
    pred = _item_set(items)
    ref_items = reference if isinstance(reference, list) else split_list_items(str(reference))
    ref = _item_set(ref_items)
    # "none" / "无" / "[]" is a well-formed answer for an empty list.
    stated_empty = normalize_text(prediction) in _EMPTY_LIST_WORDS or (
        _strip_fences(prediction).strip() == "[]"
    )
    format_ok = bool(pred) or stated_empty
    hits = len(pred & ref)
    return ScoreResult(_f1(hits, len(pred), len(ref)), format_ok, sorted(map(str, pred)))


# ------------------------------------------------------------------ span

_ARTICLES = {"a", "an", "the"}


def _span_tokens(text: str) -> list[str]:
    # SQuAD normalisation (lowercase, no punctuation, no articles) with CJK per character.
    return [t for t in mixed_tokens(text) if t not in _ARTICLES]


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = _span_tokens(prediction), _span_tokens(reference)
    common = Counter(pred) & Counter(ref)
    return _f1(sum(common.values()), len(pred), len(ref))


def _check_span(value: Any) -> str | None:
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return None  # several acceptable answers: the best F1 counts
    return _check_string(value)


@register_scorer("span", check_reference=_check_span)
def score_span(prediction: str, reference: Any) -> ScoreResult:
    """SQuAD-style token F1 (max over acceptable answers); CJK compared per character."""
    answer = _strip_answer_prefix(_first_line(prediction))
    refs = reference if isinstance(reference, list) else [str(reference)]
    # As in SQuAD, two answers that normalise to nothing ("a" vs "the") agree; an empty
    # output never does.
    score = max((_token_f1(answer, str(r)) for r in refs), default=0.0) if answer else 0.0
    format_ok = bool(answer) and _count_lines(prediction) == 1
    return ScoreResult(score, format_ok, answer or None)


# ------------------------------------------------------------------ free_text


class MixedScriptTokenizer:
    """rouge-score tokenizer: its default drops every non-[a-z0-9] character (all CJK)."""

    def tokenize(self, text: str) -> list[str]:
        return mixed_tokens(text)


_rouge_scorer: Any = None


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure with the mixed-script tokenizer (CJK per character); symmetric."""
    global _rouge_scorer
    if _rouge_scorer is None:
        from rouge_score import rouge_scorer

        _rouge_scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=MixedScriptTokenizer())
    return float(_rouge_scorer.score(reference, prediction)["rougeL"].fmeasure)


@register_scorer("free_text", check_reference=_check_string)
def score_free_text(prediction: str, reference: Any) -> ScoreResult:
    """ROUGE-L F-measure (rouge-score) with per-character tokens for CJK text."""
    text = prediction.strip()
    if not mixed_tokens(text):
        return ScoreResult(0.0, False, None)
    return ScoreResult(rouge_l(str(reference), text), True, None)
