"""Rule screening of generated instructions and parsing of generated labels.

An instruction passes when it states the task's output format (the label set, the JSON
keys, yes/no, ...), is of bounded length and is novel: its ROUGE-L F-measure to every
prompt already in the pool of its task type is below a threshold (Self-Instruct's 0.7).
A label passes when the domain scorer of its format can read it (and, for ``label`` and
``json``, it uses the spec's label set or keys).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    "format_problem",
    "length_problem",
    "most_similar",
    "parse_label",
    "rouge_l",
]

MIN_WORDS = 4
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


def _label_forms(label: str) -> set[str]:
    norm = normalize_text(label)
    return {norm, norm.replace("_", " "), norm.replace("_", "-"), norm.replace("-", " ")}


def _mentions(text: str, phrase: str) -> bool:
    norm = " ".join(mixed_tokens(text))
    return any(
        re.search(rf"(?<![\w]){re.escape(form)}(?![\w])", norm) for form in _label_forms(phrase)
    ) or any(form in normalize_text(text) for form in _label_forms(phrase))


def format_problem(task: TaskSpec, text: str) -> str | None:
    """Why ``text`` does not state ``task``'s output format, or None when it does."""
    fmt = task.output_format
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
        return None if has else "does not ask for yes or no"
    if fmt == "number":
        norm = normalize_text(text)
        return (
            None
            if re.search(r"\b(number|numeric|how many|how much)\b", norm)
            else ("does not ask for a number")
        )
    if fmt == "list":
        norm = normalize_text(text)
        return None if re.search(r"\b(list|comma)", norm) else "does not ask for a list"
    return None  # span and free_text: any question will do


def length_problem(text: str, max_words: int = MAX_WORDS) -> str | None:
    """Why ``text`` is too short or too long to be an instruction, or None."""
    words = len(mixed_tokens(text))
    if words < MIN_WORDS:
        return f"too short ({words} words, at least {MIN_WORDS})"
    if words > max_words:
        return f"too long ({words} words, at most {max_words})"
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
        items = split_list_items(text)
        return (items, None) if items else (None, "no list items")
    if not result.format_ok or (fmt != "free_text" and result.parsed is None):
        return None, f"does not parse as {fmt}"
    if fmt == "free_text":
        return text.strip(), None
    return result.parsed, None


def _dummy_reference(fmt: str) -> Any:
    return {"json": {}, "number": 0, "list": [], "yes_no": "yes"}.get(fmt, "x")
