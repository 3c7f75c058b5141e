"""Items the tuned model lost and gained, read from the two runs a summary compares.

The caller gives the runs: as columns (``compare``, which has them loaded) or as run
directories (``collapse-eval report DIR`` finds them with ``summary.side_run_dir``, which
never consults the working directory). The changed items are found from the runs' columns
(item ids, scores and line numbers; `compare` passes the columns it already loaded), and
only the lines of the examples shown are decoded in full, so memory does not grow with the
number of changed items' texts (two runs of a million records each stay well under 2 GB).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collapse_eval import columns as columns_module
from collapse_eval.columns import (
    FloatArray,
    RunColumns,
    fetch_records,
    load_runs_columns,
    records_digest,
)
from collapse_eval.errors import InputError, InputErrors
from collapse_eval.records import read_run_manifest
from collapse_eval.summary import Summary

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = ".examples.json"  # in the report directory: which items, for which runs
PER_TASK_AND_DIRECTION = 25  # examples kept per (task, lost|gained); counts cover all
MAX_TEXT = 4000  # characters of a prompt, output or reference shown


@dataclass
class Examples:
    """Changed items, their counts per task, and why examples may be missing."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> lost/gained
    problem: str | None = None
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # base/tuned -> manifest


def examples_for(
    summary: Summary,
    where: Path,
    *,
    run_dirs: tuple[Path | None, Path | None] | None,
    runs: tuple[RunColumns, RunColumns] | None = None,
    index: Path | None = None,
) -> Examples:
    """The report's examples: from the runs' columns when given, else from the run
    directories (``where``, the report's directory, is named when one was not found)."""
    if runs is not None:
        return collect_examples(summary, runs=runs, index=index)
    dirs = run_dirs or (None, None)
    problem = missing_run(summary, dirs, where)
    base, tuned = dirs
    if problem is not None or base is None or tuned is None:
        return Examples(problem=problem)
    return collect_examples(summary, (base, tuned), index=index)


def missing_run(
    summary: Summary, run_dirs: tuple[Path | None, Path | None], where: Path
) -> str | None:
    """Why examples cannot be shown when a run directory was not found (None: both were)."""
    sides = (("base", summary.base), ("tuned", summary.tuned))
    for (name, side), path in zip(sides, run_dirs, strict=True):
        if path is None:
            return (
                f"the {name} run ({side.run or 'not named in summary.json'}) was not found "
                f"relative to {where}; examples need both runs' records.jsonl"
            )
    return None


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        value = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def primary_keys(summary: Summary) -> dict[tuple[str, str, str], bool]:
    """(suite, task, metric) of every compared task, subtasks of group tasks included,
    mapped to whether a higher score is better."""
    keys: dict[tuple[str, str, str], bool] = {}
    for row in summary.comparisons:
        if row.metric == "format_ok":
            continue
        if row.group_by is None:
            keys[(row.suite, row.task, row.metric)] = row.higher_is_better
        elif row.group_by == "subtask":
            keys[(row.suite, str(row.group), row.metric)] = row.higher_is_better
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


@dataclass
class _Changed:
    """The changed items of one task in one direction, as parallel lists."""

    negative_change: list[float] = field(default_factory=list)  # -|tuned - base|
    item_ids: list[str] = field(default_factory=list)
    base_lines: list[int] = field(default_factory=list)
    tuned_lines: list[int] = field(default_factory=list)

    def extend(self, neg: FloatArray, ids: Any, base_lines: Any, tuned_lines: Any) -> None:
        """Add the candidates that can still be among the first PER_TASK_AND_DIRECTION."""
        if neg.size > PER_TASK_AND_DIRECTION:
            threshold = np.partition(neg, PER_TASK_AND_DIRECTION - 1)[PER_TASK_AND_DIRECTION - 1]
            keep = neg <= threshold
            neg, ids = neg[keep], ids[keep]
            base_lines, tuned_lines = base_lines[keep], tuned_lines[keep]
        self.negative_change += neg.tolist()
        self.item_ids += [str(i) for i in ids]
        self.base_lines += base_lines.tolist()
        self.tuned_lines += tuned_lines.tolist()

    def first(self) -> list[tuple[int, int]]:
        """(base line, tuned line) of the largest changes, then by item id, then by the
        tuned run's line (file order)."""
        candidates = zip(
            self.negative_change, self.item_ids, self.tuned_lines, self.base_lines, strict=True
        )
        chosen = heapq.nsmallest(PER_TASK_AND_DIRECTION, candidates)
        return [(base_line, tuned_line) for _, _, tuned_line, base_line in chosen]


def _positions(ids: Any, wanted: Any) -> NDArray[np.intp]:
    """Where each of ``wanted`` is in ``ids`` (unique), -1 where it is not; as
    ``pandas.Index.get_indexer``, without importing pandas on the report's path."""
    where = {item_id: i for i, item_id in enumerate(ids.tolist())}
    return np.fromiter((where.get(w, -1) for w in wanted.tolist()), np.intp, len(wanted))


def _find_changes(
    base: RunColumns,
    tuned: RunColumns,
    wanted: Mapping[tuple[str, str, str], bool],
    found: Examples,
) -> dict[tuple[str, str], _Changed]:
    """(task, lost|gained) -> the changed items; counts every change into ``found.counts``."""
    changed: dict[tuple[str, str], _Changed] = {}
    first_line: dict[str, int] = {}  # task -> tuned line of its first change (counts order)
    counts: dict[str, dict[str, int]] = {}
    for key, better in wanted.items():
        t_cols, b_cols = tuned.items.get(key), base.items.get(key)
        if t_cols is None or b_cols is None:
            continue
        pos = _positions(b_cols.item_ids, t_cols.item_ids)
        paired = pos >= 0
        b_scores, t_scores = b_cols.scores[pos[paired]], t_cols.scores[paired]
        differ = b_scores != t_scores
        if not differ.any():
            continue
        b_scores, t_scores = b_scores[differ], t_scores[differ]
        ids = t_cols.item_ids[paired][differ]
        b_lines, t_lines = b_cols.lines[pos[paired]][differ], t_cols.lines[paired][differ]
        task = key[1]
        first_line[task] = min(first_line.get(task, int(t_lines.min())), int(t_lines.min()))
        gained = (t_scores > b_scores) == better
        neg = -np.abs(t_scores - b_scores)
        task_counts = counts.setdefault(task, {"lost": 0, "gained": 0})
        for direction, mask in (("gained", gained), ("lost", ~gained)):
            if mask.any():
                task_counts[direction] += int(mask.sum())
                changed.setdefault((task, direction), _Changed()).extend(
                    neg[mask], ids[mask], b_lines[mask], t_lines[mask]
                )
    for task in sorted(counts, key=first_line.__getitem__):
        found.counts[task] = counts[task]
    return changed


def _load_runs(paths: tuple[Path, Path], found: Examples) -> tuple[RunColumns, RunColumns] | None:
    """Both runs as columns; None (and ``found.problem``) if they cannot be read."""
    try:
        base, tuned = load_runs_columns(paths)
    except (InputError, InputErrors) as exc:
        found.problem = (
            f"the runs could not be read ({_first_problem(exc)}); run `collapse-eval compare` "
            "on them for every problem"
        )
        return None
    return base, tuned


def _first_problem(exc: InputError | InputErrors) -> str:
    if isinstance(exc, InputErrors):
        more = len(exc.problems) - 1
        return f"{exc.problems[0].render()}, and {more} more" if more else exc.problems[0].render()
    return exc.render()


Chosen = list[tuple[str, tuple[int, int]]]  # (lost|gained, (base line, tuned line))


def collect_examples(
    summary: Summary,
    run_dirs: tuple[Path, Path] | None = None,
    runs: tuple[RunColumns, RunColumns] | None = None,
    *,
    index: Path | None = None,
) -> Examples:
    """Lost and gained items of every compared task (general and domain).

    ``runs`` are the base and tuned runs as columns when the caller has them (compare);
    otherwise the run directories ``run_dirs`` (base, tuned) are read. One of the two must
    be given.
    Up to PER_TASK_AND_DIRECTION items per task and direction, largest change first (then
    by item id); lost before gained, tasks in the summary's order. Only those items' lines
    are decoded in full.

    ``index`` (the report's ``.examples.json``): where the choice (counts and line numbers)
    is kept, keyed on both records.jsonl's SHA-256, the compared tasks and this code. When
    it matches the runs on disk, they are not parsed again: the same bytes, already
    validated, give the same examples.
    """
    found = Examples()
    wanted = primary_keys(summary)
    if runs is None:
        if run_dirs is None:
            raise ValueError("collect_examples needs the runs or their directories")
        if index is not None and _examples_from_index(index, run_dirs, wanted, found):
            return found
        runs = _load_runs(run_dirs, found)
        if runs is None:
            return found
    base, tuned = runs
    changed = _find_changes(base, tuned, wanted, found)
    # Lost before gained; tasks in the summary's order (general first, then domain).
    order = {task: i for i, (_, task, _) in enumerate(wanted)}
    groups = sorted(
        changed.items(), key=lambda kv: (kv[0][1] != "lost", order.get(kv[0][0], len(order)))
    )
    chosen = [(direction, pair) for (_, direction), c in groups for pair in c.first()]
    _add_examples(found, base, tuned, chosen)
    if index is not None and base.records_digest and tuned.records_digest:
        key = _index_key(wanted, base.records_digest, tuned.records_digest)
        _write_index(index, key, found.counts, chosen)
    return found


def _add_examples(found: Examples, base: RunColumns, tuned: RunColumns, chosen: Chosen) -> None:
    """The manifests and the chosen items' rows, decoding only those lines."""
    found.manifests = {"base": _read_manifest(base.path), "tuned": _read_manifest(tuned.path)}
    base_objs = fetch_records(base, [b for _, (b, _) in chosen])
    tuned_objs = fetch_records(tuned, [t for _, (_, t) in chosen])
    for direction, (b, t) in chosen:
        found.rows.append(_example(base_objs[b], tuned_objs[t], direction))


def _index_key(wanted: Mapping[tuple[str, str, str], bool], base: str, tuned: str) -> str:
    """What the examples depend on: both runs' bytes, the compared tasks and this code."""
    code = b"".join(Path(f).read_bytes() for f in (__file__, columns_module.__file__))
    data = json.dumps([PER_TASK_AND_DIRECTION, [[*k, v] for k, v in wanted.items()], base, tuned])
    return hashlib.sha256(code + data.encode("utf-8")).hexdigest()


def _write_index(path: Path, key: str, counts: Mapping[str, Any], chosen: Chosen) -> None:
    from collapse_eval.records import atomic_write_json

    rows = [[direction, b, t] for direction, (b, t) in chosen]
    atomic_write_json(path, {"key": key, "counts": counts, "chosen": rows})


def _examples_from_index(
    index: Path,
    paths: tuple[Path, Path],
    wanted: Mapping[tuple[str, str, str], bool],
    found: Examples,
) -> bool:
    """Fill ``found`` from the index when it matches the runs on disk; False otherwise
    (no index, another key, or anything unexpected in it: the runs are then parsed)."""
    try:
        stored = json.loads(index.read_text(encoding="utf-8"))
        runs = [_unparsed_run(p) for p in paths]
    except (OSError, ValueError, InputError):
        return False
    base, tuned = (records_digest(p / RECORDS_FILE) for p in paths)
    if not isinstance(stored, dict) or stored.get("key") != _index_key(wanted, base, tuned):
        return False
    try:
        counts = {str(t): {"lost": int(c["lost"]), "gained": int(c["gained"])}
                  for t, c in stored["counts"].items()}  # fmt: skip
        chosen = [(str(d), (int(b), int(t))) for d, b, t in stored["chosen"]]
        attempt = Examples(counts=counts)
        _add_examples(attempt, runs[0], runs[1], chosen)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    found.rows, found.counts, found.manifests = attempt.rows, attempt.counts, attempt.manifests
    return True


def _unparsed_run(path: Path) -> RunColumns:
    """A run whose manifest is checked (as ``load_run_columns`` does) but whose records
    are not parsed: enough for ``fetch_records``."""
    manifest = read_run_manifest(path)
    return RunColumns(path, manifest, (), {}, {}, records_file=path / RECORDS_FILE)
