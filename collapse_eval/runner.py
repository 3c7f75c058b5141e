"""Run one model over the domain sets and the general suite into a run directory.

A run directory is ``manifest.json`` + ``records.jsonl`` (docs/formats.md#run-directory).
Runs resume: domain records are appended and flushed per batch, general records per task,
and the manifest (rewritten atomically) marks each task once it is complete. Re-running the
same command after an interruption (Ctrl-C, SIGKILL, out of memory) continues where it
stopped, with no lost and no duplicated records. The manifest records a hash of what
decides each task's results and the run's; on resume whatever changed is recomputed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from collapse_eval import __version__
from collapse_eval.columns import RunColumns, load_run_columns, load_runs_columns
from collapse_eval.config import BenchmarkEntry, BenchmarksConfig, Suite
from collapse_eval.drift.measure import DriftResult
from collapse_eval.drift.run import with_drift
from collapse_eval.engines.base import Engine, checkpoint_fingerprint, checkpoint_signature
from collapse_eval.errors import (
    CollapseEvalWarning,
    ConfigError,
    InputError,
    StorageError,
    UsageError,
)
from collapse_eval.progress import Progress, QuietProgress
from collapse_eval.records import (
    MANIFEST_FILE,
    RECORDS_FILE,
    ItemRecord,
    RecordWriter,
    Run,
    RunManifest,
    TaskInfo,
    atomic_write_text,
    canonical_json,
    is_run_dir,
    load_run,
    manifest_from_json,
    read_json,
    read_records,
    read_run_manifest,
    record_from_json,
    sha256_text,
    write_manifest,
)
from collapse_eval.summary import SUMMARY_FILE, Summary, side_run_dirs

if TYPE_CHECKING:  # training.py is imported only when a compare has --train
    from collapse_eval.training import TrainingSet


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything that decides what a run computes (and so whether it may be resumed)."""

    model: str
    domain_files: tuple[Path, ...] = ()
    benchmarks: Path | None = None
    suite: str | None = None
    engine: str | None = None
    engine_args: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    domain_limit: int | None = None  # --domain-limit: items per domain file, whole clusters
    seed: int = 0
    cache_dir: Path | None = None
    use_cache: bool = True
    run_general: bool = True
    tasks: tuple[str, ...] = ()  # --tasks: an ad-hoc general suite instead of ``suite``
    num_fewshot: int | None = None  # --num-fewshot: every general task's few-shot count


EngineFactory = Callable[[RunSpec], Engine]
RunT = TypeVar("RunT", Run, RunColumns)


def default_engine_factory(spec: RunSpec) -> Engine:
    """The configured backend, wrapped in the shared request cache unless disabled."""
    from collapse_eval.engines.registry import make_engine

    engine = make_engine(spec.engine, spec.model, spec.engine_args)
    if not spec.use_cache:
        return engine
    from collapse_eval.cache import CachedEngine, RequestCache

    return CachedEngine(engine, RequestCache(spec.cache_dir))


# A task's results as the cache holds them: (leaf task, its manifest entry, its records).
CachedTask = tuple[str, TaskInfo, list[ItemRecord]]


class _EngineSession:
    """The engine of one run, built on first need, and whole tasks reused from the cache.

    With the default factory and the cache on, a task (a domain file, a benchmarks entry)
    whose results the cache holds for this checkpoint, engine identity, seed, versions and
    task settings is copied from it: no engine is built, no lm-eval task is set up. The hf
    engine's identity (its resolved arguments) is remembered in the cache too, so a fully
    cached run does not even import transformers. An engine that is built loads its
    weights on the first request the request cache cannot answer (the hf engine; the
    other backends load when built).
    """

    def __init__(
        self, spec: RunSpec, factory: EngineFactory, progress: Progress, *, label: str
    ) -> None:
        self.spec, self.factory, self.progress, self.label = spec, factory, progress, label
        self.cache: Any = None  # the RequestCache, when this session manages one
        if factory is default_engine_factory and spec.use_cache:
            from collapse_eval.cache import RequestCache

            self.cache = RequestCache(spec.cache_dir)
        self._engine: Engine | None = None
        self._fingerprint: str | None = None
        self._run_spec: dict[str, Any] | None = None
        self._found: dict[str, Any] = {}
        self.reused: list[str] = []  # cache keys of the tasks copied whole

    @property
    def fingerprint(self) -> str:
        """The checkpoint's fingerprint; hashed once per content, remembered in the cache."""
        if self._fingerprint is None:
            self._fingerprint = self._remembered_fingerprint()
        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self.spec.model)
            key = self._fingerprint_key()
            if key is not None:
                self.cache.put_many("fingerprint", {key: self._fingerprint})
        return self._fingerprint

    def _fingerprint_key(self) -> str | None:
        signature = checkpoint_signature(self.spec.model) if self.cache is not None else None
        return None if signature is None else sha256_text(f"fingerprint\0{signature}")

    def _remembered_fingerprint(self) -> str | None:
        """Without hashing the weights: a hub name's, or one remembered for these files."""
        if checkpoint_signature(self.spec.model) is None:
            return checkpoint_fingerprint(self.spec.model)
        key = self._fingerprint_key()
        found = self.cache.get_many([key]).get(key) if key is not None else None
        return found if isinstance(found, str) else None

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._build()
        return self._engine

    def _build(self) -> Engine:
        if self.cache is None:
            self.progress.log(f"loading {self.spec.model}")
            return self.factory(self.spec)
        from collapse_eval.cache import CachedEngine
        from collapse_eval.engines.registry import make_engine

        lazy = self.spec.engine == "hf"
        if not lazy:
            self.progress.log(f"loading {self.spec.model}")
        inner = make_engine(self.spec.engine, self.spec.model, self.spec.engine_args)

        def loading(n: int) -> None:
            # n counts the first batch only (the engine is asked a batch at a time, and the
            # run's later requests are not known yet): said so, the total comes at the end.
            self.progress.log(
                f"loading {self.spec.model} (answers not in the cache: {n:,} in the first "
                "batch; the total computed is logged at the end)"
            )

        return CachedEngine(inner, self.cache, on_first_miss=loading if lazy else None)

    def _identity_key(self) -> str | None:
        """Where the engine's resolved arguments are remembered (None: not remembered):
        hf's by any run (it resolves them without loading weights), vLLM's also by the Ray
        executor, whose workers resolved them (docs/distributed.md)."""
        if self.cache is None or self.spec.engine not in ("hf", "vllm"):
            return None
        from collapse_eval.cache import identity_key

        return identity_key(self.fingerprint, "hf", self.spec.engine_args)

    def run_spec(self) -> dict[str, Any]:
        """The run-level settings (engine kind and resolved arguments, seed, versions)."""
        known = self.known_run_spec()
        if known is not None:
            return known
        engine = self.engine()
        return self.resolved(engine.kind, dict(engine.engine_args))

    def resolved(self, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        """Remember the engine's resolved arguments; the run-level settings they make."""
        key = self._identity_key()
        if key is not None:
            self.cache.put_many("engine-identity", {key: {"engine_args": args}})
        self._run_spec = run_level_spec(kind, args, self.spec.seed)
        return self._run_spec

    def known_run_spec(self) -> dict[str, Any] | None:
        """The run-level settings when known without building an engine, else None."""
        if self._run_spec is None:
            key = self._identity_key()
            remembered = self.cache.get_many([key]).get(key) if key is not None else None
            if isinstance(remembered, dict) and isinstance(remembered.get("engine_args"), dict):
                args = remembered["engine_args"]
                self._run_spec = run_level_spec(str(self.spec.engine), args, self.spec.seed)
        return self._run_spec

    def _task_key(self, suite: str, task_spec: Mapping[str, Any]) -> str | None:
        if self.cache is None:
            return None
        from collapse_eval.cache import task_key

        return task_key(self.fingerprint, self.run_spec(), suite, task_spec)

    def reusable_entries(self, request: _Request) -> set[str]:
        """Benchmarks entries whose results the cache holds (known before any engine)."""
        if self.cache is None:
            return set()
        # Before the suite is checked: hashing a large checkpoint's weights must not come
        # before an input mistake is reported, so only a remembered fingerprint is used.
        self._fingerprint = self._fingerprint or self._remembered_fingerprint()
        if self._fingerprint is None or self.known_run_spec() is None:
            return set()
        return {
            task
            for task, task_spec in request.general.items()
            if self.cached("general", task_spec) is not None
        }

    def cached(self, suite: str, task_spec: Mapping[str, Any]) -> list[CachedTask] | None:
        """The cached results of one task (a domain file or a benchmarks entry), if any."""
        key = self._task_key(suite, task_spec)
        if key is None:
            return None
        if key not in self._found:
            self._found[key] = self.cache.get_many([key]).get(key)
        value = self._found[key]
        try:
            found = _decode_cached_task(value) if value is not None else None
        except (InputError, TypeError, ValueError, KeyError):
            found = None  # written by another version, damaged: compute instead
        if found is not None and key not in self.reused:
            self.reused.append(key)
        return found

    def remember(self, run: Run, request: _Request) -> None:
        """Store the results of every task of the finished ``run`` not taken from the cache."""
        if self.cache is None or self._run_spec is None:
            return
        by_task: dict[str, list[ItemRecord]] = {}
        for record in run.records:
            by_task.setdefault(record.task, []).append(record)
        specs = {**{t: ("domain", s) for t, s in request.domain.items()}}
        specs.update({t: ("general", s) for t, s in request.general.items()})
        entries: dict[str, list[CachedTask]] = {}
        for name, info in run.manifest.tasks.items():
            owner = name if info.suite == "domain" else str((info.spec or {}).get("task", name))
            if owner in specs and specs[owner][0] == info.suite:
                entries.setdefault(owner, []).append((name, info, by_task.get(name, [])))
        for owner, leaves in entries.items():
            self.store(*specs[owner], leaves)

    def store(self, suite: str, task_spec: Mapping[str, Any], leaves: Sequence[CachedTask]) -> None:
        """Remember one task's results whole (not those just taken from the cache)."""
        key = self._task_key(suite, task_spec)
        if key is not None and key not in self.reused:
            self.cache.put_many("task", {key: _encode_cached_task(leaves)})

    def close(self) -> None:
        """Close the engine (if built) and say what the cache saved."""
        engine, self._engine = self._engine, None
        line = self._usage_line(engine) if self.cache is not None else None
        try:
            if engine is not None:
                engine.close()
            if line:
                self.progress.log(line)
        finally:  # a log stream that fails (a dead pipe) must not leave the cache open
            if self.cache is not None:
                self.cache.close()

    def _usage_line(self, engine: Engine | None) -> str | None:
        reused = f"{len(self.reused)} task(s) reused whole from the cache"
        if engine is None:
            return f"{self.label}: {reused}, model not loaded" if self.reused else None
        stats = getattr(engine, "stats", None)
        if stats is None:
            return None
        inner = getattr(engine, "inner", None)
        loaded = getattr(inner, "weights_loaded", None)
        parts = [stats.describe()]
        if loaded is not None:
            parts.append("model loaded" if loaded else "model not loaded")
        if stats.misses:  # the total the "loading" line could not know
            parts.append(f"{stats.misses:,} computed")
        line = f"{self.label}: {', '.join(parts)}"
        return f"{line}; {reused}" if self.reused else line


def _encode_cached_task(leaves: Sequence[CachedTask]) -> dict[str, Any]:
    return {
        "tasks": [
            {"name": name, "info": info.to_json(), "records": [r.to_json() for r in records]}
            for name, info, records in leaves
        ]
    }


def _decode_cached_task(value: Any) -> list[CachedTask]:
    leaves = []
    for leaf in value["tasks"]:
        records = [record_from_json(obj, path="<request cache>") for obj in leaf["records"]]
        leaves.append((str(leaf["name"]), TaskInfo(**leaf["info"]), records))
    return leaves


def _lm_eval_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_resumable(run_dir: Path, manifest: RunManifest, fingerprint: str) -> None:
    """Refuse to append to a run directory that holds another checkpoint.

    Everything else that changed (settings, data, versions) is recomputed; another
    checkpoint's results are not this run's to throw away.
    """
    if manifest.model_fingerprint and manifest.model_fingerprint != fingerprint:
        raise UsageError(
            f"{run_dir}: this directory holds a run of another checkpoint "
            f"({manifest.model}, {manifest.model_fingerprint}). Use a new --out directory "
            "or delete this one."
        )


# ---------------------------------------------------------------- what decides results


def spec_hash(spec: Mapping[str, Any]) -> str:
    return sha256_text(canonical_json(spec))


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def domain_task_spec(path: Path, limit: int | None = None) -> dict[str, Any]:
    """A domain task's results are decided by its file's content, the --domain-limit (a key
    only when given, so the specs of earlier runs stay as they were), how its generation
    budgets and stops are chosen (from the content and the model's tokenizer, which the
    fingerprint covers), and the run settings."""
    from collapse_eval.domain.runner import generation_rule

    spec: dict[str, Any] = {"content": _file_hash(path), "generation": generation_rule()}
    if limit is not None:
        spec["limit"] = limit
    return spec


def task_files_hash(include_paths: Sequence[Path]) -> str | None:
    """Content hash of every file under the include paths (user task YAMLs and their data).

    lm-eval's own task definitions are covered by its version in the run settings, the
    tasks shipped in collapse_eval/ by collapse-eval's version.
    """
    if not include_paths:
        return None
    digest = hashlib.sha256()
    for root in include_paths:
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(root)}\0{_file_hash(path)}\0".encode())
    return "sha256:" + digest.hexdigest()


def offline_data_hash() -> str | None:
    """What `collapse-eval data prepare` converted (source package, row counts, file hashes)."""
    from collapse_eval import data_prepare

    path = data_prepare.default_data_dir() / "manifest.json"
    if not path.is_file():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    files = {  # without where the files are: moving the data directory changes nothing
        name: {k: v for k, v in info.items() if k != "path"}
        for name, info in manifest["files"].items()
        if isinstance(info, dict)
    }
    return spec_hash(
        {"layout": manifest.get("layout_version"), "source": manifest.get("source"), "files": files}
    )


def general_task_spec(
    entry: BenchmarkEntry, limit: int | None, task_files: str | None
) -> dict[str, Any]:
    """A general task's results are decided by its benchmarks entry and the effective limit."""
    limits = [x for x in (entry.limit, limit) if x is not None]
    return {
        "task": entry.task,
        "limit": min(limits) if limits else None,
        "num_fewshot": entry.num_fewshot,
        "fewshot_seed": entry.fewshot_seed,
        "gen_kwargs": dict(entry.gen_kwargs) if entry.gen_kwargs else None,
        "apply_chat_template": entry.apply_chat_template,
        "metric": entry.metric,
        "task_files": task_files,
    }


def run_level_spec(kind: str, engine_args: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Settings that decide every task's results: recomputed all when one changes."""
    return {
        "engine": kind,
        "engine_args": dict(engine_args),
        "seed": seed,
        "collapse_eval_version": __version__,
        "lm_eval_version": _lm_eval_version(),
    }


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    """``limit 10 -> 20, engine_args.dtype float32 -> bfloat16``."""
    parts = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            parts.append(describe_changes(before, after, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key} {_show(before)} -> {_show(after)}")
    return ", ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[:19]  # sha256: + 12 hex digits
    return value if isinstance(value, str) else canonical_json(value)


@dataclass(frozen=True, slots=True)
class _Request:
    """What this invocation asks for: task specs (domain per task, general per entry)."""

    domain: Mapping[str, Mapping[str, Any]]
    general: Mapping[str, Mapping[str, Any]]
    engine: Mapping[str, Any]  # as requested: kind and --engine-arg strings

    def general_info(self, task: str, records: Sequence[ItemRecord], info: TaskInfo) -> TaskInfo:
        """A finished general leaf task's manifest entry: the spec of the entry it ran for."""
        task_spec = self.general[_groups(records).get(task, task)]
        return dataclasses.replace(info, spec=task_spec, spec_hash=spec_hash(task_spec))

    def spec_for(self, task: str, info: TaskInfo, group: str | None) -> Mapping[str, Any] | None:
        if info.suite == "domain":
            return self.domain.get(task)
        return self.general.get(group or task)


def _groups(records: Sequence[ItemRecord]) -> dict[str, str]:
    """Leaf task -> the group entry it was run for (mmlu_anatomy -> mmlu)."""
    return {r.task: str(g) for r in records if (g := (r.metadata or {}).get("group"))}


def _stale_tasks(
    run_dir: Path,
    existing: RunManifest,
    records: Sequence[ItemRecord],
    request: _Request,
    progress: Progress,
) -> set[str]:
    """Tasks of the existing run that do not answer this request (logged, one line each)."""
    if existing.tasks and existing.run_spec_hash is None:
        progress.log(
            f"{run_dir}: the manifest has no spec hashes (written by an older "
            "collapse-eval), so its results cannot be checked: recomputing every task"
        )
        return set(existing.tasks)
    groups = _groups(records)
    stale = set()
    for task, info in existing.tasks.items():
        wanted = request.spec_for(task, info, groups.get(task))
        if wanted is None:
            progress.log(f"{info.suite} {task}: not part of this run's request, dropped")
            stale.add(task)
        elif info.spec_hash != spec_hash(wanted):
            change = describe_changes(info.spec or {}, wanted) or "settings changed"
            progress.log(f"{info.suite} {task}: {change}, recomputing")
            stale.add(task)
    return stale


def _run_level_unchanged(existing: RunManifest, request: _Request, seed: int) -> bool:
    """What can be checked without loading the model: seed, versions, engine as asked."""
    old = existing.run_spec or {}
    now = run_level_spec("", {}, seed)
    return existing.engine_request == request.engine and all(
        old.get(key) == now[key] for key in ("seed", "collapse_eval_version", "lm_eval_version")
    )


def _keep_records(
    run_dir: Path, records: Sequence[ItemRecord], tasks: Mapping[str, TaskInfo]
) -> list[ItemRecord]:
    """Rewrite records.jsonl without the records of tasks that are not kept.

    This also drops general tasks interrupted mid-write (written a whole task at a time,
    marked in the manifest after): they are recomputed, from the cache, so cheaply.
    """
    keep = [r for r in records if r.task in tasks and r.suite == tasks[r.task].suite]
    if len(keep) != len(records):
        import json

        atomic_write_text(
            run_dir / RECORDS_FILE,
            "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in keep),
        )
    return keep


def run_model(
    spec: RunSpec,
    out: str | Path,
    *,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
) -> Run:
    """Evaluate ``spec.model`` into the run directory ``out`` (resuming if it exists).

    A run directory holds exactly what the last run asked for: on resume, tasks whose
    settings or data changed (per-task spec hash), tasks no longer asked for, and every
    task when a run-level setting changed (engine, output-affecting engine args, seed,
    versions) are dropped and recomputed, each with a log line.
    """
    progress = progress or QuietProgress()
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: --out must be a directory, and this is a file.")

    inputs = read_inputs(spec, progress, resolve_engine=engine_factory is default_engine_factory)
    spec, request = inputs.spec, inputs.request
    session = _EngineSession(spec, engine_factory, progress, label=run_dir.name)
    try:
        inputs.validate_suite(session)
        # One writer per run directory: a second process (two compares sharing a base run)
        # waits here, then finds the run complete and reuses it.
        with directory_lock(run_dir, progress):
            return _run_locked(
                spec,
                run_dir,
                progress,
                session,
                inputs.domain_sets,
                inputs.suite,
                inputs.include_paths,
                request,
            )
    finally:
        session.close()


@dataclass(frozen=True, slots=True)
class RunInputs:
    """A run's inputs, read and checked before any model loads (input mistakes must cost
    nothing): the domain sets, the general suite and what the run asks for."""

    spec: RunSpec  # with the engine kind resolved, when asked to
    domain_sets: dict[str, Any]
    suite: Suite | None
    config: BenchmarksConfig | None
    request: _Request

    @property
    def include_paths(self) -> tuple[Path, ...]:
        return tuple(self.config.include_paths) if self.config is not None else ()

    def validate_suite(self, session: _EngineSession) -> None:
        """Task names against lm-eval; entries whose results the cache holds whole need no
        lm-eval task index."""
        if self.config is not None and self.suite is not None:
            skip = session.reusable_entries(self.request)
            _validate_suite(self.config, self.suite, skip=skip, from_tasks=bool(self.spec.tasks))


def read_inputs(spec: RunSpec, progress: Progress, *, resolve_engine: bool) -> RunInputs:
    """Read the domain files and the suite; ``resolve_engine``: pick the backend of
    ``--engine`` (default) and say so once."""
    domain_sets = _load_domain_sets(spec.domain_files, spec.domain_limit)
    suite, config = _load_suite(spec, progress) if spec.run_general else (None, None)
    include_paths = tuple(config.include_paths) if config is not None else ()
    if resolve_engine:
        from collapse_eval.engines.registry import notice_once, resolve_engine_kind

        kind, notice = resolve_engine_kind(spec.engine)
        if notice_once(notice):
            progress.log(str(notice))
        spec = dataclasses.replace(spec, engine=kind)
    request = _make_request(spec, domain_sets, suite, include_paths)
    return RunInputs(spec, domain_sets, suite, config, request)


def _run_locked(
    spec: RunSpec,
    run_dir: Path,
    progress: Progress,
    session: _EngineSession,
    domain_sets: dict[str, Any],
    suite: Suite | None,
    include_paths: tuple[Path, ...],
    request: _Request,
) -> Run:
    # A process killed mid-write leaves its temporary manifest; under the lock, no other
    # process can be writing one, so any left is stale.
    for stale_tmp in run_dir.glob(f".{MANIFEST_FILE}.*.tmp"):
        stale_tmp.unlink(missing_ok=True)
    existing: RunManifest | None = None
    if (run_dir / MANIFEST_FILE).exists():
        existing = manifest_from_json(
            read_json(run_dir / MANIFEST_FILE), path=run_dir / MANIFEST_FILE
        )
    fingerprint = session.fingerprint
    previous: list[ItemRecord] = []
    stale: set[str] = set()
    if existing is not None:
        _check_resumable(run_dir, existing, fingerprint)
        if (run_dir / RECORDS_FILE).exists():
            previous = read_records(run_dir / RECORDS_FILE)
        stale = _stale_tasks(run_dir, existing, previous, request, progress)
        if existing.sequential is not None:  # its general tasks hold a subset of documents
            stale |= {t for t, info in existing.tasks.items() if info.suite == "general"}
        if (
            existing.complete
            and existing.sequential is None
            and not stale
            and _run_level_unchanged(existing, request, spec.seed)
            and _covers(existing, previous, domain_sets, suite)
        ):
            progress.log(f"{run_dir}: already complete, nothing to do")
            refreshed = {name: _refresh(info, suite) for name, info in existing.tasks.items()}
            if refreshed != dict(existing.tasks):  # a margin edited in benchmarks.yaml
                existing = dataclasses.replace(existing, tasks=refreshed)
                write_manifest(run_dir, existing)
            return Run(path=run_dir, manifest=existing, records=tuple(previous))

    manifest, previous = started_manifest(
        spec, run_dir, session, existing, (previous, stale), suite, request
    )
    tasks = dict(manifest.tasks)
    done_domain: dict[str, set[str]] = {}
    for rec in previous:
        if rec.suite == "domain":
            done_domain.setdefault(rec.task, set()).add(rec.item_id)
    with RecordWriter(run_dir / RECORDS_FILE) as writer:
        for task, items in domain_sets.items():
            task_spec = request.domain[task]
            tasks[task] = domain_task_info(items, task_spec)
            write_manifest(run_dir, dataclasses.replace(manifest, tasks=tasks))
            done = done_domain.get(task, set())
            cached = None if done else session.cached("domain", task_spec)
            if cached is not None:
                writer.write_batch([r for _, _, records in cached for r in records])
                progress.log(f"domain {task}: {len(items)} items, from the cache")
                continue
            run_domain_task(session.engine(), task, items, done, writer.write_batch, progress)
        if suite is not None:
            finished = _TaskFinisher(run_dir, manifest, tasks, writer, progress, request)
            todo = _reuse_general(session, suite, request, tasks, finished)
            if todo:
                _run_general(
                    session.engine(),
                    spec,
                    dataclasses.replace(suite, entries=tuple(todo)),
                    include_paths,
                    tasks,
                    finished,
                )
    manifest = dataclasses.replace(manifest, tasks=tasks, complete=True)
    write_manifest(run_dir, manifest)
    run = load_run(run_dir)
    session.remember(run, request)
    return run


def started_manifest(
    spec: RunSpec,
    run_dir: Path,
    session: _EngineSession,
    existing: RunManifest | None,
    previous: tuple[list[ItemRecord], set[str]],
    suite: Suite | None,
    request: _Request,
) -> tuple[RunManifest, list[ItemRecord]]:
    """The manifest a (resumed) run starts from, written (complete: false), and the records
    it keeps: ``previous`` = (the existing records, its stale tasks); every task is stale
    when a run-level setting changed."""
    records, stale = previous
    run_spec = session.run_spec()
    if existing is not None and existing.run_spec_hash not in (None, spec_hash(run_spec)):
        change = describe_changes(existing.run_spec or {}, run_spec)
        session.progress.log(f"{run_dir}: run settings changed ({change}): recomputing every task")
        stale = set(existing.tasks)
    tasks = {
        name: _refresh(info, suite)
        for name, info in (existing.tasks if existing else {}).items()
        if name not in stale
    }
    kept = _keep_records(run_dir, records, tasks) if existing else []
    manifest = RunManifest(
        model=spec.model,
        model_fingerprint=session.fingerprint,
        engine=str(run_spec["engine"]),
        engine_args=dict(run_spec["engine_args"]),
        created_at=existing.created_at if existing else _now(),
        collapse_eval_version=__version__,
        lm_eval_version=_lm_eval_version(),
        tasks=tasks,
        seed=spec.seed,
        complete=False,
        run_spec=run_spec,
        run_spec_hash=spec_hash(run_spec),
        engine_request=dict(request.engine),
    )
    write_manifest(run_dir, manifest)
    return manifest, kept


LOCK_FILE = ".lock"


@contextmanager
def directory_lock(directory: Path, progress: Progress) -> Iterator[None]:
    """Hold an exclusive lock (filelock on ``directory/.lock``) while writing ``directory``.

    The lock is the OS's (flock, or msvcrt on Windows): it is dropped when its process
    dies, even by SIGKILL, so a lock is never left behind.
    """
    import filelock

    directory.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(directory / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress.log(f"{directory}: another collapse-eval process is writing here; waiting")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def without_url_credentials(value: Any) -> Any:
    """``http://user:pw@host/v1`` -> ``http://host/v1``; anything else unchanged."""
    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return value
    import urllib.parse

    parts = urllib.parse.urlsplit(value)
    if not parts.netloc or "@" not in parts.netloc:
        return value
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _make_request(
    spec: RunSpec,
    domain_sets: Mapping[str, Any],
    suite: Suite | None,
    include_paths: Sequence[Path],
) -> _Request:
    paths = {_domain_name(path): path for path in spec.domain_files}
    domain = {task: domain_task_spec(paths[task], spec.domain_limit) for task in domain_sets}
    general: dict[str, Mapping[str, Any]] = {}
    if suite is not None:
        files = task_files_hash(include_paths)
        general = {e.task: general_task_spec(e, spec.limit, files) for e in suite.entries}
        from collapse_eval.data_prepare import offline_task_names

        offline = [e.task for e in suite.entries if e.task in offline_task_names()]
        if offline:
            data = offline_data_hash()
            general.update({task: {**general[task], "offline_data": data} for task in offline})
    # As typed, less credentials: a URL's user:password@ must not reach the manifest.
    args = {key: without_url_credentials(value) for key, value in spec.engine_args.items()}
    engine = {"engine": spec.engine, "engine_args": args}
    return _Request(domain=domain, general=general, engine=engine)


def _refresh(info: TaskInfo, suite: Suite | None) -> TaskInfo:
    """A kept general task takes the margin now written in benchmarks.yaml (no rerun)."""
    if info.suite != "general" or suite is None or not info.spec:
        return info
    entry = next((e for e in suite.entries if e.task == info.spec.get("task")), None)
    return info if entry is None else dataclasses.replace(info, margin=entry.margin)


def _domain_name(path: Path) -> str:
    from collapse_eval.domain.dataset import domain_task_name

    return str(domain_task_name(path))


def _covers(
    manifest: RunManifest,
    records: Sequence[ItemRecord],
    domain_sets: Mapping[str, Any],
    suite: Any,
) -> bool:
    """Does a complete run already hold every task asked for (so no model need load)?"""
    have = set(manifest.tasks)
    if not set(domain_sets) <= have:
        return False
    if suite is None:
        return True
    # Group tasks (mmlu) are recorded per subtask, each record naming its group.
    groups = {str(g) for r in records if (g := (r.metadata or {}).get("group"))}
    return all(entry.task in have or entry.task in groups for entry in suite.entries)


def _load_domain_sets(files: Sequence[Path], limit: int | None = None) -> dict[str, Any]:
    if not files:
        return {}
    from collapse_eval.domain.dataset import domain_task_name, load_domain_set

    sets: dict[str, Any] = {}
    for path in files:
        name = domain_task_name(path)
        if name in sets:
            raise InputError(
                path,
                f"two --domain files share the task name '{name}' "
                "(the file name without extension); rename one",
            )
        items = load_domain_set(path)
        sets[name] = items if limit is None else whole_clusters(items, limit, path)
    return sets


def whole_clusters(items: Sequence[Any], limit: int, path: Path) -> list[Any]:
    """At most ``limit`` of a domain file's items, whole clusters only (``metadata.cluster``;
    an item without one is its own cluster), so a subsample keeps the clustered standard
    errors honest. Clusters are taken in the order of a hash of their name, not the file's
    order (a file sorted by task type would give one type), skipping any that would pass
    the limit; the choice depends only on the file, so base and tuned get the same items
    and a larger limit keeps every cluster a smaller one took when it fits. Items keep
    their file order."""
    clusters: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        key = item.cluster if item.cluster is not None else f"\0{item.id}"
        clusters.setdefault(key, []).append(index)
    chosen: list[int] = []
    for key in sorted(clusters, key=lambda k: hashlib.sha256(k.encode()).hexdigest()):
        if len(chosen) + len(clusters[key]) <= limit:
            chosen.extend(clusters[key])
    if not chosen:
        smallest = min(len(c) for c in clusters.values())
        raise UsageError(
            f"--domain-limit {limit}: every cluster of {path} (metadata.cluster) has more "
            f"items than that (the smallest has {smallest}); clusters are kept whole, so "
            f"give at least --domain-limit {smallest}"
        )
    return [items[i] for i in sorted(chosen)]


def _load_suite(spec: RunSpec, progress: Progress) -> tuple[Suite, BenchmarksConfig]:
    """The chosen suite and the benchmarks file (task names are checked separately)."""
    from collapse_eval.config import choose_suite, load_benchmarks

    config = load_benchmarks(spec.benchmarks)
    offline = prepared_offline_data() if spec.suite is None and not spec.tasks else None
    suite, why = choose_suite(
        config, spec.suite, tasks=spec.tasks, num_fewshot=spec.num_fewshot, offline_data=offline
    )
    progress.log(why)
    return suite, config


def _validate_suite(
    config: BenchmarksConfig, suite: Suite, skip: Collection[str] = (), *, from_tasks: bool = False
) -> None:
    """Unknown task names fail here, before a model is loaded; say which file and line.

    Entries in ``skip`` (whose results are cached whole, so lm-eval knew them) are not
    looked up: with none left, lm-eval's task index is not built at all.
    """
    entries = tuple(e for e in suite.entries if e.task not in skip)
    if not entries:
        return
    from collapse_eval.general import validate_suite

    if from_tasks:  # `--tasks`: no file and line to name, the message starts with the option
        checked = dataclasses.replace(suite, entries=entries)
        validate_suite(checked, config.include_paths, where="--tasks: ")
        return
    try:
        validate_suite(dataclasses.replace(suite, entries=entries), config.include_paths)
    except ConfigError as exc:
        named = [e.line for e in suite.entries if e.line and f"'{e.task}'" in str(exc)]
        where = f"{config.path}:{named[0]}" if named else str(config.path)
        raise ConfigError(f"{where}: {exc}") from None


def prepared_offline_data() -> Path | None:
    """Where `collapse-eval data prepare` left the offline benchmark data, None if nowhere."""
    from collapse_eval import data_prepare

    data_dir = data_prepare.default_data_dir()
    return data_dir if data_prepare.offline_data_status(data_dir) else None


def domain_task_info(items: Sequence[Any], task_spec: Mapping[str, Any]) -> TaskInfo:
    """A domain task's manifest entry."""
    return TaskInfo(
        suite="domain",
        primary_metric="score",
        n=len(items),
        spec=task_spec,
        spec_hash=spec_hash(task_spec),
    )


def run_domain_task(
    engine: Engine,
    task: str,
    items: Sequence[Any],
    done: Collection[str],
    on_batch: Callable[[list[ItemRecord]], None],
    progress: Progress,
) -> None:
    """Answer the ``items`` not in ``done`` (with the generation budgets of all of them,
    so a part of a task is answered as the whole task would be), batch by batch."""
    from collapse_eval.domain.runner import evaluate_domain, generation_budgets, request_count

    todo = [item for item in items if item.id not in done]
    if not todo:
        return
    budgets = generation_budgets(items, engine)
    if budgets:
        said = ", ".join(f"{fmt} {n}" for fmt, n in budgets.items())
        progress.log(f"domain {task}: new-token budgets by output format: {said}")
    with progress.bar(f"domain {task}", request_count(todo)) as bar:
        evaluate_domain(
            engine,
            items,
            task,
            done_item_ids=done,
            on_batch=on_batch,
            on_progress=bar.advance,
            budgets=budgets,
        )


class _TaskFinisher:
    """Writes one finished general task (computed or from the cache) and marks it done."""

    def __init__(
        self,
        run_dir: Path,
        manifest: RunManifest,
        tasks: dict[str, TaskInfo],
        writer: RecordWriter,
        progress: Progress,
        request: _Request,
    ) -> None:
        self.run_dir, self.manifest, self.tasks = run_dir, manifest, tasks
        self.writer, self.progress, self.request = writer, progress, request

    def __call__(self, task: str, records: list[ItemRecord], info: TaskInfo, how: str = "") -> None:
        self.writer.write_batch(records)
        self.tasks[task] = self.request.general_info(task, records, info)
        write_manifest(self.run_dir, dataclasses.replace(self.manifest, tasks=self.tasks))
        self.progress.log(f"general {task}: {info.n} items{how}")
        below = below_chance(task, records, info.primary_metric)
        if below is not None:
            warnings.warn(CollapseEvalWarning(f"{self.manifest.model}: {below}"), stacklevel=2)


# A task whose references come from a small fixed label set (BoolQ's yes/no): at most this
# many labels, each seen at least twice on average, over at least MIN_CHANCE_ITEMS items.
MAX_LABELS = 10
MIN_CHANCE_ITEMS = 20


def below_chance(task: str, records: Sequence[ItemRecord], metric: str | None) -> str | None:
    """A sentence when a task with a fixed label set scores clearly below chance (1/k for
    k labels, by more than two binomial standard errors), which usually means a prompt or
    label mismatch rather than a weak model; with the majority-class rate, what answering
    the most common label every time would score. None otherwise, and for tasks whose
    choices differ per item (ARC, PIQA), whose k the records do not hold."""
    rows = [r for r in records if r.metric == metric and isinstance(r.reference, str)]
    labels: dict[str, int] = {}
    for r in rows:
        labels[str(r.reference)] = labels.get(str(r.reference), 0) + 1
    n = len(rows)
    if n < MIN_CHANCE_ITEMS or len(labels) > MAX_LABELS or 2 * len(labels) > n:
        return None
    k = len(set(labels) | {str(r.prediction) for r in rows if r.prediction is not None})
    accuracy = sum(r.score for r in rows) / n
    chance = 1 / max(k, 2)
    if accuracy + 2 * (chance * (1 - chance) / n) ** 0.5 >= chance:
        return None
    label, count = max(labels.items(), key=lambda kv: kv[1])
    answers: dict[str, int] = {}
    for r in rows:
        answers[str(r.prediction)] = answers.get(str(r.prediction), 0) + 1
    said, times = max(answers.items(), key=lambda kv: kv[1])
    return (
        f"{task} scored {accuracy:.0%} ({metric}, n = {n}), below chance for its {k} "
        f"labels ({chance:.0%}); it answered {said!r} on {times} of {n} items, and always "
        f"answering {label!r} would score {count / n:.0%}. Below chance usually means a "
        "prompt or label mismatch (the task's YAML, its few-shot examples or a chat "
        "template), or a model that leans to one answer whatever the question"
    )


def _reuse_general(
    session: _EngineSession,
    suite: Suite,
    request: _Request,
    tasks: Mapping[str, TaskInfo],
    finished: _TaskFinisher,
) -> list[BenchmarkEntry]:
    """Write the entries whose results the cache holds whole; the entries left to run."""
    done = {name for name, info in tasks.items() if info.suite == "general"}
    todo = []
    for entry in suite.entries:
        cached = session.cached("general", request.general[entry.task])
        if cached is None or any(name in done for name, _, _ in cached):
            todo.append(entry)
            continue
        for name, info, records in cached:
            finished(
                name, records, dataclasses.replace(info, margin=entry.margin), ", from the cache"
            )
    return todo


def _run_general(
    engine: Engine,
    spec: RunSpec,
    suite: Suite,
    include_paths: tuple[Path, ...],
    tasks: dict[str, TaskInfo],
    finished: _TaskFinisher,
) -> None:
    from collapse_eval.general import run_general_suite

    done = {name for name, info in tasks.items() if info.suite == "general"}
    finished.progress.log(f"general suite '{suite.name}': {len(suite.entries)} task(s)")
    run_general_suite(
        engine,
        suite,
        limit=spec.limit,
        seed=spec.seed,
        include_paths=include_paths,
        done_tasks=done,
        on_task=finished,
        progress=finished.progress,
    )


def resolve_run(
    model_or_run: str,
    spec: RunSpec,
    out: Path,
    *,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
) -> Run:
    """An existing, finished run directory is loaded as is (no model); a checkpoint is
    evaluated."""
    if is_run_dir(model_or_run):
        return check_finished(load_run(model_or_run))
    _refuse_other_directories(Path(model_or_run))
    return run_model(
        dataclasses.replace(spec, model=model_or_run),
        out,
        progress=progress,
        engine_factory=engine_factory,
    )


def _refuse_other_directories(path: Path) -> None:
    """InputError for a directory that is neither a finished run nor a checkpoint."""
    if path.is_dir() and (path / MANIFEST_FILE).exists():
        raise InputError(
            path,
            f"has {MANIFEST_FILE} but no {RECORDS_FILE}: an incomplete run "
            "directory. Re-run `collapse-eval run` into it to finish it.",
        )
    if path.is_dir() and (path / RECORDS_FILE).exists():
        raise InputError(
            path,
            f"has {RECORDS_FILE} but no {MANIFEST_FILE}, so it is neither a run directory "
            "nor a checkpoint. Restore manifest.json, or re-run `collapse-eval run` with "
            "this directory as --out to rebuild the run.",
        )
    if path.is_dir() and (path / "summary.json").exists():
        raise InputError(
            path,
            "is a compare output directory, not a run or a checkpoint. "
            "Pass its runs/base or runs/tuned directory instead.",
        )


def check_finished(run: RunT, *, partial: bool = False) -> RunT:
    """The run, or UsageError when it was interrupted (or is still being written), or
    when it is a sequential run (only the items a design looked at) and not ``partial``."""
    why = _unfinished(run)
    if why is not None:
        raise _incomplete_run(run.path, run.manifest.model, why)
    if run.manifest.sequential is not None and not partial:
        raise UsageError(
            f"{run.path}: a sequential run written by `compare --sequential` (it holds only "
            "the items the design looked at), so it cannot be compared as a full run. Run "
            "the same `compare ... --sequential` command again to re-judge it (nothing is "
            f"re-evaluated), or evaluate {run.manifest.model} in full into it with "
            "`collapse-eval run MODEL --out DIR`."
        )
    return run


def _incomplete_run(path: Path, model: str, why: str) -> UsageError:
    return UsageError(
        f"{path}: this run is incomplete ({why}), so it cannot be compared yet. "
        f"Finish it by re-running the command that made it, e.g. `collapse-eval run "
        f"{model} --out {path}` with the same options (it resumes where "
        "it stopped), then compare again."
    )


_NOT_COMPLETE = "manifest.json says complete: false: the run was interrupted or is running"


def check_models_first(models: Sequence[str], spec: RunSpec) -> None:
    """Every BASE and TUNED of a compare, checked before the first model loads, so that a
    mistyped candidate costs nothing instead of failing after the base's evaluation: run
    directories must be finished (manifest only: reading records is left to the compare),
    other directories must not be runs or compare outputs, and checkpoints must exist with
    engine arguments their backend accepts. Data and suite are checked by ``run_model``
    before its model loads."""
    from collapse_eval.engines.registry import check_engine_args, resolve_engine_kind

    checkpoints = []
    for model in models:
        if is_run_dir(model):
            manifest = read_run_manifest(model)
            if not manifest.complete:
                raise _incomplete_run(Path(model), manifest.model, _NOT_COMPLETE)
        else:
            _refuse_other_directories(Path(model))
            checkpoints.append(model)
    if not checkpoints:
        return  # run directories only: no engine is chosen, so none may be required
    kind, _notice = resolve_engine_kind(spec.engine)  # the run prints the notice
    for model in checkpoints:
        check_engine_args(kind, model, spec.engine_args)
        _check_model_source(kind, model, spec.engine_args)


def _check_model_source(kind: str, model: str, engine_args: Mapping[str, str]) -> None:
    """InputError for a checkpoint that is not there (without loading anything)."""
    if kind == "hf":
        from collapse_eval.engines.hf import check_model_source

        check_model_source(model, engine_args.get("gguf_file"))
    elif kind == "vllm" and model.startswith(("/", ".", "~")) and not _exists(model):
        raise InputError(model, "checkpoint directory not found")  # vLLM's own test


def _exists(path: str) -> bool:
    return Path(path).expanduser().exists()


def _unfinished(run: Run | RunColumns) -> str | None:
    if not run.manifest.complete:
        return _NOT_COMPLETE
    items: dict[str, set[str]] = {}
    if isinstance(run, RunColumns):
        for (_suite, task, _metric), columns in run.items.items():
            items.setdefault(task, set()).update(columns.item_ids.tolist())
    else:
        for rec in run.records:
            items.setdefault(rec.task, set()).add(rec.item_id)
    # A sequential run holds of each task the items its manifest says were evaluated.
    evaluated = (run.manifest.sequential or {}).get("tasks", {})
    for task, info in run.manifest.tasks.items():
        have = len(items.get(task, ()))
        n = evaluated[task]["items_evaluated"] if task in evaluated else info.n
        if n is not None and have < n:
            return f"{info.suite} task {task} has {have} of its {n} items"
    return None


def check_same_task_specs(base: Run | RunColumns, tuned: Run | RunColumns) -> None:
    """Refuse to pair tasks that the two runs evaluated with different settings or data.

    Without this the mismatch would surface as "item ids differ" and read as a data
    problem. Tasks without recorded specs (older or hand-written runs) are left to the
    item-level pairing checks.
    """
    for task, info in base.manifest.tasks.items():
        other = tuned.manifest.tasks.get(task)
        if other is None or info.spec_hash is None or other.spec_hash is None:
            continue
        if info.spec_hash != other.spec_hash:
            change = describe_changes(info.spec or {}, other.spec or {}) or "settings differ"
            raise UsageError(
                f"{info.suite} task {task} was evaluated with different settings in "
                f"{base.path} and {tuned.path} ({change}); its items cannot be paired. "
                "Evaluate both with the same options: re-run `collapse-eval run` into the "
                "stale one (it recomputes what changed), or pass checkpoints to compare."
            )


def compare(
    base: str,
    tuned: str,
    spec: RunSpec,
    out: str | Path,
    *,
    policy: Any = None,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
    run_dirs: tuple[Path, Path] | None = None,
    allow_labeler: bool = False,
    training: TrainingSet | None = None,
    drift: DriftResult | None = None,
) -> Summary:
    """Evaluate (or load) both sides, then write summary.json and summary.md into ``out``.
    ``allow_labeler``: compare even a model that labeled the domain test set (see
    ``check_labelers``); ``training``: the tuned model's training set (``compare
    --train``), attached as summary.json's ``training`` block; ``drift``: the tuned
    model's drift, summary.json's ``drift``."""
    from collapse_eval.compare import compare_runs
    from collapse_eval.policy import default_policy

    out = Path(out)
    progress = progress or QuietProgress()
    policy = policy or default_policy()
    base_dir, tuned_dir = run_dirs or (out / "runs" / "base", out / "runs" / "tuned")
    base_path = _resolve_dir(base, spec, base_dir, progress, engine_factory)
    block = None
    if _live(policy, tuned):
        base_run = check_finished(load_run_columns(base_path))
        base_run, tuned_run, block = _live_candidate(
            base_run, tuned, spec, tuned_dir, policy, progress, engine_factory
        )
    else:
        tuned_path = _resolve_dir(tuned, spec, tuned_dir, progress, engine_factory)
        base_run, tuned_run = (
            check_finished(r) for r in load_runs_columns([base_path, tuned_path])
        )
    _check_run_labelers(spec, base_run, tuned_run, allow_labeler)
    check_same_task_specs(base_run, tuned_run)
    summary = compare_runs(base_run, tuned_run, policy, seed=spec.seed, sequential_block=block)
    summary = with_training(summary, (base_run, tuned_run), training, spec, progress)
    summary = with_drift(summary, drift)
    with directory_lock(out, progress):  # two compares into one --out take turns
        write_summary(out, summary, runs=(base_run, tuned_run))
    return summary


def _live(policy: Any, tuned: str) -> bool:
    """``compare --sequential`` with a checkpoint as the candidate: evaluated in rounds."""
    return getattr(policy, "sequential", None) is not None and not is_run_dir(tuned)


def _live_candidate(
    base_run: RunColumns,
    tuned: str,
    spec: RunSpec,
    tuned_dir: Path,
    policy: Any,
    progress: Progress,
    factory: EngineFactory,
) -> tuple[RunColumns, RunColumns, dict[str, Any]]:
    """(the base cut to the candidate's items, the candidate's sequential run, summary.json's
    sequential block): the candidate evaluated in rounds until the verdict is known."""
    from collapse_eval.columns import restrict_items
    from collapse_eval.sequential_live import run_live

    _refuse_other_directories(Path(tuned))
    live = run_live(
        base_run,
        dataclasses.replace(spec, model=tuned),
        tuned_dir,
        policy,
        progress=progress,
        engine_factory=factory,
    )
    tuned_run = check_finished(live.run, partial=True)
    return restrict_items(base_run, tuned_run), tuned_run, live.block


def with_training(
    summary: Summary,
    runs: tuple[RunColumns, RunColumns],
    training: TrainingSet | None,
    spec: RunSpec,
    progress: Progress,
) -> Summary:
    """``summary`` with the training block of ``training`` (unchanged without one); the
    --domain files give the texts lost items are traced by."""
    if training is None:
        return summary
    from collapse_eval.training import attach_training

    progress.log(f"compare: tracing lost items to {training.source}")
    test_sets = _load_domain_sets(spec.domain_files, spec.domain_limit) or None
    return attach_training(summary, runs, training, test_sets)


def _resolve_dir(
    model_or_run: str, spec: RunSpec, out: Path, progress: Progress, factory: EngineFactory
) -> Path:
    """Like resolve_run, but only the run directory: compare reads it as columns."""
    if is_run_dir(model_or_run):
        return Path(model_or_run)
    return resolve_run(model_or_run, spec, out, progress=progress, engine_factory=factory).path


def write_summary(
    out: Path, summary: Summary, runs: tuple[RunColumns, RunColumns] | None = None
) -> dict[str, Path]:
    """summary.json, then the reports rendered from it (summary.md, report.html, plots);
    ``runs``, the compared runs as columns, spare the report reading them again (without
    them the report finds the runs named in summary.json with ``side_run_dir``).

    A disk that fills (or an I/O error) is exit 3 saying what is intact and what to run.
    """
    from collapse_eval.records import atomic_write_json
    from collapse_eval.report.html import write_reports

    try:
        atomic_write_json(out / "summary.json", summary.to_json())
    except (OSError, StorageError) as exc:
        raise StorageError(
            f"cannot write {out / 'summary.json'}: {_why(exc)}. The run directories are "
            "intact: free some space (or fix the permissions) and run the same command "
            "again; the runs are reused, nothing is recomputed."
        ) from None
    try:
        run_dirs: tuple[Path | None, Path | None] = (
            (runs[0].path, runs[1].path)
            if runs is not None
            else side_run_dirs(summary, out / SUMMARY_FILE)
        )
        return write_reports(out, summary, run_dirs=run_dirs, runs=runs)
    except (OSError, StorageError) as exc:
        raise StorageError(
            f"cannot write the report in {out}: {_why(exc)}. summary.json and the run "
            "directories are written and intact: free some space (or fix the permissions) "
            f"and run `collapse-eval report {out}` to render the report again."
        ) from None


def _why(exc: OSError | StorageError) -> str:
    if isinstance(exc, StorageError):
        return exc.reason
    return str(exc.strerror or exc)


# Folder names a candidate may not take in a many-candidate compare's output directory.
_RESERVED_NAMES = frozenset({"runs", "plots", "index.html", "overview.png"})


def candidate_names(candidates: Sequence[str]) -> list[str]:
    """One folder name per candidate: the last path component, de-duplicated in order
    (``ckpt``, ``ckpt-2``, ...); reserved names of the output directory get a suffix too."""
    names: list[str] = []
    for candidate in candidates:
        stem = Path(candidate.rstrip("/\\")).name or "candidate"
        if stem in (".", ".."):
            stem = Path(candidate).resolve().name or "candidate"
        name, k = stem, 1
        while name in names or name in _RESERVED_NAMES or name == "base":
            k += 1
            name = f"{stem}-{k}"
        names.append(name)
    return names


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """One candidate of ``compare_candidates``: its folder name, summary and where it is."""

    name: str
    summary: Summary
    out: Path


def compare_candidates(
    base: str,
    candidates: Sequence[str],
    spec: RunSpec,
    out: str | Path,
    *,
    policy: Any = None,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
    names: Sequence[str] | None = None,
    allow_labeler: bool = False,
    training: Mapping[str, TrainingSet] | None = None,
    drifts: Mapping[str, DriftResult] | None = None,
    screened_out: Mapping[str, str] | None = None,
) -> list[CandidateResult]:
    """Compare each candidate against one base, evaluating the base once.

    One candidate: exactly ``compare`` (``out/summary.json``, runs in ``out/runs/base`` and
    ``out/runs/tuned``). Several: the base run in ``out/runs/base``, candidate runs in
    ``out/runs/<name>``, each summary and its reports in ``out/<name>/``, and the overview
    ``out/index.html`` + ``out/overview.png`` (learning versus forgetting). ``names``
    overrides the folder names (default: ``candidate_names``); ``training`` maps a
    candidate's name to its training set (``compare --train``). ``drifts`` (by name) go
    into each summary's ``drift`` block and the overview; ``screened_out`` (name: why),
    candidates a ``--screen`` left out, are listed in the overview, whose layout they
    keep (a screen that leaves one candidate still writes the many-candidate layout).
    """
    from collapse_eval.compare import compare_runs
    from collapse_eval.policy import default_policy
    from collapse_eval.report.overview import Candidate, write_overview

    if not candidates:
        raise UsageError("compare needs at least one candidate after BASE")
    out = Path(out)
    progress = progress or QuietProgress()
    policy = policy or default_policy()
    names = list(names) if names is not None else candidate_names(candidates)
    if len(set(names)) != len(candidates) or set(names) & (_RESERVED_NAMES | {"base"}):
        raise UsageError(f"candidate names must be distinct and not reserved, got {names}")
    if engine_factory is default_engine_factory:  # a test's factory takes made-up names
        check_models_first([base, *candidates], spec)
    if spec.domain_files:  # before any model loads; run directories alone: once loaded
        labelers = test_set_labelers(_load_domain_sets(spec.domain_files).values())
        if labelers:  # hashing a checkpoint costs seconds: only for a built test set
            fingerprints = {m: _model_fingerprint(m, spec) for m in (base, *candidates)}
            check_labelers(fingerprints, labelers, allow=allow_labeler)
    drifts = drifts or {}
    if len(candidates) == 1 and not screened_out:
        summary = compare(
            base,
            candidates[0],
            spec,
            out,
            policy=policy,
            progress=progress,
            engine_factory=engine_factory,
            allow_labeler=allow_labeler,
            training=(training or {}).get(names[0]),
            drift=drifts.get(names[0]),
        )
        return [CandidateResult(names[0], summary, out)]
    base_path = _resolve_dir(base, spec, out / "runs" / "base", progress, engine_factory)
    base_run = check_finished(load_run_columns(base_path))
    results = []
    for name, candidate in zip(names, candidates, strict=True):
        progress.log(f"compare: {name} against base")
        paired_base, block = base_run, None
        if _live(policy, candidate):
            paired_base, tuned_run, block = _live_candidate(
                base_run, candidate, spec, out / "runs" / name, policy, progress, engine_factory
            )
        else:
            tuned_path = _resolve_dir(
                candidate, spec, out / "runs" / name, progress, engine_factory
            )
            tuned_run = check_finished(load_run_columns(tuned_path))
        _check_run_labelers(spec, paired_base, tuned_run, allow_labeler)
        check_same_task_specs(paired_base, tuned_run)
        summary = compare_runs(
            paired_base, tuned_run, policy, seed=spec.seed, sequential_block=block
        )
        trained = (training or {}).get(name)
        summary = with_training(summary, (paired_base, tuned_run), trained, spec, progress)
        summary = with_drift(summary, drifts.get(name))
        with directory_lock(out / name, progress):
            write_summary(out / name, summary, runs=(paired_base, tuned_run))
        results.append(CandidateResult(name, summary, out / name))
    write_overview(out, [Candidate(r.name, r.summary) for r in results], screened_out)
    return results


# ---------------------------------------------------------------- the labeler trap


Labeler = tuple[Any, Any]  # (metadata.labeler, metadata.labeler_fingerprint) of a test item


def test_set_labelers(domain_sets: Iterable[Sequence[Any]]) -> set[Labeler]:
    """The labelers the items of built domain test sets name (`data build` writes them)."""
    found: set[Labeler] = set()
    for items in domain_sets:
        for item in items:
            labeler = (item.metadata.get("labeler"), item.metadata.get("labeler_fingerprint"))
            if labeler != (None, None):
                found.add(labeler)
    return found


def _model_fingerprint(model: str, spec: RunSpec) -> str | None:
    """A compared model's fingerprint as an engine records it, without loading it: a run
    directory's from its manifest, a checkpoint's by hashing its files (remembered for
    the run that follows); None for a served model (openai), which has none to compare."""
    if is_run_dir(model):
        return read_run_manifest(model).model_fingerprint
    from collapse_eval.engines.registry import resolve_engine_kind

    if resolve_engine_kind(spec.engine)[0] == "openai":
        return None
    return checkpoint_fingerprint(model, spec.engine_args.get("revision"))


def _check_run_labelers(
    spec: RunSpec, base: RunColumns, tuned: RunColumns, allow_labeler: bool
) -> None:
    """The labeler check of two run directories compared without --domain files (with
    them, compare_candidates checked before any model loaded)."""
    if spec.domain_files:
        return
    labelers = {pair for columns in base.items.values() for pair in columns.labelers}
    runs = {str(r.path): r.manifest.model_fingerprint for r in (base, tuned)}
    check_labelers(runs, labelers, allow=allow_labeler)


def check_labelers(
    models: Mapping[str, str | None], labelers: Collection[Labeler], *, allow: bool
) -> None:
    """UsageError (a warning with ``allow``) when a compared model is the one that labeled
    the domain test set: the references are its own answers, so it scores near 100 % and
    no candidate can show a gain over it. A model with the labeler's name whose fingerprint
    cannot be compared (unknown on either side) gets a warning."""
    by_fingerprint = {fp: name for name, fp in labelers if fp}
    for model, fingerprint in models.items():
        if fingerprint is not None and fingerprint in by_fingerprint:
            said = (
                f"{model} labeled the domain test set (metadata.labeler "
                f"{by_fingerprint[fingerprint]}, the same fingerprint {fingerprint}): its "
                "references are this model's own answers, so it scores near 100 % on them "
                "and no candidate can show a gain over it"
            )
            if not allow:
                raise UsageError(
                    f"{said}. Use a test set labeled by another model or corrected by hand "
                    "(metadata.reference_source gold), or pass --allow-labeler-as-candidate "
                    "to compare anyway"
                )
            warnings.warn(CollapseEvalWarning(f"{said} (compared anyway)"), stacklevel=2)
        elif _unknown_but_named(model, fingerprint, labelers):
            warnings.warn(
                CollapseEvalWarning(
                    f"{model} has the name of the model that labeled the domain test set, "
                    "and its fingerprint cannot be compared with the labeler's (not "
                    "recorded on one side): if it is the labeler, the references are its "
                    "own answers and no candidate can show a gain over it"
                ),
                stacklevel=2,
            )


def _unknown_but_named(model: str, fingerprint: str | None, labelers: Collection[Labeler]) -> bool:
    """``model`` has a labeler's name, and one of the two fingerprints is unknown (both
    known and different: another model of that name, say a re-trained one)."""
    named = [fp for name, fp in labelers if name and str(name).rstrip("/") == model.rstrip("/")]
    return bool(named) and (fingerprint is None or None in named)
