"""The demo world on disk: three checkpoints, the domain test set and the demo suite.

``ensure_demo_world()`` returns a ready world, building it on first use (base model plus
the ``domain-only`` and ``mixed`` fine-tunes, a few minutes on 2 CPU cores) and reusing
it afterwards. The cache key hashes the configuration, the shipped data files, the code
that generates and trains, and the torch/transformers versions, so a change to any of
them builds a fresh world instead of silently reusing a stale one. A world is built in a
temporary directory and renamed into place, so an interrupted build leaves no half world.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from collapse_eval.demo import data
from collapse_eval.demo.train import WorldConfig, build_base, finetune

__all__ = [
    "DemoWorld",
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
_CODE_FILES = ("data.py", "train.py", "tinymodel.py")


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """Paths of a built demo world (checkpoint dirs load with transformers and vLLM)."""

    base: Path
    domain_only: Path
    mixed: Path
    domain_test: Path
    benchmarks: Path
    suite: str


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


def _world_at(root: Path) -> DemoWorld:
    return DemoWorld(
        base=root / "base",
        domain_only=root / "domain-only",
        mixed=root / "mixed",
        domain_test=DOMAIN_TEST_FILE,
        benchmarks=BENCHMARKS_FILE,
        suite=DEMO_SUITE,
    )


def ensure_demo_world(
    cache_dir: Path | None = None,
    *,
    config: WorldConfig = WorldConfig.demo(),  # noqa: B008  (frozen, safe as a default)
    progress: Callable[[str], None] | None = None,
) -> DemoWorld:
    """Return the demo world for ``config``, building it under ``cache_dir`` if needed.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the world lives in
    ``cache_dir/<world_key(config)>``. A second call with the same inputs returns at once.
    """
    root_parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root_parent / world_key(config)
    if (final / _MARKER).is_file():
        return _world_at(final)

    root_parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root_parent))
    try:
        say(f"building the demo world in {final} (first run only)")
        build_base(tmp / "base", config, progress)
        finetune(tmp / "base", tmp / "domain-only", config, replay=False, progress=progress)
        finetune(tmp / "base", tmp / "mixed", config, replay=True, progress=progress)
        seconds = round(time.monotonic() - started, 1)
        (tmp / _MARKER).write_text(
            json.dumps(
                {
                    "schema_version": 1,
                    "key": final.name,
                    "config": dataclasses.asdict(config),
                    "build_seconds": seconds,
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
    return _world_at(final)
