"""The schemas of the typed formats are generated from their models, and what the writers
write validates against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collapse_eval.domain.dataset import DomainItem, TrainingItem
from collapse_eval.quality.contamination import find_contamination
from collapse_eval.schemas import generate

SCHEMAS = Path(generate.__file__).resolve().parent


@pytest.mark.parametrize("stem", sorted(generate.GENERATED))
def test_committed_schema_is_the_generated_one(stem: str) -> None:
    committed = (SCHEMAS / f"{stem}.schema.json").read_text(encoding="utf-8")
    assert committed == generate.generated_text(stem), (
        f"{stem}.schema.json is out of date: run python scripts/generate_schemas.py"
    )


def test_the_check_command_says_which_file_is_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main(["--check"]) == 1
    assert "record.schema.json: out of date" in capsys.readouterr().out
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "quality.schema.json").write_text("{}\n")
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("quality.schema.json: out of")
    assert generate.main(["--chek"]) == 2


def _schema(stem: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{stem}.schema.json").read_text())
    return loaded


def test_generated_quality_schema_is_stricter_than_the_hand_kept_one(tmp_path: Path) -> None:
    from collapse_eval.quality import assess

    items = [
        TrainingItem(id=str(i), line=i + 1, prompt=f"Say {w}.", messages=None, response=w,
                     task_type="echo", output_format="free_text", metadata={})
        for i, w in enumerate(["alpha", "beta", "gamma", "delta"])
    ]  # fmt: skip
    quality = assess(items).quality
    schema = _schema("quality")
    jsonschema.validate(quality, schema)
    for broken in (
        {**quality, "extra": 1},  # unknown keys were allowed
        {k: v for k, v in quality.items() if k != "context_reuse"},  # was optional
        {**quality, "stages": {**quality["stages"], "model": {"ran": "no"}}},  # was any object
        {**quality, "dataset": {**quality["dataset"], "distinct_3": 0.5}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_contamination_json_validates_and_keeps_its_key_order() -> None:
    context = " ".join(f"w{i}" for i in range(60))
    train = [
        TrainingItem(
            id="t1",
            line=1,
            prompt=f"{context}\n\nQ?",
            messages=None,
            response="a",
            task_type="qa",
            output_format="span",
            metadata={},
        )
    ]
    test = [DomainItem(id="e1", task_type="qa", output_format="span",
                       prompt=f"{context}\n\nQ?", messages=None, reference="a",
                       choices=None, metadata={}, line=1)]  # fmt: skip
    found = find_contamination(train, test).to_json("train.jsonl", "test.jsonl")
    jsonschema.validate(found, _schema("contamination"))
    assert list(found) == [
        "schema_version", "train", "test", "n_train", "n_test", "n_contaminated",
        "thresholds", "by_task_type", "pairs",
    ]  # fmt: skip
    assert found["by_task_type"] == {"qa": {"n_test": 1, "contaminated": 1, "context": 0,
                                            "prompt": 1}}  # fmt: skip
    assert found["pairs"][0]["matched"] == "prompt" and found["pairs"][0]["similarity"] == 1.0


def test_correlation_json_validates_with_its_dimension_rows(tmp_path: Path) -> None:
    from collapse_eval.correlate import correlate_table
    from tests.test_correlate_dimensions import _table

    report = correlate_table(_table(tmp_path), n_boot=200)
    jsonschema.validate(report, _schema("correlation"))
    assert list(report) == [
        "schema_version", "quality_dimension", "runs", "correlations", "by_dimension",
    ]  # fmt: skip
    row = report["by_dimension"][0]
    assert list(row)[:3] == ["dimension", "performance", "method"]
    assert "dimension" not in report["correlations"][0]
    assert all(type(c["estimate"]) in (float, type(None)) for c in report["correlations"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**report, "correlations": [{**row, "method": "tau"}]},
                            _schema("correlation"))  # fmt: skip


def test_build_json_validates_and_the_schema_refuses_unknown_blocks(tmp_path: Path) -> None:
    from tests.test_databuild import run_build, write_spec

    report = run_build(write_spec(tmp_path), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "build.json").read_text(encoding="utf-8"))
    assert written == report
    schema = _schema("build")
    jsonschema.validate(written, schema)
    assert list(written)[:3] == ["schema_version", "spec", "generator"]
    for broken in (
        {**written, "extra": 1},
        {**written, "counts": {**written["counts"], "test_bronze": 0}},
        {**written, "split": {**written["split"], "merged": [{"dialogues": [], "side": "x",
                                                               "links": []}]}},
    ):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
