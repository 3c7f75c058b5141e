"""The demo world on disk: the checkpoints, the domain test set and the demo suite.

``ensure_demo_world()`` returns a ready world, building it on first use (base model plus
the ``domain-only`` and ``mixed`` fine-tunes and one graded-quality candidate per
corruption level of the training set, a few minutes on 2 CPU cores) and reusing it
afterwards. Training runs in up to two worker processes, one thread each (the weights
are the same as in one process), as a small graph of jobs: the fine-tunes start once the
base is trained, and a caller can add jobs of its own (the demo evaluates each checkpoint
as soon as it exists). The cache key hashes the configuration, the training data as
generated, the shipped data files, the training code and the torch/transformers versions,
so a change to any of them builds a fresh world instead of silently reusing a stale one.
Each checkpoint is built in a scratch directory and renamed into place, and the world is
complete once its world.json is written: an interrupted build leaves no half checkpoint,
and the next run trains only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from queue import Empty
from typing import Any

from collapse_eval.demo import data, graded
from collapse_eval.demo.train import Progress, WorldConfig, build_base, finetune
from collapse_eval.workers import Task, run_tasks

__all__ = [
    "DemoWorld",
    "GradedCandidate",
    "WorldConfig",
    "ensure_demo_world",
    "world_key",
    "world_tasks",
    "default_cache_dir",
    "DEMO_SUITE",
    "BENCHMARKS_FILE",
    "DOMAIN_TEST_FILE",
    "DOMAIN_TRAIN_FILE",
]

_HERE = Path(__file__).resolve().parent
BENCHMARKS_FILE = _HERE / "benchmarks.yaml"
DOMAIN_TEST_FILE = data.TASKS_DIR / "demo" / "realestate_test.jsonl"
DOMAIN_TRAIN_FILE = data.TASKS_DIR / "demo" / "realestate_train.jsonl"
DEMO_SUITE = "demo"
_MARKER = "world.json"
_SCRATCH = ".building-"  # + builder pid + checkpoint name: one checkpoint being trained
# Source files whose content decides the weights (part of the cache key). data.py is not
# one of them: what it generates is hashed instead (_training_data), so that a comment or
# a refactor of the generators that yields the same data keeps the world.
_CODE_FILES = ("train.py", "tinymodel.py", "graded.py")


@dataclass(frozen=True, slots=True)
class GradedCandidate:
    """A mixed-replay fine-tune on a training set whose first ``level`` task-type groups
    are corrupted (``share``: the share of its samples that are)."""

    name: str
    level: int
    checkpoint: Path
    share: float = 0.0


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """Paths of a built demo world (checkpoint dirs load with transformers and vLLM)."""

    base: Path
    domain_only: Path
    mixed: Path
    domain_test: Path
    benchmarks: Path
    suite: str
    graded: tuple[GradedCandidate, ...] = ()


def default_cache_dir() -> Path:
    """``<user cache dir>/collapse-eval/demo`` (platformdirs)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("collapse-eval")) / "demo"


def _data_files() -> list[Path]:
    general = [data.TASKS_DIR / "demo_general" / f"{t}.jsonl" for t in data.GENERAL_TASKS]
    return [DOMAIN_TEST_FILE, DOMAIN_TRAIN_FILE, *general]


def _training_data(config: WorldConfig) -> list[Any]:
    """What data.py gives the training of ``config`` (train.py asks for exactly these)."""
    return [
        data.general_train_pairs(config.general_per_task, seed=data.GENERAL_SEED),
        data.unlabelled_dialogue_texts(config.unlabelled_dialogues),
        data.domain_train_set(),
    ]


def world_key(config: WorldConfig) -> str:
    """Hash of config + generated training data + shipped data + training code + library
    versions: the world's cache directory name."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    digest.update(json.dumps(_training_data(config), sort_keys=True).encode() + b"\0")
    for path in [*(_HERE / name for name in _CODE_FILES), *_data_files()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("torch", "transformers", "tokenizers"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=missing".encode())
    return digest.hexdigest()[:16]


def _world_at(root: Path, config: WorldConfig) -> DemoWorld:
    return DemoWorld(
        base=root / "base",
        domain_only=root / "domain-only",
        mixed=root / "mixed",
        domain_test=DOMAIN_TEST_FILE,
        benchmarks=BENCHMARKS_FILE,
        suite=DEMO_SUITE,
        graded=tuple(
            GradedCandidate(
                graded.graded_name(lv),
                lv,
                root / graded.graded_name(lv),
                graded.corrupted_share(lv),
            )
            for lv in config.graded_levels
        ),
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """One fine-tune: ``level`` None = the clean training split."""

    name: str
    replay: bool
    level: int | None = None


def _jobs(config: WorldConfig) -> list[_Job]:
    jobs = [_Job("mixed", True), _Job("domain-only", False)]  # longest first
    return jobs + [_Job(graded.graded_name(lv), True, lv) for lv in config.graded_levels]


def timed(fn: Callable[[], object]) -> dict[str, float]:
    """Run ``fn``; its wall and CPU seconds (of this process), as world.json records them."""
    wall, cpu = time.monotonic(), time.process_time()
    fn()
    return {
        "wall_s": round(time.monotonic() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }


def _into_place(root: Path, name: str, build: Callable[[Path], object]) -> None:
    """Build checkpoint ``name`` in a scratch directory and rename it to ``root/name``
    once complete, so ``root/name`` exists only as a whole checkpoint."""
    scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-{name}-", dir=root))
    try:
        build(scratch / name)
        try:
            os.rename(scratch / name, root / name)
        except OSError:
            # Another process built the same checkpoint first (the weights are
            # deterministic, so either copy is the same): keep the one in place.
            if not (root / name / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_scratch(root: Path) -> None:
    """Delete scratch directories whose builder is gone (a worker terminated by Ctrl-C or
    SIGTERM does not clean up after itself); a live builder's are left alone."""
    for scratch in root.glob(f"{_SCRATCH}*"):
        pid = scratch.name.removeprefix(_SCRATCH).split("-", 1)[0]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _build_base_job(root: Path, config: WorldConfig, say: Progress | None) -> dict[str, float]:
    """Train the base checkpoint into ``root/base``; returns its wall and CPU seconds."""
    return timed(lambda: _into_place(root, "base", lambda out: build_base(out, config, say)))


def _run_job(root: Path, config: WorldConfig, job: _Job, say: Progress | None) -> dict[str, float]:
    """Train one fine-tune into ``root/<job.name>``; returns its wall and CPU seconds."""

    def build(out: Path) -> None:
        if job.level is None:
            finetune(root / "base", out, config, replay=job.replay, progress=say)
        else:
            finetune(
                root / "base",
                out,
                config,
                replay=True,
                progress=say,
                samples=graded.graded_training_set(job.level),
                steps=config.graded_steps,
                replay_ratio=config.graded_replay_ratio,
                label=job.name,
                batch=config.graded_batch,
            )

    return timed(lambda: _into_place(root, job.name, build))


def world_tasks(
    root: Path, config: WorldConfig, say: Progress | None, *, graded_only: bool = False
) -> list[Task]:
    """The training tasks of the checkpoints ``root`` does not hold yet: the base first,
    then the fine-tunes (each after the base), longest first. Task names are the
    checkpoint names. ``graded_only``: the base and the graded candidates only (what the
    seed bench needs: the same checkpoints as in the demo world, minus two)."""
    tasks = []
    if not (root / "base").is_dir():
        tasks.append(Task("base", _build_base_job, (root, config, say)))
    for job in _jobs(config):
        if graded_only and job.level is None:
            continue
        if not (root / job.name).is_dir():
            after = ("base",) if tasks and tasks[0].name == "base" else ()
            tasks.append(Task(job.name, _run_job, (root, config, job, say), after))
    return tasks


def _drain(queue: Any, say: Callable[[str], None]) -> None:
    while True:
        try:
            say(queue.get_nowait())
        except Empty:
            return


def default_workers() -> int:
    """Worker processes: two where the machine has two cores or more (each runs one
    single-threaded job), else one."""
    return min(2, os.cpu_count() or 1)


# The caller's extra tasks (the demo's evaluations): given the world (final paths) and
# the names of the checkpoints still being built, the tasks to run in the same pool.
ExtraTasks = Callable[[DemoWorld, frozenset[str]], Sequence[Task]]


def ensure_demo_world(
    cache_dir: Path | None = None,
    *,
    config: WorldConfig = WorldConfig.demo(),  # noqa: B008  (frozen, safe as a default)
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
    extra: ExtraTasks | None = None,
    on_done: Callable[[Task, Any], None] | None = None,
) -> DemoWorld:
    """Return the demo world for ``config``, building what is missing under ``cache_dir``.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the world lives in
    ``cache_dir/<world_key(config)>``, complete once its world.json is written. Each
    checkpoint is built in a scratch directory and renamed into place when whole, so an
    interrupted build leaves no half checkpoint, and the next call trains only the
    checkpoints still missing. ``workers`` processes (default :func:`default_workers`;
    1 = in this process) run the training; ``extra`` adds tasks (such as evaluations that
    wait for their checkpoint) to the same pool, so that no core idles while the last
    fine-tunes run; ``on_done(task, result)`` is called as each task finishes.
    world.json records the wall and CPU seconds of each stage this call built.
    """
    root_parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = root_parent / world_key(config)
    built = _world_at(root, config)
    complete = (root / _MARKER).is_file()
    say = progress or (lambda _msg: None)
    n_workers = default_workers() if workers is None else workers
    started = time.monotonic()
    if not complete:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_scratch(root)
        ready = sorted(path.name for path in root.iterdir() if not path.name.startswith("."))
        if ready:
            say(f"resuming the demo world build in {root} (built: {', '.join(ready)})")
        else:
            say(f"building the demo world in {root} (first run only)")
    with contextlib.ExitStack() as stack:
        relay: Progress | None = progress
        queue = None
        if n_workers > 1 and not complete:  # training reports its steps from the workers
            queue = stack.enter_context(multiprocessing.get_context("spawn").Manager()).Queue()
            relay = queue.put
        tasks = [] if complete else world_tasks(root, config, relay)
        building = frozenset(t.name for t in tasks)
        tasks += list(extra(built, building)) if extra is not None else []
        if tasks and n_workers > 1:
            jobs = "1 job" if len(tasks) == 1 else f"{len(tasks)} jobs"
            say(f"running {jobs} in {n_workers} processes")
        results = run_tasks(
            tasks,
            n_workers,
            on_done=on_done,
            tick=(lambda: _drain(queue, say)) if queue is not None else None,
        )
        if queue is not None:
            _drain(queue, say)
    if not complete:
        _write_marker(root, config, n_workers, {n: results[n] for n in building})
        say(f"demo world built in {time.monotonic() - started:.0f} s")
    return built


def _write_marker(
    root: Path, config: WorldConfig, workers: int, stages: dict[str, dict[str, float]]
) -> None:
    marker = {
        "schema_version": 1,
        "key": root.name,
        "config": dataclasses.asdict(config),
        "workers": workers,
        "stages": stages,  # what this call trained (an interrupted build resumed: fewer)
    }
    tmp = root / f".{_MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / _MARKER)
