from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from collapse_eval.cli import cli
from tests.conftest import write_run

TASKS = {"arc": {"suite": "general", "primary_metric": "acc"}}


def _run(path: Path, domain_correct: int, general_correct: int) -> Path:
    rows = [
        {
            "suite": "domain",
            "task": "rt",
            "item_id": str(i),
            "metric": "score",
            "score": float(i < domain_correct),
        }
        for i in range(20)
    ]
    rows += [
        {
            "suite": "general",
            "task": "arc",
            "item_id": str(i),
            "metric": "acc",
            "score": float(i < general_correct),
        }
        for i in range(20)
    ]
    rows += [
        {"suite": "general", "task": "arc", "item_id": str(i), "metric": "acc_norm", "score": 1.0}
        for i in range(20)
    ]  # not the primary metric: must be ignored
    return write_run(path, path.name, rows, TASKS)


def test_correlate_cli_matches_scipy(tmp_path: Path) -> None:
    quality = [0.2, 0.5, 0.4, 0.9, 0.7]
    domain = [6, 10, 9, 17, 12]
    general = [12, 11, 13, 12, 10]
    lines = ["run,quality,label"]
    for i, (q, d, g) in enumerate(zip(quality, domain, general, strict=True)):
        _run(tmp_path / f"r{i}", d, g)
        lines.append(f"r{i},{q},ckpt {i}")
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "table.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "correlation.json").read_text())
    by = {(c["performance"], c["method"]): c for c in report["correlations"]}
    d_scores = [d / 20 for d in domain]
    assert by["domain", "spearman"]["estimate"] == pytest.approx(
        stats.spearmanr(quality, d_scores).statistic
    )
    assert by["domain", "pearson"]["estimate"] == pytest.approx(
        stats.pearsonr(quality, d_scores).statistic
    )
    assert by["general", "kendall"]["estimate"] == pytest.approx(
        stats.kendalltau(quality, [g / 20 for g in general]).statistic
    )
    assert by["domain", "spearman"]["p_method"] == "exact_permutation"
    assert report["runs"][0]["label"] == "ckpt 0"
    assert (out / "plots" / "correlation.png").stat().st_size > 1000


def test_correlate_bad_table_is_exit_2(tmp_path: Path) -> None:
    _run(tmp_path / "r0", 5, 5)
    (tmp_path / "t.csv").write_text("run,quality\nr0,high\n")
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "t.csv")])
    assert result.exit_code == 2 and "t.csv:2: field 'quality'" in result.output
    (tmp_path / "t2.csv").write_text("run,quality\nnowhere,0.5\n")
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "t2.csv")])
    assert result.exit_code == 2 and "field 'run'" in result.output


def test_group_subtasks_count_as_one_general_task(tmp_path: Path) -> None:
    from collapse_eval.correlate import run_performance
    from collapse_eval.records import load_run

    rows = [
        {
            "suite": "general",
            "task": f"mmlu_{s}",
            "item_id": str(i),
            "metric": "acc",
            "score": float(s == "a"),
            "metadata": {"group": "mmlu"},
        }
        for s, n in (("a", 30), ("b", 10))
        for i in range(n)
    ]
    rows += [
        {"suite": "general", "task": "arc", "item_id": str(i), "metric": "acc", "score": 0.0}
        for i in range(10)
    ]
    run = load_run(write_run(tmp_path / "r", "m", rows))
    # mmlu pooled: 30/40 = 0.75; arc 0.0; mean of the two benchmarks = 0.375
    assert run_performance(run) == (None, pytest.approx(0.375))
