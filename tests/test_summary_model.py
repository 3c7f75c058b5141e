"""The typed summary (collapse_eval.summary): summary.json -> Summary -> summary.json is
exact, unknown keys survive, and the report finds the runs with the one resolver."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.policy import policy_from_mapping
from collapse_eval.report.html import write_reports
from collapse_eval.summary import (
    POOLED_LACKS,
    SUMMARY_FILE,
    Comparison,
    Summary,
    load_summary,
    side_run_dir,
)
from collapse_eval.verdict import rejudge
from tests.conftest import write_run

TASKS = {
    "arc_easy": {"suite": "general", "primary_metric": "acc", "margin": 0.03},
    "mmlu_a": {"suite": "general", "primary_metric": "acc"},
    "mmlu_b": {"suite": "general", "primary_metric": "acc"},
    "err": {"suite": "general", "primary_metric": "wer", "higher_is_better": False},
    "onlybase": {"suite": "general", "primary_metric": "acc"},
}
POLICY = (
    "general: {margin: 0.02, critical: [err], require_per_task: {mmlu: equivalent}, "
    "margins: {err: 0.05}}\ndomain: {fail_on_format: [regressed]}\n"
)


def _rows(side: int, n: int = 60) -> list[dict[str, Any]]:
    """Every kind of row compare writes: a task with clusters and a second metric, a group
    of subtasks, a lower-is-better continuous task, domain tasks with task types, output
    formats and format_ok, and a task in the base run only."""
    rng = random.Random(7 + side)
    p = 0.6 + 0.05 * side
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows += [
            {"suite": "general", "task": "arc_easy", "item_id": str(i), "metric": "acc",
             "score": float(rng.random() < p), "cluster": f"c{i % 15}"},
            {"suite": "general", "task": "arc_easy", "item_id": str(i), "metric": "acc_norm",
             "score": float(rng.random() < p)},
            {"suite": "general", "task": "err", "item_id": f"e{i}", "metric": "wer",
             "score": rng.random() * 0.5},
            {"suite": "domain", "task": "realestate", "item_id": f"rt-{i}", "metric": "score",
             "score": float(rng.random() < 0.5 + 0.2 * side),
             "task_type": ["intent", "extract"][i % 2], "output_format": ["label", "json"][i % 2],
             "format_ok": rng.random() < 0.9},
            {"suite": "domain", "task": "legal", "item_id": f"lg-{i}", "metric": "score",
             "score": rng.random(), "task_type": "qa", "output_format": "text"},
        ]  # fmt: skip
        rows += [
            {"suite": "general", "task": sub, "item_id": f"{sub}{i}", "metric": "acc",
             "score": float(rng.random() < 0.5), "metadata": {"group": "mmlu"}}
            for sub in ("mmlu_a", "mmlu_b")
        ]  # fmt: skip
        if side == 0:
            rows.append({"suite": "general", "task": "onlybase", "item_id": f"o{i}",
                         "metric": "acc", "score": 1.0})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compare output whose summary.json has every optional field compare writes."""
    root = tmp_path_factory.mktemp("model")
    base = write_run(root / "runs" / "base", "base-model", _rows(0), TASKS)
    tuned = write_run(root / "runs" / "tuned", "tuned-model", _rows(1), TASKS)
    (root / "policy.yaml").write_text(POLICY)
    out = root / "out"
    args = ["compare", str(base), str(tuned), "--out", str(out), "--policy"]
    assert main([*args, str(root / "policy.yaml"), "-q"]) in (0, 1)
    return out


def test_summary_json_round_trips_byte_for_byte(compared: Path) -> None:
    text = (compared / SUMMARY_FILE).read_text(encoding="utf-8")
    obj = json.loads(text)
    summary = Summary.from_json(obj, compared / SUMMARY_FILE)
    assert json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n" == text
    # Every field of the model occurs in this file, so the round trip covers all of them.
    row_keys = {key for row in obj["comparisons"] for key in row}
    model_fields = {f.name for f in dataclasses.fields(Comparison)} - {"extra", "absent"}
    assert model_fields == row_keys
    pooled = obj["domain_overall"]["pooled"]
    assert set(pooled) == model_fields - set(POOLED_LACKS) - {
        "critical",
        "margin_source",
        "required",
    }
    assert obj["domain_overall"]["macro_by_task_type"]["n_groups"] == 3
    assert obj["domain_gain"]["required"] is True
    assert obj["unpaired"] == [{"suite": "general", "task": "onlybase", "only_in": "base"}]
    assert {row["required"] for row in obj["comparisons"] if "required" in row} == {
        "non_inferior",
        "equivalent",
    }


def test_readers_use_the_typed_rows(compared: Path) -> None:
    summary = load_summary(compared / SUMMARY_FILE)
    err = next(c for c in summary.comparisons if c.task == "err" and c.group_by is None)
    assert (err.critical, err.higher_is_better, err.margin, err.margin_source) == (
        True,
        False,
        0.05,
        "policy general.margins.err",
    )
    assert err.flips is not None and err.delta_quantiles is not None
    assert err.flips.lost + err.flips.gained + err.flips.same == err.n == 60
    assert summary.domain_overall is not None and summary.domain_overall.pooled is not None
    assert summary.domain_overall.pooled.n == 120


def test_unknown_keys_survive_rejudging(compared: Path) -> None:
    """A newer minor writer's fields and a known field of an unexpected type are written
    back as read after `gate --policy` re-judges the summary (except in domain_gain and
    policy, which re-judging replaces as a whole)."""
    obj = json.loads((compared / SUMMARY_FILE).read_text())
    obj["x_top"] = {"nested": [1, 2]}
    obj["base"]["x_side"] = "kept"
    obj["comparisons"][0]["x_row"] = 3
    obj["comparisons"][1]["mde"] = "not a number"
    obj["domain_overall"]["pooled"]["x_pooled"] = True
    obj["domain_overall"]["x_overall"] = None
    obj["retention"]["x_retention"] = [0.5]
    obj["unpaired"][0]["x_unpaired"] = 1
    summary = Summary.from_json(obj)
    assert summary.comparisons[1].mde is None  # readers see a field they can use, or none
    policy = policy_from_mapping({"general": {"margin": 0.05}, "domain": {"require_gain": False}})
    out = rejudge(summary, policy).to_json()
    assert out["x_top"] == {"nested": [1, 2]}
    assert out["base"]["x_side"] == "kept"
    assert out["comparisons"][0]["x_row"] == 3
    assert out["comparisons"][1]["mde"] == "not a number"
    assert out["domain_overall"]["pooled"]["x_pooled"] is True
    assert "x_overall" in out["domain_overall"]
    assert out["retention"]["x_retention"] == [0.5]
    assert out["unpaired"][0]["x_unpaired"] == 1
    assert out["domain_gain"]["required"] is False  # and it was re-judged
    assert out["comparisons"][0]["margin_source"] == "benchmarks.yaml"  # arc_easy's own
    # Nothing else changed: the re-judged object under the stored policy is the original.
    stored = policy_from_mapping(
        {"general": {"margin": 0.02, "critical": ["err"], "margins": {"err": 0.05},
                     "require_per_task": {"mmlu": "equivalent"}},
         "domain": {"fail_on_format": ["regressed"]}}
    )  # fmt: skip
    assert rejudge(summary, stored).to_json() == obj


def test_absent_optional_fields_stay_absent(compared: Path) -> None:
    """A summary from an older writer (fewer fields) is not given fields it did not have,
    except those re-judging sets."""
    obj = json.loads((compared / SUMMARY_FILE).read_text())
    for row in obj["comparisons"]:
        for key in ("mde", "flips", "higher_is_better", "critical", "margin_source"):
            row.pop(key, None)
    del obj["domain_gain"], obj["seed"]
    assert Summary.from_json(obj).to_json() == obj
    judged = rejudge(Summary.from_json(obj), policy_from_mapping({})).to_json()
    assert "mde" not in judged["comparisons"][0] and "flips" not in judged["comparisons"][0]
    assert judged["comparisons"][0]["margin_source"] == "benchmarks.yaml"
    assert "domain_gain" in judged and "seed" not in judged


def test_the_report_takes_the_run_directories_from_its_caller(
    compared: Path, tmp_path: Path
) -> None:
    """write_reports does not look runs up: without run_dirs it says the runs were not
    found, with them it shows their examples."""
    summary = load_summary(compared / SUMMARY_FILE)
    out = tmp_path / "report"
    write_reports(out, summary, env={})
    html = (out / "report.html").read_text()
    assert "No examples: the base run (" in html
    assert "examples need both runs&#39; records.jsonl" in html
    runs = compared.parent / "runs"
    write_reports(out, summary, env={}, run_dirs=(runs / "base", runs / "tuned"))
    html = (out / "report.html").read_text()
    assert "No examples" not in html
    assert len(re.findall(r'data-direction="(?:lost|gained)"', html)) > 10


def test_report_finds_runs_stored_relative_to_a_directory_above_the_summary(
    compared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compare run in ROOT with `--out reports/x` and runs in ROOT/runs (older summaries
    stored the paths as typed): the report finds them under the summary's parents, as gate
    and correlate do (one resolver), never under the working directory."""
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    for side in ("base", "tuned"):
        shutil.copytree(compared.parent / "runs" / side, root / "runs" / side)
    out = root / "reports" / "x"
    out.mkdir(parents=True)
    obj = json.loads((compared / SUMMARY_FILE).read_text())
    obj["base"]["run"], obj["tuned"]["run"] = "runs/base", "runs/tuned"
    (out / SUMMARY_FILE).write_text(json.dumps(obj))
    monkeypatch.chdir(tmp_path)  # where "runs/base" is not
    summary = load_summary(out / SUMMARY_FILE)
    assert side_run_dir(summary, "base", out / SUMMARY_FILE) == root / "runs" / "base"
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "No examples" not in html
