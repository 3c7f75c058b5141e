"""Drift on the demo world: its own general probe (the demo's task format, never a test
item), the demo's drift table and the Spearman of drift against forgetting, and the
sweep's lines; `demo --sweep` option mistakes are exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from collapse_eval.demo import data
from collapse_eval.demo.drift_study import (
    DriftPoint,
    correlation_line,
    demo_probe_texts,
    drift_table_lines,
)
from collapse_eval.demo.run import DemoRow, drift_report_lines
from collapse_eval.demo.sweep_run import sweep_report_lines
from collapse_eval.drift.measure import PROBE_SET, texts_hash


def test_the_demo_probe_is_the_general_task_format_and_never_a_test_item() -> None:
    texts = demo_probe_texts()
    assert len(texts) == 200 and texts == demo_probe_texts()  # deterministic
    assert texts[0].startswith("Q: What is ") and "+" in texts[0]  # demo_arithmetic first
    assert texts[1].startswith("Q: What is the capital of ")
    assert texts[2].startswith("Q: Copy the letters: ")
    assert texts[3].startswith("Q: Sort the digits: ")
    tests = {
        f"{d['question']} {d['answer']}"
        for task in ("demo_arithmetic", "demo_copy", "demo_sort")
        for d in data.general_test_docs(task)
    }
    assert not tests & set(texts)
    assert len(set(texts) - set(_train_texts())) > 0  # drawn afresh, not the train list


def _train_texts() -> list[str]:
    pairs = data.general_train_pairs(50, seed=data.GENERAL_SEED)
    return [" ".join(p) for task in pairs for p in pairs[task]]


def test_drift_measures_the_probe_it_is_given(tiny_model: Path, sharp_model: Path) -> None:
    from collapse_eval.drift.run import DriftSpec, run_drift

    probe = tuple(demo_probe_texts(3))
    result = run_drift(str(tiny_model), str(sharp_model), DriftSpec(engine="hf", probe=probe))
    measured = result.by_name(PROBE_SET)
    assert measured is not None and measured.n_texts == 12
    assert measured.texts_sha256 == texts_hash(probe) and measured.mean_kl > 0


def _row(name: str, drift: float | None, retention: float | None, delta: float = 0.1) -> DemoRow:
    return DemoRow(name, "fail", delta, None, Path(name), drift=drift, retention=retention)


def test_the_demo_prints_drift_against_forgetting() -> None:
    rows = [
        _row("domain-only", 3.0, 0.30),
        _row("mixed", 0.5, 1.02),
        _row("graded-00", 1.0, 0.99),
        _row("graded-41", 1.5, 0.97),
        _row("graded-100", 2.0, 0.90),
        _row("no-drift", None, 0.95),
    ]
    lines = drift_report_lines(rows, ["graded-00", "graded-41", "graded-100"])
    assert lines[1].split() == ["domain-only", "3.0000", "0.300", "0.700"]
    assert len(lines) == 1 + 5 + 2  # header, rows with both numbers, two correlations
    assert lines[-2].startswith(
        "drift vs forgetting (1 - retention), all candidates: Spearman +1.00"
    )
    assert "(exact permutation), n = 5" in lines[-2]
    assert lines[-1].startswith("drift vs forgetting (1 - retention), the graded candidates: ")
    assert "n = 3" in lines[-1]
    assert drift_report_lines([_row("mixed", None, 1.0)]) == []


def test_correlation_words_name_the_permutations() -> None:
    points = [DriftPoint(f"c{i}", float(i), 1 - i / 20) for i in range(12)]
    line = correlation_line("twelve", points)
    assert "Spearman +1.00" in line and "10,000 random permutations" in line
    assert "n = 12" in line
    anti = [DriftPoint(f"c{i}", float(i), 0.5 + i / 20) for i in range(5)]
    assert "Spearman -1.00" in correlation_line("five", anti)
    assert "fewer than 3" in correlation_line("two", points[:2])
    assert drift_table_lines(points[:1])[1].split() == ["c0", "0.0000", "1.000", "0.000"]


def test_the_sweep_lines_give_each_step_and_both_correlations() -> None:
    sweep = [_row(f"step-{s:04d}", s / 60, 1 - s / 200, s / 1000) for s in (15, 30, 45, 60)]
    demo = [_row("mixed", 0.1, 1.0), _row("domain-only", 3.0, 0.27)]
    lines = sweep_report_lines(sweep, demo)
    assert lines[1].split() == ["step-0015", "+1.5", "0.925", "0.2500"]
    assert lines[5].startswith("forgetting (1 - retention) against the step over the sweep: ")
    assert "Spearman +1.00" in lines[5]
    assert "the sweep: Spearman +1.00" in lines[6] and "n = 4" in lines[6]
    assert "the sweep and the demo's candidates: Spearman +1.00" in lines[7]
    assert "n = 6" in lines[7]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--sweep", "--engine", "vllm"], "demo --sweep evaluates with the hf engine"),
        (["demo", "--sweeps"], "No such option '--sweeps'. Did you mean '--sweep'?"),
        (["demo", "--sweep=12"], "Option '--sweep' does not take a value."),
    ],
)
def test_sweep_option_mistakes_are_exit_2(argv: list[str], message: str, capsys) -> None:
    from collapse_eval.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
