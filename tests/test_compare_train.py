"""compare --train: per-slice training quality against the slice's delta, and lost items
traced to their nearest training samples (collapse_eval/training.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.demo import data
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.quality.contamination import find_contamination
from collapse_eval.training import (
    TrainingSample,
    load_training,
    nearest_samples,
    parse_train_options,
)
from tests.conftest import write_run
from tests.longdialogues import dialogue, dialogue_rows

TEST_FILE = data.TASKS_DIR / "demo" / "realestate_test.jsonl"
DEFECT = "intent_classification"  # the task type whose training labels are corrupted
LEAKED = 5  # test dialogues planted in the training set (6 test items each)


def _runs(root: Path) -> tuple[Path, Path]:
    """Base and tuned runs over the demo test set: the tuned model gains or keeps every
    item except those of DEFECT, which it loses whenever the base had them right."""
    rng = random.Random(0)
    base, tuned = [], []
    for item in (json.loads(line) for line in TEST_FILE.read_text().splitlines()):
        b = float(rng.random() < 0.6)
        t = 0.0 if item["task_type"] == DEFECT else max(b, float(rng.random() < 0.5))
        row = {
            "suite": "domain",
            "task": TEST_FILE.stem,
            "item_id": item["id"],
            "metric": "score",
            "task_type": item["task_type"],
            "output_format": item["output_format"],
            "cluster": item["metadata"]["cluster"],
        }
        base.append({**row, "score": b})
        tuned.append({**row, "score": t})
    return write_run(root / "base", "b", base), write_run(root / "tuned", "t", tuned)


def _dialogue(row: dict[str, Any]) -> str:
    text = row["prompt"] if "prompt" in row else row["messages"][-1]["content"]
    return str(text).split("\n\nQuestion:")[0]


def _plant_leaks(rows: list[dict[str, Any]]) -> None:
    """Put LEAKED test dialogues (those of the first DEFECT test items) into as many
    training samples of other task types, in place of their own dialogue: the demo's split
    shares none with its test set, and the contamination check needs leaks to find."""
    tests = [json.loads(line) for line in TEST_FILE.read_text().splitlines()]
    leaked = list(dict.fromkeys(_dialogue(t) for t in tests if t["task_type"] == DEFECT))
    targets = [r for r in rows if "prompt" in r and r["task_type"] != DEFECT]
    for row, text in zip(targets[:LEAKED], leaked[:LEAKED], strict=True):
        row["prompt"] = text + row["prompt"].removeprefix(_dialogue(row))


def _defective_train(path: Path) -> Path:
    """The demo's clean training split with every DEFECT label behind an unclosed code
    fence (the graded sets' `malformed` defect: flagged truncated), and LEAKED test
    dialogues planted."""
    rows = data.domain_train_set()
    for row in rows:
        if row["task_type"] == DEFECT:
            row["response"] = "```\n" + row["response"]
    _plant_leaks(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("train")
    base, tuned = _runs(root)
    train = _defective_train(root / "train.jsonl")
    argv = ["compare", str(base), str(tuned), "--train", str(train), "--domain", str(TEST_FILE)]
    code = main([*argv, "--out", str(root / "out"), "--quiet"])
    summary = json.loads((root / "out" / "summary.json").read_text(encoding="utf-8"))
    return {"code": code, "root": root, "train": train, "summary": summary, "argv": argv}


def _types(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["task_type"]: s for s in block["slices"] if s["group_by"] == "task_type"}


def test_planted_defect_shows_as_the_slices_low_quality_and_its_lost_items(traced) -> None:
    assert traced["code"] == 0
    block = traced["summary"]["training"]
    types = _types(block)
    assert len(types) == 9
    bad = types[DEFECT]
    assert bad["n_flagged"] == bad["n_train"] == 232
    assert bad["flags"] == {"invalid_format": 232, "truncated": 232}
    assert bad["quality"] < 0.5
    assert min(types.values(), key=lambda s: s["quality"]) is bad
    assert all(s["quality"] > 0.99 for name, s in types.items() if name != DEFECT)
    # The slice's delta is the summary's own task-type row.
    row = next(
        c for c in traced["summary"]["comparisons"] if c["family"] == "domain/task_type"
        and c["group"] == DEFECT
    )  # fmt: skip
    assert (bad["delta"], bad["ci_low"], bad["ci_high"]) == (
        row["delta"],
        row["ci_low"],
        row["ci_high"],
    )
    assert bad["lost"] == block["n_lost"] == len(block["lost"]) == 38
    assert bad["delta"] < 0 and bad["ci_high"] < 0


def test_lost_items_name_training_samples_of_the_defective_slice(traced) -> None:
    block = traced["summary"]["training"]
    train = {s.id: s for s in load_training_set(traced["train"])}
    lost = block["lost"]
    assert {row["task_type"] for row in lost} == {DEFECT}
    assert all(len(row["nearest"]) == 3 for row in lost)
    first = [row["nearest"][0] for row in lost]
    same = sum(n["task_type"] == DEFECT for n in first)
    assert same >= 0.9 * len(lost)
    for n in first:  # ids, flags and scores are the training set's
        assert train[n["id"]].task_type == n["task_type"]
        if n["task_type"] == DEFECT:
            assert set(n["flags"]) == {"invalid_format", "truncated"} and n["score"] < 0.5
        assert n["similarity"] > 0
    sims = [n["similarity"] for n in lost[0]["nearest"]]
    assert sims == sorted(sims, reverse=True)


def test_contamination_is_quality_against_check(traced) -> None:
    block = traced["summary"]["training"]
    leaks = find_contamination(
        load_training_set(traced["train"], allow_empty_response=True), load_domain_set(TEST_FILE)
    )
    assert block["contamination"]["n_contaminated"] == leaks.n_contaminated == 6 * LEAKED
    assert {c["test_id"] for c in block["contamination"]["items"]} == {
        leak.test_id for leak in leaks.leaks
    }
    marked = {r["item_id"] for r in block["lost"] if r["contaminated"] is not None}
    assert marked == {r["item_id"] for r in block["lost"]} & {leak.test_id for leak in leaks.leaks}
    assert marked  # some lost items are contaminated in this set


def test_correlations_across_slices(traced) -> None:
    corr = {(c["group_by"], c["x"]): c for c in traced["summary"]["training"]["correlations"]}
    # One format per task type in the demo: the cells are the task types, not repeated.
    assert set(corr) == {
        ("task_type", "quality"),
        ("task_type", "share"),
        ("output_format", "quality"),
        ("output_format", "share"),
    }
    quality = corr["task_type", "quality"]
    assert quality["n"] == 9 and quality["p_method"] == "exact_permutation"
    assert quality["method"] == "spearman" and quality["estimate"] > 0
    assert quality["ci_low"] <= quality["estimate"] <= quality["ci_high"]


def test_quality_json_gives_the_same_slices(traced, tmp_path: Path) -> None:
    assert main(["quality", str(traced["train"]), "--out", str(tmp_path / "q")]) == 0
    from_json = load_training(tmp_path / "q" / "quality.json")
    from_jsonl = load_training(traced["train"])
    assert from_json.quality_source == str(tmp_path / "q" / "quality.json")
    assert [(s.id, s.score, s.flags) for s in from_json.samples] == [
        (s.id, s.score, s.flags) for s in from_jsonl.samples
    ]
    # A quality.json whose training file moved next to it is still found by name.
    moved = tmp_path / "q" / "train.jsonl"
    moved.write_bytes(traced["train"].read_bytes())
    quality = json.loads((tmp_path / "q" / "quality.json").read_text())
    quality["source"] = "/nowhere/train.jsonl"
    (tmp_path / "q" / "quality.json").write_text(json.dumps(quality))
    assert load_training(tmp_path / "q").source == str(moved)


def test_run_directories_without_domain_are_not_traced(traced, tmp_path: Path) -> None:
    argv = traced["argv"][:5]  # compare BASE TUNED --train TRAIN
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    block = json.loads((tmp_path / "summary.json").read_text())["training"]
    assert block["n_lost"] == 38 and all(r["nearest"] == [] for r in block["lost"])
    assert "give the domain test set with --domain" in block["lost_not_traced"]
    assert block["contamination"]["checked_tasks"] == []
    from collapse_eval.training import training_lines

    assert "contamination not checked (no test texts)" in training_lines(block)[-1]
    assert _types(block)[DEFECT]["quality"] < 0.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["tuneed=x.jsonl"], "no candidate is named 'tuneed'. Did you mean 'tuned'?"),
        (["a.jsonl", "tuned=b.jsonl"], "cannot be mixed"),
        (["a.jsonl", "b.jsonl"], "given 2 times without a candidate name"),
        (["tuned=a.jsonl", "tuned=b.jsonl"], "given twice"),
    ],
)
def test_ambiguous_train_options_are_refused(values: list[str], message: str) -> None:
    from collapse_eval.errors import UsageError

    with pytest.raises(UsageError, match=message.replace("?", r"\?").replace("(", r"\(")):
        parse_train_options(values, ["tuned", "other"])


def test_train_options_per_candidate_and_for_all() -> None:
    both = {"x": Path("a.jsonl"), "y": Path("a.jsonl")}
    assert parse_train_options(["a.jsonl"], ["x", "y"]) == both
    assert parse_train_options(["y=b.jsonl"], ["x", "y"]) == {"y": Path("b.jsonl")}


def test_cli_refuses_bad_train_values_with_exit_2(traced, capsys) -> None:
    base, tuned = traced["argv"][1:3]
    out = str(traced["root"] / "refused")
    for train, said in (
        ("tunde=x.jsonl", "Did you mean 'tuned'?"),
        (str(traced["root"] / "missing.jsonl"), "file not found (--train)"),
        (str(TEST_FILE), "is not a training set"),
    ):
        assert main(["compare", base, tuned, "--train", train, "--out", out]) == 2
        assert said in capsys.readouterr().err
    # --domain with run directories is still refused without --train (it would do nothing).
    assert main(["compare", base, tuned, "--domain", str(TEST_FILE), "--out", out]) == 2
    assert not Path(out).exists()


def _samples(rows: list[dict[str, Any]]) -> list[TrainingSample]:
    from collapse_eval.quality.contamination import input_text

    items = [
        (r["id"], r.get("prompt"), [(m["role"], m["content"]) for m in r.get("messages", [])])
        for r in rows
    ]
    return [
        TrainingSample(i, None, None, input_text(p, m or None), "", 1.0, ()) for i, p, m in items
    ]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_bm25_finds_the_long_dialogue_a_question_is_about(language: str) -> None:
    """A question that restates one dialogue's facts in new words finds that dialogue's
    samples first, in Chinese too (CJK characters are tokens: bm25s's own tokenizer keeps
    a whole clause as one token, which no training text contains)."""
    samples = _samples(dialogue_rows(40, language))
    _, facts = dialogue(17, language)
    if language == "zh":
        query = f"{facts['name']}的{facts['room']}要{facts['request']}吗"
    else:
        query = f"Did {facts['name']} ask for {facts['request']} in the {facts['room']}?"
    (found,) = nearest_samples(samples, [query])
    assert [n["id"].split("-")[1] for n in found] == [f"{17:05d}"] * 3


PAYLOAD = "<script>document.body.setAttribute('data-pwned', 'x')</script>"


def test_report_shows_nearest_samples_with_training_text_escaped(tmp_path: Path) -> None:
    """Training text and task types are untrusted: the report escapes them in the slice
    table and in the lost-examples view, which names each lost item's nearest samples."""
    items = [
        {"id": f"q{i}", "task_type": "intent", "output_format": "label",
         "prompt": f"Customer {i} wants to rent a flat in Lyon. Intent:", "reference": "rent"}
        for i in range(6)
    ]  # fmt: skip
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    rows = [
        {"suite": "domain", "task": "test", "item_id": r["id"], "metric": "score",
         "task_type": "intent", "output_format": "label"}
        for r in items
    ]  # fmt: skip
    base = write_run(tmp_path / "base", "b", [{**r, "score": 1.0} for r in rows])
    tuned = write_run(
        tmp_path / "tuned", "t", [{**r, "score": float(i % 2)} for i, r in enumerate(rows)]
    )
    train = tmp_path / "train.jsonl"
    samples = [
        {"id": f"s{i}", "task_type": "intent" if i < 3 else PAYLOAD, "output_format": "label",
         "prompt": f"{PAYLOAD} Customer {i} wants to rent in Lyon. Intent:", "response": "rent"}
        for i in range(4)
    ]  # fmt: skip
    train.write_text("".join(json.dumps(r) + "\n" for r in samples), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["compare", str(base), str(tuned), "--train", str(train), "--domain", str(test)]
    assert main([*argv, "--out", str(out), "--quiet"]) == 1  # the gate fails: it lost half
    html = (out / "report.html").read_text(encoding="utf-8")
    assert PAYLOAD not in html
    assert "&lt;script&gt;document.body.setAttribute(" in html
    assert html.count('class="neighbour"') == 3 * 3  # 3 lost items, 3 samples each
    assert "<pre>Customer 2 wants to rent a flat in Lyon. Intent:</pre>" in html  # from --domain
    assert 'id="training-task_type"' in html and "95% CI" in html
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert "### Training data by slice" in markdown and "<script>" not in markdown
    assert "| intent | 3 | 75.0% |" in markdown and "\\<script\\>" in markdown
    lost = json.loads((out / "summary.json").read_text())["training"]["lost"]
    assert [r["item_id"] for r in lost] == ["q0", "q2", "q4"]
    assert lost[0]["nearest"][0]["id"] == "s0"  # "Customer 0" matches only s0's number


def test_summary_with_training_matches_the_schema_and_rerenders(traced) -> None:
    import jsonschema

    schema_path = Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validate(traced["summary"], schema)
    broken = json.loads(json.dumps(traced["summary"]))
    broken["training"]["slices"][0]["group_by"] = "task"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    # `collapse-eval report` re-renders the section from summary.json alone.
    out = traced["root"] / "out"
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="training-task_type"' in html and html.count('class="neighbour"') == 25 * 3


def test_train_without_bm25s_is_exit_2_naming_the_extra(traced, monkeypatch, capsys) -> None:
    from collapse_eval import extras

    real = extras._findable
    monkeypatch.setattr(extras, "_findable", lambda module: module != "bm25s" and real(module))
    base, tuned, train = traced["argv"][1], traced["argv"][2], traced["argv"][4]
    out = traced["root"] / "no-bm25s"
    assert main(["compare", base, tuned, "--train", train, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bm25s is not installed" in err and "pip install 'collapse-eval[run]'" in err
    assert not out.exists()


def test_train_per_candidate_by_name(traced, tmp_path: Path) -> None:
    """Several candidates: NAME=PATH attaches a set to that candidate only."""
    import shutil

    base, tuned = traced["argv"][1], traced["argv"][2]
    other = tmp_path / "other"
    shutil.copytree(tuned, other)
    train = f"other={traced['train']}"
    argv = ["compare", base, tuned, str(other), "--train", train, "--out", str(tmp_path / "o")]
    assert main([*argv, "--quiet"]) == 0
    with_block = json.loads((tmp_path / "o" / "other" / "summary.json").read_text())
    without = json.loads((tmp_path / "o" / "tuned" / "summary.json").read_text())
    assert with_block["training"]["source"] == str(traced["train"])
    assert "training" not in without


def test_demo_prints_each_candidates_training_table(traced) -> None:
    from collapse_eval.demo.run import DemoRow, training_report_lines

    summary = traced["root"] / "out" / "summary.json"
    rows = [
        DemoRow("graded-34", "pass", None, None, summary),
        DemoRow("x", "pass", None, None, summary),
    ]
    lines = training_report_lines(rows)
    assert [line for line in lines if not line.startswith("  ")] == ["graded-34:", "x:"]
    assert lines[1].startswith("  training data: ") and "1920 samples" in lines[1]
    assert lines[2].split() == [
        "slice",
        "train",
        "share",
        "quality",
        "flagged",
        "test",
        "lost",
        "delta",
        "[95%",
        "CI]",
    ]
    assert any(line.split()[:2] == ["intent_classification", "232"] for line in lines)
    assert "training quality vs delta across task types: spearman +0.52" in "\n".join(lines)


def test_cells_are_sliced_and_correlated_when_a_task_type_has_several_formats(
    tmp_path: Path,
) -> None:
    """Task type x output format cells: their own delta (computed like the summary's rows)
    and, as they split the task types here, their own correlations."""
    cells = [("ask", "label"), ("ask", "yes_no"), ("tell", "label"), ("tell", "free_text")]
    rows, samples = [], []
    for i in range(160):
        task_type, fmt = cells[i % 4]
        rows.append({"suite": "domain", "task": "t", "item_id": f"q{i}", "metric": "score",
                     "task_type": task_type, "output_format": fmt})  # fmt: skip
    base = write_run(tmp_path / "base", "b", [{**r, "score": 1.0} for r in rows])
    # cell c (= i % 4) loses the items with (i // 4) % 4 < c: 0, 25, 50 and 75 % of them.
    lost = [(i % 4) > (i // 4) % 4 for i in range(160)]
    tuned_rows = [{**r, "score": 0.0 if gone else 1.0} for r, gone in zip(rows, lost, strict=True)]
    tuned = write_run(tmp_path / "tuned", "t", tuned_rows)
    for c, (task_type, fmt) in enumerate(cells):
        for j in range(10 + 10 * c):  # shares 10, 20, 30, 40 samples
            response = {"label": "yes", "yes_no": "yes", "free_text": "It is fine."}[fmt]
            samples.append({"id": f"s{c}-{j}", "task_type": task_type, "output_format": fmt,
                            "prompt": f"Question {c} {j}?", "response": response})  # fmt: skip
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    argv = ["compare", str(base), str(tuned), "--train", str(train), "--out", str(tmp_path / "o")]
    main([*argv, "--quiet"])
    block = json.loads((tmp_path / "o" / "summary.json").read_text())["training"]
    by_cell = {
        (s["task_type"], s["output_format"]): s for s in block["slices"] if s["group_by"] == "cell"
    }
    assert list(by_cell) == sorted(cells, key=str)
    for c, cell in enumerate(cells):
        assert by_cell[cell]["n_test"] == 40 and by_cell[cell]["lost"] == 10 * c
        assert by_cell[cell]["delta"] == pytest.approx(-c / 4)
        assert by_cell[cell]["n_train"] == 10 + 10 * c
        assert by_cell[cell]["ci_low"] <= by_cell[cell]["delta"] <= by_cell[cell]["ci_high"]
    share = next(c for c in block["correlations"] if (c["group_by"], c["x"]) == ("cell", "share"))
    assert share["n"] == 4 and share["estimate"] == pytest.approx(-1.0)
    assert share["p_method"] == "exact_permutation" and share["p_value"] == pytest.approx(2 / 24)
