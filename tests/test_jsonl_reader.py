"""records.iter_jsonl, the one JSONL reader of user files and of the build's own files:
line-numbered errors, raised or collected, and lines that end at "\\n" only."""

from __future__ import annotations

from pathlib import Path

import pytest

from collapse_eval.databuild.label import load_dialogues
from collapse_eval.databuild.pipeline import load_review, read_jsonl, write_jsonl
from collapse_eval.errors import InputError, InputErrors, UsageError
from collapse_eval.records import iter_jsonl


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_values_with_their_line_numbers_and_every_problem_collected(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "x.jsonl",
        b'\xef\xbb\xbf{"a": 1}\n\n\xff\xfe\n{"a": \n  \n[2]\n',
    )
    problems: list[InputError] = []
    assert list(iter_jsonl(path, problems)) == [(1, {"a": 1}), (6, [2])]
    assert [(p.line, p.message, p.hint) for p in problems] == [
        (3, "not UTF-8 text (invalid start byte at byte 0)", "save the file as UTF-8"),
        (4, "invalid JSON: Expecting value (column 7)", "each line must be one JSON object"),
    ]


def test_without_a_problem_list_the_first_bad_line_is_raised(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", b'{"a": 1}\n{oops}\n{"b": 2}\n')
    read = iter_jsonl(path)
    assert next(read) == (1, {"a": 1})
    with pytest.raises(InputError) as bad:
        next(read)
    assert str(bad.value) == (
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes "
        "(column 2) (each line must be one JSON object)"
    )


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        list(iter_jsonl(tmp_path / "none.jsonl"))
    with pytest.raises(InputError, match="is a directory, expected a .jsonl file"):
        list(iter_jsonl(tmp_path))


def test_a_build_file_keeps_line_separators_inside_its_strings(tmp_path: Path) -> None:
    # written with ensure_ascii=False, so U+2028, U+0085 and a lone CR stay raw: lines
    # must end at "\n" only (str.splitlines cut them, and the build could not read back
    # what it wrote)
    rows = [{"text": "one\u2028two\x85three\rfour"}, {"text": "next"}]
    path = tmp_path / "labeled.jsonl"
    write_jsonl(path, rows)
    assert path.read_bytes().count(b"\n") == 2
    assert read_jsonl(path) == rows


def test_a_broken_build_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "prompts.jsonl", b'{"id": "p1"}\n{"id": \n')
    with pytest.raises(InputError, match=r"prompts\.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_review_and_dialogue_files_say_what_is_wrong_on_which_line(tmp_path: Path) -> None:
    review = _write(tmp_path / "prompts.review.jsonl", b'{"id": "p1", "decision": "accept"}\nx\n')
    with pytest.raises(InputError) as bad:
        load_review(review, {"p1": {}})
    assert bad.value.line == 2 and bad.value.message.startswith("invalid JSON: Expecting value")
    dialogues = _write(
        tmp_path / "dialogues.jsonl",
        b'{"id": "d1", "text": "hi"}\n{"id": "d2", "text": \n\xff\n',
    )
    with pytest.raises(UsageError) as both:
        load_dialogues(dialogues)
    assert isinstance(both.value, InputErrors)
    assert [(p.line, p.message.split(" (")[0]) for p in both.value.problems] == [
        (2, "invalid JSON: Expecting value"),
        (3, "not UTF-8 text"),
    ]
