"""Graded-quality training sets of the demo: intended defects, concentrated by task type,
nested and deterministic, with monotone quality scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.demo import data
from collapse_eval.demo.graded import (
    DUPLICATE_SOURCES,
    TASK_GROUPS,
    corrupted_share,
    defect_counts,
    graded_name,
    graded_training_set,
    score_graded_sets,
)
from collapse_eval.demo.train import WorldConfig

LEVELS = WorldConfig.demo().graded_levels
# (empty, malformed, duplicate) per level, from the task types' sizes in the training
# split (next_action 246 + amenities 122; compliance 243 + entity_extraction 171 - 3
# sources; summary 238 + district 255 - 3; satisfaction 249 + area 164 - 3; intent 232).
COUNTS = {
    0: (0, 0, 0),
    1: (246, 122, 0),
    2: (246, 365, 168),
    3: (484, 365, 420),
    4: (484, 614, 581),
    5: (716, 614, 581),
}


def _defects(samples: list[dict]) -> dict[str, dict]:
    """id -> corrupted sample, for the samples with a defect."""
    return {s["id"]: s for s in samples if s.get("metadata", {}).get("defect")}


def test_six_levels_with_their_defect_counts_and_names() -> None:
    clean = data.domain_train_set()
    assert len(clean) == 1920 and LEVELS == (0, 1, 2, 3, 4, 5)
    names = [graded_name(level) for level in LEVELS]
    assert names == ["graded-00", "graded-19", "graded-41", "graded-66", "graded-87", "graded-100"]
    for level in LEVELS:
        samples = graded_training_set(level)
        assert [s["id"] for s in samples] == [s["id"] for s in clean]
        counts = defect_counts(samples)
        assert (counts["empty"], counts["malformed"], counts["duplicate"]) == COUNTS[level]
        changed = sum(a != b for a, b in zip(samples, clean, strict=True))
        assert changed == sum(COUNTS[level]) == round(corrupted_share(level) * 1920)


def test_levels_corrupt_whole_task_types_nested_and_deterministic() -> None:
    clean = {s["id"]: s for s in data.domain_train_set()}
    by_level = [graded_training_set(level) for level in LEVELS]
    assert by_level[3] == graded_training_set(3)  # deterministic
    for level, samples in zip(LEVELS, by_level, strict=True):
        corrupted_types = {task for group in TASK_GROUPS[:level] for task, _ in group}
        kinds = {task: kind for group in TASK_GROUPS for task, kind in group}
        for s in samples:
            original, defect = clean[s["id"]], s.get("metadata", {}).get("defect")
            task = original["task_type"]
            assert (defect is not None) <= (task in corrupted_types)
            if task in corrupted_types and kinds[task] != "duplicate":
                assert defect == kinds[task]  # every sample of the task type
        for task in corrupted_types:
            kept = [
                s
                for s in samples
                if clean[s["id"]]["task_type"] == task and "defect" not in s.get("metadata", {})
            ]
            assert len(kept) == (DUPLICATE_SOURCES if kinds[task] == "duplicate" else 0)
    # a higher level corrupts every sample a lower level does, in the same way
    for lower, higher in zip(by_level, by_level[1:], strict=False):
        low, high = _defects(lower), _defects(higher)
        assert set(low) < set(high)
        assert all(high[i] == s for i, s in low.items())
    with pytest.raises(ValueError, match="0 to 5"):
        graded_training_set(6)


def test_defects_are_what_they_say() -> None:
    clean = {s["id"]: s for s in data.domain_train_set()}
    for s in _defects(graded_training_set(5)).values():
        kind, original = s["metadata"]["defect"], clean[s["id"]]
        if kind == "empty":
            assert s["response"] == "" and s["prompt" if "prompt" in s else "messages"]
        elif kind == "malformed":
            # compliance and satisfaction answer on one line, amenities is a list: each
            # opens a code fence it never closes
            assert s["response"] == "```\n" + original["response"]
        else:
            body = {k: v for k, v in s.items() if k not in ("id", "metadata")}
            copies = [
                o for o in clean.values() if {k: v for k, v in o.items() if k != "id"} == body
            ]
            assert len(copies) == 1 and copies[0]["id"] != s["id"]
            assert copies[0]["task_type"] == original["task_type"]


def test_quality_flags_each_defect_and_is_monotone(tmp_path: Path) -> None:
    scored = score_graded_sets(LEVELS, tmp_path)
    overall = [s.overall for s in scored]
    assert overall == sorted(overall, reverse=True) and len(set(overall)) == len(LEVELS)
    assert overall[0] > 0.9 and overall[-1] < 0.75
    clean_flags = json.loads((tmp_path / "graded-00" / "quality.json").read_text())["flags"]
    assert clean_flags["truncated"] == 0
    for s in scored:
        quality = json.loads((s.quality_dir / "quality.json").read_text())
        empty, malformed, duplicate = COUNTS[s.level]
        flags = quality["flags"]
        assert flags["empty_response"] == empty
        assert flags["duplicate"] == duplicate
        assert flags["truncated"] == malformed  # every malformed target is an open fence
        assert quality["dimensions"]["completeness"] == pytest.approx(
            1 - (empty + malformed) / 1920, abs=1e-6
        )
        assert (s.quality_dir / "train.jsonl").is_file()
        assert (s.quality_dir / "samples.jsonl").is_file()
