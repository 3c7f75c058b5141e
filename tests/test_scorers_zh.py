"""The domain scorers on Chinese answers: each case is what a Chinese model writes."""

from __future__ import annotations

from typing import Any

import pytest

from collapse_eval.domain.scorers import parse_number, rouge_l, score_prediction, split_list_items


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("是", "yes", 1.0, True),
        ("否。", "no", 1.0, True),
        ("不是", "no", 1.0, True),
        ("是的，经纪人说明了中介费。", "yes", 1.0, False),
        ("答案是：否", "no", 1.0, False),
        # Not sure is no answer, not a "no" (不 and 无 start both).
        ("不确定", "no", 0.0, False),
        ("不知道", "no", 0.0, False),
        ("无法判断", "no", 0.0, False),
    ],
)
def test_yes_no_in_chinese(prediction: str, reference: Any, score: float, format_ok: bool) -> None:
    result = score_prediction("yes_no", prediction, reference)
    assert (result.score, result.format_ok) == (score, format_ok)


@pytest.mark.parametrize(
    ("prediction", "reference", "value", "format_ok"),
    [
        ("１２０平方米", 120, 120.0, True),
        ("350万", 3500000, 3500000.0, True),
        ("三", 3, 3.0, True),
        ("答：三套", 3, 3.0, True),
        ("两百万元", 2000000, 2000000.0, True),
        ("十五", 15, 15.0, True),
        ("一亿五千万", 150000000, 150000000.0, True),
        ("约120平米", 120, 120.0, False),
    ],
)
def test_number_in_chinese(prediction: str, reference: Any, value: float, format_ok: bool) -> None:
    result = score_prediction("number", prediction, reference)
    assert (result.score, result.format_ok, result.parsed) == (1.0, format_ok, value)


def test_chinese_numerals_are_read_only_where_they_open_the_answer() -> None:
    assert parse_number("三间") == 3.0
    # In prose 一 and 十 are mostly words (一下, 十分): only Arabic digits count there.
    assert parse_number("我想看一下，十分满意") is None
    assert parse_number("客户说一共要3间") == 3.0
    assert score_prediction("number", "万", 1).parsed is None


@pytest.mark.parametrize(
    ("prediction", "parsed", "score", "format_ok"),
    [
        ("租房", "租房", 1.0, True),
        ("租房。", "租房", 1.0, True),
        ("答案是：租房", "租房", 1.0, True),
        ("答案是租房", "租房", 1.0, True),
        ("标签：租房", "租房", 1.0, True),
        # A sentence is not a label, even without spaces.
        ("客户想要在上海租一套两室一厅的房子", "客户想要在上海租一套两室一厅的房子", 0.0, False),
    ],
)
def test_label_in_chinese(prediction: str, parsed: str, score: float, format_ok: bool) -> None:
    result = score_prediction("label", prediction, "租房")
    assert (result.parsed, result.score, result.format_ok) == (parsed, score, format_ok)


@pytest.mark.parametrize(
    ("prediction", "items"),
    [
        ("电梯、停车位、阳台", ["电梯", "停车位", "阳台"]),
        ("电梯，阳台；停车位", ["电梯", "阳台", "停车位"]),
        ("电梯、停车位和阳台", ["电梯", "停车位", "阳台"]),
        ("电梯、停车位以及阳台", ["电梯", "停车位", "阳台"]),
        ("1. 电梯\n2. 阳台", ["电梯", "阳台"]),
        # A lone "A和B" may be a name: not split.
        ("和平路和中山路口", ["和平路和中山路口"]),
    ],
)
def test_list_separators_in_chinese(prediction: str, items: list[str]) -> None:
    assert split_list_items(prediction) == items


def test_list_scores_a_chinese_answer_against_its_reference() -> None:
    result = score_prediction("list", "电梯、停车位和阳台", ["阳台", "电梯", "停车位"])
    assert (result.score, result.format_ok) == (1.0, True)
    assert score_prediction("list", "无", []).format_ok


@pytest.mark.parametrize(
    "prediction",
    [
        '｛"city"："上海"，"rooms"：２｝',
        "{“city”：“上海”，“rooms”：2}",
        '{"city"："上海"，"rooms"：2}',
    ],
)
def test_json_with_full_width_punctuation_is_read_but_not_format_ok(prediction: str) -> None:
    result = score_prediction("json", prediction, {"city": "上海", "rooms": 2})
    assert (result.score, result.format_ok, result.parsed) == (
        1.0,
        False,
        {"city": "上海", "rooms": 2},
    )


def test_json_with_chinese_values_in_valid_json_is_format_ok() -> None:
    result = score_prediction(
        "json", '{"city": "上海", "rooms": "两"}', {"city": "上海", "rooms": 2}
    )
    assert result.format_ok and result.score == 1.0


def test_span_and_free_text_compare_chinese_per_character() -> None:
    span = score_prediction("span", "浦东新区", "在浦东新区")
    assert span.score == pytest.approx(2 * 4 / (4 + 5))
    text = score_prediction("free_text", "客户想在浦东租两室的房子", "客户想租浦东的两室房子")
    assert 0.7 < text.score < 1.0 and text.format_ok
    assert rouge_l("客户想租房", "客户想租房") == 1.0
    assert rouge_l("客户想租房", "经纪人说明了费用") == 0.0
