"""A training-step sweep of the demo world: checkpoints along one fine-tuning run.

``ensure_sweep()`` fine-tunes the demo base on the domain training split alone (the
``domain-only`` recipe, no general replay, so forgetting grows as training goes on) and
saves ``checkpoints`` checkpoints at evenly spaced steps, named so that they sort in
step order (``step-0015``, ``step-0030``, ...). It is one run with a save hook
(``train.finetune(on_step=...)``), not a training loop of its own: with the world's
step count, the last checkpoint has the weights of the world's ``domain-only``.

The sweep is cached beside the world it starts from, in
``<cache>/<world key>/sweep-<sweep key>/``, the sweep key hashing the world key and the
sweep settings; it is complete once its ``sweep.json`` is written. The run trains in a
scratch directory and its checkpoints are renamed into place at the end, so an
interrupted sweep leaves nothing half-written and is trained again as a whole (one run:
a checkpoint cannot resume another's optimizer state).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.demo.train import WorldConfig, finetune, save_checkpoint
from collapse_eval.demo.world import (
    _build_base_job,
    _remove_stale_scratch,
    default_cache_dir,
    timed,
    world_key,
)

__all__ = [
    "SweepCheckpoint",
    "SweepConfig",
    "TrainingSweep",
    "ensure_sweep",
    "step_name",
    "sweep_key",
    "sweep_steps",
]

SWEEP_MARKER = "sweep.json"
SWEEP_SCHEMA_VERSION = 1
_PREFIX = "step-"


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """How many checkpoints, over how many fine-tuning steps (None: the world's
    ``finetune_steps``, the run that gives ``domain-only``)."""

    checkpoints: int = 12
    steps: int | None = None

    def total(self, config: WorldConfig) -> int:
        return config.finetune_steps if self.steps is None else self.steps


@dataclass(frozen=True, slots=True)
class SweepCheckpoint:
    name: str
    step: int
    checkpoint: Path


@dataclass(frozen=True, slots=True)
class TrainingSweep:
    """A built sweep: the base it starts from and its checkpoints in step order."""

    base: Path
    root: Path
    checkpoints: tuple[SweepCheckpoint, ...]


def sweep_steps(total: int, checkpoints: int) -> list[int]:
    """``checkpoints`` evenly spaced steps of a ``total``-step run, the last = ``total``."""
    if not 1 <= checkpoints <= total:
        raise ValueError(f"a sweep of {total} steps can save 1 to {total} checkpoints")
    return [round(total * i / checkpoints) for i in range(1, checkpoints + 1)]


def step_name(step: int, total: int) -> str:
    """``step-0015``: zero-padded to the width of ``total`` (at least 4), so that names
    sort in step order as text too (the overview reads the step back from the name:
    report/steps.py)."""
    return f"{_PREFIX}{step:0{max(4, len(str(total)))}d}"


def sweep_key(config: WorldConfig, sweep: SweepConfig) -> str:
    """Hash of the world key and the sweep settings: the sweep's directory name."""
    settings = {"world": world_key(config), **dataclasses.asdict(sweep)}
    settings["steps"] = sweep.total(config)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _sweep_at(world_root: Path, config: WorldConfig, sweep: SweepConfig) -> TrainingSweep:
    root = world_root / f"sweep-{sweep_key(config, sweep)}"
    total = sweep.total(config)
    return TrainingSweep(
        base=world_root / "base",
        root=root,
        checkpoints=tuple(
            SweepCheckpoint(step_name(s, total), s, root / step_name(s, total))
            for s in sweep_steps(total, sweep.checkpoints)
        ),
    )


def _train_sweep(built: TrainingSweep, config: WorldConfig, say: Callable[[str], None]) -> None:
    """One domain-only run saving each checkpoint of ``built`` into a scratch directory,
    then renamed into place (the last one is the run's own final save)."""
    built.root.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(built.root)  # a killed sweep's (its pid is gone)
    scratch = Path(tempfile.mkdtemp(prefix=f".building-{os.getpid()}-", dir=built.root))
    try:
        *early, last = built.checkpoints
        by_step = {c.step: scratch / c.name for c in early}
        tokenizer: list[Any] = []

        def save(step: int, model: Any) -> None:
            if step in by_step:
                if not tokenizer:  # the base's tokenizer: fine-tuning does not change it
                    from transformers import AutoTokenizer

                    tokenizer.append(AutoTokenizer.from_pretrained(str(built.base)))
                save_checkpoint(model, tokenizer[0], by_step[step])

        finetune(
            built.base,
            scratch / last.name,
            config,
            replay=False,
            progress=say,
            steps=last.step,
            label="sweep",
            on_step=save,
        )
        for c in built.checkpoints:
            shutil.rmtree(c.checkpoint, ignore_errors=True)  # left by an interrupted rename
            os.replace(scratch / c.name, c.checkpoint)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure_sweep(
    cache_dir: Path | None = None,
    *,
    config: WorldConfig = WorldConfig.demo(),  # noqa: B008  (frozen, safe as a default)
    sweep: SweepConfig = SweepConfig(),  # noqa: B008
    progress: Callable[[str], None] | None = None,
) -> TrainingSweep:
    """Return the sweep of the demo world ``config``, training what is missing: the base
    (if the world has none yet; the world's other checkpoints are not needed) and the
    sweep's run. In this process, one thread (the weights are deterministic)."""
    say = progress or (lambda _msg: None)
    world_root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / world_key(
        config
    )
    built = _sweep_at(world_root, config, sweep)
    if (built.root / SWEEP_MARKER).is_file():
        return built
    stages: dict[str, dict[str, float]] = {}
    world_root.mkdir(parents=True, exist_ok=True)
    if not (built.base / "config.json").is_file():
        say(f"training the demo base in {world_root} (first run only)")
        stages["base"] = _build_base_job(world_root, config, say)
    names = ", ".join(c.name for c in built.checkpoints)
    say(f"training the sweep in {built.root}: {names}")
    stages["sweep"] = timed(lambda: _train_sweep(built, config, say))
    marker = {
        "schema_version": SWEEP_SCHEMA_VERSION,
        "world": world_key(config),
        "sweep": dataclasses.asdict(sweep),
        "steps": [c.step for c in built.checkpoints],
        "checkpoints": [c.name for c in built.checkpoints],
        "stages": stages,
    }
    tmp = built.root / f".{SWEEP_MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, built.root / SWEEP_MARKER)
    return built
