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
