"""Near duplicates measured on what differs: shared contexts factored out (issue 18).

Study-shaped data (long distinct dialogues, three different questions each, every answer
correct) must not be flagged; planted exact copies and near copies of both kinds must be.
English and Chinese; contexts from metadata and detected; once through the CLI.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli
from collapse_eval.domain.dataset import load_training_set
from collapse_eval.quality import assess, lsh
from collapse_eval.quality.dataset_level import prompt_diversity
from collapse_eval.quality.rules import (
    near_duplicates,
    prompt_text,
    run_rules,
    sample_contexts,
    shingles,
)
from tests.longdialogues import dialogue, dialogue_rows

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "quality.schema.json").read_text()
)
LAYOUTS = {
    # layout -> how the dialogue is found without metadata
    "prefix": "common_prefix",
    "passage": "shared_block",
    "suffix": "common_suffix",
    "messages": "common_prefix",
}


def _items(tmp_path: Path, rows: list[dict[str, Any]]) -> list[Any]:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return load_training_set(path)


def _flags(tmp_path: Path, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    items = _items(tmp_path, rows)
    return {item.id: r.flags for item, r in zip(items, run_rules(items), strict=True) if r.flags}


# ------------------------------------------------------------------ no false flags


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_long_dialogues_with_three_questions_are_not_near_duplicates(
    tmp_path: Path, language: str, layout: str
) -> None:
    rows = dialogue_rows(16, language, layout=layout)
    items = _items(tmp_path, rows)
    result = assess(items)
    assert result.quality["flags"]["near_duplicate"] == 0
    assert result.quality["flags"]["near_duplicate_prompt"] == 0
    assert result.quality["n_hard_flagged"] == 0
    assert result.quality["dimensions"]["uniqueness"] == 1.0
    reuse = result.quality["context_reuse"]
    assert reuse["n_contexts"] == 16
    assert reuse["samples_with_context"] == 48
    assert reuse["samples_per_context_mean"] == 3.0
    assert reuse["samples_per_context_max"] == 3
    assert reuse["found_by"] == {LAYOUTS[layout]: 48}
    jsonschema.validate(result.quality, SCHEMA)


@pytest.mark.parametrize("key", ["dialogue_id", "cluster", "context_id"])
def test_context_from_metadata(tmp_path: Path, key: str) -> None:
    rows = dialogue_rows(16, "en", layout="suffix")
    for row in rows:
        row["metadata"] = {key: row["id"].split("-")[1]}
    items = _items(tmp_path, rows)
    contexts = sample_contexts(items)
    assert {c.source for c in contexts if c is not None} == {f"metadata.{key}"}
    # the context is the dialogue: what is left of the prompt is the question
    outside = contexts[0].outside(prompt_text(items[0])) if contexts[0] else ""
    assert outside.strip() == "Answer about the dialogue below: What is the guest's name?"
    assert all(not r.flags for r in run_rules(items, contexts))


def test_odd_metadata_falls_back_to_detection(tmp_path: Path) -> None:
    # A sibling without usable metadata (a bool, a list, a float, missing, one id shared
    # with another dialogue) still finds the dialogue its siblings' metadata names.
    rows = dialogue_rows(4, "en")
    ids: list[Any] = [True, [1], 1.5, None, "", 7, 7, {"a": 1}, 0, 0, "x", "x"]
    for row, value in zip(rows, ids, strict=True):
        row["metadata"] = {"dialogue_id": value}
    items = _items(tmp_path, rows)
    contexts = sample_contexts(items)
    assert [c.source if c else None for c in contexts] == ["common_prefix"] * 10 + [
        "metadata.dialogue_id"
    ] * 2
    assert len({c.text for c in contexts if c}) == 4
    assert all(not r.flags for r in run_rules(items, contexts))


def test_metadata_group_with_one_prompt_has_no_context(tmp_path: Path) -> None:
    # Two answers to one prompt: the whole prompt is common, so it is no shared context,
    # and the two are compared as whole texts (near-identical answers: near duplicate).
    row = dialogue_rows(1, "en")[2]
    rows = [
        {**row, "id": "a", "metadata": {"dialogue_id": "d"}},
        {**row, "id": "b", "metadata": {"dialogue_id": "d"},
         "response": row["response"].replace("booked", "reserved")},
    ]  # fmt: skip
    items = _items(tmp_path, rows)
    assert sample_contexts(items) == [None, None]
    assert _flags(tmp_path, rows) == {"b": ["near_duplicate"]}


def test_prompt_diversity_is_measured_outside_the_context(tmp_path: Path) -> None:
    rows = dialogue_rows(16, "en")
    result = assess(_items(tmp_path, rows))
    questions = [r["prompt"].split("\n\n")[-1] for r in rows]
    expected = prompt_diversity(["\n" + q for q in questions], 0)
    assert result.quality["dataset"]["prompt_diversity"] == pytest.approx(expected, abs=1e-6)
    # three distinct questions: two thirds of the pairs differ completely
    assert 0.6 < expected < 0.75


# ------------------------------------------------------------------ planted copies


def _planted(language: str) -> list[dict[str, Any]]:
    rows = dialogue_rows(16, language)
    by_id = {r["id"]: r for r in rows}
    summary, nights = by_id[f"{language}-00004-summary"], by_id[f"{language}-00005-nights"]
    other, far = by_id[f"{language}-00006-summary"], by_id[f"{language}-00003-summary"]
    edit = ("booked", "reserved") if language == "en" else ("预订了", "订了")
    rows += [
        # exact copy
        {**copy.deepcopy(by_id[f"{language}-00001-guest_name"]), "id": "exact"},
        # same dialogue, the same question, a near-identical answer
        {**summary, "id": "same-context", "response": summary["response"].replace(*edit)},
        # same dialogue and question, another short answer: near-identical question and
        # answer (conflicting labels), as the whole texts always said
        {**nights, "id": "same-question", "response": str(int(nights["response"]) + 20)},
        # same dialogue and question, a different summary: only the prompt is a copy
        {**other, "id": "same-prompt", "response": far["response"]},
    ]
    # a near-identical whole sample: after a one-word edit at the start of the dialogue
    # its context is at most the rest of the dialogue, never its original's context
    first_line = rows[24]["prompt"].split("\n")[0]
    changed = first_line.replace("Good", "Hello") if language == "en" else first_line[:-2] + "！"
    rows.append(
        {**rows[24], "id": "whole", "prompt": rows[24]["prompt"].replace(first_line, changed)}
    )
    # two samples without any context (short, distinct prompts), one a near copy
    lines = dialogue(99, language)[0].split("\n")
    plain = {"id": "plain", "prompt": lines[1], "response": lines[3]}
    middle = ("booked", "reserved") if language == "en" else ("开始的", "起的")
    rows += [plain, {**plain, "id": "plain-copy", "prompt": lines[1].replace(*middle)}]
    return rows


@pytest.mark.parametrize("language", ["en", "zh"])
def test_planted_copies_are_still_flagged(tmp_path: Path, language: str) -> None:
    flags = _flags(tmp_path, _planted(language))
    assert flags == {
        "exact": ["duplicate"],
        "same-context": ["near_duplicate"],
        "same-question": ["near_duplicate"],
        "same-prompt": ["near_duplicate_prompt"],
        "whole": ["near_duplicate"],
        "plain-copy": ["near_duplicate"],
    }


def test_planted_copies_name_their_originals(tmp_path: Path) -> None:
    items = _items(tmp_path, _planted("en"))
    contexts = {i.id: c for i, c in zip(items, sample_contexts(items), strict=True)}
    assert contexts["plain"] is None and contexts["plain-copy"] is None
    assert contexts["whole"] is not None and contexts["whole"].source == "common_suffix"
    of = {i.id: r.duplicate_of for i, r in zip(items, run_rules(items), strict=True)}
    assert of["exact"] == "en-00001-guest_name"
    assert of["same-context"] == "en-00004-summary"
    assert of["same-question"] == "en-00005-nights"
    assert of["same-prompt"] == "en-00006-summary"
    assert of["whole"] == items[24].id
    assert of["plain-copy"] == "plain"


def test_an_edited_dialogue_is_compared_as_a_whole_text(tmp_path: Path) -> None:
    # A dialogue copied with one phrase changed is another context: its samples compare
    # whole texts with the original's, so the same questions are near duplicates.
    rows = dialogue_rows(4, "en")
    text, _ = dialogue(2, "en")
    twin = text.replace("Thank you so much", "Thanks a lot")
    copies = [
        {**r, "id": r["id"] + "-twin", "prompt": r["prompt"].replace(text, twin)}
        for r in rows
        if r["id"].startswith("en-00002")
    ]
    assert _flags(tmp_path, rows + copies) == {
        "en-00002-guest_name-twin": ["near_duplicate"],
        "en-00002-nights-twin": ["near_duplicate"],
        "en-00002-summary-twin": ["near_duplicate"],
    }


# ------------------------------------------------------------------ through the CLI


def test_cli_quality_on_long_dialogues(tmp_path: Path) -> None:
    rows = dialogue_rows(16, "zh", metadata=True) + [
        {**dialogue_rows(1, "zh", metadata=True)[0], "id": "copy"}
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    out = tmp_path / "q"
    result = CliRunner().invoke(cli, ["quality", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    quality = json.loads((out / "quality.json").read_text("utf-8"))
    assert quality["flags"]["near_duplicate"] == 0
    assert quality["flags"]["duplicate"] == 1
    assert quality["n_hard_flagged"] == 1
    assert quality["context_reuse"] == {
        "n_contexts": 16,
        "samples_with_context": 49,
        "samples_per_context_mean": pytest.approx(49 / 16),
        "samples_per_context_max": 4,
        "found_by": {"metadata.dialogue_id": 49},
        "min_tokens": 20,
    }
    assert quality["thresholds"]["context_min_tokens"] == 20
    jsonschema.validate(quality, SCHEMA)
    html = (out / "quality.html").read_text("utf-8")
    assert "16 contexts used by 49 samples" in html
    assert "metadata.dialogue_id (49)" in html


# ------------------------------------------------------------------ Chinese in the rules


def test_chinese_lengths_shingles_and_script(tmp_path: Path) -> None:
    def prompt(k: int) -> str:
        return dialogue(k, "zh")[0] + "\n\n问题：用一句话总结客人的要求。"

    rows = [
        {"id": "zh", "prompt": prompt(0), "response": "客人预订了双人间，住三晚。",
         "output_format": "free_text"},
        {"id": "en", "prompt": prompt(1), "response": "The guest booked a double room.",
         "output_format": "free_text"},
        {"id": "cut", "prompt": prompt(2), "response": "客人预订了双人间，住三晚",
         "output_format": "free_text"},
        {"id": "zh-for-en", "prompt": "Summarize the guest's request in one sentence please.",
         "response": "客人预订了双人间。", "output_format": "free_text"},
    ]  # fmt: skip
    items = _items(tmp_path, rows)
    results = {i.id: r for i, r in zip(items, run_rules(items), strict=True)}
    # tokens: CJK characters one by one (punctuation dropped), Latin words
    assert results["zh"].length_tokens == 11
    assert results["en"].length_tokens == 6
    assert results["zh"].flags == []
    assert results["en"].flags == ["script_mismatch"]
    assert results["zh-for-en"].flags == ["script_mismatch"]
    assert results["cut"].flags == ["truncated"]
    # shingles of CJK text are character 3-grams
    assert len(shingles("你好世界")) == 2
    assert shingles("你好世界") == shingles("你 好 世 界")


# ------------------------------------------------------------------ MinHash / LSH


def test_signatures_estimate_jaccard_and_lsh_finds_close_pairs() -> None:
    rng = np.random.default_rng(3)
    base = set(rng.integers(0, 2**32, 200).tolist())
    close = set(list(base)[:190]) | set(rng.integers(0, 2**32, 10).tolist())
    far = set(rng.integers(0, 2**32, 200).tolist())
    sig = lsh.signatures([base, far, close, set()])
    estimate = float((sig[0] == sig[2]).mean())
    assert estimate == pytest.approx(lsh.jaccard(base, close), abs=0.1)
    assert (sig[3] == 0xFFFFFFFF).all()
    assert lsh.candidate_pairs(sig, 0.75).tolist() == [[2, 0]]


def test_near_duplicates_public_api_keeps_its_meaning() -> None:
    a = set(range(100))
    b = set(range(3, 103))
    c = set(range(500, 600))
    assert near_duplicates([a, c, b], 0.85) == {2: 0}
    assert near_duplicates([a, c, b], 0.85, groups=["x", "x", "y"]) == {}
    assert near_duplicates([a, c, b], 0.85, skip=[0]) == {}
    assert near_duplicates([a, c, b], 0.85, apart=[1, None, 1]) == {}
    assert near_duplicates([a, c, b, a], 0.85, apart=[1, None, 1, None]) == {3: 0}


def test_a_context_is_at_least_20_tokens(tmp_path: Path) -> None:
    # Punctuation-only chunks are no tokens ("___" strips to nothing): 25 of them and 19
    # words are too short; 20 words are enough.
    def rows(words: int) -> list[dict[str, Any]]:
        shared = " ".join(["___"] * 25 + [f"w{k}" for k in range(words)])
        return [
            {"prompt": f"{shared}\n\nQuestion {q}?", "response": f"answer {q}"}
            for q in ("one", "two")
        ]

    assert sample_contexts(_items(tmp_path, rows(19))) == [None, None]
    found = sample_contexts(_items(tmp_path, rows(20)))
    assert [c.source if c else None for c in found] == ["common_prefix", "common_prefix"]
