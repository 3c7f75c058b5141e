"""Rule stage of the quality cascade: cheap per-sample checks on every training sample.

Each check adds flag reasons to a sample; no model is involved. Format checks reuse the
domain scorers' parsers, so a response that the scorers would call malformed at
evaluation time is flagged here before it is trained on. Thresholds are module constants
(documented in README, "Training-data quality").
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from collapse_eval.domain.dataset import TrainingItem
from collapse_eval.domain.scorers import (
    extract_json_object,
    mixed_tokens,
    normalize_text,
    score_label,
    score_list,
    score_number,
    score_span,
    score_yes_no,
)
from collapse_eval.quality.context import (
    CONTEXT_MIN_TOKENS,
    SampleContext,
    context_reuse,
    find_contexts,
)
from collapse_eval.quality.duplicates import (
    NEAR_DUP_THRESHOLD,
    NUM_PERM,
    PROMPT_NEAR_DUP_THRESHOLD,
    SHINGLE_SIZE,
    SampleTexts,
    Shingler,
    codes,
    jaccard,
    near_duplicates,
    shingles,
)
from collapse_eval.records import canonical_json

__all__ = [
    "HARD_FLAGS",
    "SOFT_FLAGS",
    "RuleResult",
    "LABEL_MIN_COUNT",
    "LENGTH_Z_MAX",
    "NEAR_DUP_THRESHOLD",
    "PROMPT_NEAR_DUP_THRESHOLD",
    "SHINGLE_SIZE",
    "NUM_PERM",
    "prompt_text",
    "response_text",
    "run_rules",
    "sample_contexts",
    "CONTEXT_MIN_TOKENS",
    "context_reuse",
    "SampleContext",
    "Shingler",
    "shingles",
    "jaccard",
    "near_duplicates",
]

# A label counts as part of its task type's label set when at least this many samples use it.
LABEL_MIN_COUNT = 2
# Length outliers: |robust z| above this (Iglewicz & Hoaglin's 3.5), per task type with at
# least LENGTH_MIN_GROUP samples.
LENGTH_Z_MAX = 3.5
LENGTH_MIN_GROUP = 10
# Near duplicates (NEAR_DUP_THRESHOLD, PROMPT_NEAR_DUP_THRESHOLD, SHINGLE_SIZE, NUM_PERM):
# see duplicates.py, which compares samples on one shared context on what differs.
# Prompt copying: a response equal to the prompt, containing the whole prompt (of at least
# COPY_MIN_TOKENS tokens), or of at least COPY_MIN_TOKENS tokens whose 4-grams are at
# least COPY_SHARE in the prompt.
COPY_MIN_TOKENS = 8
COPY_SHARE = 0.8
# Truncation of free text: at least this many tokens and no sentence-final mark at the end.
TRUNCATION_MIN_TOKENS = 5
# Script mismatch: the CJK share of letters differs by more than this between prompt and
# response (free_text and span responses with at least SCRIPT_MIN_LETTERS letters).
SCRIPT_SHARE_GAP = 0.5
SCRIPT_MIN_LETTERS = 3

# Hard flags remove a sample from the later stages and from --keep-out; soft flags only
# lower its score.
HARD_FLAGS = (
    "invalid_format",
    "empty_response",
    "duplicate",
    "near_duplicate",
    "truncated",
    "copies_prompt",
)
SOFT_FLAGS = ("length_outlier", "script_mismatch", "near_duplicate_prompt")

_SENTENCE_END = tuple(".!?。！？…\"'”’)）」』]}*`")
_FENCE_RE = re.compile(r"^\s*```[\w+-]*[ \t]*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_CJK_CHAR_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN_CHAR_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")


@dataclass
class RuleResult:
    """What the rule stage found for one sample."""

    flags: list[str] = field(default_factory=list)
    # Dimension name -> score in 0..1 (format, completeness, uniqueness, fidelity).
    scores: dict[str, float] = field(default_factory=dict)
    format_problem: str | None = None
    length_tokens: int = 0
    length_z: float | None = None
    duplicate_of: str | None = None

    def add(self, flag: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)


# ------------------------------------------------------------------ sample text


def prompt_text(item: TrainingItem) -> str:
    """The prompt, or the messages' contents joined by newlines."""
    if item.prompt is not None:
        return item.prompt
    return "\n".join(content for _, content in item.messages or ())


def response_text(item: TrainingItem) -> str:
    """The response as text: strings as is, structured values as compact JSON."""
    value = item.response
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _input_key(item: TrainingItem) -> str:
    if item.prompt is not None:
        return canonical_json({"prompt": item.prompt})
    return canonical_json({"messages": [list(m) for m in item.messages or ()]})


# ------------------------------------------------------------------ format


def _unfenced(text: str) -> str:
    match = _FENCE_RE.match(text)
    return (match.group(1) if match else text).strip()


def _json_keys(text: str) -> frozenset[str] | None:
    """Top-level keys when the whole (unfenced) response is one JSON object, else None."""
    body = _unfenced(text)
    if not (body.startswith("{") and body.endswith("}")):
        return None
    parsed = extract_json_object(body)
    return None if parsed is None else frozenset(parsed)


def _label_of(text: str) -> str | None:
    result = score_label(text, "")
    return str(result.parsed) if result.format_ok and result.parsed else None


class FormatReference:
    """Per task type: the majority JSON key set and the label set (labels seen >= k times)."""

    def __init__(self, items: Sequence[TrainingItem], texts: Sequence[str]) -> None:
        keysets: dict[str, Counter[frozenset[str]]] = defaultdict(Counter)
        labels: dict[str, Counter[str]] = defaultdict(Counter)
        for item, text in zip(items, texts, strict=True):
            task = item.task_type or ""
            if item.output_format == "json":
                keys = _json_keys(text)
                if keys is not None:
                    keysets[task][keys] += 1
            elif item.output_format == "label":
                label = _label_of(text)
                if label is not None:
                    labels[task][label] += 1
        self.keysets = {task: counts.most_common(1)[0][0] for task, counts in keysets.items()}
        self.labels = {
            task: frozenset(lab for lab, n in counts.items() if n >= LABEL_MIN_COUNT)
            for task, counts in labels.items()
        }

    def problem(self, item: TrainingItem, text: str) -> str | None:
        """Why ``text`` does not fit the sample's output format, or None."""
        fmt, task = item.output_format, item.task_type or ""
        if fmt is None or fmt == "free_text":
            return None
        if fmt == "json":
            keys = _json_keys(text)
            if keys is None:
                return "not a JSON object"
            expected = self.keysets.get(task)
            if expected is not None and keys != expected:
                return f"JSON keys {sorted(keys)} differ from the task type's {sorted(expected)}"
            return None
        if fmt == "label":
            label = _label_of(text)
            if label is None:
                return "not a single short label"
            known = self.labels.get(task)
            if known and label not in known:
                return f"label {label!r} is used by fewer than {LABEL_MIN_COUNT} samples"
            return None
        ok = {
            "yes_no": lambda t: score_yes_no(t, True).format_ok,
            "number": lambda t: score_number(t, 0).format_ok,
            "list": lambda t: score_list(t, []).format_ok,
            "span": lambda t: score_span(t, "x").format_ok,
        }.get(fmt)
        if ok is not None and not ok(text):
            return f"does not parse as {fmt}"
        return None


# ------------------------------------------------------------------ single-sample checks


def is_empty(item: TrainingItem, text: str) -> bool:
    """No content: only whitespace, punctuation, fences or an empty object / list."""
    if isinstance(item.response, (dict, list)) and not item.response:
        return True
    return not mixed_tokens(_unfenced(text).strip("{}[]\"'` "))


def _open_brackets(text: str) -> int:
    """Unclosed { and [ outside JSON strings (positive when cut off)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return depth + (1 if in_string else 0)


def is_truncated(item: TrainingItem, text: str) -> bool:
    """Cut off: an unclosed code fence, JSON / list brackets left open, or free text that
    stops mid-sentence."""
    stripped = text.strip()
    if stripped.count("```") % 2 == 1:
        return True
    body = _unfenced(stripped)
    if body[:1] in ("{", "[") and _open_brackets(body) > 0:
        return True
    if item.output_format in ("free_text", None) and isinstance(item.response, str):
        return len(mixed_tokens(body)) >= TRUNCATION_MIN_TOKENS and not body.endswith(_SENTENCE_END)
    return False


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def copies_prompt(
    prompt: str,
    text: str,
    p_tokens: Sequence[str] | None = None,
    r_tokens: Sequence[str] | None = None,
) -> bool:
    """The response repeats the prompt instead of answering it."""
    p_norm, r_norm = normalize_text(prompt), normalize_text(text)
    if not r_norm:
        return False
    if r_norm == p_norm:
        return True
    p_tokens = mixed_tokens(prompt) if p_tokens is None else p_tokens
    # The whole prompt inside the response (only for prompts long enough not to occur
    # by chance: "Hi" is inside "This").
    if len(p_tokens) >= COPY_MIN_TOKENS and p_norm in r_norm:
        return True
    r_tokens = mixed_tokens(text) if r_tokens is None else r_tokens
    if len(r_tokens) < COPY_MIN_TOKENS:
        return False
    prompt_grams = set(_ngrams(p_tokens, 4))
    grams = _ngrams(r_tokens, 4)
    return sum(g in prompt_grams for g in grams) / len(grams) >= COPY_SHARE


def cjk_share(text: str) -> float | None:
    """Share of CJK characters among CJK + Latin letters (None with too few letters)."""
    cjk = len(_CJK_CHAR_RE.findall(text))
    latin = len(_LATIN_CHAR_RE.findall(text))
    if cjk + latin < SCRIPT_MIN_LETTERS:
        return None
    return cjk / (cjk + latin)


def script_mismatch(item: TrainingItem, prompt: str, text: str) -> bool:
    if item.output_format not in ("free_text", "span", None) or not isinstance(item.response, str):
        return False
    p_share, r_share = cjk_share(prompt), cjk_share(text)
    if p_share is None or r_share is None:
        return False
    return abs(p_share - r_share) > SCRIPT_SHARE_GAP


# ------------------------------------------------------------------ length outliers


def robust_z(values: Sequence[float]) -> list[float]:
    """0.6745 (x - median) / MAD; with MAD 0, the mean absolute deviation x 1.2533 instead
    (all zeros when both are 0).

    scipy computes the MAD. The constant stays Iglewicz and Hoaglin's rounded 0.6745 rather
    than ``scale="normal"`` (0.674490): the exact one would move ``length_z`` in
    quality.json's fourth decimal and could move a sample across the flag threshold.
    """
    # Imported here: scipy.stats costs 0.6 s, and only groups big enough get here.
    from scipy.stats import median_abs_deviation

    x = np.asarray(values, dtype=float)
    median = float(np.median(x))
    mad = float(median_abs_deviation(x))
    if mad > 0:
        z: list[float] = (0.6745 * (x - median) / mad).tolist()
        return z
    # Summed over the sorted deviations, as before scipy, so z keeps its last digit.
    mean_ad = sum(sorted(abs(v - median) for v in values)) / len(values)
    if mean_ad == 0:
        return [0.0] * len(values)
    return [(v - median) / (1.253314 * mean_ad) for v in values]


def _length_outliers(
    items: Sequence[TrainingItem], lengths: Sequence[int], results: Sequence[RuleResult]
) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[item.task_type or ""].append(index)
    for indices in groups.values():
        if len(indices) < LENGTH_MIN_GROUP:
            continue
        zs = robust_z([math.log1p(lengths[i]) for i in indices])
        for i, z in zip(indices, zs, strict=True):
            results[i].length_z = round(z, 4)
            if abs(z) > LENGTH_Z_MAX:
                results[i].add("length_outlier")


# ------------------------------------------------------------------ duplicates


def sample_contexts(items: Sequence[TrainingItem]) -> list[SampleContext | None]:
    """Each sample's shared context in ``prompt_text(item)`` (see context.py), or None."""
    prompts = [prompt_text(item) for item in items]
    return find_contexts(items, prompts, lambda text: len(mixed_tokens(text)))


def _prompt_tokens(
    prompts: Sequence[str], contexts: Sequence[SampleContext | None]
) -> tuple[list[list[str]], list[tuple[int, int] | None]]:
    """The prompts' tokens, each distinct context tokenised once, and where the context's
    tokens are (contexts sit on token boundaries, so the pieces' tokens are the whole's)."""
    cache: dict[str, list[str]] = {}
    tokens: list[list[str]] = []
    spans: list[tuple[int, int] | None] = []
    for prompt, context in zip(prompts, contexts, strict=True):
        if context is None:
            tokens.append(mixed_tokens(prompt))
            spans.append(None)
            continue
        if context.text not in cache:
            cache[context.text] = mixed_tokens(context.text)
        before = mixed_tokens(prompt[: context.start])
        middle = cache[context.text]
        tokens.append(before + middle + mixed_tokens(prompt[context.end :]))
        spans.append((len(before), len(before) + len(middle)))
    return tokens, spans


def _exact_duplicates(items: Sequence[TrainingItem], results: Sequence[RuleResult]) -> set[int]:
    first: dict[str, int] = {}
    exact: set[int] = set()
    for index, item in enumerate(items):
        key = _input_key(item) + "\0" + canonical_json(item.response)
        if key in first:
            exact.add(index)
            results[index].add("duplicate")
            results[index].duplicate_of = items[first[key]].id
        else:
            first[key] = index
    return exact


def _duplicates(
    items: Sequence[TrainingItem], texts: SampleTexts, results: Sequence[RuleResult]
) -> None:
    """duplicate, near_duplicate and near_duplicate_prompt (duplicates.py says what is
    compared between samples on one context and between all others)."""
    exact = _exact_duplicates(items, results)
    near = texts.near_samples(exact)
    for i, j in near.items():
        results[i].add("near_duplicate")
        results[i].duplicate_of = items[j].id
    tasks = codes([item.task_type or "" for item in items])
    for i, j in texts.near_prompts(exact | set(near), tasks).items():
        results[i].add("near_duplicate_prompt")
        results[i].duplicate_of = items[j].id


# ------------------------------------------------------------------ the stage


def _dimension_scores(result: RuleResult) -> dict[str, float]:
    flags = set(result.flags)
    fidelity_checks = ("copies_prompt", "script_mismatch", "length_outlier")
    uniqueness = 0.0 if flags & {"duplicate", "near_duplicate"} else 1.0
    if "near_duplicate_prompt" in flags:
        uniqueness = 0.5
    return {
        "format": 0.0 if "invalid_format" in flags else 1.0,
        "completeness": 0.0 if flags & {"empty_response", "truncated"} else 1.0,
        "uniqueness": uniqueness,
        "fidelity": 1.0 - sum(f in flags for f in fidelity_checks) / len(fidelity_checks),
    }


def run_rules(
    items: Sequence[TrainingItem], contexts: Sequence[SampleContext | None] | None = None
) -> list[RuleResult]:
    """Flag reasons and rule dimension scores for every sample, in input order.

    ``contexts`` (from ``sample_contexts``, found here when not given) are the shared
    contexts the near-duplicate rules factor out."""
    prompts = [prompt_text(item) for item in items]
    texts = [response_text(item) for item in items]
    reference = FormatReference(items, texts)
    results = [RuleResult() for _ in items]
    if contexts is None:
        contexts = sample_contexts(items)
    p_tokens, spans = _prompt_tokens(prompts, contexts)
    r_tokens = [mixed_tokens(t) for t in texts]
    lengths = [len(t) for t in r_tokens]
    for index, (item, prompt, text, result) in enumerate(
        zip(items, prompts, texts, results, strict=True)
    ):
        result.length_tokens = lengths[index]
        if is_empty(item, text):
            result.add("empty_response")
            continue
        if is_truncated(item, text):
            result.add("truncated")
        problem = reference.problem(item, text)
        if problem is not None:
            result.add("invalid_format")
            result.format_problem = problem
        if copies_prompt(prompt, text, p_tokens[index], r_tokens[index]):
            result.add("copies_prompt")
        if script_mismatch(item, prompt, text):
            result.add("script_mismatch")
    _length_outliers(items, lengths, results)
    keys = [None if c is None else c.text for c in contexts]
    _duplicates(items, SampleTexts(p_tokens, r_tokens, spans, keys), results)
    for result in results:
        result.scores = _dimension_scores(result)
    return results
