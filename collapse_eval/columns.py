"""Run directories as columns: what `compare` needs of a run, without the per-item text.

``load_run_columns`` streams records.jsonl once, validating every line exactly as
``read_records`` does (file:line:field, all problems at once, a torn last line tolerated),
and keeps per (suite, task, metric) only the columns that pairing and the statistics use:
item ids, scores, clusters, task types, output formats, format_ok (int8: 1, 0, or -1 for
null), a hash of each document hash and the line number. Predictions, references, prompts
and metadata stay on disk; the few examples the report shows are fetched afterwards by
line number (``fetch_records``). One million records per run take a few hundred MB
instead of several GB.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collapse_eval.errors import CollapseEvalWarning, InputError, InputErrors
from collapse_eval.formats.record import RecordLine
from collapse_eval.records import (
    RECORDS_FILE,
    ItemRecord,
    Run,
    RunManifest,
    decode_record_line,
    read_run_manifest,
    torn_line_message,
)

ObjectArray = NDArray[np.object_]
FloatArray = NDArray[np.float64]
Key = tuple[str, str, str]  # (suite, task, metric)
_NO_HASH = 0  # doc_hash_set False: the record has no doc_hash
FORMAT_UNKNOWN = -1  # format_ok null (general tasks, log-likelihood items)


@dataclass(frozen=True, slots=True)
class ItemColumns:
    """The records of one (suite, task, metric), in file order, one array entry each."""

    item_ids: ObjectArray
    scores: FloatArray
    clusters: ObjectArray  # str or None (``cluster``, else ``metadata.cluster``)
    task_types: ObjectArray  # as recorded (usually str or None)
    output_formats: ObjectArray
    format_ok: NDArray[np.int8]  # 1 true, 0 false, FORMAT_UNKNOWN (-1) null
    doc_hashes: NDArray[np.int64]  # hash() of doc_hash, compared within one process only
    doc_hash_set: NDArray[np.bool_]
    lines: NDArray[np.int64]  # 1-based line in records.jsonl (or index in Run.records)
    groups: frozenset[Any]  # the distinct ``metadata.group`` values (None: no group)
    # Where the references came from (a built test set says): ``metadata.reference_source``
    # counted per value (None: not said), and the distinct (``metadata.labeler``,
    # ``metadata.labeler_fingerprint``) pairs of the items that name a labeler.
    references: Mapping[Any, int] = field(default_factory=dict)
    labelers: frozenset[tuple[Any, Any]] = frozenset()

    def __len__(self) -> int:
        return int(self.scores.size)


@dataclass(frozen=True, slots=True)
class RunColumns:
    """A run for comparison: manifest, task order and per-(suite, task, metric) columns."""

    path: Path
    manifest: RunManifest
    order: tuple[tuple[str, str], ...]  # (suite, task) in order of first appearance
    metrics: Mapping[str, frozenset[str]]  # task -> metrics seen (any suite)
    items: Mapping[Key, ItemColumns]
    records_file: Path | None = None  # where ``lines`` point; None: built from a Run
    records: tuple[ItemRecord, ...] | None = field(default=None, repr=False)
    # SHA-256 of the records.jsonl bytes these columns were parsed from (None: built from
    # a Run, or a torn last line was skipped); the report's examples index is keyed on it.
    records_digest: str | None = None

    def primary_metric(self, task: str) -> str | None:
        """The task's primary metric: named in the manifest, else its only metric."""
        info = self.manifest.tasks.get(task)
        if info is not None and info.primary_metric:
            return info.primary_metric
        metrics = self.metrics.get(task, frozenset())
        return next(iter(metrics)) if len(metrics) == 1 else None

    def get(self, key: Key) -> ItemColumns:
        return self.items.get(key) or _EMPTY


def _cluster_of(rec: RecordLine) -> str | None:
    if rec.cluster is not None:
        return str(rec.cluster)
    meta = rec.metadata
    value = meta.get("cluster") if isinstance(meta, Mapping) else None
    return None if value is None else str(value)


def _doc_hash_code(doc_hash: Any) -> int:
    if doc_hash is None:
        return _NO_HASH
    return hash(doc_hash if isinstance(doc_hash, str) else repr(doc_hash))


class _Builder:
    """Column lists of one (suite, task, metric) while a file is read."""

    __slots__ = (
        "ids",
        "scores",
        "clusters",
        "types",
        "formats",
        "format_ok",
        "hashes",
        "hashed",
        "lines",
        "references",
        "labelers",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.scores = array("d")
        self.clusters: list[str | None] = []
        self.types: list[Any] = []
        self.formats: list[Any] = []
        self.format_ok = array("b")
        self.hashes = array("q")
        self.hashed = array("b")
        self.lines = array("q")
        self.references: dict[Any, int] = {}
        self.labelers: set[tuple[Any, Any]] = set()

    def note_provenance(self, meta: Mapping[str, Any]) -> None:
        """The item's reference source and labeler (a built test set's metadata)."""
        source = meta.get("reference_source")
        self.references[source] = self.references.get(source, 0) + 1
        labeler = (meta.get("labeler"), meta.get("labeler_fingerprint"))
        if labeler != (None, None):
            self.labelers.add(labeler)

    def build(self, groups: set[Any]) -> ItemColumns:
        def objects(values: list[Any]) -> ObjectArray:
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out

        return ItemColumns(
            item_ids=objects(self.ids),
            scores=np.frombuffer(self.scores, dtype=np.float64).copy(),
            clusters=objects(self.clusters),
            task_types=objects(self.types),
            output_formats=objects(self.formats),
            format_ok=np.frombuffer(self.format_ok, dtype=np.int8).copy(),
            doc_hashes=np.frombuffer(self.hashes, dtype=np.int64).copy(),
            doc_hash_set=np.frombuffer(self.hashed, dtype=np.int8).astype(bool),
            lines=np.frombuffer(self.lines, dtype=np.int64).copy(),
            groups=frozenset(groups),
            references=dict(self.references),
            labelers=frozenset(self.labelers),
        )


_EMPTY = _Builder().build(set())


class _Collector:
    """Accumulates validated record objects into builders, interning repeated strings."""

    def __init__(self) -> None:
        self.builders: dict[Key, _Builder] = {}
        self.group_values: dict[Key, set[Any]] = {}
        self.order: dict[tuple[str, str], None] = {}
        self.metrics: dict[str, dict[str, None]] = {}
        self._intern: dict[Any, Any] = {}

    def _interned(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._intern.setdefault(value, value)
        return value

    def add(self, rec: RecordLine, line: int) -> None:
        suite, task, metric = rec.suite, rec.task, rec.metric
        key = (suite, task, metric)
        builder = self.builders.get(key)
        if builder is None:
            builder = self.builders[key] = _Builder()
            self.group_values[key] = set()
            self.order.setdefault((suite, task), None)
            self.metrics.setdefault(task, {})[metric] = None
        meta = rec.metadata
        self.group_values[key].add(meta.get("group") if isinstance(meta, Mapping) else None)
        if isinstance(meta, Mapping):
            builder.note_provenance(meta)
        builder.ids.append(rec.item_id)
        builder.scores.append(float(rec.score))
        builder.clusters.append(self._interned(_cluster_of(rec)))
        builder.types.append(self._interned(rec.task_type))
        builder.formats.append(self._interned(rec.output_format))
        format_ok = rec.format_ok
        builder.format_ok.append(FORMAT_UNKNOWN if format_ok is None else int(bool(format_ok)))
        doc_hash = rec.doc_hash
        builder.hashed.append(doc_hash is not None)
        builder.hashes.append(_doc_hash_code(doc_hash))
        builder.lines.append(line)

    def columns(self) -> dict[Key, ItemColumns]:
        return {key: b.build(self.group_values[key]) for key, b in self.builders.items()}


def _duplicate_problems(path: Path, items: Mapping[Key, ItemColumns]) -> list[InputError]:
    """The messages ``read_records`` gives for repeated (suite, task, item_id, metric)."""
    problems = []
    for (suite, task, metric), cols in items.items():
        if len(set(cols.item_ids.tolist())) == len(cols):
            continue
        first_line: dict[str, int] = {}
        for item_id, line in zip(cols.item_ids, cols.lines, strict=True):
            if item_id in first_line:
                key = (suite, task, item_id, metric)
                problems.append(
                    InputError(
                        path,
                        f"duplicate record {key} (first on line {first_line[item_id]})",
                        line=int(line),
                        field="item_id",
                    )
                )
            else:
                first_line[item_id] = int(line)
    return problems


@dataclass(frozen=True, slots=True)
class RecordColumns:
    """What ``read_record_columns`` read from one records.jsonl."""

    order: tuple[tuple[str, str], ...]  # (suite, task) in order of first appearance
    metrics: dict[str, frozenset[str]]  # task -> metrics seen
    items: dict[Key, ItemColumns]
    digest: str | None  # SHA-256 of the bytes parsed; None when a torn last line was skipped


def read_record_columns(path: str | Path, *, tolerate_torn_tail: bool = True) -> RecordColumns:
    """Stream records.jsonl into columns (task order, metrics per task, columns per key)
    and the SHA-256 of the bytes read.

    Validation and messages are those of ``read_records``.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    collector = _Collector()
    problems: list[InputError] = []
    decode, add = decode_record_line, collector.add
    sha, torn = hashlib.sha256(), False
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            sha.update(raw)
            try:
                rec = decode(raw, path=path, line=lineno)
            except InputError as err:
                problems.append(err)
                continue
            except json.JSONDecodeError as exc:
                if tolerate_torn_tail and not raw.endswith(b"\n"):
                    # The last line of a run killed mid-write: skipped, and said.
                    warnings.warn(
                        torn_line_message(path, lineno), CollapseEvalWarning, stacklevel=2
                    )
                    torn = True
                    break
                problems.append(InputError(path, f"invalid JSON: {exc.msg}", line=lineno))
                continue
            if rec is not None:
                add(rec, lineno)
    items = collector.columns()
    problems += _duplicate_problems(path, items)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise InputErrors(path, problems)
    metrics = {task: frozenset(m) for task, m in collector.metrics.items()}
    digest = None if torn else sha.hexdigest()
    return RecordColumns(tuple(collector.order), metrics, items, digest)


def load_run_columns(path: str | Path) -> RunColumns:
    """A run directory for comparison (see the module docstring); same checks as load_run."""
    path = Path(path)
    manifest = read_run_manifest(path)
    read = read_record_columns(path / RECORDS_FILE)
    return RunColumns(
        path,
        manifest,
        read.order,
        read.metrics,
        read.items,
        records_file=path / RECORDS_FILE,
        records_digest=read.digest,
    )


def records_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (as ``RunColumns.records_digest``), without parsing it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# Below this many bytes of records in all, runs load one after the other in this process.
_PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def load_runs_columns(paths: Sequence[str | Path]) -> list[RunColumns]:
    """``load_run_columns`` of each path; large runs are parsed in parallel processes.

    Parsing JSON is CPU-bound and holds the GIL, so two runs of a million records each
    load in about half the time in two processes. The children are forked (they share
    this process's string-hash seed, which ``ItemColumns.doc_hashes`` relies on); where
    fork is not available, or the runs are small, they load here one after the other.
    """
    import multiprocessing
    import os

    sizes = [_records_size(p) for p in paths]
    workers = min(len(paths), os.cpu_count() or 1)
    if (
        workers < 2
        or sum(sizes) < _PARALLEL_MIN_BYTES
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return [load_run_columns(p) for p in paths]
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
        futures = [pool.submit(load_run_columns, p) for p in paths[1:]]
        first = load_run_columns(paths[0])
        return [first, *(f.result() for f in futures)]


def _records_size(path: str | Path) -> int:
    try:
        return (Path(path) / RECORDS_FILE).stat().st_size
    except OSError:
        return 0


def columns_from_run(run: Run) -> RunColumns:
    """The columns of an already loaded Run (``lines`` index ``run.records``)."""
    collector = _Collector()
    for index, rec in enumerate(run.records):
        line = RecordLine(
            suite=rec.suite,  # type: ignore[arg-type]  # validated when it was read
            task=rec.task,
            item_id=rec.item_id,
            metric=rec.metric,
            score=rec.score,
            task_type=rec.task_type,
            output_format=rec.output_format,
            format_ok=rec.format_ok,
            doc_hash=rec.doc_hash,
            cluster=rec.cluster,
            metadata=None if rec.metadata is None else dict(rec.metadata),
        )
        collector.add(line, index)
    metrics = {task: frozenset(m) for task, m in collector.metrics.items()}
    return RunColumns(
        run.path,
        run.manifest,
        tuple(collector.order),
        metrics,
        collector.columns(),
        records=run.records,
    )


def as_columns(run: Run | RunColumns) -> RunColumns:
    return run if isinstance(run, RunColumns) else columns_from_run(run)


# ---------------------------------------------------------------- report examples


_ITEM_ARRAYS = (
    "item_ids",
    "scores",
    "clusters",
    "task_types",
    "output_formats",
    "format_ok",
    "doc_hashes",
    "doc_hash_set",
    "lines",
)


def restrict_items(run: RunColumns, to: RunColumns) -> RunColumns:
    """``run`` with each task that ``to`` has cut to the item ids ``to`` holds for it: a
    full base run paired with a candidate that a sequential run evaluated only in part."""
    held: dict[str, set[Any]] = {}
    for (_suite, task, _metric), cols in to.items.items():
        held.setdefault(task, set()).update(cols.item_ids.tolist())
    items = {}
    for key, cols in run.items.items():
        ids = held.get(key[1])
        if ids is None:
            items[key] = cols
            continue
        keep = np.fromiter((i in ids for i in cols.item_ids), dtype=bool, count=len(cols))
        items[key] = replace(cols, **{name: getattr(cols, name)[keep] for name in _ITEM_ARRAYS})
    return replace(run, items=items)


def fetch_records(run: RunColumns, lines: Iterable[int]) -> dict[int, dict[str, Any]]:
    """line -> the full record object on that line (``ItemColumns.lines`` numbering).

    One streaming pass over records.jsonl up to the last line wanted; only the wanted
    lines are decoded."""
    wanted = set(lines)
    if run.records is not None:
        return {i: run.records[i].to_json() for i in wanted}
    found: dict[int, dict[str, Any]] = {}
    if not wanted or run.records_file is None:
        return found
    last = max(wanted)
    with run.records_file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno in wanted:
                found[lineno] = json.loads(raw)
                if lineno == last:
                    break
    return found
