"""Issue 19, item 3: an equivalence row shows the interval that decides it (the 90 % TOST
interval at alpha 0.05), says so, and is drawn against both margins, in every report:
report.html, summary.md, the terminal table and the forest plot."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.report.fmt import decision_interval, interval_header, tost_label
from collapse_eval.summary import Comparison, Summary
from tests.conftest import reports_of

# BoolQ of the issue: the 95 % CI (-2.3 to +2.3) reaches past the 2-point margin, the
# 90 % CI (-1.9 to +1.9), which TOST uses, does not: the row is equivalent.
BOOLQ = {
    "suite": "general", "task": "boolq", "group_by": None, "group": None, "metric": "acc",
    "n": 3270, "base_mean": 0.62, "tuned_mean": 0.62, "delta": 0.0, "ci_low": -0.023,
    "ci_high": 0.023, "test": "mcnemar_exact", "p_value": 1.0, "p_adjusted": 1.0,
    "status": "equivalent", "margin": 0.02, "required": "equivalent",
    "equivalence_ci_low": -0.019, "equivalence_ci_high": 0.019,
    "base_only": 40, "tuned_only": 40,
}  # fmt: skip
ARC = {
    **BOOLQ, "task": "arc_easy", "ci_low": -0.01, "ci_high": 0.03, "delta": 0.01,
    "tuned_mean": 0.63, "status": "non_inferior", "required": "non_inferior",
    "equivalence_ci_low": -0.007, "equivalence_ci_high": 0.027,
}  # fmt: skip


def _summary(*rows: dict[str, Any], alpha: float = 0.05) -> Summary:
    return Summary.from_json(
        {
            "schema_version": 1,
            "verdict": "pass",
            "reasons": ["pass: boolq equivalent"],
            "base": {"model": "/m/base", "run": None},
            "tuned": {"model": "/m/bf16", "run": None},
            "policy": {"alpha": alpha},
            "alpha": alpha,
            "comparisons": list(rows),
        }
    )


def _general_table(html: str) -> str:
    found = re.search(r'data-section="general">(.*?)</table>', html, re.S)
    assert found is not None
    return unescape(found.group(1))


def test_the_deciding_interval_of_an_equivalence_row_is_the_tost_one() -> None:
    boolq, arc = _summary(BOOLQ, ARC).comparisons
    interval = decision_interval(boolq, 0.05)
    assert (interval.low, interval.high, interval.label, interval.tost) == (
        -0.019,
        0.019,
        "90% CI (TOST)",
        True,
    )
    other = decision_interval(arc, 0.05)
    assert (other.low, other.high, other.label, other.tost) == (-0.01, 0.03, "95% CI", False)
    assert tost_label(0.1) == "80% CI (TOST)"  # (1 - 2 alpha)
    assert interval_header([boolq], 0.05) == "90% CI (TOST)"
    assert interval_header([boolq, arc], 0.05) == "CI"  # mixed: each cell names its own
    # A summary without the TOST interval keeps its own CI, labelled as what it is.
    old = Comparison.from_json(
        {k: v for k, v in BOOLQ.items() if not k.startswith("equivalence_")}, "s", "row"
    )
    assert decision_interval(old, 0.05).label == "95% CI"


def test_html_shows_the_tost_interval_and_both_margins(tmp_path: Path) -> None:
    reports_of(tmp_path, _summary(BOOLQ), env={})
    html = (tmp_path / "report.html").read_text()
    table = _general_table(html)
    assert '<th class="num">90% CI (TOST)</th>' in table
    assert "-1.9 to +1.9" in table and "-2.3 to +2.3" not in table.split("title=")[0]
    assert ">±2<" in table  # the margin on both sides
    legend = unescape(re.search(r'id="legend".*?</div>\n</div>', html, re.S).group(0))  # type: ignore[union-attr]
    assert "the 90% CI (TOST) lies within plus or minus the margin" in legend
    assert "the CI lies within" not in legend
    assert "except on equivalence rows: there the 90% CI (TOST)" in legend
    # The 95 % CI is one hover away, named.
    assert 'title="90% CI (TOST): equivalent when it lies within plus or minus the margin' in html
    assert "95% CI -2.3 to +2.3" in unescape(html)


def test_a_mixed_table_labels_each_interval(tmp_path: Path) -> None:
    reports_of(tmp_path, _summary(BOOLQ, ARC), env={})
    table = _general_table((tmp_path / "report.html").read_text())
    assert '<th class="num">CI</th>' in table
    assert "-1.9 to +1.9, 90% CI (TOST)" in table
    assert "-1.0 to +3.0, 95% CI" in table
    markdown = (tmp_path / "summary.md").read_text()
    assert "| boolq | 3270 | 62.0 | 62.0 | +0.0 | -1.9 to +1.9, 90% CI (TOST) | ±2 |" in markdown
    assert "| arc\\_easy | 3270 | 62.0 | 63.0 | +1.0 | -1.0 to +3.0, 95% CI | 2 |" in markdown


def test_summary_md_shows_the_tost_interval(tmp_path: Path) -> None:
    reports_of(tmp_path, _summary(BOOLQ), env={})
    markdown = (tmp_path / "summary.md").read_text()
    assert "| benchmark | n | base | tuned | delta | 90% CI (TOST) | margin |" in markdown
    assert "| boolq | 3270 | 62.0 | 62.0 | +0.0 | -1.9 to +1.9 | ±2 | 1 | equivalent |" in markdown
    assert "-2.3" not in markdown
    assert "except on equivalence rows: there the 90% CI (TOST)" in markdown


def test_terminal_table_shows_the_tost_interval(capsys: pytest.CaptureFixture[str]) -> None:
    from collapse_eval.cli import _print_verdict

    _print_verdict(_summary(BOOLQ), None)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "Holm p" in line)
    assert "90% CI (TOST)" in header
    row = next(line for line in out.splitlines() if "boolq" in line)
    assert "-1.9 to +1.9" in row and "-2.3" not in row and "±2" in row
    assert "90% CI (TOST) of the two" in " ".join(out.split())


def _forest(rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Any:
    from collapse_eval.report import plots

    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.forest_plot(_summary(*rows).comparisons, "t", "benchmark", path=tmp / "f.png", alpha=0.05)
    return figures[0].axes[0]


def _ticks(ax: Any) -> set[tuple[float, float]]:
    """(x, row) of each dashed vertical margin tick."""
    return {
        (round(line.get_xdata()[0], 6), round(sum(line.get_ydata()) / 2, 6))
        for line in ax.get_lines()
        if line.get_linestyle() not in ("-", "None") and len(set(line.get_xdata())) == 1
    }


def _bars(ax: Any) -> list[tuple[float, float]]:
    """(low, high) of each solid horizontal interval bar, in points."""
    return [
        (round(min(line.get_xdata()), 6), round(max(line.get_xdata()), 6))
        for line in ax.get_lines()
        if line.get_linestyle() == "-" and len(line.get_xdata()) == 2
        and len(set(line.get_ydata())) == 1
    ]  # fmt: skip


def test_forest_plot_draws_the_tost_interval_between_both_margins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ax = _forest([BOOLQ, ARC], monkeypatch, tmp_path)
    assert _bars(ax) == [(-1.9, 1.9), (-1.0, 3.0)]  # boolq: TOST; arc_easy: its 95 % CI
    assert _ticks(ax) == {(-2.0, 0.0), (2.0, 0.0), (-2.0, 1.0)}  # both margins on boolq
    assert ax.get_xlabel() == (
        "tuned - base (points; bar = 95% CI; 90% CI (TOST) on equivalence rows)"
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["margin of this row", "± margin (equivalence row)"]
    only = _forest([BOOLQ], monkeypatch, tmp_path)
    assert only.get_xlabel() == "tuned - base (points; bar = 90% CI (TOST))"


def test_junit_case_gives_the_tost_interval() -> None:
    from collapse_eval.report.junit import _stats

    boolq, arc = _summary(BOOLQ, ARC).comparisons
    assert "(90% CI (TOST) -1.9 to +1.9); margin ±2 points" in _stats(boolq, 0.05)
    assert "(95% CI -1.0 to +3.0); margin 2 points" in _stats(arc, 0.05)
