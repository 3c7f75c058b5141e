"""summary.json -> summary.md: verdict first, then reasons, general and domain tables.

Every text cell comes from untrusted input (model names, task names, group values), so
``|`` and line breaks are escaped to keep the tables intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_STATUS_MARK = {
    "improved": "improved",
    "regressed": "**regressed**",
    "non_inferior": "non-inferior",
    "inconclusive": "_inconclusive_",
}


def escape_cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _escape_text(value: object) -> str:
    """Free text outside tables: one line, no raw markup from names."""
    return escape_cell(value).replace("`", "'").replace("<", "&lt;").replace(">", "&gt;")


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x * 100:.1f}"


def _signed(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x * 100:+.1f}"


def _p(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _comparison_rows(comparisons: Sequence[dict[str, Any]], first: str) -> list[list[str]]:
    rows = []
    for c in comparisons:
        rows.append(
            [
                escape_cell(c.get(first)),
                escape_cell(c.get("metric")),
                str(c.get("n")),
                _pct(c.get("base_mean")),
                _pct(c.get("tuned_mean")),
                _signed(c.get("delta")),
                f"{_signed(c.get('ci_low'))} to {_signed(c.get('ci_high'))}",
                escape_cell(c.get("test")),
                _p(c.get("p_adjusted")),
                _pct(c.get("margin")),
                _pct(c.get("mde")),
                _STATUS_MARK.get(str(c.get("status")), escape_cell(c.get("status"))),
            ]
        )
    return rows


def _header(first: str, alpha: float) -> list[str]:
    level = f"{(1 - alpha) * 100:g}%"
    return [
        first,
        "metric",
        "n",
        "base",
        "tuned",
        "delta (pts)",
        f"{level} CI (pts)",
        "test",
        "Holm p",
        "margin",
        "MDE",
        "status",
    ]


def render_summary_markdown(summary: dict[str, Any]) -> str:
    """A readable summary.md for a summary.json dict (scores in points = percent)."""
    alpha = float(summary.get("alpha") or (summary.get("policy") or {}).get("alpha") or 0.05)
    verdict = str(summary.get("verdict", "?")).upper()
    base = summary.get("base") or {}
    tuned = summary.get("tuned") or {}
    lines = [f"# collapse-eval: {verdict}", ""]
    lines.append(f"- base: {_escape_text(base.get('model'))}")
    lines.append(f"- tuned: {_escape_text(tuned.get('model'))}")
    lines.append(f"- alpha {alpha:g}; deltas, CIs, margins and MDE in points (0..100 scale)")
    lines += ["", "## Reasons", ""]
    lines += [f"- {_escape_text(r)}" for r in summary.get("reasons") or []] or ["- (none)"]

    comparisons = summary.get("comparisons") or []
    general = [c for c in comparisons if c.get("suite") == "general" and not c.get("group_by")]
    lines += ["", "## General capability", ""]
    if general:
        lines += _table(_header("task", alpha), _comparison_rows(general, "task"))
    else:
        lines.append("No general tasks were compared.")
    retention = summary.get("retention") or {}
    if isinstance(retention.get("index"), (int, float)):
        lines += [
            "",
            f"Retention index (tuned/base, macro over {retention.get('n_tasks')} "
            f"task(s)): **{retention['index']:.3f}** ({(1 - alpha) * 100:g}% CI "
            f"{_ratio(retention.get('ci_low'))} to {_ratio(retention.get('ci_high'))})",
        ]

    domain_tasks = [c for c in comparisons if c.get("suite") == "domain" and not c.get("group_by")]
    lines += ["", "## Domain", ""]
    overall = summary.get("domain_overall")
    if not overall and not domain_tasks:
        lines.append("No domain set was compared.")
    if overall:
        pooled = overall.get("pooled") or {}
        lines.append(
            f"- pooled over {pooled.get('n')} items: {_pct(pooled.get('base_mean'))} -> "
            f"{_pct(pooled.get('tuned_mean'))} ({_signed(pooled.get('delta'))} points, "
            f"CI {_signed(pooled.get('ci_low'))} to {_signed(pooled.get('ci_high'))}, "
            f"p {_p(pooled.get('p_value'))}, {escape_cell(pooled.get('test'))})"
        )
        macro = overall.get("macro_by_task_type")
        if macro:
            lines.append(
                f"- macro over {macro.get('n_groups')} task type(s): "
                f"{_signed(macro.get('delta'))} points (CI {_signed(macro.get('ci_low'))}"
                f" to {_signed(macro.get('ci_high'))}, p {_p(macro.get('p_value'))})"
            )
    if domain_tasks:
        lines += ["", "### By task", ""]
        lines += _table(_header("task", alpha), _comparison_rows(domain_tasks, "task"))
    for field, title in (("task_type", "By task type"), ("output_format", "By output format")):
        groups = [
            c for c in comparisons if c.get("suite") == "domain" and c.get("group_by") == field
        ]
        if groups:
            lines += ["", f"### {title}", ""]
            lines += _table(_header(field, alpha), _comparison_rows(groups, "group"))

    unpaired = summary.get("unpaired") or []
    if unpaired:
        lines += ["", "## Not compared", ""]
        lines += [
            f"- {escape_cell(u.get('suite'))} task {_escape_text(u.get('task'))}: only in "
            f"the {escape_cell(u.get('only_in'))} run"
            for u in unpaired
        ]
    return "\n".join(lines) + "\n"


def _ratio(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x:.3f}"
