"""What `collapse-eval tasks [PATTERN]` lists: lm-eval's tasks, the packaged and include-path
tasks, and the offline copies, each with the metric an ad-hoc ``--tasks`` suite gates on.

No model and no data are loaded: only task YAMLs are read, by lm-eval's own index with
functions unresolved (through ``general.py``, the module that imports lm_eval). Indexing
lm-eval's ~15,000 task names takes about 10 CPU seconds, so that listing is kept in the
user cache dir, keyed by lm-eval's version and location; the local directories (a handful
of YAMLs) are read every time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collapse_eval.errors import StorageError

INDEX_LAYOUT = 1  # bump when TaskRow changes: older cached listings are rebuilt


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One listed name: ``kind`` task, group or tag; ``metric`` the default primary metric
    (the first of its metric_list, with the first filter's name when it has several);
    ``source`` where it is defined (lm-eval, collapse-eval, an include path, offline)."""

    name: str
    kind: str
    output_type: str | None
    metric: str | None
    source: str


def matches(name: str, pattern: str | None) -> bool:
    """A glob (``arc_*``) matches the whole name, anything else is a substring; any case."""
    if not pattern:
        return True
    lowered, wanted = name.lower(), pattern.lower()
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(lowered, wanted)
    return wanted in lowered


def list_tasks(
    pattern: str | None = None,
    *,
    include_paths: Sequence[Path] = (),
    cache_dir: Path | None = None,
) -> list[TaskRow]:
    """Every known task, group and tag whose name matches ``pattern``, sorted by name.

    A name defined in several places is listed once, from the place lm-eval would use
    (include paths and packaged tasks override lm-eval's own).
    """
    from collapse_eval.general import shipped_tasks_dir

    rows = {row.name: row for row in _lm_eval_rows(cache_dir)}
    local = [(shipped_tasks_dir(), "collapse-eval")]
    local += [(Path(p), str(p)) for p in include_paths]
    local += _offline_dirs()
    for root, source in local:
        rows.update({row.name: row for row in _index_rows([root], source)})
    return sorted((r for r in rows.values() if matches(r.name, pattern)), key=lambda r: r.name)


def _offline_dirs() -> list[tuple[Path, str]]:
    """The prepared offline task directory, when `collapse-eval data prepare` has run."""
    from collapse_eval import data_prepare

    if not data_prepare.offline_data_status():
        return []
    return [(data_prepare.offline_tasks_dir(), "offline (collapse-eval data prepare)")]


def _lm_eval_rows(cache_dir: Path | None) -> list[TaskRow]:
    """lm-eval's own tasks, from the cached listing when it matches the installed lm-eval."""
    from collapse_eval.data_prepare import lm_eval_tasks_root

    root = lm_eval_tasks_root()
    version = importlib.metadata.version("lm_eval")
    key = hashlib.sha256(f"{INDEX_LAYOUT}\0{version}\0{root}".encode()).hexdigest()[:16]
    path = _cache_root(cache_dir) / f"lm-eval-tasks-{key}.json"
    cached = _read_cached(path)
    if cached is not None:
        return cached
    rows = _index_rows([root], "lm-eval")
    _write_cached(path, rows)
    return rows


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from collapse_eval.cache import default_cache_dir

    return default_cache_dir()


def _read_cached(path: Path) -> list[TaskRow] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [TaskRow(**row) for row in raw]
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: rebuilt


def _write_cached(path: Path, rows: Iterable[TaskRow]) -> None:
    from collapse_eval.records import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps([asdict(r) for r in rows]))
    except (OSError, StorageError):
        pass  # a read-only cache only costs the next listing its speed


def _index_rows(roots: Sequence[Path], source: str) -> list[TaskRow]:
    """lm-eval's index of ``roots`` (YAMLs parsed, functions unresolved) as rows."""
    from collapse_eval.general import index_task_dirs

    rows = []
    for name, (kind, cfg) in index_task_dirs(roots).items():
        output_type = cfg.get("output_type")
        rows.append(
            TaskRow(
                name=name,
                kind=kind,
                output_type=str(output_type) if output_type else None,
                metric=default_metric(cfg) if kind == "task" else None,
                source=source,
            )
        )
    return rows


def default_metric(cfg: Mapping[str, Any]) -> str | None:
    """The metric an ad-hoc suite gates on, named as its records are (``acc``,
    ``exact_match:strict-match``); None when the YAML names no metric_list."""
    metrics = cfg.get("metric_list")
    if metrics is None:
        metric = _output_type_default(cfg.get("output_type"))
    elif isinstance(metrics, list) and metrics and isinstance(metrics[0], Mapping):
        metric = metrics[0].get("metric")
    else:
        metric = None
    if not isinstance(metric, str):
        return None
    filters = cfg.get("filter_list")
    if isinstance(filters, list) and len(filters) > 1 and isinstance(filters[0], Mapping):
        return f"{metric}:{filters[0].get('name', 'none')}"
    return metric


def _output_type_default(output_type: Any) -> str | None:
    from collapse_eval.general import output_type_metric

    return output_type_metric(output_type)
