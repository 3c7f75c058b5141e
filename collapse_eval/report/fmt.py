"""One spelling and one unit for every report: HTML, Markdown, JUnit, plots, the terminal
and the verdict's reasons (``verdict.py`` writes them with these functions).

Scores and deltas are shown in points (0..100, i.e. the 0..1 score scale times 100), the
unit the verdict's reasons use; statuses keep their summary.json spelling. A p-value has
two spellings: ``p_value`` for a table cell (three significant digits) and ``p_phrase``
for a sentence ("p = 0.004", "p < 0.001"). Standard library only, so that the verdict can
use it without importing any report code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from collapse_eval.summary import Comparison, Summary

STATUSES = ("improved", "non_inferior", "equivalent", "inconclusive", "regressed")

# Okabe-Ito, distinguishable with the common colour-vision deficiencies.
STATUS_COLOURS = {
    "improved": "#009E73",  # bluish green
    "non_inferior": "#0072B2",  # blue
    "equivalent": "#56B4E9",  # sky blue
    "inconclusive": "#E69F00",  # orange
    "regressed": "#D55E00",  # vermillion
}
OTHER_COLOUR = "#999999"
BASE_COLOUR = "#999999"
TUNED_COLOUR = "#0072B2"


def status_meanings(alpha: float) -> dict[str, str]:
    """What each status means, naming the interval that decides it at this alpha."""
    ci = ci_label(alpha)
    return {
        "improved": "significantly better (Holm-adjusted p < alpha, delta > 0)",
        "non_inferior": f"the {ci} rules out a drop larger than the margin",
        "equivalent": f"the {tost_label(alpha)} lies within plus or minus the margin",
        "inconclusive": "a drop larger than the margin cannot be ruled out",
        "regressed": f"significantly worse, and the {ci} reaches beyond the margin",
    }


UNIT_NOTE = "scores, deltas, CIs and margins in points (score scale 0..1 times 100)"

# XML 1.0 allows tab, newline, carriage return and U+0020..U+D7FF, U+E000..U+FFFD, ...
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def alpha_of(summary: Summary) -> float:
    alpha: Any = summary.alpha
    if not is_number(alpha):
        alpha = summary.policy.get("alpha") if isinstance(summary.policy, dict) else None
    return float(alpha) if is_number(alpha) and 0 < float(alpha) < 1 else 0.05


def ci_label(alpha: float) -> str:
    """'95% CI' for alpha 0.05, '90% CI' for 0.1, '99.5% CI' for 0.005."""
    level = round((1 - alpha) * 100, 6)
    return f"{level:g}% CI"


def interval_note(rows: Sequence[Comparison], alpha: float) -> str:
    """Which intervals a report's tables and forest plots show."""
    note = f"intervals are {ci_label(alpha)}s"
    if any(decision_interval(c, alpha).tost for c in rows):
        note += (
            f", except on equivalence rows: there the {tost_label(alpha)} of the two "
            "one-sided tests, which decides them, against plus or minus the margin"
        )
    return note


def tost_label(alpha: float) -> str:
    """'90% CI (TOST)' for alpha 0.05: the (1 - 2 alpha) interval of the two one-sided tests."""
    return f"{ci_label(2 * alpha)} (TOST)"


@dataclass(frozen=True, slots=True)
class Interval:
    """The interval a report shows for a row: the one that decides its status."""

    low: float | None
    high: float | None
    label: str  # '95% CI' or '90% CI (TOST)'
    tost: bool  # the (1 - 2 alpha) equivalence interval


def is_equivalence_row(row: Comparison) -> bool:
    """A row judged by equivalence (TOST): required to be equivalent, or found so."""
    return row.required == "equivalent" or row.status == "equivalent"


def decision_interval(row: Comparison, alpha: float) -> Interval:
    """The (1 - 2 alpha) TOST interval on an equivalence row, which decides `equivalent`
    (verdict.is_equivalent); the row's (1 - alpha) CI otherwise, or where a summary has no
    TOST interval (the label then says which one is shown)."""
    low, high = row.equivalence_ci_low, row.equivalence_ci_high
    if is_equivalence_row(row) and is_number(low) and is_number(high):
        return Interval(low, high, tost_label(alpha), True)
    return Interval(row.ci_low, row.ci_high, ci_label(alpha), False)


def interval_header(rows: Sequence[Comparison], alpha: float) -> str:
    """The CI column's header: the one label all rows share, else 'CI' (each cell then
    names its own, see ``interval_cell``)."""
    labels = {decision_interval(r, alpha).label for r in rows}
    return labels.pop() if len(labels) == 1 else "CI"


def interval_cell(interval: Interval, header: str) -> str:
    """'-1.2 to +1.5'; '-1.2 to +1.5, 90% CI (TOST)' when the header does not name it."""
    text = ci_points(interval.low, interval.high)
    if header == interval.label or text == "n/a":
        return text
    return f"{text}, {interval.label}"


def points(x: Any) -> str:
    """A score on the 0..1 scale as points: 0.613 -> '61.3'."""
    return f"{x * 100:.1f}" if is_number(x) else "n/a"


def signed_points(x: Any) -> str:
    return f"{x * 100:+.1f}" if is_number(x) else "n/a"


def margin_points(x: Any) -> str:
    return f"{x * 100:g}" if is_number(x) else "n/a"


def ci_points(low: Any, high: Any) -> str:
    if not (is_number(low) and is_number(high)):
        return "n/a"
    return f"{signed_points(low)} to {signed_points(high)}"


def row_margin(row: Comparison) -> str:
    """A row's margin: '2', or '±2' on an equivalence row (judged against both margins)."""
    text = margin_points(row.margin)
    return f"±{text}" if is_equivalence_row(row) and is_number(row.margin) else text


def p_value(x: Any) -> str:
    """Three significant digits; a p that underflowed to 0 is '< 1e-300', never '0'."""
    if not is_number(x):
        return "n/a"
    if x <= 0:
        return "< 1e-300"
    if x < 1e-300:
        return "< 1e-300"
    return f"{x:.3g}"


def p_phrase(x: Any) -> str:
    """A p-value in a sentence, after "p": '< 0.001', '= 0.004' (below 0.01), '= 0.70'."""
    if x is None:
        return "n/a"
    if x < 0.001:
        return "< 0.001"
    return f"= {x:.3f}" if x < 0.01 else f"= {x:.2f}"


def short_model(model: Any) -> str:
    """Last path component of a model path or hub name ('/ckpt/run-7/' -> 'run-7')."""
    text = str(model or "?").rstrip("/\\")
    for sep in ("/", "\\"):
        text = text.rsplit(sep, 1)[-1]
    return text or str(model)


def row_label(row: Comparison) -> str:
    """How one comparison row is named in every report."""
    group_by, group = row.group_by, row.group
    if group_by in ("subtask", "metric"):
        return f"{row.task} / {group}"
    if group_by:
        return str(group)
    return str(row.task)


def xml_text(value: Any) -> str:
    """Text that any XML parser accepts: control characters other than tab/newline dropped."""
    return _XML_ILLEGAL.sub("", "" if value is None else str(value))


def rows_of(
    summary: Summary, suite: str, group_by: str | None, *, format_ok: bool = False
) -> list[Comparison]:
    """Comparison rows of one section: score rows, or the format-following rows."""
    return [
        c
        for c in summary.comparisons
        if c.suite == suite and c.group_by == group_by and (c.metric == "format_ok") == format_ok
    ]
