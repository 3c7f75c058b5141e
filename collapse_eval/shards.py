"""Units of work for the Ray executor: one checkpoint x one shard of its items.

This module plans units and evaluates one; it never imports Ray, so the planning and the
worker's evaluation are tested without a cluster. ``collapse_eval/distributed.py`` sends
units to the cluster and brings their results back.

A shard holds a contiguous slice of the domain items (over all ``--domain`` files, in
file order) and every N-th general entry. An lm-eval task is never split: lm-eval draws
its few-shot examples from one random generator in document order, so a task cut in two
would see other examples than a one-process run. A worker answers only its domain items,
with the generation budgets of the whole file, so every record is the one a one-process
run writes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapse_eval import __version__
from collapse_eval.cache import CachedEngine, CacheStore
from collapse_eval.config import BenchmarkEntry, Suite
from collapse_eval.errors import VersionMismatch, WorkerCheckpointError
from collapse_eval.progress import QuietProgress
from collapse_eval.records import ItemRecord, TaskInfo

if TYPE_CHECKING:
    from collapse_eval.engines.base import Engine


@dataclass(frozen=True, slots=True)
class DomainPart:
    """A domain file (its name and bytes: workers need no shared filesystem) and the ids
    of the items this unit answers."""

    task: str
    file_name: str
    content: bytes
    item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unit:
    """What one worker evaluates at a time; ``name`` (``ckpt-0300 shard 2/4``) is said in logs
    and in every error."""

    name: str
    model: str
    engine: str
    engine_args: Mapping[str, str]
    fingerprint: str  # the driver's, which the worker's must equal
    local_checkpoint: bool  # files on the driver (not a hub name): they must be on the worker
    versions: Mapping[str, str | None]  # the driver's (see ``library_versions``)
    seed: int = 0
    limit: int | None = None
    domain_limit: int | None = None
    domain: tuple[DomainPart, ...] = ()
    suite_name: str = ""
    entries: tuple[BenchmarkEntry, ...] = ()
    include_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnitResult:
    """A unit's records, back through Ray's object store."""

    name: str
    node: str
    pid: int
    engine: str
    engine_args: dict[str, Any]
    domain: dict[str, list[ItemRecord]] = field(default_factory=dict)
    general: list[tuple[str, TaskInfo, list[ItemRecord]]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    answers_cached: int = 0  # engine requests answered from the driver's cache
    answers_computed: int = 0
    engine_kept: bool = False  # the worker's engine from its last unit: no load, no imports
    worker_restarted: bool = False  # the first unit of a worker Ray restarted (one died)


def library_versions() -> dict[str, str | None]:
    """The versions that decide answers and must match between driver and workers."""
    from collapse_eval.cache import _library_versions

    return {"collapse-eval": __version__, **_library_versions(("lm-eval", "vllm"))}


def version_mismatch(
    driver: Mapping[str, str | None], worker: Mapping[str, str | None], node: str, unit: str
) -> VersionMismatch | None:
    """The error naming the node, the unit and each package whose versions differ."""
    differ = [
        f"{name} {driver.get(name) or 'not installed'} on the driver, "
        f"{worker.get(name) or 'not installed'} on {node}"
        for name in sorted(set(driver) | set(worker))
        if driver.get(name) != worker.get(name)
    ]
    if not differ:
        return None
    return VersionMismatch(
        f"{unit}: node {node} runs other versions than the driver ({'; '.join(differ)}), "
        "so its answers would not be a local run's. Install the same versions on every "
        "node (one container image for driver and workers), then run again."
    )


def plan_shards(
    name: str,
    domain: Sequence[tuple[str, Sequence[str]]],
    entries: Sequence[BenchmarkEntry],
    shards: int,
) -> list[tuple[str, dict[str, tuple[str, ...]], tuple[BenchmarkEntry, ...]]]:
    """Cut one checkpoint's work into at most ``shards`` units: ``(unit name, domain task
    -> item ids, general entries)``; units left with nothing to do are dropped."""
    flat = [(task, item) for task, ids in domain for item in ids]
    units = []
    for k in range(shards):
        lo, hi = k * len(flat) // shards, (k + 1) * len(flat) // shards
        ids: dict[str, tuple[str, ...]] = {}
        for task, item in flat[lo:hi]:
            ids[task] = (*ids.get(task, ()), item)
        mine = tuple(entries[k::shards])
        if ids or mine:
            units.append((f"{name} shard {k + 1}/{shards}", ids, mine))
    return units


class EngineKeeper:
    """A worker's engine, kept loaded for its next unit of the same checkpoint: the shards
    of one checkpoint that one worker process evaluates load the model once."""

    def __init__(self) -> None:
        self._key: tuple[str, str, tuple[tuple[str, str], ...]] | None = None
        self._engine: Engine | None = None

    def engine(self, unit: Unit) -> tuple[Engine, bool]:
        """The engine for ``unit`` and whether it was kept (False: made now)."""
        from collapse_eval.engines.registry import make_engine

        key = (unit.model, unit.engine, tuple(sorted(unit.engine_args.items())))
        if self._engine is not None and key == self._key:
            return self._engine, True
        self.close()  # the last checkpoint's weights go before the next one loads
        self._engine = make_engine(unit.engine, unit.model, unit.engine_args)
        self._key = key
        return self._engine, False

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._key = None, None


def evaluate_unit(
    unit: Unit, node: str, cache: CacheStore, keeper: EngineKeeper | None = None
) -> UnitResult:
    """Evaluate ``unit`` here (on a worker), answering from and into ``cache``; with a
    ``keeper`` the engine stays loaded for the worker's next unit, else it is closed."""
    import os

    mismatch = version_mismatch(unit.versions, library_versions(), node, unit.name)
    if mismatch is not None:  # a node that joined after the driver asked them all
        raise mismatch
    start, cpu = time.monotonic(), time.process_time()
    _check_checkpoint(unit, node)
    mine = keeper or EngineKeeper()
    inner, kept = mine.engine(unit)
    engine = CachedEngine(inner, cache)
    try:
        domain = _domain_records(engine, unit)
        general = _general_leaves(engine, unit)
        kind, args = inner.kind, dict(inner.engine_args)  # resolved by the loaded engine
    finally:
        if keeper is None:
            mine.close()
    return UnitResult(
        unit.name,
        node,
        os.getpid(),
        kind,
        args,
        domain,
        general,
        time.monotonic() - start,
        time.process_time() - cpu,
        engine.stats.hits,
        engine.stats.misses,
        kept,
    )


def _check_checkpoint(unit: Unit, node: str) -> None:
    """WorkerCheckpointError unless the checkpoint here is the driver's (same fingerprint:
    hashed as the driver hashed it, once per process)."""
    from collapse_eval.engines.base import checkpoint_fingerprint, checkpoint_signature

    if unit.local_checkpoint and checkpoint_signature(unit.model) is None:
        raise WorkerCheckpointError(
            f"{unit.name}: checkpoint {unit.model} exists on the driver but not on node "
            f"{node}. Put checkpoints on storage every node mounts at the same path (or "
            "copy them to each node), then run again."
        )
    here = checkpoint_fingerprint(unit.model)
    if here != unit.fingerprint:
        raise WorkerCheckpointError(
            f"{unit.name}: checkpoint {unit.model} on node {node} holds other files than "
            f"on the driver (fingerprint {here[:19]}, the driver's {unit.fingerprint[:19]}). "
            "Copy the same checkpoint to every node (or to storage they all mount at the "
            "same path), then run again."
        )


def _domain_records(engine: CachedEngine, unit: Unit) -> dict[str, list[ItemRecord]]:
    from collapse_eval.domain.dataset import load_domain_set
    from collapse_eval.runner import run_domain_task, whole_clusters

    found: dict[str, list[ItemRecord]] = {}
    with tempfile.TemporaryDirectory(prefix="collapse-eval-unit-") as tmp:
        for part in unit.domain:
            path = Path(tmp) / part.file_name
            path.write_bytes(part.content)
            items = load_domain_set(path)
            if unit.domain_limit is not None:
                items = whole_clusters(items, unit.domain_limit, path)
            mine = set(part.item_ids)
            others = [item.id for item in items if item.id not in mine]
            records = found.setdefault(part.task, [])
            run_domain_task(engine, part.task, items, others, records.extend, QuietProgress())
    return found


def _general_leaves(
    engine: CachedEngine, unit: Unit
) -> list[tuple[str, TaskInfo, list[ItemRecord]]]:
    if not unit.entries:
        return []
    from collapse_eval.general import run_general_suite

    leaves: list[tuple[str, TaskInfo, list[ItemRecord]]] = []

    def collect(task: str, records: list[ItemRecord], info: TaskInfo, how: str = "") -> None:
        leaves.append((task, info, records))

    run_general_suite(
        engine,
        Suite(unit.suite_name, unit.entries),
        limit=unit.limit,
        seed=unit.seed,
        include_paths=tuple(Path(p) for p in unit.include_paths),
        on_task=collect,
    )
    return leaves
