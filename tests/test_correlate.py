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


def _compare(base: Path, tuned: Path, out: Path) -> None:
    """`collapse-eval compare` of two run directories, paths as typed (relative)."""
    result = CliRunner().invoke(cli, ["compare", str(base), str(tuned), "--out", str(out)])
    assert result.exit_code in (0, 1), result.output


def _correlate(table: Path, out: Path) -> dict:
    result = CliRunner().invoke(cli, ["correlate", str(table), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "correlation.json").read_text())


DOMAIN = (6, 10, 9, 17)
QUALITY = (0.2, 0.5, 0.4, 0.9)


def test_correlate_reads_compare_dirs_of_run_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # compare is run here with relative paths
    _run(work / "runs" / "base", 5, 10)
    lines = ["run,quality"]
    for i, (d, q) in enumerate(zip(DOMAIN, QUALITY, strict=True)):
        _run(work / "runs" / f"ft{i}", d, 10)
        _compare(Path("runs/base"), Path(f"runs/ft{i}"), Path(f"reports/ft{i}"))
        lines.append(f"../work/reports/ft{i},{q}")
    elsewhere = tmp_path / "analysis"
    elsewhere.mkdir()
    (elsewhere / "table.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(elsewhere)  # correlate runs from another directory
    report = _correlate(elsewhere / "table.csv", elsewhere / "out")
    assert [Path(r["run"]).name for r in report["runs"]] == ["ft0", "ft1", "ft2", "ft3"]
    assert [r["domain"] for r in report["runs"]] == [d / 20 for d in DOMAIN]


def test_correlate_reads_the_demo_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo --out D` writes D/runs/{base,NAME} and a compare output directory D/NAME."""
    monkeypatch.chdir(tmp_path)
    demo = Path("D")
    _run(demo / "runs" / "base", 5, 10)
    names = ("domain-only", "mixed", "general-only", "small")
    for name, d in zip(names, DOMAIN, strict=True):
        _run(demo / "runs" / name, d, 10)
        _compare(demo / "runs" / "base", demo / "runs" / name, demo / name)
    rows = [f"{tmp_path / 'D' / name},{q},{name}" for name, q in zip(names, QUALITY, strict=True)]
    table = tmp_path / "elsewhere" / "table.csv"
    table.parent.mkdir()
    table.write_text("run,quality,label\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(table.parent)
    report = _correlate(table, table.parent / "out")
    assert [r["label"] for r in report["runs"]] == list(names)
    assert [r["run"] for r in report["runs"]] == [
        str((tmp_path / "D" / "runs" / name).resolve()) for name in names
    ]


def test_correlate_finds_runs_of_a_moved_or_older_summary(tmp_path: Path) -> None:
    """An older summary names its runs relative to where compare ran; a moved tree keeps
    the tail of the path: both are found under the directories above summary.json."""
    old_root = tmp_path / "old"
    _run(old_root / "D" / "runs" / "base", 5, 10)
    for i, d in enumerate(DOMAIN):
        _run(old_root / "D" / "runs" / f"c{i}", d, 10)
        _compare(
            old_root / "D" / "runs" / "base",
            old_root / "D" / "runs" / f"c{i}",
            old_root / "D" / f"c{i}",
        )
        summary_file = old_root / "D" / f"c{i}" / "summary.json"
        summary = json.loads(summary_file.read_text())
        if i % 2:  # as an older compare wrote it, run from old_root
            summary["tuned"]["run"] = f"D/runs/c{i}"
        summary_file.write_text(json.dumps(summary))
    new_root = tmp_path / "new"
    old_root.rename(new_root)
    table = tmp_path / "table.csv"
    table.write_text("run,quality\n" + "".join(f"new/D/c{i},{q}\n" for i, q in enumerate(QUALITY)))
    report = _correlate(table, tmp_path / "out")
    assert [r["run"] for r in report["runs"]] == [
        str(new_root / "D" / "runs" / f"c{i}") for i in range(4)
    ]
    missing = tmp_path / "t2.csv"
    (new_root / "D" / "runs" / "c0" / "records.jsonl").unlink()
    missing.write_text("run,quality\nnew/D/c0,0.1\n")
    result = CliRunner().invoke(cli, ["correlate", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "t2.csv:2: field 'run': 'new/D/c0' is a compare output directory" in result.output


def _quality_json(folder: Path, overall: float, completeness: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "schema_version": 1,
        "overall": overall,
        "dimensions": {"format": 1.0, "completeness": completeness},
    }
    (folder / "quality.json").write_text(json.dumps(body))
    return folder / "quality.json"


def test_quality_cells_name_quality_json_files_dirs_or_numbers(tmp_path: Path) -> None:
    for i, d in enumerate(DOMAIN):
        _run(tmp_path / f"r{i}", d, 10 + i)
    _quality_json(tmp_path / "q" / "q0", 0.2, 0.9)
    _quality_json(tmp_path / "q" / "q1", 0.5, 0.1)
    absolute = _quality_json(tmp_path / "elsewhere" / "q2", 0.4, 0.3)
    cells = ["q/q0/quality.json", "q/q1", str(absolute), "0.9"]
    lines = ["run,quality,label"] + [f"r{i},{c},c{i}" for i, c in enumerate(cells)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    report = _correlate(tmp_path / "t.csv", tmp_path / "out")
    assert report["quality_dimension"] == "overall"
    assert [r["quality"] for r in report["runs"]] == [0.2, 0.5, 0.4, 0.9]
    assert [r["quality_source"] for r in report["runs"]] == [
        str(tmp_path / "q" / "q0" / "quality.json"),
        str(tmp_path / "q" / "q1" / "quality.json"),
        str(absolute),
        None,
    ]
    by = {(c["performance"], c["method"]): c for c in report["correlations"]}
    assert by["domain", "spearman"]["estimate"] == pytest.approx(
        stats.spearmanr(QUALITY, [d / 20 for d in DOMAIN]).statistic
    )
    assert by["domain", "spearman"]["p_method"] == "exact_permutation"
    assert by["domain", "spearman"]["ci_low"] is not None
    # plain run directories have no base: no general retention
    assert {c["performance"] for c in report["correlations"]} == {"domain", "general"}
    plots = tmp_path / "out" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == [
        "correlation.png",
        "correlation_domain.png",
        "correlation_general.png",
    ]
    assert (plots / "correlation_domain.png").stat().st_size > 1000

    result = CliRunner().invoke(
        cli,
        ["correlate", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o2")]
        + ["--dimension", "completeness"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o2" / "correlation.json").read_text())
    # the dimension for quality.json cells; a number stays as written
    assert [r["quality"] for r in report["runs"]] == [0.9, 0.1, 0.3, 0.9]
    assert report["quality_dimension"] == "completeness"
    assert "Quality: completeness." in (tmp_path / "o2" / "correlation.md").read_text()


def test_unknown_dimension_or_missing_quality_file_is_exit_2(tmp_path: Path) -> None:
    for i, d in enumerate(DOMAIN[:3]):
        _run(tmp_path / f"r{i}", d, 10)
        _quality_json(tmp_path / f"q{i}", 0.1 * i, 0.5)
    (tmp_path / "t.csv").write_text("run,quality\n" + "".join(f"r{i},q{i}\n" for i in range(3)))
    result = CliRunner().invoke(
        cli, ["correlate", str(tmp_path / "t.csv"), "--dimension", "completenes"]
    )
    assert result.exit_code == 2
    assert "q0/quality.json: field 'dimensions': no quality dimension 'completenes'." in (
        result.output
    )
    assert "Did you mean 'completeness'?" in result.output
    assert "Dimensions present: completeness, format" in result.output
    (tmp_path / "t2.csv").write_text("run,quality\nr0,q0\nr1,q9/quality.json\nr2,q2\n")
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "t2.csv")])
    assert result.exit_code == 2
    assert "t2.csv:3: field 'quality': 'q9/quality.json' is neither a number nor" in (result.output)
    (tmp_path / "q1" / "quality.json").write_text(json.dumps({"schema_version": 7}))
    (tmp_path / "t3.csv").write_text("run,quality\nr0,q0\nr1,q1\nr2,q2\n")
    result = CliRunner().invoke(cli, ["correlate", str(tmp_path / "t3.csv")])
    assert result.exit_code == 2 and "quality.json schema_version 7 is newer" in result.output


def test_general_retention_of_compare_dirs(tmp_path: Path) -> None:
    """For compare directories the base run is known: general retention = the tuned run's
    mean general score minus the base run's, correlated and plotted like the others."""
    _run(tmp_path / "runs" / "base", 5, 15)
    general = (12, 14, 15, 17)
    for i, (d, g) in enumerate(zip(DOMAIN, general, strict=True)):
        _run(tmp_path / "runs" / f"c{i}", d, g)
        _compare(tmp_path / "runs" / "base", tmp_path / "runs" / f"c{i}", tmp_path / f"c{i}")
    table = tmp_path / "t.csv"
    table.write_text("run,quality\n" + "".join(f"c{i},{q}\n" for i, q in enumerate(QUALITY)))
    report = _correlate(table, tmp_path / "out")
    assert [r["general_retention"] for r in report["runs"]] == pytest.approx(
        [-0.15, -0.05, 0.0, 0.1]
    )
    by = {(c["performance"], c["method"]): c for c in report["correlations"]}
    assert by["general_retention", "spearman"]["estimate"] == pytest.approx(
        stats.spearmanr(QUALITY, general).statistic
    )
    assert by["general_retention", "kendall"]["p_method"] == "exact_permutation"
    assert (tmp_path / "out" / "plots" / "correlation_general_retention.png").is_file()
    md = (tmp_path / "out" / "correlation.md").read_text()
    assert "general retention (tuned - base)" in md and "| -0.150 |" in md
