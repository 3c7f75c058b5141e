from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from collapse_eval.errors import CollapseEvalWarning, InputError, InputErrors
from collapse_eval.records import (
    ItemRecord,
    RecordWriter,
    RunManifest,
    TaskInfo,
    load_run,
    manifest_from_json,
    read_records,
    record_from_json,
    write_manifest,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "collapse_eval" / "schemas"


def _record(**over: object) -> ItemRecord:
    base = dict(
        suite="domain",
        task="rt",
        item_id="1",
        metric="score",
        score=1.0,
        task_type="intent",
        output_format="label",
        format_ok=True,
        prediction="<b>ok</b>",
        reference={"city": "上海"},
        prompt_hash="sha256:x",
        cluster="d1",
        metadata={"cluster": "d1"},
    )
    base.update(over)
    return ItemRecord(**base)  # type: ignore[arg-type]


def test_record_round_trip_through_jsonl(tmp_path: Path) -> None:
    records = [_record(item_id=str(i), score=float(i % 2)) for i in range(5)]
    with RecordWriter(tmp_path / "records.jsonl") as writer:
        writer.write_batch(records[:2])
        writer.write_batch(records[2:])
    assert read_records(tmp_path / "records.jsonl") == records
    first = json.loads((tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(first)[0] == "schema_version"
    assert first["reference"] == {"city": "上海"}


def test_records_and_manifest_match_published_schemas(tmp_path: Path) -> None:
    record_schema = json.loads((SCHEMAS / "record.schema.json").read_text())
    manifest_schema = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    jsonschema.validate(_record().to_json(), record_schema)
    jsonschema.validate(_record(cluster=None, metadata=None).to_json(), record_schema)
    manifest = RunManifest(
        model="m", engine="hf", tasks={"arc": TaskInfo(suite="general", primary_metric="acc", n=3)}
    )
    jsonschema.validate(manifest.to_json(), manifest_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_record().to_json(), "extra": 1}, record_schema)


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = RunManifest(
        model="ckpt",
        model_fingerprint="sha256:ab",
        engine="hf",
        engine_args={"dtype": "float32"},
        seed=3,
        complete=True,
        tasks={
            "arc_easy": TaskInfo(
                suite="general", primary_metric="acc", n=10, version="1.0", num_fewshot=0
            )
        },
    )
    write_manifest(tmp_path, manifest)
    (tmp_path / "records.jsonl").write_text("", encoding="utf-8")
    assert load_run(tmp_path).manifest == manifest


@pytest.mark.parametrize(
    ("obj", "field", "fragment"),
    [
        ({"suite": "domain", "task": "t", "item_id": "1", "metric": "m"}, "score", "missing"),
        (
            {"suite": "other", "task": "t", "item_id": "1", "metric": "m", "score": 1},
            "suite",
            "must be one of",
        ),
        (
            {"suite": "domain", "task": "t", "item_id": "1", "metric": "m", "score": "1"},
            "score",
            "must be a number",
        ),
        (
            {"suite": "domain", "task": "t", "item_id": "1", "metric": "m", "score": True},
            "score",
            "must be a number",
        ),
        (
            {"suite": "domain", "task": "", "item_id": "1", "metric": "m", "score": 1},
            "task",
            "non-empty",
        ),
        (
            {"suite": "domain", "task": "t", "item_id": "1", "metric": "m", "score": 1, "bogus": 2},
            "bogus",
            "unknown",
        ),
        (
            {
                "schema_version": 2,
                "suite": "domain",
                "task": "t",
                "item_id": "1",
                "metric": "m",
                "score": 1,
            },
            "schema_version",
            "records.jsonl schema_version 2 is newer than this collapse-eval",
        ),
    ],
)
def test_record_validation_names_file_line_field(obj: dict, field: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        record_from_json(obj, path="runs/a/records.jsonl", line=7)
    message = str(info.value)
    assert message.startswith("runs/a/records.jsonl:7: field '" + field + "'")
    assert fragment in message


def test_read_records_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    good = json.dumps(_record().to_json())
    path.write_text(
        "\n".join([good, "{not json", good, '{"suite": "domain"}']) + "\n", encoding="utf-8"
    )
    with pytest.raises(InputErrors) as info:
        read_records(path)
    lines = [p.line for p in info.value.problems]
    assert lines == [2, 3, 4]
    assert "duplicate record" in info.value.problems[1].message


def test_torn_last_line_is_dropped_and_repaired_on_append(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    good = json.dumps(_record().to_json())
    path.write_text(good + "\n" + good[:25], encoding="utf-8")  # killed mid-write
    with pytest.warns(CollapseEvalWarning, match=r"records\.jsonl:2: the last line is cut short"):
        assert len(read_records(path)) == 1
    with RecordWriter(path) as writer:
        writer.write_batch([_record(item_id="2")])
    assert [r.item_id for r in read_records(path)] == ["1", "2"]


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="field 'model'"):
        manifest_from_json({"schema_version": 1}, path="m.json")
    with pytest.raises(InputError, match="unknown field"):
        manifest_from_json({"schema_version": 1, "model": "x", "colour": 1}, path="m.json")
    with pytest.raises(InputError, match="tasks.arc"):
        manifest_from_json({"schema_version": 1, "model": "x", "tasks": {"arc": {}}}, path="m")


def test_primary_metric_falls_back_to_the_only_metric(tmp_path: Path) -> None:
    from tests.conftest import write_run

    run_dir = write_run(
        tmp_path / "r",
        "m",
        [
            {"suite": "general", "task": "a", "item_id": "1", "metric": "acc", "score": 1},
            {"suite": "general", "task": "b", "item_id": "1", "metric": "acc", "score": 1},
            {"suite": "general", "task": "b", "item_id": "1", "metric": "acc_norm", "score": 0},
        ],
        tasks={"c": {"suite": "general", "primary_metric": "f1"}},
    )
    run = load_run(run_dir)
    assert run.primary_metric("a") == "acc"
    assert run.primary_metric("b") is None
    assert run.primary_metric("c") == "f1"
