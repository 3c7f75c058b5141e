"""Nothing of the demo's test set leaks into its training data (issue 18): no training
dialogue, graded set or base pre-training text near-duplicates a test dialogue, by the
contamination check of ``collapse-eval quality TRAIN --against TEST``."""

from __future__ import annotations

import json
from pathlib import Path

from collapse_eval.demo import data
from collapse_eval.demo.graded import graded_training_set
from collapse_eval.demo.run import check_contamination
from collapse_eval.demo.train import WorldConfig
from collapse_eval.demo.world import DOMAIN_TEST_FILE, DOMAIN_TRAIN_FILE
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.quality.contamination import find_contamination, near_identical_to
from tests.progresslog import Log


def _test_dialogues() -> list[str]:
    return [d.text for d in data.make_dialogues(90, data.TEST_SEED, "dlg-test")]


def test_no_demo_training_set_near_duplicates_a_test_item(tmp_path: Path) -> None:
    """The clean split and every graded set (what each fine-tune trains on): 0 of 540.
    Before the fix the clean split leaked 30 test items (5 test dialogues told twice by
    the templates, word 3-gram Jaccard 0.71 to 0.76)."""
    test = load_domain_set(DOMAIN_TEST_FILE)
    assert len(test) == 540
    sets = {"clean": data.domain_train_set()}
    sets |= {f"level {lv}": graded_training_set(lv) for lv in WorldConfig.demo().graded_levels}
    for name, samples in sets.items():
        path = tmp_path / f"{name}.jsonl"
        data.write_jsonl(path, samples)
        found = find_contamination(load_training_set(path, allow_empty_response=True), test)
        assert (found.n_train, found.n_test) == (1920, 540), name
        assert found.leaks == (), (name, found.leaks[:3])


def test_no_base_pretraining_text_near_duplicates_a_test_dialogue() -> None:
    texts = data.unlabelled_dialogue_texts(WorldConfig.demo().unlabelled_dialogues)
    assert len(texts) == 400 == len(set(texts))
    assert near_identical_to(texts, _test_dialogues()) == set()


def test_near_identical_to_finds_exact_and_near_copies_only() -> None:
    """The filter data.py applies is the check's own: one word changed in a test
    dialogue is still found (Jaccard >= 0.7), another dialogue is not."""
    test = _test_dialogues()
    words = test[3].split(" ")
    near = " ".join([*words[:-1], "Splendid."])
    other = data.make_dialogues(1, 99, "x")[0].text
    assert near_identical_to([other, test[0], near], test) == {1, 2}


def test_the_generated_split_is_the_committed_one_and_keeps_its_size() -> None:
    """Dropped dialogues are replaced from the same seeded stream: still 320 dialogues
    and 1920 samples, the same on every call (and in the committed file)."""
    rows = [json.loads(line) for line in DOMAIN_TRAIN_FILE.read_text("utf-8").splitlines()]
    assert rows == data.domain_train_set() and len(rows) == 1920


def test_the_demo_logs_and_writes_the_check(tmp_path: Path) -> None:
    log = Log()
    result = check_contamination(tmp_path, log)
    assert (result.n_contaminated, result.n_test) == (0, 540)
    assert log.lines == [
        "demo: train/test contamination: 0 of 540 test items near-duplicate a training "
        "sample (Jaccard >= 0.7 on the context, >= 0.7 on the prompt)"
    ]
    written = json.loads((tmp_path / "contamination.json").read_text("utf-8"))
    assert written["schema_version"] == 1 and written["n_contaminated"] == 0
    assert written["n_test"] == 540 and written["pairs"] == []
