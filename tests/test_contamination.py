"""The train/test contamination check (`quality TRAIN --against TEST`) and the
near-identical clusters the data build splits by, on hand-made sets with planted leaks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.domain.scorers import mixed_tokens
from collapse_eval.quality import lsh
from collapse_eval.quality.contamination import (
    CONTAMINATION_SCHEMA_VERSION,
    LSH_MISS,
    NUM_PERM,
    Shingler,
    detect_contexts,
    find_contamination,
    jaccard,
    near_identical_groups,
)

_RNG = random.Random(7)
VOCAB = sorted(
    {
        "".join(_RNG.choice("bdfgklmnprstvz") + _RNG.choice("aeiou") for _ in range(3))
        for _ in range(3000)
    }
)
QUESTIONS = {
    "intent": "What does the customer want? Answer with one of: rent, buy, viewing, complaint.",
    "fee": "Did the agent disclose the agency fee? Answer yes or no.",
    "summary": "Summarize the dialogue in one sentence.",
}


def words(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def dialogue(seed: int, n: int = 50) -> str:
    w = words(seed, n)
    return f"Customer: {' '.join(w[: n // 2])}\nAgent: {' '.join(w[n // 2 :])}"


def change(text: str, *positions: int) -> str:
    """``text`` with the words at ``positions`` replaced."""
    tokens = text.split(" ")
    for p in positions:
        tokens[p] = "changedword" + str(p)
    return " ".join(tokens)


def messages(context: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You analyse real-estate dialogues."},
        {"role": "user", "content": f"{context}\n\n{question}"},
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def train_rows() -> list[dict[str, Any]]:
    rows = []
    for d in range(6):
        for task, question in QUESTIONS.items():
            rows.append(
                {
                    "id": f"tr-{d}-{task}",
                    "task_type": task,
                    "messages": messages(dialogue(d), question),
                    "response": "ok.",
                    "metadata": {"dialogue_id": f"d{d}"},
                }
            )
    for k in range(2):  # prompt-only samples: no context
        rows.append(
            {
                "id": f"tr-trivia-{k}",
                "task_type": "trivia",
                "prompt": " ".join(words(100 + k, 30)),
                "response": "x",
            }
        )
    return rows


def eval_item(item_id: str, task: str, context: str, question: str, cluster: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "task_type": task,
        "output_format": "free_text",
        "messages": messages(context, question),
        "reference": "r",
        "metadata": {"cluster": cluster},
    }


def eval_rows() -> list[dict[str, Any]]:
    reworded = {
        "intent": "Which of rent, buy, viewing or complaint is the customer's aim here?",
        "summary": "Give the gist of this conversation, briefly.",
    }
    near = change(dialogue(1), 20)  # one word changed
    return [
        # X: a training dialogue asked the training questions: exact copies (prompt).
        eval_item("x-intent", "intent", dialogue(0), QUESTIONS["intent"], "X"),
        eval_item("x-fee", "fee", dialogue(0), QUESTIONS["fee"], "X"),
        # Y: a training dialogue with one word changed, new questions (context).
        eval_item("y-intent", "intent", near, reworded["intent"], "Y"),
        eval_item("y-summary", "summary", near, reworded["summary"], "Y"),
        # Z: a new dialogue asked the training questions: clean.
        eval_item("z-intent", "intent", dialogue(50), QUESTIONS["intent"], "Z"),
        eval_item("z-fee", "fee", dialogue(50), QUESTIONS["fee"], "Z"),
        # A prompt-only training sample with one word changed (prompt), and a new one.
        {
            "id": "p-near",
            "task_type": "trivia",
            "output_format": "free_text",
            "prompt": change(" ".join(words(100, 30)), 15),
            "reference": "x",
        },
        {
            "id": "p-new",
            "task_type": "trivia",
            "output_format": "free_text",
            "prompt": " ".join(words(300, 30)),
            "reference": "x",
        },
    ]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_jsonl(tmp_path / "train.jsonl", train_rows()),
        write_jsonl(tmp_path / "test.jsonl", eval_rows()),
    )


def test_planted_leaks_are_found_with_the_right_kind_and_counts(pair: tuple[Path, Path]) -> None:
    result = find_contamination(load_training_set(pair[0]), load_domain_set(pair[1]))
    found = {leak.test_id: leak for leak in result.leaks}
    assert sorted(found) == ["p-near", "x-fee", "x-intent", "y-intent", "y-summary"]
    assert (found["x-intent"].train_id, found["x-intent"].matched) == ("tr-0-intent", "prompt")
    assert found["x-intent"].similarity == 1.0
    # Every training sample on dialogue 0 shares the context; the exact copy is reported.
    assert found["x-intent"].train_matches == 3
    assert found["y-intent"].matched == "context" and found["y-intent"].train_id.startswith("tr-1-")
    assert 0.7 <= found["y-intent"].similarity < 1.0
    assert (found["p-near"].train_id, found["p-near"].matched) == ("tr-trivia-0", "prompt")
    assert 0.7 <= found["p-near"].similarity < 1.0
    assert result.by_task_type() == {
        "intent": {"n_test": 3, "contaminated": 2, "context": 1, "prompt": 1},
        "fee": {"n_test": 2, "contaminated": 1, "context": 0, "prompt": 1},
        "summary": {"n_test": 1, "contaminated": 1, "context": 1, "prompt": 0},
        "trivia": {"n_test": 2, "contaminated": 1, "context": 0, "prompt": 1},
    }
    assert (result.n_train, result.n_test, result.n_contaminated) == (20, 8, 5)


def test_a_clean_pair_reports_nothing(pair: tuple[Path, Path]) -> None:
    clean = [r for r in eval_rows() if r["id"] in ("z-intent", "z-fee", "p-new")]
    test = write_jsonl(pair[1].parent / "clean.jsonl", clean)
    result = find_contamination(load_training_set(pair[0]), load_domain_set(test))
    assert result.leaks == () and result.n_test == 3
    assert result.by_task_type()["intent"] == {
        "n_test": 1,
        "contaminated": 0,
        "context": 0,
        "prompt": 0,
    }


def test_contexts_come_from_keys_shared_prefixes_or_the_last_blank_line() -> None:
    long_context = dialogue(3)
    texts = [
        f"{long_context}\nQuestion: who?",  # no key, shares its first 200 characters
        f"{long_context}\nQuestion: why?",
        f"{dialogue(4)}\n\nA lone question?",  # no key, alone: up to the last blank line
        "Question: short shared text\n\nwhat?",  # keyed, but the shared text is too short
        "Question: short shared text\n\nwho?",
        " ".join(words(5, 30)),  # one paragraph, no key: no context
    ]
    meta: list[dict[str, Any]] = [{}, {}, {}, {"context_id": 9}, {"context_id": 9}, {}]
    assert detect_contexts(texts, meta) == [
        long_context,
        long_context,
        dialogue(4),
        None,
        None,
        None,
    ]


def test_near_identical_texts_chain_into_one_group_with_its_links() -> None:
    a = " ".join(words(11, 50))
    b = change(a, 10, 11, 12)
    c = change(b, 30, 31, 32)
    shingle = Shingler(3)
    sets = [shingle(mixed_tokens(t)) for t in (a, b, c)]
    assert jaccard(sets[0], sets[2]) < 0.7 <= min(jaccard(sets[0], sets[1]), jaccard(*sets[1:]))
    other = dialogue(12)
    groups, links = near_identical_groups([a, other, b, other.upper(), c])
    assert groups == [[0, 2, 4], [1, 3]]
    assert sorted((link.a, link.b) for link in links) == [(0, 2), (1, 3), (2, 4)]
    assert {link.similarity for link in links if link.a == 1} == {1.0}


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
def test_lsh_bands_miss_a_pair_at_the_threshold_rarely(threshold: float) -> None:
    bands, rows = lsh.bands(threshold, miss=LSH_MISS)
    assert bands * rows <= NUM_PERM
    assert (1 - threshold**rows) ** bands <= LSH_MISS
    if rows < 8:  # the next longer band would miss more often
        longer = rows + 1
        assert (1 - threshold**longer) ** (NUM_PERM // longer) > LSH_MISS


# ------------------------------------------------------------------ the command


def quality(tmp_path: Path, *args: str) -> int:
    return main(["quality", *args, "--out", str(tmp_path / "q")])


def test_cli_writes_contamination_json_and_exits_0_without_the_gate_option(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quality(tmp_path, str(pair[0]), "--against", str(pair[1])) == 0
    out = capsys.readouterr().out
    assert "contamination: 5 of 8 test items near-duplicate a training sample" in out
    assert "  intent: 2 of 3 (context 1, prompt 1)" in out
    assert "  x-intent ~ tr-0-intent: prompt 1.00 (+2 more)" in out
    report = json.loads((tmp_path / "q" / "contamination.json").read_text())
    assert report["schema_version"] == CONTAMINATION_SCHEMA_VERSION == 1
    assert (report["train"], report["test"]) == (str(pair[0]), str(pair[1]))
    assert report["n_contaminated"] == 5 and len(report["pairs"]) == 5
    assert report["pairs"][0] == {
        "test_id": "x-intent",
        "train_id": "tr-0-intent",
        "task_type": "intent",
        "matched": "prompt",
        "similarity": 1.0,
        "train_matches": 3,
    }
    assert report["thresholds"]["context_jaccard"] == 0.7
    assert (tmp_path / "q" / "quality.json").exists()


def test_cli_gate_option_exits_1_on_contamination_and_0_when_clean(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    args = [str(pair[0]), "--against", str(pair[1]), "--fail-on-contamination"]
    assert quality(tmp_path, *args) == 1
    assert (tmp_path / "q" / "contamination.json").exists()
    clean = write_jsonl(tmp_path / "clean.jsonl", eval_rows()[4:6])
    assert quality(tmp_path, str(pair[0]), "--against", str(clean), "--fail-on-contamination") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agianst", "TEST"], "No such option '--agianst'. Did you mean '--against'?"),
        (["--against", "nope.jsonl"], "nope.jsonl: file not found"),
        (["--fail-on-contamination"], "--fail-on-contamination needs --against TEST.jsonl"),
        (["--against", "TRAIN"], "is a training set (its lines carry 'response'"),
        (["--against", "BAD"], "bad.jsonl:2: field 'reference': missing required field"),
    ],
)
def test_cli_mistakes_exit_2_with_what_to_fix(
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    bad = eval_rows()[:2]
    del bad[1]["reference"]
    paths = {"TEST": pair[1], "TRAIN": pair[0], "BAD": write_jsonl(tmp_path / "bad.jsonl", bad)}
    argv = [str(paths.get(a, a)) for a in args]
    capsys.readouterr()
    assert quality(tmp_path, str(pair[0]), *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "q" / "contamination.json").exists()


def test_chinese_text_is_compared_on_characters() -> None:
    rng = random.Random(3)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    text = "".join(rng.choice(chars) for _ in range(120))
    one_changed = text[:60] + "好" + text[61:]
    other = "".join(rng.choice(chars) for _ in range(120))
    groups, links = near_identical_groups([text, other, one_changed])
    assert groups == [[0, 2], [1]]
    assert [(link.a, link.b) for link in links] == [(0, 2)] and links[0].similarity > 0.9
