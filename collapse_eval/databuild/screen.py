"""Rule screening of generated instructions and parsing of generated labels.

An instruction passes when it states the task's output format (the label set, the JSON
keys, yes/no, ...) in one of the supported languages, is of bounded length (words for
English, characters for Chinese), is written in the language it was asked for, does not
echo the operator's own wording, does not state an answer, and is novel: its ROUGE-L
F-measure (CJK per character) to every prompt already in the pool of its task type is
below a threshold (Self-Instruct's 0.7).
A label passes when the domain scorer of its format can read it (and, for ``label`` and
``json``, it uses the spec's label set or keys).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collapse_eval.databuild.languages import ENGLISH, Language, detect_language
from collapse_eval.databuild.spec import TaskSpec
from collapse_eval.domain.scorers import (
    extract_json_object,
    mixed_tokens,
    normalize_text,
    rouge_l,
    score_prediction,
    split_list_items,
)

__all__ = [
    "MIN_WORDS",
    "MAX_WORDS",
    "clean_instruction",
    "echo_problem",
    "format_problem",
    "invented_answer",
    "language_problem",
    "length_problem",
    "most_similar",
    "parse_label",
    "rouge_l",
]

MIN_WORDS = ENGLISH.min_length  # Chinese counts characters: CHINESE.min_length
MAX_WORDS = 200

_PREFIX_RE = re.compile(
    r"^\s*(?:(?:new|rewritten|revised|improved)\s+)?(?:instruction|prompt|question)\s*[:：]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`"


def clean_instruction(text: str) -> str:
    """The instruction a generator wrote: without 'Instruction:' prefixes, surrounding
    quotes, and anything after the first blank line (chatter after the answer)."""
    body = text.strip()
    body = re.split(r"\n\s*\n", body, maxsplit=1)[0].strip()
    body = _PREFIX_RE.sub("", body).strip()
    if len(body) >= 2 and body[0] in _QUOTES and body[-1] in _QUOTES:
        body = body[1:-1].strip()
    return body


def _nfkc(text: str) -> str:
    # Full-width punctuation (，：／) folded, as the scorers read answers.
    return unicodedata.normalize("NFKC", text)


def _label_forms(label: str) -> set[str]:
    norm = normalize_text(label)
    return {norm, norm.replace("_", " "), norm.replace("_", "-"), norm.replace("-", " ")}


def _mentions(text: str, phrase: str) -> bool:
    norm = " ".join(mixed_tokens(text))
    return any(
        re.search(rf"(?<![\w]){re.escape(form)}(?![\w])", norm) for form in _label_forms(phrase)
    ) or any(form in normalize_text(text) for form in _label_forms(phrase))


# How Chinese states a format: 是/否 (对/错, 有/没有) offered as the two answers; a number
# (数字, 多少, 几...); a list (列表, 列出, separated by 顿号/逗号).
_ZH_YES_NO_RE = re.compile(r"(?:是|对|有)\W{0,2}(?:或|或者|还是|/|、|,)\W{0,2}(?:否|不是|错|没有)")
_ZH_NUMBER_RE = re.compile(r"数字|数值|多少|几|数量")
_ZH_LIST_RE = re.compile(r"列表|列出|清单|顿号|逗号|分号|分隔")


def format_problem(task: TaskSpec, text: str) -> str | None:
    """Why ``text`` does not state ``task``'s output format, or None when it does: the
    statement may be in any supported language (a Chinese instruction may name English
    labels or keys)."""
    fmt = task.output_format
    zh = _nfkc(text)
    if fmt == "label":
        missing = [label for label in task.labels if not _mentions(text, label)]
        return f"does not name the label(s) {', '.join(missing)}" if missing else None
    if fmt == "json":
        if "json" not in text.casefold():
            return "does not ask for JSON"
        missing = [key for key in task.keys if not _mentions(text, key)]
        return f"does not name the JSON key(s) {', '.join(missing)}" if missing else None
    if fmt == "yes_no":
        norm = normalize_text(text)
        has = re.search(r"\byes\b", norm) and re.search(r"\bno\b", norm)
        return None if has or _ZH_YES_NO_RE.search(zh) else "does not ask for yes or no"
    if fmt == "number":
        norm = normalize_text(text)
        return (
            None
            if re.search(r"\b(number|numeric|how many|how much)\b", norm)
            or _ZH_NUMBER_RE.search(zh)
            else ("does not ask for a number")
        )
    if fmt == "list":
        norm = normalize_text(text)
        has = re.search(r"\b(list|comma)", norm) or _ZH_LIST_RE.search(zh)
        return None if has else "does not ask for a list"
    return None  # span and free_text: any question will do


def length_problem(text: str, max_words: int = MAX_WORDS, base: int = 0) -> str | None:
    """Why ``text`` is too short or too long to be an instruction, or None. Counted in the
    unit of its language (words; characters for Chinese): at most ``base`` units (a
    parent's length) plus ``max_words`` words."""
    language = detect_language(text)
    size, unit = len(mixed_tokens(text)), language.unit
    limit = base + max_words * language.per_word
    if size < language.min_length:
        return f"too short ({size} {unit}, at least {language.min_length})"
    if size > limit:
        return f"too long ({size} {unit}, at most {limit})"
    return None


def language_problem(text: str, expected: Language) -> str | None:
    """Why ``text`` is not in the language it was asked for, or None."""
    found = detect_language(text)
    return None if found == expected else f"asked for {expected.name}, written in {found.name}"


# An operator's wording echoed into the prompt: a run of ECHO_RUN tokens of it that
# speaks about the instruction being written, not to the annotator.
ECHO_RUN = 5
_META_WORDS = {"instruction", "instructions", "rewrite", "annotator", "annotators", "annotator's"}


def _meta_runs(text: str) -> set[tuple[str, ...]]:
    tokens = mixed_tokens(text)
    return {
        run
        for run in zip(*(tokens[i:] for i in range(ECHO_RUN)), strict=False)
        if _META_WORDS.intersection(run)
    }


def echo_problem(text: str, template: Sequence[str]) -> str | None:
    """Why ``text`` repeats the fixed wording (``template``: the request's text between its
    placeholders) of what the generator was asked, or None."""
    runs = _meta_runs(text)
    for part in template:
        shared = runs & _meta_runs(part)
        if shared:
            return "repeats the request: '" + " ".join(min(shared)) + "'"
    return None


# A stated answer: "the answer is X", "Answer: X", "答案是X", "标签：X". An example ("for
# example, the answer is X", "例如") is not one.
_ANSWER_CUE_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:correct\s+|final\s+|right\s+)?(?:answer|label|output|result)"
    r"\s*(?:is|would be|should be|will be|[:=])"
    r"|答案\s*(?:应该是|应为|是|为|:)|(?:标签|结果|输出|回答)\s*(?:是|为|:)|答\s*:)\s*",
    re.IGNORECASE,
)
_EXAMPLE_CUE_RE = re.compile(
    r"\be\.g\.|\b(?:for example|for instance|example|such as|like)\b|例如|比如|示例|举例|譬如",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"[.;!?\n。；！？]")
_PLACEHOLDER_RE = re.compile(
    r"^(?:|\.\.\.|…+|x+|<.*>|\[.*\]|\{.*\}|string|str|text|number|int|integer|float|"
    r"value|null|none|n/a|字符串|数字|文本)$",
    re.IGNORECASE,
)


# How far before an answer an example cue still frames it ("For example, in a dialogue
# about renting, the answer is rent").
EXAMPLE_WINDOW = 60


def _framed_as_example(text: str, start: int) -> bool:
    return bool(_EXAMPLE_CUE_RE.search(text, max(0, start - EXAMPLE_WINDOW), start))


def _concrete(value: Any, key: str = "") -> bool:
    """A filled-in value, not a schema placeholder ("<city>", "...", "string", 0)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, list):
        return any(_concrete(v) for v in value)
    if isinstance(value, dict):
        return any(_concrete(v, str(k)) for k, v in value.items())
    norm = normalize_text(str(value))
    return not _PLACEHOLDER_RE.match(norm) and norm != normalize_text(key)


def _stated_structure(task: TaskSpec, text: str) -> str | None:
    """A JSON object (json) or array (list) with filled-in values, not framed as an example."""
    opener = {"json": "{", "list": "["}.get(task.output_format)
    if opener is None:
        return None
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == opener):
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        if _concrete(value) and not _framed_as_example(text, start):
            return text[start:end]
    return None


def invented_answer(task: TaskSpec, text: str) -> str | None:
    """Why ``text`` (an instruction) already states an answer, or None. Checked for the
    formats whose answers can be told from a description of them: a label of the set,
    yes/no, a number after an answer cue, a filled-in JSON object or list."""
    stated = _stated_structure(task, text)
    if stated is not None:
        return f"states the answer {stated}"
    if task.output_format not in ("label", "yes_no", "number"):
        return None
    body = _nfkc(text)
    for cue in _ANSWER_CUE_RE.finditer(body):
        end = _SENTENCE_END_RE.search(body, cue.end())
        value = body[cue.end() : end.start() if end else len(body)].strip(" \"'“”‘’「」")
        if not value or _framed_as_example(body, cue.start()):
            continue
        bare = score_prediction(task.output_format, value, _dummy_reference(task.output_format))
        parsed, problem = parse_label(task, value)
        if bare.format_ok and problem is None:
            return f"states the answer '{parsed}'"
    return None


@dataclass(frozen=True)
class Similar:
    id: str | None
    score: float


def most_similar(text: str, pool: Sequence[tuple[str, str]]) -> Similar:
    """The pool entry (id, text) most similar to ``text`` by ROUGE-L."""
    best = Similar(None, 0.0)
    for pid, other in pool:
        score = rouge_l(other, text)
        if score > best.score:
            best = Similar(pid, score)
    return best


def parse_label(task: TaskSpec, text: str) -> tuple[Any, str | None]:
    """(the value a domain test reference would hold, None) or (None, why it is not one)."""
    fmt = task.output_format
    result = score_prediction(fmt, text, _dummy_reference(fmt))
    if fmt == "label":
        if not result.format_ok:
            return None, "not a single short label"
        by_form = {form: label for label in task.labels for form in _label_forms(label)}
        parsed = str(result.parsed)
        if parsed not in by_form:
            return None, f"label {parsed!r} is not one of {', '.join(task.labels)}"
        return by_form[parsed], None
    if fmt == "json":
        obj = extract_json_object(text)
        if obj is None:
            return None, "no JSON object"
        missing = [k for k in task.keys if k not in obj]
        if missing:
            return None, f"JSON lacks key(s) {', '.join(missing)}"
        return {k: obj[k] for k in task.keys}, None
    if fmt == "list":
        if result.format_ok and not result.parsed:
            return [], None  # "none", "无", "[]": the answer is an empty list
        items = split_list_items(text)
        return (items, None) if items else (None, "no list items")
    if not result.format_ok or (fmt != "free_text" and result.parsed is None):
        return None, f"does not parse as {fmt}"
    if fmt == "free_text":
        return text.strip(), None
    return result.parsed, None


def _dummy_reference(fmt: str) -> Any:
    return {"json": {}, "number": 0, "list": [], "yes_no": "yes"}.get(fmt, "x")
