"""Reading summary.json (written by ``compare``; read by ``gate``, ``report``, ``correlate``).

``load_summary`` checks the version (older ones are migrated, newer ones refused with what
to do) and the keys every reader relies on, so a reader never fails half-way with a
KeyError on a file from another release or a hand-edited one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from collapse_eval.errors import InputError
from collapse_eval.records import is_run_dir, read_json
from collapse_eval.versioning import Migration, upgrade

SUMMARY_SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
# version v -> a function that lifts a summary of version v to v + 1. Version 1 is the
# first, so there is nothing to migrate yet; a change of the format adds an entry here.
SUMMARY_MIGRATIONS: dict[int, Migration] = {}

_REQUIRED = ("verdict", "reasons", "base", "tuned", "policy", "comparisons")
_COMPARISON_REQUIRED = (
    "suite",
    "task",
    "group_by",
    "group",
    "metric",
    "n",
    "base_mean",
    "tuned_mean",
    "delta",
    "ci_low",
    "ci_high",
    "test",
    "p_value",
    "p_adjusted",
    "status",
)
_NUMBERS = ("delta",)  # judged by gate: must be numbers
_NULLABLE_NUMBERS = ("ci_low", "ci_high", "p_value", "p_adjusted")


def summary_from_json(
    obj: Any,
    *,
    path: str | Path = SUMMARY_FILE,
    migrations: Mapping[int, Migration] = SUMMARY_MIGRATIONS,
) -> dict[str, Any]:
    """A decoded summary.json at the current version with the keys readers need."""
    if not isinstance(obj, dict):
        raise InputError(path, "not a collapse-eval summary.json: expected a JSON object")
    summary = upgrade(
        obj,
        kind=SUMMARY_FILE,
        current=SUMMARY_SCHEMA_VERSION,
        migrations=migrations,
        path=path,
    )
    for key in _REQUIRED:
        if key not in summary:
            raise InputError(
                path, "missing required field (not a collapse-eval summary)", field=key
            )
    if not isinstance(summary["comparisons"], list):
        raise InputError(path, "must be a list", field="comparisons")
    if not isinstance(summary["reasons"], list):
        raise InputError(path, "must be a list", field="reasons")
    for side in ("base", "tuned"):
        if not isinstance(summary[side], dict):
            raise InputError(path, "must be an object with 'model' and 'run'", field=side)
    for index, row in enumerate(summary["comparisons"]):
        _check_comparison(row, path, f"comparisons[{index}]")
    return summary


def _check_comparison(row: Any, path: str | Path, where: str) -> None:
    if not isinstance(row, dict):
        raise InputError(path, "must be an object", field=where)
    for key in _COMPARISON_REQUIRED:
        if key not in row:
            raise InputError(path, "missing required field", field=f"{where}.{key}")
    for key in _NUMBERS + _NULLABLE_NUMBERS:
        value = row[key]
        if value is None and key in _NULLABLE_NUMBERS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(path, f"must be a number, got {value!r}", field=f"{where}.{key}")


def load_summary(path: str | Path) -> dict[str, Any]:
    """Read and check summary.json (InputError, exit 2, on any problem)."""
    return summary_from_json(read_json(path), path=path)


def side_run_dir(summary: Mapping[str, Any], side: str, summary_path: str | Path) -> Path | None:
    """The run directory a summary names for ``side`` ("base" or "tuned"), or None.

    The path is taken as written when it is absolute; a relative one (older summaries
    stored the path as typed) or one whose tree was moved is looked up relative to the
    directories above summary.json, longest tail of the path first, so the result does
    not depend on the working directory.
    """
    stored = (summary.get(side) or {}).get("run")
    if not stored:
        return None
    home = Path(summary_path).resolve().parent
    for candidate in _run_candidates(Path(str(stored)), home):
        if is_run_dir(candidate):
            return candidate
    return None


def _run_candidates(stored: Path, home: Path) -> Iterator[Path]:
    if stored.is_absolute():
        yield stored
    parts = [p for p in stored.parts if p != stored.anchor]
    for start in range(len(parts)):
        tail = Path(*parts[start:])
        for anchor in (home, *home.parents):
            yield anchor / tail
