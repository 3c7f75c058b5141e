"""correlate: each quality dimension against each performance measure (Spearman, CI, exact
p), on a hand-made table whose values are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from collapse_eval.cli import cli
from collapse_eval.correlate import correlate_table, dimension_lines, render_markdown
from tests.conftest import write_run

TASKS = {"arc": {"suite": "general", "primary_metric": "acc"}}
DOMAIN = [16, 12, 10, 6, 2]  # items right of 20, run by run
GENERAL = [10, 12, 11, 13, 9]
DIMENSIONS = {
    "completeness": [1.0, 0.9, 0.8, 0.7, 0.6],  # falls with the domain score
    "format": [0.5, 0.6, 0.7, 0.8, 0.9],  # rises as it falls
    "uniqueness": [1.0] * 5,  # the same in every run: predicts nothing
}


def _run(path: Path, domain: int, general: int) -> Path:
    rows = [
        {"suite": s, "task": t, "item_id": str(i), "metric": m, "score": float(i < n)}
        for s, t, m, n in (("domain", "rt", "score", domain), ("general", "arc", "acc", general))
        for i in range(20)
    ]
    return write_run(path, path.name, rows, TASKS)


def _table(tmp_path: Path, number_row: int | None = None) -> Path:
    lines = ["run,quality,label"]
    for i, (d, g) in enumerate(zip(DOMAIN, GENERAL, strict=True)):
        _run(tmp_path / f"r{i}", d, g)
        dims = {name: values[i] for name, values in DIMENSIONS.items()}
        quality = {"schema_version": 1, "overall": sum(dims.values()) / 3, "dimensions": dims}
        (tmp_path / f"q{i}.json").write_text(json.dumps(quality))
        lines.append(f"r{i},{0.5 if i == number_row else f'q{i}.json'},run {i}")
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "table.csv"


def test_each_dimension_is_correlated_with_each_measure(tmp_path: Path) -> None:
    report = correlate_table(_table(tmp_path), n_boot=2000)
    rows = {(r["dimension"], r["performance"]): r for r in report["by_dimension"]}
    assert list(dict.fromkeys(r["dimension"] for r in report["by_dimension"])) == list(DIMENSIONS)
    assert {p for _, p in rows} == {"domain", "general"}  # no compare dirs: no retention
    # a perfect monotone relation over 5 runs: exact two-sided p = 2 / 5! = 1/60
    assert rows["completeness", "domain"] == {
        "dimension": "completeness",
        "performance": "domain",
        "method": "spearman",
        "n": 5,
        "estimate": pytest.approx(1.0),
        "ci_low": pytest.approx(1.0),
        "ci_high": pytest.approx(1.0),
        "p_value": pytest.approx(1 / 60),
        "p_method": "exact_permutation",
    }
    assert rows["format", "domain"]["estimate"] == pytest.approx(-1.0)
    assert rows["format", "domain"]["p_value"] == pytest.approx(1 / 60)
    expected = stats.spearmanr(DIMENSIONS["completeness"], [g / 20 for g in GENERAL]).statistic
    assert rows["completeness", "general"]["estimate"] == pytest.approx(expected)
    constant = rows["uniqueness", "domain"]
    assert constant["estimate"] is None and constant["p_value"] is None
    assert report["runs"][2]["dimensions"] == {
        "completeness": 0.8,
        "format": 0.7,
        "uniqueness": 1.0,
    }
    # the overall rows are unchanged: correlations[] still holds the quality column's
    overall = {(c["performance"], c["method"]): c for c in report["correlations"]}
    assert overall["domain", "spearman"]["n"] == 5


def test_the_dimension_table_in_markdown_and_printed(tmp_path: Path) -> None:
    report = correlate_table(_table(tmp_path), n_boot=2000)
    md = render_markdown(report)
    assert "| dimension | domain score | general score |" in md
    assert "| completeness | +1.00 [1.00, 1.00] p = 0.017 |" in md
    assert "| uniqueness | constant | constant |" in md
    lines = dimension_lines(report)
    assert lines[0] == "each quality dimension vs performance (spearman, 95% CI, p):"
    assert lines[1].split() == ["dimension", "domain", "score", "general", "score"]
    assert (
        lines[2] == "  completeness  +1.00 [1.00, 1.00] p = 0.017    +0.10 [-1.00, 1.00] p = 0.95"
    )
    assert (
        lines[3] == "  format        -1.00 [-1.00, -1.00] p = 0.017  -0.10 [-1.00, 1.00] p = 0.95"
    )
    assert lines[4].split() == ["uniqueness", "constant", "constant"]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "table.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| format | -1.00 [-1.00, -1.00] p = 0.017 |" in result.output
    saved = json.loads((out / "correlation.json").read_text())
    assert len(saved["by_dimension"]) == 6 and saved["schema_version"] == 1


def test_a_number_cell_leaves_no_dimension_rows(tmp_path: Path) -> None:
    report = correlate_table(_table(tmp_path, number_row=3), n_boot=200)
    assert report["by_dimension"] == [] and report["runs"][3]["dimensions"] is None
    assert dimension_lines(report) == []
    assert "quality dimension" not in render_markdown(report)
