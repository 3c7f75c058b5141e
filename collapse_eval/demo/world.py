"""The demo world on disk: the checkpoints, the domain test set and the demo suite.

``ensure_demo_world()`` returns a ready world, building it on first use (base model plus
the ``domain-only`` and ``mixed`` fine-tunes and one graded-quality candidate per
corruption level of the training set, a few minutes on 2 CPU cores) and reusing it
afterwards. The fine-tunes run in up to two worker processes, one thread each (the
weights are the same as in one process). The cache key hashes the configuration, the
shipped data files, the code that generates and trains, and the torch/transformers
versions, so a change to any of them builds a fresh world instead of silently reusing a
stale one. A world is built in a temporary directory and renamed into place, so an
interrupted build leaves no half world.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from queue import Empty
from typing import Any

from collapse_eval.demo import data, graded
from collapse_eval.demo.train import WorldConfig, build_base, finetune
from collapse_eval.workers import process_pool

__all__ = [
    "DemoWorld",
    "GradedCandidate",
    "WorldConfig",
    "ensure_demo_world",
    "world_key",
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
# Source files whose content decides the weights (part of the cache key).
_CODE_FILES = ("data.py", "train.py", "tinymodel.py", "graded.py")


@dataclass(frozen=True, slots=True)
class GradedCandidate:
    """A mixed-replay fine-tune on a training set with a share ``level`` corrupted."""

    name: str
    level: float
    checkpoint: Path


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


def world_key(config: WorldConfig) -> str:
    """Hash of config + data + code + library versions: the world's cache directory name."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
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
            GradedCandidate(graded.graded_name(lv), lv, root / graded.graded_name(lv))
            for lv in config.graded_levels
        ),
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """One fine-tune: ``level`` None = the clean training split."""

    name: str
    replay: bool
    level: float | None = None


def _jobs(config: WorldConfig) -> list[_Job]:
    jobs = [_Job("mixed", True), _Job("domain-only", False)]  # longest first
    return jobs + [_Job(graded.graded_name(lv), True, lv) for lv in config.graded_levels]


def _run_job(
    root: Path, config: WorldConfig, job: _Job, progress: Callable[[str], None] | None
) -> dict[str, float]:
    """Train one fine-tune into ``root/<job.name>``; returns its wall and CPU seconds."""
    wall, cpu = time.monotonic(), time.process_time()
    if job.level is None:
        finetune(root / "base", root / job.name, config, replay=job.replay, progress=progress)
    else:
        finetune(
            root / "base",
            root / job.name,
            config,
            replay=True,
            progress=progress,
            samples=graded.graded_training_set(job.level),
            steps=config.graded_steps,
            replay_ratio=config.graded_replay_ratio,
            label=job.name,
        )
    return {
        "wall_s": round(time.monotonic() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }


def _worker_job(root: Path, config: WorldConfig, job: _Job, queue: Any) -> dict[str, float]:
    """``_run_job`` in a worker process; progress lines go to ``queue``."""
    return _run_job(root, config, job, queue.put)


def _drain(queue: Any, say: Callable[[str], None]) -> None:
    while True:
        try:
            say(queue.get_nowait())
        except Empty:
            return


def _finetune_all(
    root: Path,
    config: WorldConfig,
    jobs: Sequence[_Job],
    workers: int,
    progress: Callable[[str], None] | None,
) -> dict[str, dict[str, float]]:
    """Run every fine-tune (in ``workers`` processes when > 1); name -> timings."""
    if workers <= 1:
        return {job.name: _run_job(root, config, job, progress) for job in jobs}
    say = progress or (lambda _msg: None)
    say(f"fine-tuning {len(jobs)} candidates in {workers} processes")
    timings: dict[str, dict[str, float]] = {}
    with (
        multiprocessing.get_context("spawn").Manager() as manager,
        process_pool(workers) as pool,
    ):
        queue = manager.Queue()
        futures = {pool.submit(_worker_job, root, config, job, queue): job for job in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(queue, say)
            for future in done:
                timings[futures[future].name] = future.result()
        _drain(queue, say)
    return {job.name: timings[job.name] for job in jobs}


def default_workers() -> int:
    """Fine-tune processes: two where the machine has two cores or more (each is
    single-threaded), else one."""
    return min(2, os.cpu_count() or 1)


def ensure_demo_world(
    cache_dir: Path | None = None,
    *,
    config: WorldConfig = WorldConfig.demo(),  # noqa: B008  (frozen, safe as a default)
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> DemoWorld:
    """Return the demo world for ``config``, building it under ``cache_dir`` if needed.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the world lives in
    ``cache_dir/<world_key(config)>``. A second call with the same inputs returns at once.
    ``workers`` fine-tune processes (default :func:`default_workers`; 1 = in this process).
    world.json records each stage's wall and CPU seconds.
    """
    root_parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root_parent / world_key(config)
    if (final / _MARKER).is_file():
        return _world_at(final, config)

    root_parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root_parent))
    try:
        say(f"building the demo world in {final} (first run only)")
        cpu = time.process_time()
        build_base(tmp / "base", config, progress)
        stages = {
            "base": {
                "wall_s": round(time.monotonic() - started, 1),
                "cpu_s": round(time.process_time() - cpu, 1),
            }
        }
        n_workers = default_workers() if workers is None else workers
        stages.update(_finetune_all(tmp, config, _jobs(config), n_workers, progress))
        seconds = round(time.monotonic() - started, 1)
        (tmp / _MARKER).write_text(
            json.dumps(
                {
                    "schema_version": 1,
                    "key": final.name,
                    "config": dataclasses.asdict(config),
                    "build_seconds": seconds,
                    "workers": n_workers,
                    "stages": stages,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same world first (or a stale incomplete
            # directory sits there): keep a complete one, never a half one.
            if not (final / _MARKER).is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
        say(f"demo world built in {seconds:.0f} s")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _world_at(final, config)
