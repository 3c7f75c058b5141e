"""The demo world's training-step sweep: one run, evenly spaced checkpoints that sort in
step order, the last one the world's domain-only fine-tune, cached by world and sweep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from collapse_eval.demo import sweep as sweep_module
from collapse_eval.demo.sweep import (
    SweepConfig,
    ensure_sweep,
    step_name,
    sweep_key,
    sweep_steps,
)
from collapse_eval.demo.train import WorldConfig, finetune
from collapse_eval.demo.world import world_key
from collapse_eval.report.steps import candidate_step


def _tiny() -> WorldConfig:
    """The test world cut to seconds (2 base steps, 6 fine-tuning steps)."""
    cut = {"base_steps": 2, "general_per_task": 50, "unlabelled_dialogues": 20}
    return dataclasses.replace(WorldConfig.test(), finetune_steps=6, **cut)


def test_steps_are_evenly_spaced_and_names_sort_in_step_order() -> None:
    assert sweep_steps(180, 12) == [15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180]
    assert sweep_steps(10, 3) == [3, 7, 10]
    with pytest.raises(ValueError, match="1 to 5 checkpoints"):
        sweep_steps(5, 6)
    names = [step_name(s, 180) for s in (5, 15, 180, 100)]
    assert names == ["step-0005", "step-0015", "step-0180", "step-0100"]
    assert sorted(names) == ["step-0005", "step-0015", "step-0100", "step-0180"]
    assert step_name(7, 123456) == "step-000007"
    assert [candidate_step(step_name(s, 180)) for s in (5, 180)] == [5, 180]


def test_the_sweep_is_one_run_whose_last_checkpoint_is_domain_only(
    tmp_path: Path, monkeypatch
) -> None:
    config = _tiny()
    messages: list[str] = []
    built = ensure_sweep(
        tmp_path, config=config, sweep=SweepConfig(checkpoints=3), progress=messages.append
    )
    world_root = tmp_path / world_key(config)
    assert built.root == world_root / f"sweep-{sweep_key(config, SweepConfig(checkpoints=3))}"
    assert [(c.name, c.step) for c in built.checkpoints] == [
        ("step-0002", 2),
        ("step-0004", 4),
        ("step-0006", 6),
    ]
    assert sorted(p.name for p in built.root.iterdir()) == [
        "step-0002",
        "step-0004",
        "step-0006",
        "sweep.json",
    ]
    marker = json.loads((built.root / "sweep.json").read_text())
    assert marker["schema_version"] == 1 and marker["steps"] == [2, 4, 6]
    assert sorted(marker["stages"]) == ["base", "sweep"]
    # the world's domain-only recipe, trained on its own: the same weights as the last
    # checkpoint; the earlier ones differ (they are earlier points of the run)
    alone = finetune(world_root / "base", tmp_path / "alone", config, replay=False)
    weights = [(c.checkpoint / "model.safetensors").read_bytes() for c in built.checkpoints]
    assert weights[-1] == (alone / "model.safetensors").read_bytes()
    assert len(set(weights)) == 3
    assert (built.checkpoints[0].checkpoint / "tokenizer.json").is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete sweep must not be trained again")

    monkeypatch.setattr(sweep_module, "finetune", no_training)
    assert ensure_sweep(tmp_path, config=config, sweep=SweepConfig(checkpoints=3)) == built
    # other settings are another sweep of the same world, in a directory of its own
    assert sweep_key(config, SweepConfig(checkpoints=2)) != sweep_key(
        config, SweepConfig(checkpoints=3)
    )
    assert sweep_key(config, SweepConfig(checkpoints=3, steps=6)) == sweep_key(
        config, SweepConfig(checkpoints=3)
    )
