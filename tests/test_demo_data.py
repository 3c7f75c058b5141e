"""The demo world's synthetic data: determinism, the documented format, no leakage."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from collapse_eval.demo import data
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.domain.scorers import score_prediction

TEST_FILE = data.TASKS_DIR / "demo" / "realestate_test.jsonl"
TRAIN_FILE = data.TASKS_DIR / "demo" / "realestate_train.jsonl"
GENERAL_DIR = data.TASKS_DIR / "demo_general"


def _dialogue_of(row: dict) -> str:
    text = row["prompt"] if "prompt" in row else row["messages"][-1]["content"]
    return text.split("\n\nQuestion:")[0]


def test_regenerating_gives_the_committed_files_bit_for_bit(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_demo_data", Path(__file__).parents[1] / "scripts" / "make_demo_data.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0
    written = data.write_all(tmp_path)
    assert [p.name for p in written] == [
        "realestate_test.jsonl",
        "realestate_train.jsonl",
        *(f"{t}.jsonl" for t in data.GENERAL_TASKS),
    ]


def test_generators_are_pure_functions_of_their_seed() -> None:
    assert data.make_dialogues(5, 7, "x") == data.make_dialogues(5, 7, "x")
    assert data.make_dialogues(5, 7, "x") != data.make_dialogues(5, 8, "x")
    assert data.general_train_pairs(20) == data.general_train_pairs(20)


def test_every_test_line_has_the_design_fields() -> None:
    lines = TEST_FILE.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 540
    for line in lines:
        row = json.loads(line)
        assert set(row) <= {
            "id",
            "task_type",
            "output_format",
            "prompt",
            "messages",
            "reference",
            "choices",
            "metadata",
        }
        assert ("prompt" in row) != ("messages" in row)
        assert row["metadata"]["cluster"].startswith("dlg-test-")
        if "choices" in row:
            assert row["reference"] in row["choices"]
        if "messages" in row:
            assert [m["role"] for m in row["messages"]] == ["system", "user"]


def test_test_set_loads_and_covers_the_required_variety() -> None:
    items = load_domain_set(TEST_FILE)
    assert len(items) == 540 and len({i.id for i in items}) == 540
    task_types = Counter(i.task_type for i in items)
    formats = Counter(i.output_format for i in items)
    assert set(task_types) == {
        "intent_classification",
        "satisfaction",
        "compliance",
        "next_action",
        "summary",
        "district",
        "entity_extraction",
        "area",
        "amenities",
    }
    assert set(formats) == {"label", "yes_no", "number", "json", "list", "span", "free_text"}
    assert min(task_types.values()) >= 40
    n_messages = sum(i.messages is not None for i in items)
    n_choices = sum(i.choices is not None for i in items)
    assert 150 <= n_messages <= 250 and 50 <= n_choices <= 110
    clusters = Counter(i.cluster for i in items)
    assert len(clusters) == 90 and set(clusters.values()) == {6}


def test_references_are_perfect_answers_for_the_scorers() -> None:
    # The training responses are rendered by the same code: a model that reproduces
    # them exactly must score 1 with the package's scorers.
    for item in data.domain_test_set():
        response = data._render_response(item["output_format"], item["reference"])
        assert score_prediction(item["output_format"], response, item["reference"]).score == 1.0


def test_references_agree_with_the_dialogue_text() -> None:
    for item in data.domain_test_set():
        dialogue = _dialogue_of(item)
        ref = item["reference"]
        if item["task_type"] == "area":
            assert f"{ref} m2" in dialogue
        elif item["task_type"] == "entity_extraction":
            assert ref["city"] in dialogue and f"{ref['rooms']}-room" in dialogue
            assert str(ref["budget"]) in dialogue
        elif item["task_type"] == "district":
            assert ref in dialogue
        elif item["task_type"] == "compliance":
            assert ("fee" in dialogue.split("\nCustomer:")[-2]) == (ref == "yes")


def test_training_split_loads_and_shares_no_dialogue_with_the_test_set() -> None:
    train = load_training_set(TRAIN_FILE)
    assert len(train) == 1920
    rows = [json.loads(line) for line in TRAIN_FILE.read_text(encoding="utf-8").splitlines()]
    test_rows = [json.loads(line) for line in TEST_FILE.read_text(encoding="utf-8").splitlines()]
    train_dialogues = {_dialogue_of(r) for r in rows}
    test_dialogues = {_dialogue_of(r) for r in test_rows}
    assert len(test_dialogues) == 90 and len(train_dialogues) == 320
    assert not train_dialogues & test_dialogues
    assert not test_dialogues & set(data.unlabelled_dialogue_texts(400))
    assert all(isinstance(r["response"], str) and r["response"] for r in rows)


def test_general_test_items_never_appear_in_general_training_data() -> None:
    pairs = data.general_train_pairs(3000)
    for task in ("demo_arithmetic", "demo_copy", "demo_sort"):
        docs = data.general_test_docs(task)
        assert len(docs) == 500 and len({d["question"] for d in docs}) == 500
        assert not {d["question"] for d in docs} & {p for p, _ in pairs[task]}
        # Training is not a handful of items repeated: the test set is a minority of the
        # item space, and training covers most of what is left.
        assert len({p for p, _ in pairs[task]}) >= 450
    for doc in data.general_test_docs("demo_arithmetic"):
        a, b = map(int, re.findall(r"\d+", doc["question"]))
        assert doc["answer"] == str(a + b)
        # Two-digit operands, no carry in either digit.
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert a % 10 + b % 10 <= 9 and a // 10 + b // 10 <= 9
    for doc in data.general_test_docs("demo_copy"):
        letters = doc["question"].split("letters: ")[1].split("\n")[0]
        assert doc["answer"] == letters and len(letters.split()) == 3
    for doc in data.general_test_docs("demo_sort"):
        digits = doc["question"].split("digits: ")[1].split("\n")[0].split()
        assert len(digits) == 3 and doc["answer"].split() == sorted(digits)


def test_capitals_are_four_way_multiple_choice_with_the_right_label() -> None:
    docs = data.general_test_docs("demo_capitals")
    assert len(docs) == 200
    # Each of the 50 facts is asked four times, each time with other distractors.
    assert Counter(d["question"] for d in docs) == Counter(
        {data._capital_question(c): 4 for c in data.CAPITALS}
    )
    assert len({(d["question"], tuple(sorted(d["choices"]))) for d in docs}) == 200
    for doc in docs:
        country = doc["question"].split("capital of ")[1].split("?")[0]
        assert len(set(doc["choices"])) == 4
        assert doc["choices"][doc["label"]] == data.CAPITALS[country]
    # The answer position is not a giveaway.
    assert len(Counter(d["label"] for d in docs)) == 4


def test_task_yamls_point_at_their_local_data_relative_to_the_yaml() -> None:
    names = set()
    for path in sorted(GENERAL_DIR.glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        names.add(config["task"])
        assert config["dataset_path"] == "json"
        data_file = config["dataset_kwargs"]["data_files"]["test"]
        assert (path.parent / data_file).is_file()
        assert "data_files are relative to this file" in path.read_text(encoding="utf-8")
        first = json.loads((path.parent / data_file).read_text(encoding="utf-8").splitlines()[0])
        assert "question" in first
    assert names == set(data.GENERAL_TASKS)


def test_demo_benchmarks_file_lists_the_four_tasks_with_a_five_point_margin() -> None:
    config = yaml.safe_load((Path(data.__file__).parent / "benchmarks.yaml").read_text())
    # The packaged tasks directory is always on lm-eval's path: no include_paths.
    assert set(config) == {"suites"} and list(config["suites"]) == ["demo"]
    assert [t["task"] for t in config["suites"]["demo"]] == list(data.GENERAL_TASKS)
    assert {t["margin"] for t in config["suites"]["demo"]} == {0.05}


def test_each_dialogue_cluster_is_one_dialogue() -> None:
    by_cluster: dict[str, set[str]] = defaultdict(set)
    for item in data.domain_test_set():
        by_cluster[item["metadata"]["cluster"]].add(_dialogue_of(item))
    assert all(len(texts) == 1 for texts in by_cluster.values())
