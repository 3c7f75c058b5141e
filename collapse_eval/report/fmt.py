"""One spelling and one unit for every report: HTML, Markdown, JUnit, plots and the
terminal.

The statuses and the number spellings the verdict's reasons share live one level down,
in ``collapse_eval/spelling.py`` (re-exported here, so report code has one place to import
from). Scores and deltas are shown in points (0..100, i.e. the 0..1 score scale times
100); statuses keep their summary.json spelling. A p-value has two spellings: ``p_value``
for a table cell (three significant digits) and ``p_phrase`` for a sentence
("p = 0.004", "p < 0.001").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collapse_eval.spelling import STATUSES as STATUSES
from collapse_eval.spelling import ci_label as ci_label
from collapse_eval.spelling import ci_points as ci_points
from collapse_eval.spelling import is_number as is_number
from collapse_eval.spelling import margin_points as margin_points
from collapse_eval.spelling import p_phrase as p_phrase
from collapse_eval.spelling import points as points
from collapse_eval.spelling import signed_points as signed_points

if TYPE_CHECKING:
    from collapse_eval.summary import Comparison, Summary

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


def alpha_of(summary: Summary) -> float:
    alpha: Any = summary.alpha
    if not is_number(alpha):
        alpha = summary.policy.get("alpha") if isinstance(summary.policy, dict) else None
    return float(alpha) if is_number(alpha) and 0 < float(alpha) < 1 else 0.05


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
