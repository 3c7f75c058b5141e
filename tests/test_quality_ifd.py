"""IFD both ways: the instruction_following dimension (1 - IFD) and IFD itself per sample
and per task type, with each sample's place in the order IFD-based selection keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collapse_eval.domain.dataset import load_training_set
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.quality import assess, write_outputs
from collapse_eval.quality.model_based import ifd_percentiles, ifd_summary

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "quality.schema.json").read_text()
)
# log-likelihoods with and without the prompt: IFD a = 2/4, b = 6/5, c = 1/4, d = 3/4
SCORES = {
    ("P1", " rent"): -2.0,
    ("", " rent"): -4.0,
    ("P2", " buy now"): -6.0,
    ("", " buy now"): -5.0,
    ("P3", " rent"): -1.0,
    ("P4", " yes"): -3.0,
    ("", " yes"): -4.0,
}


def _rows() -> list[dict[str, Any]]:
    return [
        {"id": "a", "prompt": "P1", "response": "rent", "task_type": "t", "output_format": "label"},
        {"id": "b", "prompt": "P2", "response": "buy now", "task_type": "t"},
        {"id": "c", "prompt": "P3", "response": "rent", "task_type": "t", "output_format": "label"},
        {"id": "d", "prompt": "P4", "response": "yes", "task_type": "u", "output_format": "yes_no"},
    ]


def _assess(tmp_path: Path, model: FakeEngine | None) -> Any:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return assess(load_training_set(path), model=model)


def test_ifd_per_sample_and_per_task_type_with_the_selection_order(tmp_path: Path) -> None:
    result = _assess(tmp_path, FakeEngine("fake-ifd", scores=SCORES))
    by_id = {s.item.id: s for s in result.samples}
    assert {i: by_id[i].detail["ifd"] for i in "abcd"} == pytest.approx(
        {"a": 0.5, "b": 1.2, "c": 0.25, "d": 0.75}
    )
    # 1 - IFD: c follows its prompt best; IFD-based selection picks d first, drops b
    assert by_id["c"].dimensions["instruction_following"] == pytest.approx(0.75)
    assert by_id["b"].dimensions["instruction_following"] == 0.0
    assert {i: by_id[i].detail["ifd_percentile"] for i in "abcd"} == {
        "a": pytest.approx(2 / 3),
        "b": None,
        "c": pytest.approx(1 / 3),
        "d": 1.0,
    }
    quality = result.quality
    assert quality["ifd"] == {"n": 4, "mean": 0.675, "median": 0.625, "n_above_1": 1}
    assert quality["by_task_type"]["t"]["ifd"] == {
        "n": 3,
        "mean": pytest.approx(0.65),
        "median": 0.5,
        "n_above_1": 1,
    }
    assert quality["by_task_type"]["u"]["ifd"] == {
        "n": 1,
        "mean": 0.75,
        "median": 0.75,
        "n_above_1": 0,
    }
    jsonschema.validate(quality, SCHEMA)
    write_outputs(result, tmp_path / "out")
    lines = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    rows = {r["id"]: r for r in map(json.loads, lines)}
    assert rows["d"]["ifd"] == 0.75 and rows["d"]["ifd_percentile"] == 1.0
    assert rows["b"]["ifd_percentile"] is None


def test_no_model_no_ifd_keys(tmp_path: Path) -> None:
    quality = _assess(tmp_path, None).quality
    assert "ifd" not in quality and "ifd" not in quality["by_task_type"]["t"]
    jsonschema.validate(quality, SCHEMA)


def test_ifd_helpers_on_edge_cases() -> None:
    assert ifd_summary([]) == {"n": 0, "mean": None, "median": None, "n_above_1": 0}
    assert ifd_summary([None, 2.0, 0.5]) == {"n": 2, "mean": 1.25, "median": 1.25, "n_above_1": 1}
    # every IFD above 1: nothing is selectable; exactly 1 is kept (only > 1 is dropped)
    assert ifd_percentiles([1.5, None, 3.0]) == [None, None, None]
    assert ifd_percentiles([1.0, 0.2, 0.2]) == [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3)]
