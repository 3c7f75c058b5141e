"""The statuses and number spellings live below verdict and report: one definition, and
the verdict imports no report code."""

from __future__ import annotations

import subprocess
import sys

from collapse_eval import spelling, verdict
from collapse_eval.report import fmt


def test_one_status_order_for_verdict_and_reports() -> None:
    assert verdict.STATUSES is spelling.STATUSES is fmt.STATUSES
    assert spelling.STATUSES == (
        "improved",
        "non_inferior",
        "equivalent",
        "inconclusive",
        "regressed",
    )


def test_the_verdict_imports_no_report_module() -> None:
    code = (
        "import sys, collapse_eval.verdict\n"
        "print(sorted(m for m in sys.modules if m.startswith('collapse_eval.report')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_spellings_the_reasons_and_reports_share() -> None:
    assert fmt.points is spelling.points and fmt.p_phrase is spelling.p_phrase
    assert spelling.points(0.613) == "61.3" and spelling.signed_points(-0.0125) == "-1.2"
    assert spelling.margin_points(0.02) == "2" and spelling.ci_label(0.005) == "99.5% CI"
    assert spelling.ci_points(-0.012, 0.015) == "-1.2 to +1.5"
    assert spelling.ci_points(None, 0.1) == "n/a" and spelling.points(float("nan")) == "n/a"
    assert [spelling.p_phrase(p) for p in (0.0004, 0.004, 0.7, None)] == [
        "< 0.001",
        "= 0.004",
        "= 0.70",
        "n/a",
    ]
