"""Forest plots of paired deltas with confidence intervals (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_STATUS_COLOURS = {
    "improved": "#1a7f37",
    "regressed": "#cf222e",
    "non_inferior": "#0969da",
    "inconclusive": "#9a6700",
}


def _rows(summary: Mapping[str, Any], suite: str, group_by: str | None) -> list[Mapping[str, Any]]:
    return [
        c
        for c in summary.get("comparisons", [])
        if c.get("suite") == suite and c.get("group_by") == group_by and c.get("delta") is not None
    ]


def forest_plot(
    rows: Sequence[Mapping[str, Any]], title: str, path: Path, margin: float | None = None
) -> Path:
    """One line per comparison: delta (point) and CI (bar), coloured by status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r.get("group") if r.get("group_by") else r.get("task")) for r in rows]
    height = max(1.6, 0.42 * len(rows) + 1.0)
    fig, ax = plt.subplots(figsize=(7.5, height), dpi=110)
    for y, row in enumerate(rows):
        colour = _STATUS_COLOURS.get(str(row.get("status")), "#57606a")
        low, high = row.get("ci_low"), row.get("ci_high")
        if low is not None and high is not None:
            ax.plot([low, high], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
        ax.plot([row["delta"]], [y], "o", color=colour, markersize=6)
    ax.axvline(0.0, color="#24292f", linewidth=0.8)
    if margin:
        ax.axvline(
            -margin,
            color="#cf222e",
            linewidth=0.8,
            linestyle="--",
            label=f"non-inferiority margin (-{margin:g})",
        )
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_yticks(range(len(rows)), labels=labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("tuned - base (score scale 0..1)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(summary: Mapping[str, Any], plots_dir: Path) -> dict[str, Path]:
    """All plots for a summary; returns name -> path (only plots that have data)."""
    margin = (summary.get("policy") or {}).get("general", {}).get("margin")
    specs = [
        ("general", "general", None, "General capability: paired delta per task"),
        ("domain", "domain", None, "Domain: paired delta per task"),
        ("domain_task_type", "domain", "task_type", "Domain: delta by task type"),
        ("domain_output_format", "domain", "output_format", "Domain: delta by output format"),
    ]
    written = {}
    for name, suite, group_by, title in specs:
        rows = _rows(summary, suite, group_by)
        if rows:
            written[name] = forest_plot(
                rows, title, plots_dir / f"{name}.png", margin if suite == "general" else None
            )
    return written
