"""Graded-quality training sets of the demo: intended defects, monotone quality scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.demo import data
from collapse_eval.demo.graded import (
    defect_counts,
    graded_name,
    graded_training_set,
    score_graded_sets,
)

LEVELS = (0.0, 0.25, 0.5, 0.75)


def _defects(samples: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in samples:
        kind = s.get("metadata", {}).get("defect")
        if kind:
            out.setdefault(kind, set()).add(s["id"])
    return out


def test_defect_counts_per_level() -> None:
    clean = data.domain_train_set()
    assert len(clean) == 1920
    assert defect_counts(1920, 0.25) == {"empty": 160, "malformed": 160, "duplicate": 160}
    assert defect_counts(10, 0.5) == {"empty": 2, "malformed": 2, "duplicate": 1}
    for level in LEVELS:
        samples = graded_training_set(level)
        assert [s["id"] for s in samples] == [s["id"] for s in clean]
        found = {kind: len(ids) for kind, ids in _defects(samples).items()}
        expected = {k: n for k, n in defect_counts(1920, level).items() if n}
        assert found == expected
        changed = sum(a != b for a, b in zip(samples, clean, strict=True))
        assert changed == round(level * 1920)
        assert graded_name(level) == f"graded-{int(level * 100):02d}"


def test_defects_are_what_they_say_nested_and_deterministic() -> None:
    clean = {s["id"]: s for s in data.domain_train_set()}
    samples = graded_training_set(0.5)
    assert samples == graded_training_set(0.5)
    for s in samples:
        kind = s.get("metadata", {}).get("defect")
        original = clean[s["id"]]
        if kind == "empty":
            assert s["response"] == "" and s["prompt" if "prompt" in s else "messages"]
        elif kind == "malformed" and s["output_format"] == "json":
            assert s["response"] == original["response"][:-1]
        elif kind == "malformed":
            assert s["response"] != original["response"]
        elif kind == "duplicate":
            body = {k: v for k, v in s.items() if k not in ("id", "metadata")}
            copies = [
                o for o in clean.values() if {k: v for k, v in o.items() if k != "id"} == body
            ]
            assert len(copies) == 1 and copies[0]["id"] != s["id"]
    # a higher level corrupts every sample a lower level does, in the same way
    lower, higher = _defects(graded_training_set(0.25)), _defects(samples)
    assert all(lower[kind] <= higher[kind] for kind in lower)
    with pytest.raises(ValueError, match="between 0 and 0.75"):
        graded_training_set(0.8)


def test_quality_flags_each_defect_and_is_monotone(tmp_path: Path) -> None:
    scored = score_graded_sets(LEVELS, tmp_path)
    overall = [s.overall for s in scored]
    assert overall == sorted(overall, reverse=True) and len(set(overall)) == 4
    assert overall[0] > 0.9 and overall[-1] < 0.8
    clean_flags = json.loads((tmp_path / "graded-00" / "quality.json").read_text())["flags"]
    for s in scored:
        quality = json.loads((s.quality_dir / "quality.json").read_text())
        expected = defect_counts(1920, s.level)
        flags = quality["flags"]
        assert flags["empty_response"] == expected["empty"]
        assert flags["duplicate"] == expected["duplicate"]
        # every malformed target is cut off (JSON brace, summary sentence, code fence)
        assert flags["truncated"] == clean_flags["truncated"] + expected["malformed"]
        assert quality["dimensions"]["completeness"] == pytest.approx(
            1 - (expected["empty"] + expected["malformed"]) / 1920, abs=1e-6
        )
        assert (s.quality_dir / "train.jsonl").is_file()
        assert (s.quality_dir / "samples.jsonl").is_file()
