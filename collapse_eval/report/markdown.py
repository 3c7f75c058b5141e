"""summary.json -> summary.md, short enough for a pull-request comment.

Every text cell may come from untrusted input (model names, task names, group values,
reasons quoting them). Markdown-special characters are backslash-escaped, so the text
renders as itself: no live links or images, no raw HTML, no entities shown as ``&lt;``.
Statuses keep their summary.json spelling; all numbers are in points (see fmt.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from collapse_eval.report.fmt import (
    STATUSES,
    UNIT_NOTE,
    alpha_of,
    ci_label,
    ci_points,
    margin_points,
    p_value,
    points,
    row_label,
    rows_of,
    short_model,
    signed_points,
)

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


def _header(first: str, alpha: float, flips: bool) -> list[str]:
    head = [first, "n", "base", "tuned", "delta", ci_label(alpha), "margin", "Holm p", "status"]
    return head + (["lost / gained"] if flips else [])


def _flips(row: Mapping[str, Any]) -> str:
    flips = row.get("flips")
    if isinstance(flips, Mapping):
        return f"{flips.get('lost', 'n/a')} / {flips.get('gained', 'n/a')}"
    if row.get("base_only") is not None and row.get("tuned_only") is not None:
        return f"{row['base_only']} / {row['tuned_only']}"
    return "n/a"


def _rows(comparisons: Sequence[Mapping[str, Any]], flips: bool) -> list[list[str]]:
    out = []
    for c in comparisons:
        cells = [
            escape_cell(row_label(c) if c.get("group_by") != "subtask" else c.get("group")),
            str(c.get("n")),
            points(c.get("base_mean")),
            points(c.get("tuned_mean")),
            signed_points(c.get("delta")),
            ci_points(c.get("ci_low"), c.get("ci_high")),
            margin_points(c.get("margin")),
            escape_cell(p_value(c.get("p_adjusted"))),
            _status(c.get("status")),
        ]
        out.append(cells + ([_flips(c)] if flips else []))
    return out


def _section(
    lines: list[str], title: str, rows: Sequence[Mapping[str, Any]], first: str, alpha: float
) -> None:
    if not rows:
        return
    flips = any(isinstance(r.get("flips"), Mapping) for r in rows)
    lines += ["", f"### {title}", ""]
    lines += _table(_header(first, alpha, flips), _rows(rows, flips))


def render_summary_markdown(summary: Mapping[str, Any]) -> str:
    """summary.md for a summary.json dict."""
    alpha = alpha_of(summary)
    verdict = str(summary.get("verdict") or "?").upper()
    base, tuned = summary.get("base") or {}, summary.get("tuned") or {}
    lines = [f"## collapse-eval: {verdict}", ""]
    lines.append(
        f"tuned **{escape_cell(short_model(tuned.get('model')))}** vs base "
        f"**{escape_cell(short_model(base.get('model')))}**; alpha {alpha:g}; {UNIT_NOTE}"
    )
    lines += ["", "### Why", ""]
    lines += [f"- {escape_cell(r)}" for r in summary.get("reasons") or []] or [
        "- (no reasons given)"
    ]
    _section(lines, "General benchmarks", rows_of(summary, "general", None), "benchmark", alpha)
    _section(
        lines,
        "General tasks, other metrics (never gating)",
        rows_of(summary, "general", "metric"),
        "task / metric",
        alpha,
    )
    retention = summary.get("retention") or {}
    if isinstance(retention.get("index"), (int, float)):
        low, high = retention.get("ci_low"), retention.get("ci_high")
        ci = (
            f"{low:.3f} to {high:.3f}"
            if isinstance(low, float) and isinstance(high, float)
            else "n/a"
        )
        lines += [
            "",
            f"Retention index (tuned / base over {retention.get('n_tasks')} general task(s)): "
            f"**{retention['index']:.3f}** ({ci_label(alpha)} {ci})",
        ]
    overall = (summary.get("domain_overall") or {}).get("pooled")
    if overall:
        lines += [
            "",
            f"Domain, all {overall.get('n')} items pooled: {points(overall.get('base_mean'))} -> "
            f"{points(overall.get('tuned_mean'))} ({signed_points(overall.get('delta'))}, "
            f"{ci_label(alpha)} {ci_points(overall.get('ci_low'), overall.get('ci_high'))}, "
            f"p {escape_cell(p_value(overall.get('p_value')))})",
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
    unpaired = summary.get("unpaired") or []
    if unpaired:
        lines += ["", "### Not compared", ""]
        lines += [
            f"- {escape_cell(u.get('suite'))} task {escape_cell(u.get('task'))}: "
            f"only in the {escape_cell(u.get('only_in'))} run"
            for u in unpaired
        ]
    legend = ", ".join(escape_cell(s) for s in STATUSES)
    lines += ["", f"Statuses: {legend}. Full report with plots and examples: report.html"]
    return "\n".join(lines) + "\n"
