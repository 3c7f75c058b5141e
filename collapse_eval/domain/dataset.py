"""Domain test sets and training sets (docs/formats.md#domain-test-set): loading, validation.

Both loaders check the whole file in one pass and raise ``InputErrors`` listing every
problem (file:line: field: what, and what to do), so a user fixes a file in one round
instead of one error per run. Format-specific reference checks come from the scorer
registry (``scorers.check_reference``), so a new output format brings its own check.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collapse_eval.domain.scorers import check_reference, output_formats
from collapse_eval.engines.base import Message
from collapse_eval.errors import InputError, InputErrors, did_you_mean
from collapse_eval.records import canonical_json, decode_json, iter_jsonl, sha256_text

__all__ = [
    "DomainItem",
    "TrainingItem",
    "load_domain_set",
    "load_training_set",
    "validate_file",
    "domain_task_name",
    "item_doc_hash",
    "ROLES",
]

ROLES = ("system", "user", "assistant")

_DOMAIN_REQUIRED = ("id", "task_type", "output_format", "reference")
_REQUIRED_HINTS = {
    "id": 'add "id": a string unique within the file, e.g. "rt-0001"',
    "task_type": 'add "task_type": what the item tests, e.g. "intent"',
    "output_format": 'add "output_format": how the answer is scored, e.g. "label"',
    "reference": 'add "reference": the correct answer the prediction is scored against',
}
_DOMAIN_FIELDS = {
    "id",
    "task_type",
    "output_format",
    "prompt",
    "messages",
    "reference",
    "choices",
    "metadata",
}
_TRAINING_FIELDS = {
    "id",
    "task_type",
    "output_format",
    "prompt",
    "messages",
    "response",
    "metadata",
}


@dataclass(frozen=True, slots=True)
class DomainItem:
    """One domain test item. Exactly one of ``prompt`` and ``messages`` is set."""

    id: str
    task_type: str
    output_format: str
    reference: Any
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    choices: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0
    # From metadata.cluster: items about one dialogue share it (clustered standard errors).
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class TrainingItem:
    """One fine-tuning sample: ``prompt`` or ``messages`` plus the target ``response``."""

    id: str
    response: Any
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    task_type: str | None = None
    output_format: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


def domain_task_name(path: str | Path) -> str:
    """The task name of a domain file in records: its file stem (``tasks/realestate.jsonl``
    -> ``realestate``)."""
    return Path(path).stem


def item_doc_hash(item: DomainItem) -> str:
    """Hash of what the model sees and is scored against (not the id, line or metadata).

    Two runs whose records carry different doc hashes for one item id were evaluated on
    different data and must not be paired.
    """
    return sha256_text(
        canonical_json(
            {
                "task_type": item.task_type,
                "output_format": item.output_format,
                "prompt": item.prompt,
                "messages": [list(m) for m in item.messages] if item.messages is not None else None,
                "reference": item.reference,
                "choices": list(item.choices) if item.choices is not None else None,
            }
        )
    )


# ------------------------------------------------------------------ reading lines


class _LineChecker:
    """Collects the problems of one line; each check returns the cleaned value or None."""

    def __init__(self, path: Path, line: int, problems: list[InputError]) -> None:
        self.path, self.line, self.problems = path, line, problems
        self.ok = True

    def fail(self, message: str, fld: str | None = None, hint: str | None = None) -> None:
        self.ok = False
        self.problems.append(InputError(self.path, message, line=self.line, field=fld, hint=hint))

    def unknown_fields(self, obj: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(obj) - allowed):
            hint = did_you_mean(key, allowed).strip() or "put extra information under 'metadata'"
            self.fail("unknown field", key, hint)

    def item_id(self, obj: Mapping[str, Any]) -> str | None:
        """The id as a string (integers accepted), None when absent or malformed."""
        if "id" not in obj:
            return None
        value = obj["id"]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"must be a non-empty string, got {_show(value)}", "id")
            return None
        return value

    def optional_string(self, obj: Mapping[str, Any], name: str) -> str | None:
        value = obj.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"must be a non-empty string, got {_show(value)}", name)
            return None
        return value

    def output_format(self, obj: Mapping[str, Any]) -> str | None:
        value = obj.get("output_format")
        if value is None:
            return None
        formats = output_formats()
        if value not in formats:
            self.fail(
                f"unknown output_format {_show(value)}.{did_you_mean(str(value), formats)}",
                "output_format",
                f"one of: {', '.join(formats)}",
            )
            return None
        return str(value)

    def prompt_or_messages(
        self, obj: Mapping[str, Any]
    ) -> tuple[str | None, tuple[Message, ...] | None]:
        has_prompt, has_messages = "prompt" in obj, "messages" in obj
        if has_prompt == has_messages:
            what = "both" if has_prompt else "neither"
            hint = (
                "keep one: 'prompt' for plain text, 'messages' for a chat"
                if has_prompt
                else 'add "prompt": the text the model completes, or "messages": a chat'
            )
            self.fail(f"needs exactly one of 'prompt' and 'messages', found {what}", "prompt", hint)
            return None, None
        if has_prompt:
            prompt = obj["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                self.fail(f"must be a non-empty string, got {_show(prompt)}", "prompt")
                return None, None
            return prompt, None
        return None, self.messages(obj["messages"])

    def messages(self, value: Any) -> tuple[Message, ...] | None:
        if not isinstance(value, list) or not value:
            self.fail(
                'must be a non-empty list of {"role": ..., "content": ...} objects', "messages"
            )
            return None
        out: list[Message] = []
        for index, msg in enumerate(value):
            where = f"messages[{index}]"
            if not isinstance(msg, dict):
                self.fail(f"must be an object with 'role' and 'content', got {_show(msg)}", where)
                continue
            role, content = msg.get("role"), msg.get("content")
            if role not in ROLES:
                self.fail(
                    f"unknown role {_show(role)}.{did_you_mean(str(role), ROLES)}",
                    f"{where}.role",
                    f"one of: {', '.join(ROLES)}",
                )
            if not isinstance(content, str):
                self.fail(f"must be a string, got {_show(content)}", f"{where}.content")
            extra = sorted(set(msg) - {"role", "content"})
            if extra:
                self.fail(f"unknown key(s) {', '.join(extra)}", where)
            if role in ROLES and isinstance(content, str):
                out.append((str(role), content))
        return tuple(out) if len(out) == len(value) else None

    def metadata(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        value = obj.get("metadata", {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(f"must be a JSON object, got {_show(value)}", "metadata")
            return {}
        cluster = value.get("cluster")
        if cluster is not None and (
            isinstance(cluster, bool) or not isinstance(cluster, (str, int))
        ):
            self.fail(f"must be a string or integer, got {_show(cluster)}", "metadata.cluster")
        return value


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_duplicate(checker: _LineChecker, item_id: str | None, seen: dict[str, int]) -> None:
    if item_id is None:
        return
    if item_id in seen:
        checker.fail(
            f"duplicate id {_show(item_id)} (first on line {seen[item_id]})",
            "id",
            "ids must be unique within the file",
        )
    else:
        seen[item_id] = checker.line


# ------------------------------------------------------------------ domain sets


def _not_an_object(obj: Any, checker: _LineChecker) -> bool:
    if isinstance(obj, dict):
        return False
    checker.fail(
        f"expected a JSON object, got {_json_type(obj)}",
        hint='each line must be one object such as {"id": ..., "prompt": ..., ...}',
    )
    return True


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _domain_item(obj: Any, checker: _LineChecker, seen: dict[str, int]) -> DomainItem | None:
    if _not_an_object(obj, checker):
        return None
    checker.unknown_fields(obj, _DOMAIN_FIELDS)
    for name in _DOMAIN_REQUIRED:
        if name not in obj:
            checker.fail("missing required field", name, _REQUIRED_HINTS[name])
    item_id = checker.item_id(obj)
    _check_duplicate(checker, item_id, seen)
    task_type = checker.optional_string(obj, "task_type")
    output_format = checker.output_format(obj)
    prompt, messages = checker.prompt_or_messages(obj)
    metadata = checker.metadata(obj)
    reference = obj.get("reference")
    choices = _choices(obj, checker)
    if "reference" in obj:
        if choices is not None:
            if not isinstance(reference, str) or reference not in choices:
                checker.fail(
                    f"reference {_show(reference)} is not one of the choices",
                    "reference",
                    "with 'choices', the reference must be one of them, spelled exactly",
                )
        elif output_format is not None:
            problem = check_reference(output_format, reference)
            if problem:
                checker.fail(problem, "reference")
    if not checker.ok:
        return None
    assert item_id is not None and task_type is not None and output_format is not None
    cluster = metadata.get("cluster")
    return DomainItem(
        id=item_id,
        task_type=task_type,
        output_format=output_format,
        reference=reference,
        prompt=prompt,
        messages=messages,
        choices=choices,
        metadata=metadata,
        line=checker.line,
        cluster=None if cluster is None else str(cluster),
    )


def _choices(obj: Mapping[str, Any], checker: _LineChecker) -> tuple[str, ...] | None:
    if obj.get("choices") is None:
        return None
    value = obj["choices"]
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        checker.fail("must be a list of non-empty strings", "choices")
        return None
    if len(value) < 2:
        checker.fail("needs at least two choices to rank", "choices")
        return None
    if len(set(value)) != len(value):
        dupes = sorted({c for c in value if value.count(c) > 1})
        checker.fail(f"repeated choice(s): {', '.join(map(_show, dupes))}", "choices")
        return None
    return tuple(value)


def _load(
    path: str | Path,
    parse: Callable[[Any, _LineChecker, dict[str, int]], Any],
) -> tuple[list[Any], list[InputError]]:
    path = Path(path)
    problems: list[InputError] = []
    items: list[Any] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, problems):
        item = parse(obj, _LineChecker(path, lineno, problems), seen)
        if item is not None:
            items.append(item)
    if not items and not problems:
        problems.append(
            InputError(path, "no items: the file is empty", hint="one JSON object per line")
        )
    return items, problems


def load_domain_set(path: str | Path) -> list[DomainItem]:
    """Load and validate a domain test set; raise ``InputErrors`` listing every problem."""
    items, problems = _load(path, _domain_item)
    if problems:
        raise InputErrors(path, problems)
    return items


# ------------------------------------------------------------------ training sets


def _training_item(
    obj: Any, checker: _LineChecker, seen: dict[str, int], *, allow_empty_response: bool = False
) -> TrainingItem | None:
    if _not_an_object(obj, checker):
        return None
    checker.unknown_fields(obj, _TRAINING_FIELDS)
    # Training samples often have no id; the line number identifies them.
    given_id = checker.item_id(obj)
    _check_duplicate(checker, given_id, seen)
    item_id = given_id or f"line-{checker.line}"
    task_type = checker.optional_string(obj, "task_type")
    output_format = checker.output_format(obj)
    prompt, messages = checker.prompt_or_messages(obj)
    metadata = checker.metadata(obj)
    if "response" not in obj:
        checker.fail(
            "missing required field",
            "response",
            'add "response": the target the model is trained on',
        )
    else:
        response = obj["response"]
        if isinstance(response, str):
            if not response.strip() and not allow_empty_response:
                checker.fail("must not be empty", "response")
        elif output_format is not None:
            # Structured responses (objects, lists, numbers) must fit the declared format.
            problem = check_reference(output_format, response)
            if problem:
                checker.fail(problem, "response")
        elif not isinstance(response, (dict, list, int, float)) or isinstance(response, bool):
            checker.fail(
                f"must be a string (or a JSON value fitting output_format), got {_show(response)}",
                "response",
            )
    if not checker.ok:
        return None
    return TrainingItem(
        id=item_id,
        response=obj["response"],
        prompt=prompt,
        messages=messages,
        task_type=task_type,
        output_format=output_format,
        metadata=metadata,
        line=checker.line,
    )


def load_training_set(
    path: str | Path, *, allow_empty_response: bool = False
) -> list[TrainingItem]:
    """Load and validate a training set; raise ``InputErrors`` listing every problem.

    ``allow_empty_response`` (used by ``quality``) accepts an empty or whitespace-only
    string response, so that the quality rules can flag it (``empty_response``) instead of
    the whole file being refused; structural problems are still errors.
    """
    items, problems = _load(
        path, functools.partial(_training_item, allow_empty_response=allow_empty_response)
    )
    if problems:
        raise InputErrors(path, problems)
    return items


# ------------------------------------------------------------------ validate


def _detect_kind(path: Path) -> Literal["domain", "training"]:
    """'training' when lines carry 'response' and none carries 'reference'."""
    references = responses = 0
    try:
        data = path.read_bytes()
    except OSError:
        return "domain"
    for raw in data.split(b"\n"):
        try:
            obj = decode_json(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            references += "reference" in obj
            responses += "response" in obj
    return "training" if responses > 0 and references == 0 else "domain"


def validate_file(path: str | Path) -> tuple[Literal["domain", "training"], int, list[InputError]]:
    """Check a domain test set or a training set: (kind, valid item count, problems).

    The kind is detected from the fields (``reference`` -> domain, ``response`` ->
    training). Never raises for problems inside the file; a missing file raises.
    """
    path = Path(path)
    kind = _detect_kind(path)
    parse = _domain_item if kind == "domain" else _training_item
    items, problems = _load(path, parse)
    return kind, len(items), problems
