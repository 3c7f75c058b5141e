"""index.html + overview.png of a many-candidate compare: learning versus forgetting.

One point per candidate: its domain gain (pooled domain delta, with its CI) against its
general-capability retention index (with its CI), coloured by verdict, so candidates that
learned the domain without forgetting stand out (up and at or right of 1.0). The page is
self-contained (jinja2 autoescape, the plot inlined as a data URI) and links each
candidate's own report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.report.fmt import short_model
from collapse_eval.summary import Summary

OVERVIEW_HTML = "index.html"
OVERVIEW_PNG = "overview.png"
_VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate of a many-candidate compare: its name (= its folder) and summary."""

    name: str
    summary: Summary


@dataclass(frozen=True, slots=True)
class _Point:
    name: str
    verdict: str
    gain: float | None
    gain_low: float | None
    gain_high: float | None
    retention: float | None
    retention_low: float | None
    retention_high: float | None


def _point(candidate: Candidate) -> _Point:
    summary = candidate.summary
    pooled = summary.domain_overall.pooled if summary.domain_overall else None
    retention = summary.retention
    return _Point(
        name=candidate.name,
        verdict=str(summary.verdict),
        gain=pooled.delta if pooled else None,
        gain_low=pooled.ci_low if pooled else None,
        gain_high=pooled.ci_high if pooled else None,
        retention=retention.index if retention else None,
        retention_low=retention.ci_low if retention else None,
        retention_high=retention.ci_high if retention else None,
    )


def _errors(value: float, low: float | None, high: float | None) -> list[list[float]]:
    """matplotlib's asymmetric error bar for one point (zero where the CI is missing)."""
    below = value - low if low is not None else 0.0
    above = high - value if high is not None else 0.0
    return [[max(below, 0.0)], [max(above, 0.0)]]


_DPI = 110
_LABEL_PT = 9  # font size of a point's label
_LINE_PT = 12.0  # height of a label's line, in points
_CHAR_PT = 0.62 * _LABEL_PT  # average width of a character (DejaVu Sans), in points
_LABEL_DX, _LABEL_DY = 6.0, 6.0  # a label's offset from its point, in points


def label_offsets(anchors: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[float]:
    """The vertical offset (points) of each label from its point so that no two labels
    overlap: ``anchors`` are the points' positions in points on the page (x right, y up).
    Labels are placed from the highest point down, each at ``_LABEL_DY`` above its point;
    one that would overlap a label already placed goes below its point instead (clear of
    its marker), then down a line at a time."""
    placed: list[tuple[float, float, float, float]] = []  # x0, x1, y0, y1
    offsets = [_LABEL_DY] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda k: (-anchors[k][1], anchors[k][0])):
        x, y = anchors[i]
        x0, x1 = x + _LABEL_DX, x + _LABEL_DX + _CHAR_PT * len(labels[i])
        dy = _LABEL_DY
        while any(
            x0 < bx1 and bx0 < x1 and y + dy < by1 and by0 < y + dy + _LINE_PT
            for bx0, bx1, by0, by1 in placed
        ):
            dy = -_LABEL_DY - _LINE_PT if dy == _LABEL_DY else dy - _LINE_PT
        placed.append((x0, x1, y + dy, y + dy + _LINE_PT))
        offsets[i] = dy
    return offsets


def overview_plot(candidates: Sequence[Candidate]) -> bytes | None:
    """The learning-versus-forgetting scatter as PNG bytes; None if no candidate has both
    a domain gain and a retention index. Labels that would overlap (candidates with
    nearly the same gain and retention) are moved apart, each joined to its point."""
    points = [p for p in map(_point, candidates) if p.gain is not None and p.retention is not None]
    if not points:
        return None
    from collapse_eval.report.plots import new_figure

    fig = new_figure(7.5, 5.5, dpi=_DPI)
    ax = fig.add_subplot()
    ax.axvline(1.0, color="#8c959f", linewidth=0.8, linestyle="--")
    ax.axhline(0.0, color="#8c959f", linewidth=0.8, linestyle="--")
    xy = []
    for p in points:
        assert p.gain is not None and p.retention is not None
        colour = _VERDICT_COLOURS.get(p.verdict, "#57606a")
        ax.errorbar(
            [p.retention],
            [p.gain * 100],
            xerr=_errors(p.retention, p.retention_low, p.retention_high),
            yerr=[[e * 100 for e in side] for side in _errors(p.gain, p.gain_low, p.gain_high)],
            fmt="o",
            color=colour,
            ecolor=colour,
            elinewidth=1.2,
            capsize=3,
        )
        xy.append((p.retention, p.gain * 100))
    ax.set_xlabel("general retention index (tuned / base; 1.0 = nothing forgotten)")
    ax.set_ylabel("domain gain (points, pooled domain items)")
    ax.set_title("Learning versus forgetting (bars: confidence intervals)")
    ax.margins(0.15)
    fig.tight_layout()
    ax.autoscale_view()
    to_points = 72.0 / fig.dpi
    anchors = [(x * to_points, y * to_points) for x, y in ax.transData.transform(xy)]
    labels = [f"{p.name} ({p.verdict})" for p in points]
    for p, label, (x, y), dy in zip(
        points, labels, xy, label_offsets(anchors, labels), strict=True
    ):
        colour = _VERDICT_COLOURS.get(p.verdict, "#57606a")
        moved = dy != _LABEL_DY
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=(_LABEL_DX, dy),
            fontsize=_LABEL_PT,
            color=colour,
            va="bottom",
            arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6} if moved else None,
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _alt_text(candidates: Sequence[Candidate]) -> str:
    parts = []
    for p in map(_point, candidates):
        gain = "no domain gain" if p.gain is None else f"domain gain {p.gain * 100:+.1f} points"
        kept = (
            "no retention index" if p.retention is None else f"general retention {p.retention:.3f}"
        )
        parts.append(f"{p.name}: {gain}, {kept}, verdict {p.verdict}")
    return "Scatter of domain gain against general retention index. " + "; ".join(parts)


def _interval(value: float | None, low: float | None, high: float | None, scale: float) -> str:
    if value is None:
        return "n/a"
    fmt = "+.1f" if scale == 100 else ".3f"
    text = format(value * scale, fmt)
    if low is not None and high is not None:
        text += f" ({format(low * scale, fmt)} to {format(high * scale, fmt)})"
    return text


def _rows(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    rows = []
    for candidate in candidates:
        p = _point(candidate)
        general = [
            c for c in candidate.summary.comparisons if c.suite == "general" and not c.group_by
        ]
        reasons = candidate.summary.reasons
        model = str(candidate.summary.tuned.model or "")
        rows.append(
            {
                "name": p.name,
                "model": model,
                "short": short_model(model) if model else "",
                "verdict": p.verdict,
                "gain": _interval(p.gain, p.gain_low, p.gain_high, 100),
                "retention": _interval(p.retention, p.retention_low, p.retention_high, 1),
                "regressed": sum(c.status == "regressed" for c in general),
                "n_general": len(general),
                "reason": str(reasons[0]) if reasons else "",
                "report": f"{p.name}/report.html",
                "summary": f"{p.name}/summary.json",
            }
        )
    return rows


def render_overview(
    base: Mapping[str, Any], candidates: Sequence[Candidate], png: bytes | None
) -> str:
    """index.html for the candidates (jinja2, autoescape on: names are untrusted text)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("collapse_eval", "report/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    alphas = [c.summary.alpha for c in candidates]
    alpha = next((float(a) for a in alphas if isinstance(a, (int, float))), 0.05)
    return env.get_template("overview.html.j2").render(
        base=base,
        rows=_rows(candidates),
        image=("data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None),
        alt=_alt_text(candidates),
        level=f"{(1 - alpha) * 100:g}%",
        verdict="fail" if any(c.summary.verdict != "pass" for c in candidates) else "pass",
    )


def write_overview(out: Path, candidates: Sequence[Candidate]) -> dict[str, Path]:
    """DIR/index.html and DIR/overview.png (the PNG only when there is something to plot)."""
    from collapse_eval.records import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    png = overview_plot(candidates)
    written = {}
    if png is not None:
        (out / OVERVIEW_PNG).write_bytes(png)
        written[OVERVIEW_PNG] = out / OVERVIEW_PNG
    base = candidates[0].summary.base.to_json() if candidates else {}
    atomic_write_text(out / OVERVIEW_HTML, render_overview(base, candidates, png))
    written[OVERVIEW_HTML] = out / OVERVIEW_HTML
    return written
