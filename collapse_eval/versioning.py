"""``schema_version`` on read: older files are migrated step by step, newer ones refused.

Every file collapse-eval writes carries ``schema_version``. A reader holds the highest
version it understands and, per older version v, a function that lifts an object of
version v to v + 1. A newer version is refused with what to do (upgrade collapse-eval),
never half-read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from collapse_eval import __version__
from collapse_eval.errors import InputError

# Lifts a decoded object of version v to version v + 1 (the caller sets schema_version).
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def upgrade(
    obj: dict[str, Any],
    *,
    kind: str,
    current: int,
    migrations: Mapping[int, Migration],
    path: str | Path,
    line: int | None = None,
    default: int | None = None,
) -> dict[str, Any]:
    """``obj`` at version ``current``: as is, or migrated; InputError (exit 2) otherwise.

    ``kind`` names the file type in messages ("summary.json"); ``default`` is the version
    of an object without ``schema_version`` (None: the field is required).
    """

    def fail(message: str) -> InputError:
        return InputError(path, message, line=line, field="schema_version")

    version = obj.get("schema_version", default)
    if version is None:
        raise fail("missing required field")
    if isinstance(version, bool) or not isinstance(version, int):
        raise fail(f"must be an integer, got {version!r}")
    if version > current:
        raise fail(
            f"{kind} schema_version {version} is newer than this collapse-eval "
            f"({__version__}) reads ({current}); upgrade collapse-eval "
            "(pip install -U collapse-eval)"
        )
    upgraded = obj
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise fail(
                f"{kind} schema_version {version} is older than this collapse-eval "
                f"({__version__}) can migrate (it reads {_readable(current, migrations)}); "
                "write the file again with this release"
            )
        upgraded = step(dict(upgraded))
        version += 1
        upgraded["schema_version"] = version
    return upgraded


def _readable(current: int, migrations: Mapping[int, Migration]) -> str:
    oldest = current
    while oldest - 1 in migrations:
        oldest -= 1
    return str(current) if oldest == current else f"{oldest} to {current}"
