"""Domain and training set loading: every problem reported once, with file:line:field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.domain.dataset import (
    DomainItem,
    domain_task_name,
    item_doc_hash,
    load_domain_set,
    load_training_set,
    validate_file,
)
from collapse_eval.errors import InputError, InputErrors


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "rt-0001",
        "task_type": "intent_classification",
        "output_format": "label",
        "prompt": "客户：这套房子多少钱？\n意图：",
        "reference": "price_inquiry",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def problems_of(path: Path) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(InputErrors) as info:
        load_domain_set(path)
    assert str(path) in str(info.value)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_valid_set_loads_every_kind_of_item(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "realestate.jsonl",
        [
            item(),
            item(
                id=2,
                output_format="json",
                reference={"city": "北京", "budget": 3500000},
                metadata={"cluster": 17, "dialogue": "d-17"},
            ),
            item(
                id="rt-3",
                prompt=...,
                output_format="yes_no",
                reference="是",
                messages=[
                    {"role": "system", "content": "你是合规审核员。"},
                    {"role": "user", "content": "这句话合规吗？"},
                ],
            ),
            item(id="rt-4", output_format="number", reference="350万"),
            item(id="rt-5", output_format="list", reference=["学区", "地铁"]),
            item(id="rt-6", choices=["price_inquiry", "complaint"], reference="complaint"),
            "",  # blank lines are allowed
            item(id="rt-7", output_format="span", reference=["朝阳区", "朝阳"]),
            item(id="rt-8", output_format="free_text", reference="客户想买两居室。", metadata=None),
        ],
    )
    items = load_domain_set(path)
    assert [i.id for i in items] == ["rt-0001", "2", "rt-3", "rt-4", "rt-5", "rt-6", "rt-7", "rt-8"]
    assert [i.line for i in items] == [1, 2, 3, 4, 5, 6, 8, 9]
    first, second, third = items[0], items[1], items[2]
    assert first.prompt == "客户：这套房子多少钱？\n意图：" and first.messages is None
    assert first.choices is None and first.metadata == {} and first.cluster is None
    assert second.cluster == "17" and second.metadata["dialogue"] == "d-17"
    assert third.prompt is None
    assert third.messages == (("system", "你是合规审核员。"), ("user", "这句话合规吗？"))
    assert items[5].choices == ("price_inquiry", "complaint")
    with pytest.raises(AttributeError):
        first.id = "x"  # type: ignore[misc]


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            item(id="a"),
            item(id="a", output_format="lable"),  # 2: dup id, typo
            '{"id": "c", "prompt": "x",',  # 3: bad JSON
            item(id="d", messages=[{"role": "user", "content": "x"}]),  # 4: both
            item(id="e", prompt=...),  # 5: neither
            item(id="f", prompt=..., messages=[{"role": "usr", "content": "x"}, "hi"]),  # 6
            item(id="g", output_format="number", reference="a lot"),  # 7
            item(id="h", output_format="json", reference=["city"]),  # 8
            item(id="i", choices=["a", "b"], reference="c"),  # 9
            item(id="j", choices="a or b", reference="a"),  # 10
            item(id=..., task_type=..., refrence="x"),  # 11
            [1, 2],  # 12
            item(id="k", output_format="yes_no", reference="maybe"),  # 13
            item(id="l", metadata=["cluster"]),  # 14
            item(id=True),  # 15
        ],
    )
    got = problems_of(path)
    expected_fields = [
        (2, "id"),
        (2, "output_format"),
        (3, None),
        (4, "prompt"),
        (5, "prompt"),
        (6, "messages[0].role"),
        (6, "messages[1]"),
        (7, "reference"),
        (8, "reference"),
        (9, "reference"),
        (10, "choices"),
        (11, "refrence"),
        (11, "id"),
        (11, "task_type"),
        (12, None),
        (13, "reference"),
        (14, "metadata"),
        (15, "id"),
    ]
    assert [(line, fld) for line, fld, _ in got] == expected_fields
    messages = {(line, fld): msg for line, fld, msg in got}
    assert messages[(2, "id")] == 'duplicate id "a" (first on line 1)'
    assert "Did you mean 'label'?" in messages[(2, "output_format")]
    assert messages[(3, None)].startswith("invalid JSON")
    assert "found both" in messages[(4, "prompt")]
    assert "found neither" in messages[(5, "prompt")]
    assert "Did you mean 'user'?" in messages[(6, "messages[0].role")]
    assert "must be a number" in messages[(7, "reference")]
    assert "JSON object" in messages[(8, "reference")]
    assert "not one of the choices" in messages[(9, "reference")]
    assert messages[(11, "id")] == "missing required field"
    assert "yes/no" in messages[(13, "reference")]


def test_error_text_names_file_line_field_and_hint(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [item(), item(id="rt-2", refrence="x")])
    with pytest.raises(InputErrors) as info:
        load_domain_set(path)
    text = str(info.value)
    assert f"{path}: 1 problem(s):" in text
    assert f"{path}:2: field 'refrence': unknown field (Did you mean 'reference'?)" in text
    assert info.value.exit_code == 2


def test_unknown_field_without_a_close_match_points_to_metadata(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [item(source="crm")])
    (problem,) = _problems(path)
    assert problem.field == "source" and problem.hint == "put extra information under 'metadata'"


def _problems(path: Path) -> list[InputError]:
    return validate_file(path)[2]


@pytest.mark.parametrize(
    ("fmt", "reference"),
    [
        ("label", ""),
        ("label", 3),
        ("number", "three"),
        ("number", True),
        ("number", [1]),
        ("json", "{}"),
        ("list", "a, b"),
        ("list", [{"a": 1}]),
        ("span", []),
        ("free_text", None),
        ("yes_no", "ok"),
    ],
)
def test_reference_type_is_checked_per_format(tmp_path: Path, fmt: str, reference: Any) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [item(output_format=fmt, reference=reference)])
    (problem,) = _problems(path)
    assert (problem.line, problem.field) == (1, "reference")


@pytest.mark.parametrize(
    ("fmt", "reference"),
    [
        ("number", 3.5),
        ("number", "1,200"),
        ("number", "¥350万"),
        ("yes_no", False),
        ("yes_no", "否"),
        ("list", []),
        ("list", ["a", 2]),
        ("json", {}),
        ("span", "x"),
    ],
)
def test_references_accepted_per_format(tmp_path: Path, fmt: str, reference: Any) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [item(output_format=fmt, reference=reference)])
    assert validate_file(path) == ("domain", 1, [])


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (["only"], "at least two"),
        (["a", "a", "b"], 'repeated choice(s): "a"'),
        (["a", ""], "non-empty strings"),
        (["a", 1], "non-empty strings"),
    ],
)
def test_bad_choices(tmp_path: Path, choices: Any, message: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [item(choices=choices, reference="a")])
    (problem,) = _problems(path)
    assert problem.field == "choices" and message in problem.message


def test_file_level_problems(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_domain_set(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert [p.message for p in problems_of_list(empty)] == ["no items: the file is empty"]
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps(item()).encode() + b"\n" + '{"id": "é"}'.encode("latin-1"))
    (problem,) = _problems(latin1)
    assert problem.line == 2 and "not UTF-8" in problem.message


def problems_of_list(path: Path) -> list[InputError]:
    with pytest.raises(InputErrors) as info:
        load_domain_set(path)
    return info.value.problems


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\ufeff".encode() + json.dumps(item()).encode() + b"\n")
    assert load_domain_set(path)[0].id == "rt-0001"


def test_task_name_and_doc_hash(tmp_path: Path) -> None:
    assert domain_task_name("tasks/realestate.jsonl") == "realestate"
    a = DomainItem(id="1", task_type="t", output_format="label", reference="x", prompt="p")
    same_content = DomainItem(
        id="2",
        task_type="t",
        output_format="label",
        reference="x",
        prompt="p",
        metadata={"cluster": "c"},
        line=9,
    )
    other_ref = DomainItem(id="1", task_type="t", output_format="label", reference="y", prompt="p")
    as_chat = DomainItem(
        id="1", task_type="t", output_format="label", reference="x", messages=(("user", "p"),)
    )
    assert item_doc_hash(a).startswith("sha256:") and len(item_doc_hash(a)) == 71
    assert item_doc_hash(a) == item_doc_hash(same_content)
    assert len({item_doc_hash(a), item_doc_hash(other_ref), item_doc_hash(as_chat)}) == 3


# ------------------------------------------------------------------ training sets


def test_training_set_loads(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"prompt": "客户：多少钱？\n意图：", "response": "price_inquiry"},
            {
                "id": "s2",
                "messages": [{"role": "user", "content": "抽取"}],
                "response": {"city": "北京"},
                "output_format": "json",
                "task_type": "extraction",
            },
        ],
    )
    first, second = load_training_set(path)
    assert (first.id, first.line, first.response, first.task_type) == (
        "line-1",
        1,
        "price_inquiry",
        None,
    )
    assert second.id == "s2" and second.messages == (("user", "抽取"),)
    assert second.response == {"city": "北京"} and second.output_format == "json"
    assert validate_file(path) == ("training", 2, [])


def test_training_set_problems(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"id": "a", "prompt": "x", "response": "y"},
            {"id": "a", "prompt": "x", "response": "y"},  # dup
            {"prompt": "x", "response": "  "},  # empty
            {"prompt": "x", "response": ["a"], "output_format": "json"},  # wrong type
            {"prompt": "x", "messages": [], "response": "y"},  # both
            {"prompt": "x", "response": "y", "output_format": "free-text"},  # typo
            {"prompt": "x", "response": None},  # null
        ],
    )
    with pytest.raises(InputErrors) as info:
        load_training_set(path)
    got = [(p.line, p.field) for p in info.value.problems]
    assert got == [
        (2, "id"),
        (3, "response"),
        (4, "response"),
        (5, "prompt"),
        (6, "output_format"),
        (7, "response"),
    ]
    kind, count, problems = validate_file(path)
    assert (kind, count, len(problems)) == ("training", 1, 6)


def test_lenient_training_load_accepts_empty_responses_only(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"id": "a", "prompt": "x", "response": ""},
            {"id": "b", "prompt": "x", "response": " \t"},
            {"id": "c", "prompt": "x", "response": "y"},
        ],
    )
    with pytest.raises(InputErrors) as info:
        load_training_set(path)
    assert [(p.line, p.field) for p in info.value.problems] == [(1, "response"), (2, "response")]
    items = load_training_set(path, allow_empty_response=True)
    assert [(i.id, i.response) for i in items] == [("a", ""), ("b", " \t"), ("c", "y")]
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"prompt": "x", "response": ""}, {"prompt": "x"}, {"prompt": "x", "response": None}],
    )
    with pytest.raises(InputErrors) as info:
        load_training_set(bad, allow_empty_response=True)
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "response"), (3, "response")]
    kind, count, problems = validate_file(path)  # validate keeps reporting them
    assert (kind, count, [p.line for p in problems]) == ("training", 1, [1, 2])


def test_validate_file_detects_the_kind(tmp_path: Path) -> None:
    domain = write_jsonl(tmp_path / "d.jsonl", [item(), "{oops"])
    kind, count, problems = validate_file(domain)
    assert (kind, count, [p.line for p in problems]) == ("domain", 1, [2])
    # Neither 'reference' nor 'response': treated as a domain set, so 'reference' is missing.
    neither = write_jsonl(tmp_path / "n.jsonl", [{"id": "1", "prompt": "x"}])
    kind, count, problems = validate_file(neither)
    assert kind == "domain" and count == 0
    assert {p.field for p in problems} == {"task_type", "output_format", "reference"}
