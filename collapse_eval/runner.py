"""Run one model over the domain sets and the general suite into a run directory.

A run directory is ``manifest.json`` + ``records.jsonl`` (DESIGN section 4). Runs resume:
domain records are appended and flushed per batch, general records per task, and the
manifest (rewritten atomically) marks each task once it is complete. Re-running the
same command after an interruption (Ctrl-C, SIGKILL, out of memory) continues where it
stopped, with no lost and no duplicated records.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapse_eval import __version__
from collapse_eval.engines.base import Engine, checkpoint_fingerprint
from collapse_eval.errors import InputError, UsageError
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
    is_run_dir,
    load_run,
    manifest_from_json,
    read_json,
    read_records,
    write_manifest,
)


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
    seed: int = 0
    cache_dir: Path | None = None
    use_cache: bool = True
    run_general: bool = True


EngineFactory = Callable[[RunSpec], Engine]


def default_engine_factory(spec: RunSpec) -> Engine:
    """The configured backend, wrapped in the shared request cache unless disabled."""
    from collapse_eval.engines.registry import make_engine

    engine = make_engine(spec.engine, spec.model, spec.engine_args)
    if not spec.use_cache:
        return engine
    from collapse_eval.cache import CachedEngine, RequestCache

    return CachedEngine(engine, RequestCache(spec.cache_dir))


def _lm_eval_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_resumable(run_dir: Path, manifest: RunManifest, fingerprint: str, spec: RunSpec) -> None:
    """Refuse to append to a run directory that holds another model or other settings."""
    if manifest.model_fingerprint and manifest.model_fingerprint != fingerprint:
        raise UsageError(
            f"{run_dir}: this directory holds a run of another checkpoint "
            f"({manifest.model}, {manifest.model_fingerprint}). Use a new --out directory "
            "or delete this one."
        )
    if manifest.seed is not None and manifest.seed != spec.seed:
        raise UsageError(
            f"{run_dir}: the existing run used --seed {manifest.seed}, not "
            f"{spec.seed}. Use the same seed to resume, or a new --out directory."
        )


def _drop_incomplete_general(run_dir: Path, manifest: RunManifest) -> list[ItemRecord]:
    """Existing records, minus general tasks that the manifest does not mark complete.

    General records are written a whole task at a time; a task interrupted mid-write
    is dropped here and recomputed (from the cache, so cheaply).
    """
    path = run_dir / RECORDS_FILE
    if not path.exists():
        return []
    records = read_records(path)
    keep = [r for r in records if r.suite != "general" or r.task in manifest.tasks]
    if len(keep) != len(records):
        import json

        atomic_write_text(
            path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in keep)
        )
    return keep


def run_model(
    spec: RunSpec,
    out: str | Path,
    *,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
) -> Run:
    """Evaluate ``spec.model`` into the run directory ``out`` (resuming if it exists)."""
    progress = progress or QuietProgress()
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: --out must be a directory, and this is a file.")

    # Validate every input before loading a model: input mistakes must cost nothing.
    domain_sets = _load_domain_sets(spec.domain_files)
    suite, include_paths = _load_suite(spec) if spec.run_general else (None, ())

    existing: RunManifest | None = None
    if (run_dir / MANIFEST_FILE).exists():
        existing = manifest_from_json(
            read_json(run_dir / MANIFEST_FILE), path=run_dir / MANIFEST_FILE
        )

    fingerprint = checkpoint_fingerprint(spec.model)
    if existing is not None:
        _check_resumable(run_dir, existing, fingerprint, spec)
    tasks: dict[str, TaskInfo] = dict(existing.tasks) if existing else {}
    previous = _drop_incomplete_general(run_dir, existing) if existing else []
    if (
        existing is not None
        and existing.complete
        and _covers(existing, previous, domain_sets, suite)
    ):
        progress.log(f"{run_dir}: already complete, nothing to do")
        return Run(path=run_dir, manifest=existing, records=tuple(previous))
    done_domain: dict[str, set[str]] = {}
    for rec in previous:
        if rec.suite == "domain":
            done_domain.setdefault(rec.task, set()).add(rec.item_id)

    if engine_factory is default_engine_factory:
        from collapse_eval.engines.registry import resolve_engine_kind

        kind, notice = resolve_engine_kind(spec.engine)
        if notice:
            progress.log(notice)
        spec = dataclasses.replace(spec, engine=kind)
    progress.log(f"loading {spec.model}")
    engine = engine_factory(spec)
    try:
        manifest = RunManifest(
            model=spec.model,
            model_fingerprint=fingerprint,
            engine=engine.kind,
            engine_args=dict(engine.engine_args),
            created_at=existing.created_at if existing else _now(),
            collapse_eval_version=__version__,
            lm_eval_version=_lm_eval_version(),
            tasks=tasks,
            seed=spec.seed,
            complete=False,
        )
        write_manifest(run_dir, manifest)
        with RecordWriter(run_dir / RECORDS_FILE) as writer:
            for task, items in domain_sets.items():
                tasks[task] = TaskInfo(suite="domain", primary_metric="score", n=len(items))
                write_manifest(run_dir, dataclasses.replace(manifest, tasks=tasks))
                _run_domain_task(
                    engine, task, items, done_domain.get(task, set()), writer, progress
                )
            if suite is not None:
                _run_general(
                    engine, spec, suite, include_paths, tasks, manifest, run_dir, writer, progress
                )
        manifest = dataclasses.replace(manifest, tasks=tasks, complete=True)
        write_manifest(run_dir, manifest)
    finally:
        engine.close()
    return load_run(run_dir)


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


def _load_domain_sets(files: Sequence[Path]) -> dict[str, Any]:
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
        sets[name] = load_domain_set(path)
    return sets


def _load_suite(spec: RunSpec) -> tuple[Any, tuple[Path, ...]]:
    """The chosen suite and the benchmarks file's include paths, validated."""
    from collapse_eval.config import load_benchmarks
    from collapse_eval.general import validate_suite

    config = load_benchmarks(spec.benchmarks)
    suite = config.suite(spec.suite)
    # Unknown task names fail here, before a model is loaded.
    validate_suite(suite, config.include_paths)
    return suite, tuple(config.include_paths)


def _run_domain_task(
    engine: Engine,
    task: str,
    items: Sequence[Any],
    done: set[str],
    writer: RecordWriter,
    progress: Progress,
) -> None:
    from collapse_eval.domain.runner import evaluate_domain

    todo = len(items) - len(done & {item.id for item in items})
    if todo == 0:
        return
    with progress.bar(f"domain {task}", todo) as bar:
        evaluate_domain(
            engine,
            items,
            task,
            done_item_ids=done,
            on_batch=writer.write_batch,
            on_progress=bar.advance,
        )


def _run_general(
    engine: Engine,
    spec: RunSpec,
    suite: Any,
    include_paths: tuple[Path, ...],
    tasks: dict[str, TaskInfo],
    manifest: RunManifest,
    run_dir: Path,
    writer: RecordWriter,
    progress: Progress,
) -> None:
    from collapse_eval.general import run_general_suite

    done = {name for name, info in tasks.items() if info.suite == "general"}

    def on_task(task: str, records: list[ItemRecord], info: TaskInfo) -> None:
        writer.write_batch(records)
        tasks[task] = info
        write_manifest(run_dir, dataclasses.replace(manifest, tasks=tasks))
        progress.log(f"general {task}: {info.n} items")

    progress.log(f"general suite '{suite.name}': {len(suite.entries)} task(s)")
    run_general_suite(
        engine,
        suite,
        limit=spec.limit,
        seed=spec.seed,
        include_paths=include_paths,
        done_tasks=done,
        on_task=on_task,
    )


def resolve_run(
    model_or_run: str,
    spec: RunSpec,
    out: Path,
    *,
    progress: Progress | None = None,
    engine_factory: EngineFactory = default_engine_factory,
) -> Run:
    """An existing run directory is loaded as is (no model); a checkpoint is evaluated."""
    if is_run_dir(model_or_run):
        return load_run(model_or_run)
    path = Path(model_or_run)
    if path.is_dir() and (path / MANIFEST_FILE).exists():
        raise InputError(
            path,
            f"has {MANIFEST_FILE} but no {RECORDS_FILE}: an incomplete run "
            "directory. Re-run `collapse-eval run` into it to finish it.",
        )
    if path.is_dir() and (path / "summary.json").exists():
        raise InputError(
            path,
            "is a compare output directory, not a run or a checkpoint. "
            "Pass its runs/base or runs/tuned directory instead.",
        )
    return run_model(
        dataclasses.replace(spec, model=model_or_run),
        out,
        progress=progress,
        engine_factory=engine_factory,
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
) -> dict[str, Any]:
    """Evaluate (or load) both sides, then write summary.json and summary.md into ``out``."""
    from collapse_eval.compare import compare_runs
    from collapse_eval.policy import default_policy

    out = Path(out)
    progress = progress or QuietProgress()
    base_dir, tuned_dir = run_dirs or (out / "runs" / "base", out / "runs" / "tuned")
    base_run = resolve_run(base, spec, base_dir, progress=progress, engine_factory=engine_factory)
    tuned_run = resolve_run(
        tuned, spec, tuned_dir, progress=progress, engine_factory=engine_factory
    )
    summary = compare_runs(base_run, tuned_run, policy or default_policy(), seed=spec.seed)
    write_summary(out, summary)
    return summary


def write_summary(out: Path, summary: Mapping[str, Any]) -> dict[str, Path]:
    """summary.json, then the reports rendered from it (summary.md, report.html, plots)."""
    from collapse_eval.records import atomic_write_json
    from collapse_eval.report.html import write_reports

    atomic_write_json(out / "summary.json", summary)
    return write_reports(out, summary)


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
    summary: dict[str, Any]
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
) -> list[CandidateResult]:
    """Compare each candidate against one base, evaluating the base once.

    One candidate: exactly ``compare`` (``out/summary.json``, runs in ``out/runs/base`` and
    ``out/runs/tuned``). Several: the base run in ``out/runs/base``, candidate runs in
    ``out/runs/<name>``, each summary and its reports in ``out/<name>/``, and the overview
    ``out/index.html`` + ``out/overview.png`` (learning versus forgetting). ``names``
    overrides the folder names (default: ``candidate_names``).
    """
    from collapse_eval.columns import as_columns
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
    if len(candidates) == 1:
        summary = compare(
            base,
            candidates[0],
            spec,
            out,
            policy=policy,
            progress=progress,
            engine_factory=engine_factory,
        )
        return [CandidateResult(names[0], summary, out)]
    base_run = as_columns(
        resolve_run(
            base, spec, out / "runs" / "base", progress=progress, engine_factory=engine_factory
        )
    )
    results = []
    for name, candidate in zip(names, candidates, strict=True):
        progress.log(f"compare: {name} against base")
        tuned_run = resolve_run(
            candidate, spec, out / "runs" / name, progress=progress, engine_factory=engine_factory
        )
        summary = compare_runs(base_run, tuned_run, policy, seed=spec.seed)
        write_summary(out / name, summary)
        results.append(CandidateResult(name, summary, out / name))
    write_overview(out, [Candidate(r.name, r.summary) for r in results])
    return results
