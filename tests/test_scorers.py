"""Each scorer on tricky, real-world-shaped model outputs (fences, prose, Chinese, empty)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_eval.domain import scorers
from collapse_eval.domain.scorers import (
    ScoreResult,
    extract_json_object,
    mixed_tokens,
    output_formats,
    parse_number,
    register_scorer,
    score_prediction,
    split_list_items,
)
from collapse_eval.errors import UsageError


def check(fmt: str, prediction: str, reference: Any, score: float, format_ok: bool) -> ScoreResult:
    result = score_prediction(fmt, prediction, reference)
    assert result.score == pytest.approx(score, abs=1e-9), (prediction, result)
    assert result.format_ok is format_ok, (prediction, result)
    return result


# ------------------------------------------------------------------ registry


def test_registry_has_every_design_format_in_order() -> None:
    assert output_formats() == ("label", "yes_no", "number", "json", "list", "span", "free_text")


def test_unknown_format_suggests_the_close_one() -> None:
    with pytest.raises(UsageError, match="Did you mean 'yes_no'"):
        score_prediction("yes-no", "yes", "yes")


def test_register_scorer_adds_a_format_and_refuses_duplicates() -> None:
    @register_scorer("_test_upper")
    def _upper(prediction: str, reference: Any) -> ScoreResult:
        return ScoreResult(float(prediction.isupper()), True)

    try:
        assert "_test_upper" in output_formats()
        assert score_prediction("_test_upper", "ABC", None).score == 1.0
        with pytest.raises(ValueError, match="already registered"):
            register_scorer("_test_upper")(_upper)
    finally:
        scorers._REGISTRY.pop("_test_upper")


def test_a_scorer_out_of_range_is_caught() -> None:
    register_scorer("_test_bad")(lambda p, r: ScoreResult(1.5, True))
    try:
        with pytest.raises(AssertionError, match="1.5"):
            score_prediction("_test_bad", "x", "x")
    finally:
        scorers._REGISTRY.pop("_test_bad")


# ------------------------------------------------------------------ label


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("price_inquiry", "price_inquiry", 1.0, True),
        (" Price-Inquiry.", "price_inquiry", 1.0, True),  # case, separator, full stop
        ("Answer: price_inquiry", "price_inquiry", 1.0, True),
        ("price_inquiry\nThe customer asks about the price.", "price_inquiry", 1.0, False),
        ("The customer is asking about the price, so price_inquiry", "price_inquiry", 0.0, False),
        ("投诉", "投诉", 1.0, True),
        ("标签：投诉", "投诉", 1.0, True),  # Chinese prefix, full-width colon
        ("咨询", "投诉", 0.0, True),  # well-formed but wrong
        ("```\ncomplaint\n```", "complaint", 1.0, False),  # read through the fence
        ("", "complaint", 0.0, False),
        ("   \n\n", "complaint", 0.0, False),
    ],
)
def test_label(prediction: str, reference: str, score: float, format_ok: bool) -> None:
    check("label", prediction, reference, score, format_ok)


# ------------------------------------------------------------------ yes_no


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("Yes", "yes", 1.0, True),
        ("yes.", True, 1.0, True),
        ("No, the agent did not disclose the fee.", "no", 1.0, False),
        ("True", "yes", 1.0, True),
        ("是", "是", 1.0, True),
        ("是的，该话术合规。", "yes", 1.0, False),
        ("否", "no", 1.0, True),
        ("不是", "是", 0.0, True),  # 不是 is "no", not read as 是
        ("不合规", "否", 1.0, True),
        ("对", "yes", 1.0, True),
        ("不对", "yes", 0.0, True),
        ("是否合规需要进一步确认", "yes", 0.0, False),  # restated question, no answer
        ("Maybe", "yes", 0.0, False),
        ("Nothing to add", "no", 0.0, False),  # "nothing" is not "no"
        ("Not sure", "no", 0.0, False),
        ("", "no", 0.0, False),
        ("ＹＥＳ", "yes", 1.0, True),  # full-width letters
    ],
)
def test_yes_no(prediction: str, reference: Any, score: float, format_ok: bool) -> None:
    check("yes_no", prediction, reference, score, format_ok)


# ------------------------------------------------------------------ number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,200,000", 1_200_000.0),
        ("$1,200.50", 1200.5),
        ("¥ 3.5k", 3500.0),
        ("350万", 3_500_000.0),
        ("预算大约350万元", 3_500_000.0),  # CJK right before the digits
        ("1.2亿", 120_000_000.0),
        ("2 billion", 2e9),
        ("-3.25", -3.25),
        ("1.5e-07", 1.5e-07),
        ("１２０平方米", 120.0),  # full-width digits
        ("5km", 5.0),  # k of km is not a multiplier
        ("3 rooms, 89 m²", 3.0),  # the first number counts
        ("no number here", None),
        ("", None),
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("3500000", 3500000, 1.0, True),
        ("350万", 3500000, 1.0, True),
        ("350万元", "350万", 1.0, True),
        ("3,500,000 yuan", 3500000, 1.0, True),
        ("89 m²", 89, 1.0, True),
        ("89.0000001", 89, 1.0, True),  # within relative tolerance 1e-6
        ("89.01", 89, 0.0, True),
        ("Answer: 120平方米", 120, 1.0, True),
        ("The area is 120 square metres.", 120, 1.0, False),
        ("3500000\n\nThe budget was stated in the second turn.", 3500000, 1.0, False),
        ("about three million", 3000000, 0.0, False),
        ("", 5, 0.0, False),
    ],
)
def test_number(prediction: str, reference: Any, score: float, format_ok: bool) -> None:
    check("number", prediction, reference, score, format_ok)


def test_number_parsed_value_is_reported() -> None:
    assert score_prediction("number", "约1.5万", 15000).parsed == 15000.0


# ------------------------------------------------------------------ json

REF = {"city": "北京", "district": "朝阳区", "budget": 3500000, "bedrooms": 2}


def test_json_exact_object() -> None:
    check(
        "json",
        '{"city": "北京", "district": "朝阳区", "budget": 3500000, "bedrooms": 2}',
        REF,
        1.0,
        True,
    )


def test_json_in_code_fence_with_prose_and_normalised_values() -> None:
    out = (
        'Sure! Here is the extraction:\n```json\n{"City": "北京 ", "district": "朝阳区",\n'
        ' "budget": "350万", "bedrooms": "2"}\n```\nLet me know if you need more.'
    )
    result = check("json", out, REF, 1.0, True)
    assert result.parsed["budget"] == "350万"


def test_json_field_level_f1() -> None:
    # 3 fields right, 1 wrong, 1 extra: precision 3/5, recall 3/4 -> F1 = 2/3.
    out = '{"city": "北京", "district": "海淀区", "budget": 3500000, "bedrooms": 2, "floor": 5}'
    check("json", out, REF, 2 / 3, True)


def test_json_nested_and_lists() -> None:
    ref = {"customer": {"name": "Li", "phone": "138"}, "needs": ["parking", "school"]}
    out = '{"customer": {"name": "li", "phone": 138}, "needs": ["School", "parking"]}'
    check("json", out, ref, 1.0, True)


def test_json_python_literal_scores_but_is_not_format_ok() -> None:
    check("json", "{'city': '北京', 'bedrooms': 2}", REF, 2 * (1 * 0.5) / 1.5, False)


@pytest.mark.parametrize("prediction", ["", "I cannot extract this.", "[1, 2]", '{"city": '])
def test_json_unparsable(prediction: str) -> None:
    check("json", prediction, REF, 0.0, False)


def test_json_finds_object_after_stray_brace() -> None:
    assert extract_json_object('use {x} then {"a": 1}') == {"a": 1}


def test_json_very_long_output_is_bounded() -> None:
    out = "{" * 50_000 + '{"city": "北京"}'
    # 200 candidate starts at most: the object after 50k stray braces is not searched for.
    assert score_prediction("json", out, {"city": "北京"}).score == 0.0
    prose = "x" * 100_000 + '{"city": "北京"}'
    assert score_prediction("json", prose, {"city": "北京"}).score == 1.0


# ------------------------------------------------------------------ list


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("a, b, c", ["a", "b", "c"]),
        ("- 北京\n- 上海\n- 和平区", ["北京", "上海", "和平区"]),  # 和 inside a name is kept
        ("1. parking\n2) school\n• metro", ["parking", "school", "metro"]),
        ("北京、上海，深圳", ["北京", "上海", "深圳"]),
        ('```json\n["a", "b"]\n```', ["a", "b"]),
        ("parking, school, and metro", ["parking", "school", "metro"]),
        ("Answer: x; y", ["x", "y"]),
    ],
)
def test_split_list_items(text: str, items: list[str]) -> None:
    assert split_list_items(text) == items


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("school, parking", ["parking", "school"], 1.0, True),
        ("Parking\nSchool\nSchool", ["parking", "school"], 1.0, True),  # case, duplicates
        ("parking, gym", ["parking", "school"], 0.5, True),
        ("parking", ["parking", "school", "metro", "gym"], 0.4, True),  # P=1, R=1/4
        ("无", [], 1.0, True),
        ("[]", [], 1.0, True),
        ("parking", [], 0.0, True),
        ("", ["parking"], 0.0, False),
        ('["学区", "地铁"]', ["地铁", "学区"], 1.0, True),
    ],
)
def test_list(prediction: str, reference: Any, score: float, format_ok: bool) -> None:
    check("list", prediction, reference, score, format_ok)


# ------------------------------------------------------------------ span


def test_mixed_tokens_split_cjk_per_character() -> None:
    assert mixed_tokens("Room 3, 朝阳区！") == ["room", "3", "朝", "阳", "区"]


@pytest.mark.parametrize(
    ("prediction", "reference", "score", "format_ok"),
    [
        ("Oak Street house", "the Oak Street house", 1.0, True),  # articles dropped
        ("the house on Oak Street", "Oak Street", 2 * (2 / 4) / (1 + 2 / 4), True),
        ("朝阳区", "朝阳区", 1.0, True),
        ("客户预算是三百万", "三百万", 2 * (3 / 8) * 1 / (3 / 8 + 1), True),  # per character
        ("Answer: 朝阳区\n因为客户说了", "朝阳区", 1.0, False),
        ("海淀区", ["朝阳区", "海淀区"], 1.0, True),  # several answers
        ("", "朝阳区", 0.0, False),
        ("!!!", "朝阳区", 0.0, True),
    ],
)
def test_span(prediction: str, reference: Any, score: float, format_ok: bool) -> None:
    check("span", prediction, reference, score, format_ok)


# ------------------------------------------------------------------ free_text


def test_free_text_matches_rouge_score_on_english() -> None:
    from rouge_score import rouge_scorer

    ref = "The customer wants a two bedroom flat near the metro."
    pred = "Customer wants a flat with two bedrooms near a metro station."
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure
    result = check("free_text", pred, ref, expected, True)
    assert 0.4 < result.score < 0.8


def test_free_text_chinese_is_scored_per_character() -> None:
    # LCS of 13 vs 13 characters is 客户 在朝阳区 买 两居室 = 10 -> F = 10/13.
    check("free_text", "客户想在朝阳区买一套两居室", "客户希望在朝阳区购买两居室", 10 / 13, True)
    # rouge-score's own tokenizer drops every CJK character: it would say 0.
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score("客户在朝阳区", "客户在朝阳区")
    assert default["rougeL"].fmeasure == 0.0


def test_free_text_edge_cases() -> None:
    check("free_text", "", "something", 0.0, False)
    check("free_text", "   ", "something", 0.0, False)
    # 7 tokens vs 6, all 6 in order: P = 6/7, R = 1, F = 12/13.
    check("free_text", "Summary: 客户 wants 朝阳区", "客户 wants 朝阳区", 12 / 13, True)
    long = "客户想买房 " * 2000
    result = score_prediction("free_text", long, "客户想买房")
    assert result.format_ok and 0.0 < result.score < 0.01 and not math.isnan(result.score)


# ------------------------------------------------------------------ all formats


@pytest.mark.parametrize("fmt", ["label", "yes_no", "number", "json", "list", "span", "free_text"])
@pytest.mark.parametrize("prediction", ["", "\u200b\ufeff", "🙂🙂🙂", "\x00\x01", "a" * 50_000])
def test_every_scorer_stays_in_range_on_junk(fmt: str, prediction: str) -> None:
    reference = {
        "label": "x",
        "yes_no": "yes",
        "number": 1,
        "json": {"a": 1},
        "list": ["a"],
        "span": "x",
        "free_text": "x y",
    }[fmt]
    result = score_prediction(fmt, prediction, reference)
    assert 0.0 <= result.score <= 1.0
    assert isinstance(result.format_ok, bool)


# ------------------------------------------------------------------ perfect answers

_WORD = st.text(alphabet=st.sampled_from("abcxyz_北京朝阳区客户"), min_size=1, max_size=8).filter(
    lambda w: w.strip("_")
)


@settings(max_examples=60, deadline=None)
@given(
    label=_WORD,
    number=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
    | st.integers(-(10**9), 10**9),
    items=st.lists(_WORD, min_size=1, max_size=5, unique=True),
    obj=st.dictionaries(
        st.sampled_from(["city", "budget", "rooms"]), _WORD | st.integers(0, 10**7), min_size=1
    ),
)
def test_the_reference_itself_is_a_perfect_well_formed_answer(
    label: str, number: float, items: list[str], obj: dict[str, Any]
) -> None:
    import json

    cases = [
        ("label", label, label),
        ("span", label, label),
        ("free_text", label, label),
        ("number", repr(number), number),
        ("list", ", ".join(items), items),
        ("list", json.dumps(items, ensure_ascii=False), items),
        ("json", json.dumps(obj, ensure_ascii=False), obj),
    ]
    for fmt, prediction, reference in cases:
        result = score_prediction(fmt, " " + prediction, reference)
        assert (result.score, result.format_ok) == (1.0, True), (fmt, prediction, result)


@pytest.mark.parametrize("output_format", ["list", "json"])
def test_deeply_nested_model_output_is_scored_not_a_crash(output_format: str) -> None:
    """A model can emit 100,000 brackets: JSON decoding hits Python's recursion limit."""
    from collapse_eval.domain.scorers import score_prediction

    deep = "[" * 100_000 + "]" * 100_000 if output_format == "list" else '{"a":' * 100_000
    reference: Any = [] if output_format == "list" else {"a": 1}
    result = score_prediction(output_format, deep, reference)
    assert 0.0 <= result.score <= 1.0
