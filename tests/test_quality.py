"""collapse-eval quality: planted defects counted exactly, IFD by hand, outputs, CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from collapse_eval.cache import RequestCache
from collapse_eval.cli import cli
from collapse_eval.demo.data import domain_train_set
from collapse_eval.domain.dataset import load_training_set
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import InputError
from collapse_eval.quality import assess, assess_file, load_quality, write_outputs
from collapse_eval.quality.dataset_level import distinct_n, normalised_entropy
from collapse_eval.quality.judge import parse_judgement
from collapse_eval.quality.rules import copies_prompt, is_truncated, robust_z, run_rules

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "quality.schema.json").read_text()
)
REQUIRED_FLAGS = (
    "invalid_format",
    "empty_response",
    "duplicate",
    "near_duplicate",
    "truncated",
    "copies_prompt",
)
XSS = "<script>alert(1)</script>"


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


# Two demo samples that really are near duplicates of earlier ones (their dialogues differ
# in one slot); left out so that the fixture's only defects are the planted ones.
_GENUINE_NEAR_DUPLICATES = {"re-train-0278", "re-train-0279"}


def _clean_rows(n: int = 240) -> list[dict[str, Any]]:
    """Demo training samples with a plain prompt (the first n)."""
    rows = [
        copy.deepcopy(r)
        for r in domain_train_set()
        if "prompt" in r and r["id"] not in _GENUINE_NEAR_DUPLICATES
    ]
    return rows[:n]


def _first(rows: list[dict[str, Any]], task_type: str, skip: int = 0) -> dict[str, Any]:
    return [r for r in rows if r["task_type"] == task_type][skip]


# Planted defects and the flag counts they must give (each planted sample gets exactly the
# listed hard flags; the truncated JSON object is also invalid JSON).
EXPECTED = {
    "invalid_format": 4,
    "empty_response": 2,
    "duplicate": 3,
    "near_duplicate": 2,
    "truncated": 2,
    "copies_prompt": 2,
}


def _planted_rows() -> list[dict[str, Any]]:
    rows = _clean_rows()
    # invalid format: prose instead of JSON, wrong JSON keys, a label nobody else uses
    _first(rows, "entity_extraction", 0)["response"] = "city: Berlin, rooms: 3"
    _first(rows, "entity_extraction", 1)["response"] = '{"town": "Berlin", "size": 3}'
    _first(rows, "intent_classification", 0)["response"] = "rental"
    # truncated: a JSON object cut off (also invalid format) and a summary cut mid-sentence
    _first(rows, "entity_extraction", 2)["response"] = '{"city": "Berlin", "rooms": 3, "bud'
    _first(rows, "summary", 0)["response"] = "The customer wants to rent a 3-room flat in"
    # empty: content-free responses (the loader already rejects whitespace-only ones)
    _first(rows, "summary", 1)["response"] = "..."
    _first(rows, "district", 0)["response"] = "```\n```"
    # prompt copies: the whole prompt, and the dialogue without the question
    for skip in (2, 3):
        row = _first(rows, "summary", skip)
        dialogue = row["prompt"].split("\n\nQuestion")[0]
        row["response"] = dialogue if skip == 2 else "\n".join(dialogue.splitlines()[:2])
    # exact duplicates (new ids): one sample three times (2 repeats), another twice (1)
    a, b = _first(rows, "next_action", 0), _first(rows, "district", 1)
    rows += [{**a, "id": "dup-a1"}, {**a, "id": "dup-a2"}, {**b, "id": "dup-b1"}]
    # near duplicates: one word of the response changed, two words added to the prompt
    c, d = _first(rows, "summary", 4), _first(rows, "summary", 5)
    rows.append({**c, "id": "near-c", "response": c["response"].replace("customer", "client")})
    longer = d["prompt"].replace("\nAnswer:", " Be brief.\nAnswer:")
    rows.append({**d, "id": "near-d", "prompt": longer})
    return rows


def test_clean_base_has_no_flags(tmp_path: Path) -> None:
    items = load_training_set(_write(tmp_path / "train.jsonl", _clean_rows()))
    assert [r.flags for r in run_rules(items) if r.flags] == []


def test_planted_defects_counted_exactly(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", _planted_rows())
    result = assess_file(path)
    counts = result.quality["flags"]
    assert {k: counts[k] for k in REQUIRED_FLAGS} == EXPECTED
    by_id = {s.item.id: s.flags for s in result.samples}
    assert by_id["dup-a1"] == ["duplicate"] and by_id["dup-b1"] == ["duplicate"]
    assert by_id["near-c"] == ["near_duplicate"] and by_id["near-d"] == ["near_duplicate"]
    assert result.quality["n_samples"] == 245
    # hard-flagged samples: 4 + 2 + 3 + 2 + 2 + 2 minus the JSON counted twice
    assert result.quality["n_hard_flagged"] == 14
    assert result.quality["stages"]["model"]["ran"] is False
    jsonschema.validate(result.quality, SCHEMA)


def test_rule_dimensions_and_overall(tmp_path: Path) -> None:
    result = assess_file(_write(tmp_path / "train.jsonl", _planted_rows()))
    dims = result.quality["dimensions"]
    n = 245
    assert dims["format"] == pytest.approx(1 - 4 / n, abs=1e-6)
    assert dims["completeness"] == pytest.approx(1 - 4 / n, abs=1e-6)
    assert dims["uniqueness"] == pytest.approx(1 - 5 / n, abs=1e-6)
    weights = result.quality["weights"]
    expected = sum(weights[k] * v for k, v in dims.items()) / sum(weights[k] for k in dims)
    assert result.quality["overall"] == pytest.approx(expected, abs=1e-6)
    assert set(result.quality["by_output_format"]) >= {"json", "label", "free_text"}
    assert result.quality["by_task_type"]["entity_extraction"]["flags"]["invalid_format"] == 3


# ------------------------------------------------------------------ unit checks


def test_truncation_and_copy_rules(tmp_path: Path) -> None:
    items = load_training_set(
        _write(
            tmp_path / "t.jsonl",
            [
                {
                    "prompt": "Q",
                    "response": "A full sentence that ends here.",
                    "output_format": "free_text",
                },
                {
                    "prompt": "Q",
                    "response": "A sentence that stops right in the",
                    "output_format": "free_text",
                },
                {"prompt": "Q", "response": '["a", "b"', "output_format": "list"},
                {"prompt": "Q", "response": '```json\n{"a": 1}', "output_format": "json"},
            ],
        )
    )
    assert [is_truncated(i, str(i.response)) for i in items] == [False, True, True, True]
    prompt = "Customer: I want to rent a flat in Berlin with a balcony and parking please."
    assert copies_prompt(prompt, prompt)
    assert copies_prompt(prompt, "I want to rent a flat in Berlin with a balcony and parking")
    assert not copies_prompt(prompt, "Berlin")
    assert not copies_prompt(prompt, "The customer wants to rent a flat in Berlin.")
    # a short prompt that happens to be a substring of the answer is not copied
    assert not copies_prompt("Hi", "This is a complete and fine answer to the question.")
    assert copies_prompt("Hi", "hi")


def test_robust_z_and_dataset_numbers() -> None:
    assert robust_z([1, 2, 3, 4, 100])[-1] == pytest.approx(0.6745 * 97 / 1)
    assert robust_z([5, 5, 5]) == [0.0, 0.0, 0.0]
    assert normalised_entropy(["a", "b", "a", "b"]) == pytest.approx(1.0)
    assert normalised_entropy(["a", "a", "a", "b"]) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    )
    assert distinct_n(["a b a", "a b"], 1) == pytest.approx(2 / 5)
    assert distinct_n(["a b a", "a b"], 2) == pytest.approx(2 / 3)


def test_parse_judgement() -> None:
    ok = parse_judgement(
        'x {"accuracy": 4, "relevance": "5", "faithfulness": 3, "rationale": "fine"}'
    )
    assert ok.scores == {"accuracy": 4, "relevance": 5, "faithfulness": 3}
    assert ok.rationale == "fine"
    assert ok.dimension_scores()["judge_accuracy"] == pytest.approx(0.75)
    loose = parse_judgement("Accuracy: 2\nRelevance - 3\nfaithfulness: 1")
    assert loose.scores == {"accuracy": 2, "relevance": 3, "faithfulness": 1}
    assert parse_judgement("no idea").scores is None
    assert parse_judgement('{"accuracy": 9, "relevance": 3, "faithfulness": 3}').scores is None


# ------------------------------------------------------------------ model-based (fake engine)


def _ifd_rows() -> list[dict[str, Any]]:
    return [
        {"id": "a", "prompt": "P1", "response": "rent", "task_type": "t", "output_format": "label"},
        {"id": "b", "prompt": "P2", "response": "buy now", "task_type": "t"},
        {"id": "c", "prompt": "P3", "response": "rent", "task_type": "t", "output_format": "label"},
    ]


def test_ifd_equals_hand_computation(tmp_path: Path) -> None:
    scores = {
        ("P1", " rent"): -2.0,
        ("", " rent"): -4.0,
        ("P2", " buy now"): -6.0,
        ("", " buy now"): -5.0,
        ("P3", " rent"): -1.0,
    }
    engine = FakeEngine("fake-ifd", scores=scores)
    result = assess(load_training_set(_write(tmp_path / "t.jsonl", _ifd_rows())), model=engine)
    by_id = {s.item.id: s for s in result.samples}
    a, b, c = by_id["a"].detail, by_id["b"].detail, by_id["c"].detail
    # IFD = mean NLL with the prompt / mean NLL without it (same tokens: ratio of sums)
    assert a["ifd"] == pytest.approx((2.0 / 1) / (4.0 / 1))
    assert a["nll"] == pytest.approx(2.0) and a["ppl"] == pytest.approx(math.exp(2.0), rel=1e-6)
    assert b["ifd"] == pytest.approx((6.0 / 2) / (5.0 / 2), abs=1e-6)  # "buy now": 2 words
    assert b["nll"] == pytest.approx(3.0)
    assert c["ifd"] == pytest.approx(0.25)
    assert by_id["a"].dimensions["instruction_following"] == pytest.approx(0.5)
    assert by_id["c"].dimensions["instruction_following"] == pytest.approx(0.75)
    # IFD > 1: the prompt does not help -> ifd_high (a soft flag: dimension 0, not dropped)
    assert by_id["b"].flags == ["ifd_high"] and not by_id["b"].hard
    assert by_id["b"].dimensions["instruction_following"] == 0.0
    assert result.quality["flags"]["ifd_high"] == 1
    assert result.quality["dimensions"]["instruction_following"] == pytest.approx(
        (0.5 + 0.0 + 0.75) / 3, abs=1e-6
    )


def test_model_stage_only_sees_rule_passers_and_caches(tmp_path: Path) -> None:
    rows = _ifd_rows() + [{"id": "d", "prompt": "P4", "response": "...", "task_type": "t"}]
    items = load_training_set(_write(tmp_path / "t.jsonl", rows))
    cache = RequestCache(tmp_path / "cache")
    first = assess(items, model=FakeEngine("fake-ifd"), cache=cache)
    by_id = {s.item.id: s for s in first.samples}
    assert by_id["d"].flags == ["empty_response"] and "ifd" not in by_id["d"].detail
    # 3 samples x 2 requests, the unconditional " rent" asked twice but sent once
    assert first.quality["cost"]["model"]["calls"] == 5
    again = FakeEngine("fake-ifd")
    second = assess(items, model=again, cache=cache)
    assert again.calls == []
    model_cost = second.quality["cost"]["model"]
    assert (model_cost["calls"], model_cost["tokens"], model_cost["cached"]) == (0, 0, 6)
    assert [s.detail.get("ifd") for s in second.samples] == [
        s.detail.get("ifd") for s in first.samples
    ]


def test_judge_with_fake_engine_counts_unparseable(tmp_path: Path) -> None:
    answers = iter(['{"accuracy": 5, "relevance": 4, "faithfulness": 2, "rationale": "ok"}', "??"])
    engine = FakeEngine("judge", answers=lambda prompt: next(answers))
    rows = _ifd_rows()[:2]
    result = assess(load_training_set(_write(tmp_path / "t.jsonl", rows)), judge_engine=engine)
    first, second = result.samples
    assert first.detail["judge"] == {
        "accuracy": 5,
        "relevance": 4,
        "faithfulness": 2,
        "rationale": "ok",
    }
    assert first.flags == ["judge_low"]
    assert first.dimensions["judge_faithfulness"] == pytest.approx(0.25)
    assert second.flags == ["judge_unparseable"]
    assert result.quality["stages"]["judge"]["unparseable"] == 1
    assert result.quality["cost"]["judge"]["calls"] == 2
    assert result.quality["dimensions"]["judge_accuracy"] == pytest.approx(1.0)


def test_judge_sample_is_seeded(tmp_path: Path) -> None:
    items = load_training_set(_write(tmp_path / "t.jsonl", _clean_rows(40)))
    picked = [
        [
            s.item.id
            for s in assess(items, judge_engine=FakeEngine("j"), judge_sample=5, seed=s).samples
            if s.stage == "judge"
        ]
        for s in (1, 1, 2)
    ]
    assert len(picked[0]) == 5 and picked[0] == picked[1] != picked[2]


# ------------------------------------------------------------------ a real engine (tiny model)


@pytest.mark.slow
def test_ifd_and_judge_through_tiny_hf_model(tiny_model: Path, tmp_path: Path) -> None:
    from collapse_eval.engines.hf import HFEngine

    rows = _clean_rows(12)
    items = load_training_set(_write(tmp_path / "t.jsonl", rows))
    cache = RequestCache(tmp_path / "cache")
    engine = HFEngine(str(tiny_model), batch_size=8)
    first = assess(items, model=engine, judge_engine=engine, cache=cache)
    sample = first.samples[0]
    context, continuation = rows[0]["prompt"], " " + rows[0]["response"]
    (cond, _), (uncond, _) = engine.loglikelihood([(context, continuation), ("", continuation)])
    n_tokens = len(engine.tokenizer(continuation, add_special_tokens=False)["input_ids"])
    assert sample.detail["ifd"] == pytest.approx(cond / uncond, abs=1e-6)
    assert sample.detail["nll"] == pytest.approx(-cond / n_tokens, abs=1e-6)
    cost = first.quality["cost"]
    judged = first.quality["stages"]["judge"]["n_judged"]
    assert judged == sum(not s.hard for s in first.samples) > 0
    assert cost["judge"]["calls"] == judged and cost["judge"]["tokens"] > 0
    assert cost["model"]["calls"] > 0 and cost["model"]["tokens"] > 0
    unparseable = sum("judge_unparseable" in s.flags for s in first.samples)
    assert first.quality["stages"]["judge"]["unparseable"] == unparseable
    # a re-run answers everything from the cache: zero calls reach the model
    calls: list[int] = []
    original_generate, original_ll = engine.generate, engine.loglikelihood
    engine.generate = lambda reqs: calls.append(len(reqs)) or original_generate(reqs)  # type: ignore[method-assign]
    engine.loglikelihood = lambda reqs: calls.append(len(reqs)) or original_ll(reqs)  # type: ignore[method-assign]
    second = assess(items, model=engine, judge_engine=engine, cache=cache)
    assert calls == []
    assert (
        second.quality["cost"]["judge"]["calls"] == 0
        and second.quality["cost"]["judge"]["tokens"] == 0
    )
    assert second.quality["cost"]["judge"]["cached"] == judged
    assert second.quality["dimensions"] == first.quality["dimensions"]
    engine.close()


# ------------------------------------------------------------------ outputs and CLI


def test_outputs_schema_html_escaped_and_load_quality(tmp_path: Path) -> None:
    rows = _planted_rows()
    rows[0]["response"] = XSS + " " + rows[0]["response"]
    path = _write(tmp_path / "train.jsonl", rows)
    written = write_outputs(assess_file(path), tmp_path / "out")
    quality = load_quality(tmp_path / "out")
    jsonschema.validate(quality, SCHEMA)
    assert quality == load_quality(written["quality"])
    html = written["html"].read_text("utf-8")
    assert XSS not in html and "&lt;script&gt;" in html
    assert "data:image/png;base64," in html and 'src="plots/' not in html
    assert (tmp_path / "out" / "plots" / "dimensions.png").stat().st_size > 0
    assert (tmp_path / "out" / "plots" / "flags.png").stat().st_size > 0
    samples = [json.loads(x) for x in written["samples"].read_text("utf-8").splitlines()]
    assert len(samples) == 245 and {"id", "line", "score", "flags", "dimensions"} <= set(samples[0])


def test_load_quality_checks_versions_like_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"schema_version": 2, "overall": 1, "dimensions": {}}))
    with pytest.raises(InputError, match="quality.json schema_version 2 is newer than") as info:
        load_quality(path)
    assert info.value.field == "schema_version" and "upgrade collapse-eval" in str(info.value)
    path.write_text(json.dumps({"overall": 1, "dimensions": {}}))
    with pytest.raises(InputError, match="missing required field") as info:
        load_quality(path)
    assert info.value.field == "schema_version"
    path.write_text(json.dumps({"schema_version": 1, "overall": 0.5, "dimensions": []}))
    with pytest.raises(InputError, match="Expected `object`, got `array`") as info:
        load_quality(path)
    assert info.value.field == "dimensions"


def test_ifd_high_is_soft_kept_out_and_judged(tmp_path: Path) -> None:
    """A weak scoring model flags many good samples ifd_high: they lose score, not their
    place (they reach the judge and --keep-out keeps them)."""
    scores = {("P1", " rent"): -2.0, ("", " rent"): -4.0, ("P2", " buy now"): -6.0}
    scores |= {("", " buy now"): -5.0, ("P3", " rent"): -1.0}
    path = _write(tmp_path / "t.jsonl", _ifd_rows())
    judge_engine = FakeEngine("fake-judge")
    result = assess(
        load_training_set(path),
        model=FakeEngine("fake-ifd", scores=scores),
        judge_engine=judge_engine,
    )
    assert result.quality["flags"]["ifd_high"] == 1 and result.quality["n_hard_flagged"] == 0
    assert result.quality["stages"]["model"]["n_passed"] == 3
    assert result.quality["stages"]["judge"]["n_judged"] == 3
    write_outputs(result, tmp_path / "out", source=path, clean=tmp_path / "clean.jsonl")
    kept = [json.loads(x)["id"] for x in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert kept == ["a", "b", "c"]


def test_empty_responses_are_flagged_not_refused(tmp_path: Path) -> None:
    rows = _clean_rows(20)
    rows[3]["response"] = ""
    rows[7]["response"] = "  \n"
    path = _write(tmp_path / "train.jsonl", rows)
    result = assess_file(path)
    assert result.quality["flags"]["empty_response"] == 2
    by_id = {s.item.id: s for s in result.samples}
    assert by_id[rows[3]["id"]].flags == ["empty_response"] and by_id[rows[3]["id"]].hard
    assert by_id[rows[7]["id"]].dimensions["completeness"] == 0.0
    cli_result = CliRunner().invoke(cli, ["quality", str(path), "--out", str(tmp_path / "q")])
    assert cli_result.exit_code == 0, cli_result.output
    assert load_quality(tmp_path / "q")["flags"]["empty_response"] == 2
    # validate still reports them (exit 2), with file, line and field
    cli_result = CliRunner().invoke(cli, ["validate", str(path)])
    assert cli_result.exit_code == 2
    assert "train.jsonl:4: field 'response'" in cli_result.output
    # structural errors are still refused by quality
    _write(tmp_path / "bad.jsonl", [*rows, {"prompt": "x"}])
    cli_result = CliRunner().invoke(cli, ["quality", str(tmp_path / "bad.jsonl")])
    assert cli_result.exit_code == 2 and "bad.jsonl:21: field 'response'" in cli_result.output


def test_cli_keep_out_and_rejected_counts(tmp_path: Path) -> None:
    rows = _planted_rows()
    # a soft flag only (Chinese answer to an English dialogue): kept unless --min-score
    chinese = {
        **_first(rows, "summary", 6),
        "id": "zh",
        "response": "客户想在柏林租一套三居室的公寓。",
    }
    path = _write(tmp_path / "train.jsonl", rows + [chinese])
    clean = tmp_path / "clean.jsonl"
    result = CliRunner().invoke(
        cli, ["quality", str(path), "--out", str(tmp_path / "q"), "--keep-out", str(clean)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped: no --model given" in result.output
    kept = clean.read_text("utf-8").splitlines()
    rejected = [json.loads(x) for x in (tmp_path / "q" / "rejected.jsonl").read_text().splitlines()]
    assert (len(kept), len(rejected)) == (246 - 14, 14)
    originals = path.read_text("utf-8").splitlines()
    assert set(kept) <= set(originals)  # verbatim lines
    reasons = {r["id"]: r["reasons"] for r in rejected}
    assert reasons["dup-a2"] == ["duplicate"]
    assert sum(len(r) for r in reasons.values()) == 15  # the truncated JSON has two
    quality = load_quality(tmp_path / "q")
    assert quality["keep_out"]["kept"] == 232 and quality["keep_out"]["rejected"] == 14
    # a score threshold removes more: every sample with a soft flag scores below 1
    strict = CliRunner().invoke(
        cli,
        [
            "quality",
            str(path),
            "--out",
            str(tmp_path / "q2"),
            "--keep-out",
            str(clean),
            "--min-score",
            "1",
        ],
    )
    assert strict.exit_code == 0, strict.output
    n_soft_only = sum(1 for s in _samples(tmp_path / "q2") if s["flags"] and not s["hard_flag"])
    assert n_soft_only >= 1
    assert len(clean.read_text("utf-8").splitlines()) == 232 - n_soft_only
    zh = [s for s in _samples(tmp_path / "q2") if s["id"] == "zh"][0]
    assert "script_mismatch" in zh["flags"] and zh["score"] < 1


def _samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "samples.jsonl").read_text("utf-8").splitlines()]


def test_cli_bad_lines_exit_2_with_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "Q", "response": "A"})
        + "\n"
        + json.dumps({"prompt": "Q", "respnse": "A"})
        + "\n{not json\n",
        "utf-8",
    )
    result = CliRunner().invoke(cli, ["quality", str(path), "--out", str(tmp_path / "q")])
    assert result.exit_code == 2
    assert f"{path}:2: field 'respnse': unknown field" in result.output
    assert f"{path}:2: field 'response': missing required field" in result.output
    assert f"{path}:3: invalid JSON" in result.output
    assert not (tmp_path / "q").exists()


def test_cli_min_score_needs_keep_out(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", _ifd_rows())
    result = CliRunner().invoke(cli, ["quality", str(path), "--min-score", "0.5"])
    assert result.exit_code == 2 and "--min-score needs --keep-out" in result.output


@pytest.mark.slow
def test_cli_model_and_judge_with_tiny_model(tiny_model: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", _clean_rows(8))
    args = ["quality", str(path), "--model", str(tiny_model), "--engine", "hf"]
    args += ["--judge", str(tiny_model), "--judge-sample", "3", "--cache-dir", str(tmp_path / "c")]
    runs = []
    for name in ("a", "b"):
        result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        runs.append(load_quality(tmp_path / name))
    first, second = runs
    assert first["stages"]["model"]["ran"] and first["stages"]["judge"]["n_judged"] == 3
    assert first["cost"]["model"]["calls"] > 0 and first["cost"]["judge"]["calls"] == 3
    assert (second["cost"]["model"]["calls"], second["cost"]["judge"]["calls"]) == (0, 0)
    assert second["cost"]["judge"]["cached"] == 3
    assert second["dimensions"] == first["dimensions"]
    jsonschema.validate(first, SCHEMA)
