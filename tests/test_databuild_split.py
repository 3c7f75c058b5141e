"""`data build`: the split by clusters of near-identical dialogues, the contamination check
on its outputs, silver/gold references with the test review file, and stage keys that
cover templates and rule thresholds (fake engine, the fixtures of test_databuild.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.databuild import construct, evolve, pipeline, screen
from collapse_eval.databuild import label as label_mod
from collapse_eval.databuild.pipeline import TEST_REVIEW_FILE, read_jsonl
from collapse_eval.demo.dialogues import dialogue_records
from collapse_eval.domain.dataset import load_domain_set
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import CollapseEvalError, InputError
from collapse_eval.quality import rules
from tests.test_databuild import run_build, write_spec


def plant_near_copies(tmp_path: Path, n: int = 8) -> list[tuple[str, str]]:
    """The spec's dialogues plus, for each, a copy under another id with one word changed;
    returns the (original, copy) id pairs."""
    rows = dialogue_records(n)
    copies = []
    for row in rows:
        words = row["text"].split(" ")
        words[len(words) // 2] = "unexpectedly"
        copies.append({"id": f"near-{row['id']}", "text": " ".join(words)})
    # Copies first: clusters are ordered by their first dialogue's id, not by file order.
    all_rows = copies[::2] + rows + copies[1::2]
    (tmp_path / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in all_rows))
    return [(r["id"], c["id"]) for r, c in zip(rows, copies, strict=True)]


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    spec = write_spec(tmp_path)
    return spec, plant_near_copies(tmp_path)


def test_each_near_identical_pair_stays_on_one_side_and_build_json_lists_it(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    spec, pairs = planted
    report = run_build(spec, tmp_path / "out")
    split = report["split"]
    test_ids = set(split["test_dialogues"])
    assert test_ids and set(split["train_dialogues"])
    for original, copy in pairs:
        assert (original in test_ids) == (copy in test_ids), (original, copy)
    assert split["clusters"] == 8 and split["near_duplicate_jaccard"] == 0.7
    merged = {tuple(sorted(m["dialogues"])): m for m in split["merged"]}
    assert set(merged) == {tuple(sorted(p)) for p in pairs}
    for (a, b), entry in merged.items():
        assert entry["side"] == ("test" if a in test_ids else "train")
        [(x, y, similarity)] = entry["links"]
        assert {x, y} == {a, b} and 0.7 <= similarity < 1.0
    # The test items of a merged test cluster come from both of its dialogues.
    items = load_domain_set(tmp_path / "out" / "test.jsonl")
    assert {i.cluster for i in items} == test_ids


def test_the_split_is_a_function_of_the_dialogues_and_the_seed(tmp_path: Path) -> None:
    plant_near_copies(tmp_path, n=20)
    dialogues = label_mod.load_dialogues(tmp_path / "dialogues.jsonl")

    def test_side(seed: int) -> list[str]:
        return [d.id for d in label_mod.split_dialogues(dialogues, 0.25, seed).test]

    assert test_side(0) == test_side(0) and test_side(1) == test_side(1)
    assert test_side(0) != test_side(1)
    split = label_mod.split_dialogues(dialogues, 0.25, 0)
    assert split.n_clusters == 20 and len(split.test) == 2 * 5  # 5 of 20 pairs held out


def test_the_build_runs_the_contamination_check_on_its_outputs_and_finds_nothing(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    report = run_build(planted[0], tmp_path / "out")
    leaks = report["contamination"]
    assert leaks["n_contaminated"] == 0 and leaks["pairs"] == []
    assert (leaks["train"], leaks["test"]) == ("train.jsonl", "test.jsonl")
    assert leaks["n_test"] == report["counts"]["test"] > 0
    assert leaks["n_train"] == report["counts"]["train"] > 0
    out = tmp_path / "out"
    args = ["quality", str(out / "train.jsonl"), "--against", str(out / "test.jsonl")]
    assert main([*args, "--out", str(tmp_path / "q"), "--fail-on-contamination"]) == 0


def test_a_split_that_separates_near_copies_fails_the_build_loudly(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only exact copies cluster (the old split): the planted pairs may land on both sides.
    monkeypatch.setattr(label_mod, "SPLIT_JACCARD", 1.01)
    out = tmp_path / "out"
    with pytest.raises(CollapseEvalError, match=r"test item\(s\) near-duplicate training"):
        run_build(planted[0], out)
    report = json.loads((out / "build.json").read_text())
    assert report["contamination"]["n_contaminated"] > 0
    # Every leak is a planted pair: the test item's dialogue and the training sample's.
    train = {t["id"]: t["metadata"]["dialogue_id"] for t in read_jsonl(out / "train.jsonl")}
    test = {t["id"]: t["metadata"]["dialogue_id"] for t in read_jsonl(out / "test.jsonl")}
    planted_pairs = {frozenset(p) for p in planted[1]}
    for leak in report["contamination"]["pairs"]:
        assert frozenset((test[leak["test_id"]], train[leak["train_id"]])) in planted_pairs


# ------------------------------------------------------------------ silver and gold


def test_test_items_say_their_reference_is_the_labelers(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    report = run_build(spec, tmp_path / "out")
    items = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert items and report["counts"]["test_silver"] == len(items)
    assert report["counts"]["test_gold"] == 0
    for item in items:
        meta = item["metadata"]
        assert meta["reference_source"] == "silver"
        assert meta["labeler"] == "fake-model"
        assert meta["labeler_fingerprint"] == FakeEngine("fake-model").fingerprint
    for sample in read_jsonl(tmp_path / "out" / "train.jsonl"):
        assert sample["metadata"]["labeler_fingerprint"] == FakeEngine("fake-model").fingerprint


def refuse(model: str) -> FakeEngine:
    raise AssertionError("applying a test review must not load a model")


def test_review_corrections_and_drops_are_honoured_on_the_next_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_build(spec, out)
    items = read_jsonl(out / "test.jsonl")
    by_task = {i["task_type"]: i for i in items}
    fee, intent = by_task["compliance"], by_task["intent_classification"]
    assert fee["reference"] == "yes"
    review = [
        {"id": fee["id"], "reference": "no", "note": "the fee is never named"},
        {"id": intent["id"], "decision": "drop"},
        {
            "id": by_task["entity_extraction"]["id"],
            "reference": by_task["entity_extraction"]["reference"],
        },
    ]
    (out / TEST_REVIEW_FILE).write_text("".join(json.dumps(r) + "\n" for r in review))
    report = run_build(spec, out, factory=refuse)
    st = report["stages"]
    assert st["test_review"]["ran"] and not st["labeling"]["ran"] and not st["quality"]["ran"]
    assert {k: st["test_review"][k] for k in ("corrected", "confirmed", "dropped")} == {
        "corrected": 1,
        "confirmed": 1,
        "dropped": 1,
    }
    after = {i["id"]: i for i in read_jsonl(out / "test.jsonl")}
    assert intent["id"] not in after and len(after) == len(items) - 1
    assert after[fee["id"]]["reference"] == "no"
    assert after[fee["id"]]["metadata"]["reference_source"] == "gold"
    assert after[fee["id"]]["metadata"]["silver_reference"] == "yes"
    assert (report["counts"]["test_gold"], report["counts"]["test_silver"]) == (2, len(items) - 3)
    assert report["counts"]["test"] == len(items) - 1
    assert report["stages"]["labeling"]["test_items"] == len(items)
    load_domain_set(out / "test.jsonl")  # still a valid domain test set
    # The same review again: nothing to do.
    again = run_build(spec, out, factory=refuse)
    assert not again["stages"]["test_review"]["ran"]
    assert again["stages"]["test_review"]["corrected"] == 1


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ({"id": "test-99999", "decision": "drop"}, "id", "no test item with id 'test-99999'"),
        ({"id": "COMPLIANCE", "reference": "maybe"}, "reference", "yes/no"),
        (
            {"id": "INTENT", "reference": "sell"},
            "reference",
            "'sell' is not one of the task's labels",
        ),
        ({"id": "JSON", "reference": {"city": "x"}}, "reference", "exactly the task's keys"),
        ({"id": "INTENT", "decision": "keep"}, "decision", "must be \"drop\", got 'keep'"),
        ({"id": "INTENT", "decison": "drop"}, "decison", "Did you mean 'decision'?"),
        ({"id": "INTENT", "decision": "drop", "reference": "rent"}, None, "give either"),
    ],
)
def test_a_bad_review_line_exits_2_naming_line_and_field(
    tmp_path: Path,
    line: dict[str, Any],
    field: str | None,
    message: str,
) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_build(spec, out)
    ids = {
        "COMPLIANCE": "compliance",
        "INTENT": "intent_classification",
        "JSON": "entity_extraction",
    }
    by_task = {i["task_type"]: i["id"] for i in read_jsonl(out / "test.jsonl")}
    line = {**line, "id": by_task.get(ids.get(line["id"], ""), line["id"])}
    first = {"id": by_task["compliance"], "decision": "drop"}
    (out / TEST_REVIEW_FILE).write_text(json.dumps(first) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(InputError) as err:
        run_build(spec, out, factory=refuse)
    where = f"test.review.jsonl:2: field '{field}': " if field else "test.review.jsonl:2: "
    assert where in str(err.value) and message in str(err.value)
    assert err.value.exit_code == 2


# ------------------------------------------------------------------ stage keys


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    spec = write_spec(root)
    run_build(spec, root / "out")
    return root


def _label_request_reworded(original: Callable[..., Any]) -> Callable[..., Any]:
    def reworded(*args: Any) -> Any:
        request = original(*args)
        system, user = request.messages
        return dataclasses.replace(request, messages=(("system", system[1] + " Be careful."), user))

    return reworded


CHANGES: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], set[str]]] = {
    "construction template": (
        lambda mp: mp.setitem(construct.STYLE_WORDING, "formal", "a very formal"),
        {"construction"},
    ),
    "screening constant": (
        lambda mp: mp.setattr(screen, "MIN_WORDS", 3),
        {"construction", "evolution"},
    ),
    "operator text": (
        lambda mp: mp.setitem(evolve.OPERATOR_WORDING, "add_constraint", "Add a constraint."),
        {"evolution"},
    ),
    "label template": (
        lambda mp: mp.setattr(
            label_mod, "label_request", _label_request_reworded(label_mod.label_request)
        ),
        {"labeling"},
    ),
    "split threshold": (lambda mp: mp.setattr(label_mod, "SPLIT_JACCARD", 0.9), {"labeling"}),
    "quality threshold": (lambda mp: mp.setattr(rules, "NEAR_DUP_THRESHOLD", 0.8), {"quality"}),
    "rule code": (
        lambda mp: mp.setattr(
            pipeline,
            "_source_hash",
            lambda m, real=pipeline._source_hash: "edited" if m == "quality.rules" else real(m),
        ),
        {"quality"},
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_template_or_rule_reruns_its_stage_and_skips_the_ones_before(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(built / "out", out)
    unchanged = run_build(built / "spec.yaml", out)
    assert not any(unchanged["stages"][s]["ran"] for s in pipeline.STAGES)
    patch, reran = CHANGES[change]
    patch(monkeypatch)
    report = run_build(built / "spec.yaml", out)
    ran = {s for s in pipeline.STAGES if report["stages"][s]["ran"]}
    first = min(pipeline.STAGES.index(s) for s in reran)
    assert reran <= ran
    # The stages before the first changed one were skipped (later ones re-run only when
    # their inputs changed).
    assert not ran & set(pipeline.STAGES[:first])
