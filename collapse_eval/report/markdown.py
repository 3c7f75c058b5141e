"""summary.json -> summary.md, short enough for a pull-request comment.

Every text cell may come from untrusted input (model names, task names, group values,
reasons quoting them). Markdown-special characters are backslash-escaped, so the text
renders as itself: no live links or images, no raw HTML, no entities shown as ``&lt;``.
Statuses keep their summary.json spelling; all numbers are in points (see fmt.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from collapse_eval.report.fmt import (
    STATUSES,
    UNIT_NOTE,
    alpha_of,
    ci_label,
    ci_points,
    decision_interval,
    interval_cell,
    interval_header,
    interval_note,
    p_value,
    points,
    row_label,
    row_margin,
    rows_of,
    short_model,
    signed_points,
)
from collapse_eval.summary import Comparison, Summary

MAX_ROWS = 40  # per table; the rest is in report.html
# Lines always start with our own prefix ("- ", "| "), so only inline markup needs escaping:
# emphasis, code, links and images ([ ]), raw HTML and entities (< > &), table cells (|),
# strikethrough (~) and GFM autolinks (scheme://, www., user@host).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~@])")
_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)|(?<=:)/|(?<=:/)/")


def escape_cell(value: object) -> str:
    """One line of inert Markdown text (safe inside a table cell too)."""
    text = "" if value is None else str(value)
    text = " ".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    text = "".join(ch for ch in text if ch >= " " or ch == "\t")
    text = _SPECIAL.sub(r"\\\1", text)
    return _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)


def _status(value: object) -> str:
    text = escape_cell(value)
    return f"**{text}**" if value == "regressed" else text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        out += ["", f"... and {len(rows) - MAX_ROWS} more rows in report.html"]
    return out


def _header(first: str, ci_header: str, flips: bool) -> list[str]:
    head = [first, "n", "base", "tuned", "delta", ci_header, "margin", "Holm p", "status"]
    return head + (["lost / gained"] if flips else [])


def _flips(row: Comparison) -> str:
    if row.flips is not None:
        return f"{row.flips.lost} / {row.flips.gained}"
    if row.base_only is not None and row.tuned_only is not None:
        return f"{row.base_only} / {row.tuned_only}"
    return "n/a"


def _rows(
    comparisons: Sequence[Comparison], flips: bool, alpha: float, ci_header: str
) -> list[list[str]]:
    out = []
    for c in comparisons:
        cells = [
            escape_cell(row_label(c) if c.group_by != "subtask" else c.group),
            str(c.n),
            points(c.base_mean),
            points(c.tuned_mean),
            signed_points(c.delta),
            interval_cell(decision_interval(c, alpha), ci_header),
            row_margin(c),
            escape_cell(p_value(c.p_adjusted)),
            _status(c.status),
        ]
        out.append(cells + ([_flips(c)] if flips else []))
    return out


def _section(
    lines: list[str], title: str, rows: Sequence[Comparison], first: str, alpha: float
) -> None:
    if not rows:
        return
    flips = any(r.flips is not None for r in rows)
    ci_header = interval_header(rows, alpha)
    lines += ["", f"### {title}", ""]
    lines += _table(_header(first, ci_header, flips), _rows(rows, flips, alpha, ci_header))


def _training_section(summary: Summary) -> list[str]:
    """compare --train's slices and correlations (report/training_view.py); none without."""
    from collapse_eval.report.training_view import training_view

    view = training_view(summary)
    if view is None:
        return []
    lines = ["", "### Training data by slice", "", escape_cell(view["head"])]
    header = ["slice", "train", "share", "quality", "flagged", "test", "lost", "delta"]
    for table in view["tables"]:
        rows = [
            [escape_cell(r["name"])]
            + [str(r[k]) for k in ("n_train", "share", "quality", "n_flagged", "n_test", "lost")]
            + [r["delta"], r["ci"]]
            for r in table["rows"]
        ]
        lines += ["", f"{table['title']}:", ""]
        lines += _table([*header, view["ci_header"]], rows)
    lines += [""] + [f"- {escape_cell(c)}" for c in view["correlations"]]
    return [*lines, f"- {escape_cell(view['lost'])}"]


def render_summary_markdown(summary: Summary) -> str:
    """summary.md for a summary."""
    alpha = alpha_of(summary)
    verdict = str(summary.verdict or "?").upper()
    base, tuned = summary.base, summary.tuned
    lines = [f"## collapse-eval: {verdict}", ""]
    lines.append(
        f"tuned **{escape_cell(short_model(tuned.model))}** vs base "
        f"**{escape_cell(short_model(base.model))}**; alpha {alpha:g}; {UNIT_NOTE}"
    )
    lines += ["", "### Why", ""]
    lines += [f"- {escape_cell(r)}" for r in summary.reasons] or ["- (no reasons given)"]
    _section(lines, "General benchmarks", rows_of(summary, "general", None), "benchmark", alpha)
    _section(
        lines,
        "General tasks, other metrics (never gating)",
        rows_of(summary, "general", "metric"),
        "task / metric",
        alpha,
    )
    retention = summary.retention
    if retention is not None and isinstance(retention.index, (int, float)):
        low, high = retention.ci_low, retention.ci_high
        ci = (
            f"{low:.3f} to {high:.3f}"
            if isinstance(low, float) and isinstance(high, float)
            else "n/a"
        )
        lines += [
            "",
            f"Retention index (tuned / base over {retention.n_tasks} general task(s)): "
            f"**{retention.index:.3f}** ({ci_label(alpha)} {ci})",
        ]
    overall = summary.domain_overall.pooled if summary.domain_overall else None
    if overall:
        lines += [
            "",
            f"Domain, all {overall.n} items pooled: {points(overall.base_mean)} -> "
            f"{points(overall.tuned_mean)} ({signed_points(overall.delta)}, "
            f"{ci_label(alpha)} {ci_points(overall.ci_low, overall.ci_high)}, "
            f"p {escape_cell(p_value(overall.p_value))})",
        ]
    _section(lines, "Domain tasks", rows_of(summary, "domain", None), "task", alpha)
    _section(
        lines, "Domain by task type", rows_of(summary, "domain", "task_type"), "task type", alpha
    )
    _section(
        lines,
        "Domain by output format",
        rows_of(summary, "domain", "output_format"),
        "output format",
        alpha,
    )
    _section(
        lines,
        "Format following by output format",
        rows_of(summary, "domain", "output_format", format_ok=True),
        "output format",
        alpha,
    )
    lines += _training_section(summary)
    if summary.unpaired:
        lines += ["", "### Not compared", ""]
        lines += [
            f"- {escape_cell(u.suite)} task {escape_cell(u.task)}: "
            f"only in the {escape_cell(u.only_in)} run"
            for u in summary.unpaired
        ]
    legend = ", ".join(escape_cell(s) for s in STATUSES)
    lines += ["", f"Statuses: {legend}; {interval_note(summary.comparisons, alpha)}."]
    lines += ["Full report with plots and examples: report.html"]
    return "\n".join(lines) + "\n"
