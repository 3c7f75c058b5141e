"""Typed models of the files collapse-eval writes, one module per format (msgspec Structs).

Writers serialize through the models and readers decode through them; the JSON Schemas in
``collapse_eval/schemas/`` are generated from them (``python
scripts/generate_schemas.py``). Why msgspec and not pydantic: docs/architecture.md.
This package imports nothing else of collapse_eval but ``errors``, so that every layer can
use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from collapse_eval.errors import InputError

__all__ = ["input_error", "to_plain"]

# msgspec ends a validation message with "- at `$.a.b[0]`": the field path, which our
# errors name as "field 'a.b[0]'".
_AT = re.compile(r" - at `\$\.?(?P<field>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")


def input_error(
    path: str | Path, exc: msgspec.MsgspecError, *, line: int | None = None
) -> InputError:
    """An msgspec decoding or validation error as the project's file:line: field message."""
    message = str(exc)
    match = _AT.search(message)
    field = None
    if match:
        message = message[: match.start()]
        field = match.group("field") or None
    for pattern, wording in ((_UNKNOWN, "unknown field"), (_MISSING, "missing required field")):
        named = pattern.match(message)
        if named:  # msgspec names the object; the field is the key in it
            field = ".".join(filter(None, (field, named.group("name"))))
            message = wording
    if isinstance(exc, msgspec.ValidationError):
        return InputError(path, message, line=line, field=field)
    return InputError(path, f"invalid JSON: {message}", line=line, field=field)


def to_plain(model: Any) -> Any:
    """A model as the dicts, lists and numbers ``json.dumps`` writes, keys in field order.

    Writers keep ``json.dumps`` (not ``msgspec.json.encode``) so that the indentation and
    the ``ensure_ascii`` choice of every file stay byte-for-byte what they were."""
    return msgspec.to_builtins(model)
