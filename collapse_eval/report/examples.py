"""Items the tuned model lost and gained, read from the two runs named in summary.json.

Run paths in summary.json are resolved against the summary's own directory (an absolute
path is used as is), never against the working directory, so `collapse-eval report DIR`
finds the same runs from anywhere. Records are read with a plain JSON decoder, not the
validating loader: a report must render in well under two seconds for 100,000 records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"
PER_TASK_AND_DIRECTION = 25  # examples kept per (task, lost|gained); counts cover all
MAX_TEXT = 4000  # characters of a prompt, output or reference shown


@dataclass
class Examples:
    """Changed items, their counts per task, and why examples may be missing."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> lost/gained
    problem: str | None = None
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # base/tuned -> manifest


def resolve_run(summary_dir: Path, run: str) -> Path | None:
    """The run directory named by ``run``; None if it is nowhere to be found.

    An absolute path is used when it still holds the run. A relative path is taken
    relative to ``summary_dir``. Either way, when that fails, the path's trailing parts
    are tried under ``summary_dir`` (``/old/place/out/runs/base`` or a path given relative
    to where compare ran, ``reports/x/runs/base``, both find ``out/runs/base``), so a moved
    report directory still finds its runs. The working directory is never consulted.
    """
    path = PurePath(run)
    if path.is_absolute() and _is_run(Path(path)):
        return Path(path)
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for start in range(len(parts)):
        candidate = summary_dir.joinpath(*parts[start:])
        if _is_run(candidate):
            return candidate
    return None


def _is_run(path: Path) -> bool:
    return (path / RECORDS_FILE).is_file()


# The head of a line as collapse-eval writes it (records.py field order): the pairing key and
# the score come from one regex match; only items whose score changed are decoded in full.
# Any other layout (escaped strings, other key order) falls back to the JSON decoder.
_HEAD = re.compile(
    r'\{"schema_version": \d+, "suite": "([^"\\]*)", "task": "([^"\\]*)", '
    r'"item_id": "([^"\\]*)", "metric": "([^"\\]*)", "score": (-?[0-9][0-9.eE+-]*)[,}]'
)

Key = tuple[str, str, str, str]


def _scan(path: Path, wanted: Mapping[tuple[str, str, str], bool]) -> dict[Key, tuple[float, Any]]:
    """key -> (score, raw line or decoded object) for the wanted records of one run."""
    out: dict[Key, tuple[float, Any]] = {}
    with (path / RECORDS_FILE).open(encoding="utf-8") as fh:
        for line in fh:
            head = _HEAD.match(line)
            if head is not None:
                suite, task, item_id, metric, score = head.groups()
                if (suite, task, metric) in wanted:
                    out[(suite, task, item_id, metric)] = (float(score), line)
                continue
            obj = _decode(line)
            if obj is None or (obj.get("suite"), obj.get("task"), obj.get("metric")) not in wanted:
                continue
            value = _score(obj)
            if value is not None:
                key = (obj["suite"], obj["task"], str(obj.get("item_id")), obj["metric"])
                out[key] = (value, obj)
    return out


def _decode(line: Any) -> dict[str, Any] | None:
    if isinstance(line, dict):
        return line
    try:
        obj = json.loads(line)
    except ValueError:
        return None  # a torn last line of an interrupted run
    return obj if isinstance(obj, dict) else None


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        value = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def primary_keys(summary: Mapping[str, Any]) -> dict[tuple[str, str, str], bool]:
    """(suite, task, metric) of every compared task, subtasks of group tasks included,
    mapped to whether a higher score is better."""
    keys: dict[tuple[str, str, str], bool] = {}
    for row in summary.get("comparisons") or []:
        metric = row.get("metric")
        better = row.get("higher_is_better", True) is not False
        if metric == "format_ok":
            continue
        if row.get("group_by") is None:
            keys[(row.get("suite"), row.get("task"), metric)] = better
        elif row.get("group_by") == "subtask":
            keys[(row.get("suite"), row.get("group"), metric)] = better
    return keys


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " [... truncated]"


def _score(obj: Mapping[str, Any]) -> float | None:
    score = obj.get("score")
    return float(score) if isinstance(score, (int, float)) else None


def _example(base: Mapping[str, Any], tuned: Mapping[str, Any], direction: str) -> dict[str, Any]:
    meta = tuned.get("metadata") if isinstance(tuned.get("metadata"), dict) else {}
    prompt = tuned.get("prompt") or base.get("prompt") or (meta or {}).get("prompt")
    return {
        "suite": tuned.get("suite"),
        "task": tuned.get("task"),
        "item_id": str(tuned.get("item_id")),
        "task_type": tuned.get("task_type") or "",
        "output_format": tuned.get("output_format") or "",
        "direction": direction,
        "prompt": _text(prompt),
        "reference": _text(tuned.get("reference", base.get("reference"))),
        "base_prediction": _text(base.get("prediction")),
        "tuned_prediction": _text(tuned.get("prediction")),
        "base_score": _score(base),
        "tuned_score": _score(tuned),
    }


def collect_examples(summary: Mapping[str, Any], summary_dir: Path) -> Examples:
    """Lost and gained items of every compared task (general and domain)."""
    found = Examples()
    paths: dict[str, Path] = {}
    for side in ("base", "tuned"):
        run = (summary.get(side) or {}).get("run")
        path = resolve_run(summary_dir, str(run)) if run else None
        if path is None:
            found.problem = (
                f"the {side} run ({run or 'not named in summary.json'}) was not found "
                f"relative to {summary_dir}; examples need both runs' records.jsonl"
            )
            return found
        paths[side] = path
        found.manifests[side] = _read_manifest(path)
    wanted = primary_keys(summary)
    base = _scan(paths["base"], wanted)
    changed: dict[tuple[str, str], list[tuple[float, str, Any, Any]]] = {}
    for key, (t, tuned_line) in _scan(paths["tuned"], wanted).items():
        other = base.get(key)
        if other is None or other[0] == t:
            continue
        b = other[0]
        better = wanted[(key[0], key[1], key[3])]
        direction = "gained" if (t > b) == better else "lost"
        counts = found.counts.setdefault(key[1], {"lost": 0, "gained": 0})
        counts[direction] += 1
        changed.setdefault((key[1], direction), []).append(
            (-abs(t - b), key[2], other[1], tuned_line)
        )
    # Lost before gained; tasks in the summary's order (general first, then domain).
    order = {task: i for i, (_, task, _) in enumerate(wanted)}
    for (_, direction), items in sorted(
        changed.items(), key=lambda kv: (kv[0][1] != "lost", order.get(kv[0][0], len(order)))
    ):
        items.sort(key=lambda entry: (entry[0], entry[1]))
        for _, _, base_line, tuned_line in items[:PER_TASK_AND_DIRECTION]:
            base_obj, tuned_obj = _decode(base_line), _decode(tuned_line)
            if base_obj is not None and tuned_obj is not None:
                found.rows.append(_example(base_obj, tuned_obj, direction))
    return found
