"""records.jsonl through msgspec's decoder: the same records and the same messages as the
reference check (``record_from_json``), whichever road a line takes."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from collapse_eval.columns import read_record_columns
from collapse_eval.errors import InputError, InputErrors
from collapse_eval.formats import input_error
from collapse_eval.formats.record import RECORD_DECODER, RecordLine
from collapse_eval.records import read_records, record_from_json

GOOD = [
    {"schema_version": 1, "suite": "general", "task": "arc", "item_id": "1", "metric": "acc",
     "score": 1, "task_type": None, "output_format": None, "format_ok": None,
     "prediction": "a", "reference": "a", "prompt_hash": "sha256:p", "doc_hash": "sha256:d",
     "metadata": {"group": "mmlu"}},
    # no schema_version (taken as current), a cluster as an integer (not what the decoder
    # types: the reference check takes it), a JSON reference, unicode
    {"suite": "domain", "task": "rt", "item_id": "2", "metric": "score", "score": 0.25,
     "task_type": "intent", "output_format": "json", "format_ok": False, "cluster": 7,
     "reference": {"city": "上海"}, "prediction": "{\"city\": \"北京\"}"},
    {"suite": "domain", "task": "rt", "item_id": "3", "metric": "score", "score": 1e-05},
]  # fmt: skip


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_decoder_reads_what_the_reference_check_reads(tmp_path: Path) -> None:
    path = _write(tmp_path / "records.jsonl", [json.dumps(o, ensure_ascii=False) for o in GOOD])
    expected = [record_from_json(o, path=path, line=i) for i, o in enumerate(GOOD, start=1)]
    assert read_records(path) == expected
    assert [r.score for r in expected] == [1.0, 0.25, 1e-05]
    assert isinstance(read_records(path)[0].score, float)
    columns = read_record_columns(path)
    assert columns.items[("domain", "rt", "score")].clusters.tolist() == ["7", None]
    assert columns.items[("general", "arc", "acc")].scores.tolist() == [1.0]


def test_the_fast_decoder_takes_valid_lines_and_refuses_what_the_check_refuses() -> None:
    line = RECORD_DECODER.decode(json.dumps(GOOD[0]).encode())
    assert line == RecordLine(**GOOD[0])
    assert (line.suite, line.score, line.metadata) == ("general", 1.0, {"group": "mmlu"})
    for bad in ({"suite": "other"}, {"task": ""}, {"score": True}, {"format_ok": 1}, {"x": 1}):
        with pytest.raises(msgspec.ValidationError):
            RECORD_DECODER.decode(json.dumps({**GOOD[0], **bad}).encode())
        with pytest.raises(InputError):
            record_from_json({**GOOD[0], **bad})


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"task": ""}, "task", "must be a non-empty string"),
        ({"suite": "dom"}, "suite", "must be one of domain, general, got 'dom'"),
        ({"score": "1"}, "score", "must be a number, got '1'"),
        ({"format_ok": "yes"}, "format_ok", "must be true, false or null"),
        ({"predicton": "a"}, "predicton", "unknown field(s): predicton"),
        ({"schema_version": 2}, "schema_version", "newer"),
    ],
)
def test_a_bad_line_names_file_line_and_field(
    tmp_path: Path, change: dict[str, object], field: str | None, message: str
) -> None:
    bad = json.dumps({**GOOD[2], **change})
    path = _write(tmp_path / "records.jsonl", [json.dumps(GOOD[0]), bad])
    for read in (read_records, read_record_columns):
        with pytest.raises(InputError) as caught:
            read(path)
        assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), 2, field)
        assert message in str(caught.value)
        assert str(caught.value).startswith(f"{path}:2")


def test_every_bad_line_is_reported_at_once_and_a_torn_tail_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    good = [json.dumps(o) for o in GOOD]
    path.write_text(
        "\n".join([good[0], '{"suite": 1}', "not json", good[1], '{"suite": "dom']),
        encoding="utf-8",
    )
    for read in (read_records, read_record_columns):
        with pytest.raises(InputErrors) as caught, pytest.warns(match=":5: the last line is cut"):
            read(path)
        problems = caught.value.problems
        assert [(p.line, p.field) for p in problems] == [(2, "task"), (3, None)]
        assert "invalid JSON" in problems[1].message


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    inner: dict[str, Inner]


def test_input_error_turns_msgspec_paths_into_fields() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'{"inner": {"a": {"n": "x"}}}', type=Outer)
    error = input_error("q.json", caught.value, line=3)
    assert (error.path, error.line, error.field) == ("q.json", 3, "inner[...].n")
    assert error.message == "Expected `int`, got `str`"
    with pytest.raises(msgspec.DecodeError) as bad_json:
        msgspec.json.decode(b"{", type=Outer)
    assert input_error("q.json", bad_json.value).message.startswith("invalid JSON: ")
    for text, field in (
        (b'{"inner": {}, "x": 1}', "x"),
        (b'{"inner": {"a": {"n": 1, "m": 2}}}', "inner[...].m"),
    ):
        with pytest.raises(msgspec.ValidationError) as unknown:
            msgspec.json.decode(text, type=Outer)
        error = input_error("q.json", unknown.value)
        assert (error.field, error.message) == (field, "unknown field")


def test_a_line_nested_too_deeply_is_invalid_json_for_compare_too(tmp_path: Path) -> None:
    # compare's reader called json.loads directly, and a RecursionError escaped as a
    # traceback; both readers now share decode_json's message.
    path = _write(tmp_path / "records.jsonl", [json.dumps(GOOD[0]), "[" * 100_000])
    for read in (read_records, read_record_columns):
        with pytest.raises(InputError) as caught:
            read(path)
        assert (caught.value.line, caught.value.message) == (
            2,
            "invalid JSON: nested too deeply (over ~1000 levels)",
        )


def test_the_record_model_and_item_record_have_the_same_fields() -> None:
    import dataclasses

    from collapse_eval.records import ItemRecord

    assert set(RecordLine.__struct_fields__) == {f.name for f in dataclasses.fields(ItemRecord)}
