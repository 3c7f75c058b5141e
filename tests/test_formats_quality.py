"""read_quality_scores: what correlate reads of a quality.json, typed and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.errors import InputError
from collapse_eval.formats.quality import QualityScores
from collapse_eval.quality.report import load_quality, read_quality_scores


def _file(tmp_path: Path, body: dict[str, object]) -> Path:
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_a_hand_written_file_with_only_the_scores_is_read(tmp_path: Path) -> None:
    body = {"schema_version": 1, "overall": 1, "dimensions": {"format": 0.5}, "note": "x"}
    path = _file(tmp_path, body)
    assert read_quality_scores(tmp_path) == QualityScores(1.0, {"format": 0.5}, 1)
    assert load_quality(path) == body  # the public reader still returns the object as is


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        # accepted before: correlate took 85 as a quality score, and skipped "high"
        ({"overall": 85, "dimensions": {}}, "overall", "Expected `float` <= 1.0"),
        ({"overall": 0.5, "dimensions": {"format": "high"}}, "dimensions[...]", "got `str`"),
        ({"dimensions": {}}, "overall", "missing required field"),
        ({"overall": 0.5, "dimensions": {"format": -0.1}}, "dimensions[...]", ">= 0"),
    ],
)
def test_scores_outside_0_1_or_missing_are_refused_with_the_field(
    tmp_path: Path, body: dict[str, object], field: str, message: str
) -> None:
    path = _file(tmp_path, {"schema_version": 1, **body})
    for read in (read_quality_scores, load_quality):
        with pytest.raises(InputError) as caught:
            read(path)
        assert (caught.value.path, caught.value.field) == (str(path), field)
        assert message in caught.value.message
