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
OVERVIEW_STEPS_PNG = "overview_steps.png"  # only when the candidates' names carry steps
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
_LABEL_CHARS, _LABEL_LINES = 36, 3  # a long label wraps; past three lines it is cut (…)
_EDGE_PX = 3.0  # labels keep this far inside the axes' frame


def point_label(name: str, verdict: str) -> str:
    """'NAME (VERDICT)', wrapped at hyphens and spaces (or anywhere) so that a long
    candidate name stays a block that fits beside its point; the table names it in full."""
    import textwrap

    text = f"{name} ({verdict})"
    return textwrap.fill(text, _LABEL_CHARS, max_lines=_LABEL_LINES, placeholder=" …")


def label_offsets(anchors: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[float]:
    """The vertical offset (points) of each label from its point so that no two labels
    overlap: ``anchors`` are the points' positions in points on the page (x right, y up).
    Labels are placed from the highest point down, each at ``_LABEL_DY`` above its point;
    one that would overlap a label already placed goes below its point instead (clear of
    its marker), then down a line at a time. A label may have several lines."""
    placed: list[tuple[float, float, float, float]] = []  # x0, x1, y0, y1
    offsets = [_LABEL_DY] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda k: (-anchors[k][1], anchors[k][0])):
        x, y = anchors[i]
        lines = labels[i].split("\n")
        width, height = _CHAR_PT * max(map(len, lines)), _LINE_PT * len(lines)
        x0, x1 = x + _LABEL_DX, x + _LABEL_DX + width
        dy = _LABEL_DY
        while any(
            x0 < bx1 and bx0 < x1 and y + dy < by1 and by0 < y + dy + height
            for bx0, bx1, by0, by1 in placed
        ):
            dy = -_LABEL_DY - height if dy == _LABEL_DY else dy - _LINE_PT
        placed.append((x0, x1, y + dy, y + dy + height))
        offsets[i] = dy
    return offsets


def overview_plot(candidates: Sequence[Candidate]) -> bytes | None:
    """The learning-versus-forgetting scatter as PNG bytes; None if no candidate has both
    a domain gain and a retention index."""
    fig = overview_figure(candidates)
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def overview_figure(candidates: Sequence[Candidate]) -> Any:
    """The scatter as a matplotlib Figure (None: nothing to plot). Labels that would
    overlap (candidates with nearly the same gain and retention) are moved apart, each
    joined to its point, and the axes widened until every label lies inside the image."""
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
    labels = [point_label(p.name, p.verdict) for p in points]
    colours = [_VERDICT_COLOURS.get(p.verdict, "#57606a") for p in points]
    texts: list[Any] = []
    for _ in range(6):  # widening moves the points, so the labels are placed again
        for text in texts:
            text.remove()
        texts = _place_labels(fig, ax, labels, colours, xy)
        if not _widen_to_fit(fig, ax, texts):
            break
    return fig


def _place_labels(
    fig: Any, ax: Any, labels: Sequence[str], colours: Sequence[str], xy: Sequence[Any]
) -> list[Any]:
    """Each label at its ``label_offsets`` offset, joined to its point when moved."""
    to_points = 72.0 / fig.dpi
    anchors = [(x * to_points, y * to_points) for x, y in ax.transData.transform(xy)]
    texts = []
    for label, colour, point, dy in zip(
        labels, colours, xy, label_offsets(anchors, labels), strict=True
    ):
        moved = dy != _LABEL_DY
        texts.append(
            ax.annotate(
                label,
                point,
                textcoords="offset points",
                xytext=(_LABEL_DX, dy),
                fontsize=_LABEL_PT,
                color=colour,
                va="bottom",
                arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6}
                if moved
                else None,
            )
        )
    return texts


def _widen_to_fit(fig: Any, ax: Any, texts: Sequence[Any]) -> bool:
    """Widen the x (right) and y (up, down) limits by the labels' overflow beyond the
    axes (so beyond the image too), in proportion to the axes' size; False when every
    label is already inside."""
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    axes = ax.bbox
    right = max(b.x1 for b in boxes) - (axes.x1 - _EDGE_PX)
    top = max(b.y1 for b in boxes) - (axes.y1 - _EDGE_PX)
    bottom = (axes.y0 + _EDGE_PX) - min(b.y0 for b in boxes)
    if max(right, top, bottom) <= 0:
        return False
    # Widening by the overflow alone moves a label that is not at the edge too little.
    right, top, bottom = (v + _EDGE_PX if v > 0 else v for v in (right, top, bottom))
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    if right > 0:
        x1 += (x1 - x0) * right / max(axes.width - right, 1.0)
    span = y1 - y0
    if top > 0:
        y1 += span * top / max(axes.height - top, 1.0)
    if bottom > 0:
        y0 -= span * bottom / max(axes.height - bottom, 1.0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return True


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


def drift_colour(value: float | None, largest: float | None) -> str:
    """The drift cell's background: white at no drift to red at the largest drift of the
    candidates (a heat scale within one overview: KL values are not comparable across
    base models, their order among one base's candidates is)."""
    if value is None or not largest or largest <= 0:
        return "transparent"
    share = min(max(value / largest, 0.0), 1.0)
    green_blue = round(255 - share * (255 - 120))
    return f"rgb(255, {green_blue}, {green_blue})"


def _rows(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    from collapse_eval.drift.run import summary_drift

    drifts = [summary_drift(c.summary) for c in candidates]
    largest = max((d for d in drifts if d is not None), default=None)
    rows = []
    for candidate, drift in zip(candidates, drifts, strict=True):
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
                "drift": "n/a" if drift is None else f"{drift:.4g}",
                "drift_colour": drift_colour(drift, largest),
                "report": f"{p.name}/report.html",
                "summary": f"{p.name}/summary.json",
            }
        )
    return rows


def render_overview(
    base: Mapping[str, Any],
    candidates: Sequence[Candidate],
    png: bytes | None,
    screened_out: Mapping[str, str] | None = None,
    steps_png: bytes | None = None,
) -> str:
    """index.html for the candidates (jinja2, autoescape on: names are untrusted text);
    ``steps_png``: the by-training-step figure (report/steps.py), when there is one."""
    import jinja2

    from collapse_eval.report.steps import steps_alt

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
        has_drift=any(c.summary.extra.get("drift") for c in candidates),
        screened_out=sorted((screened_out or {}).items()),
        image=_data_uri(png),
        alt=_alt_text(candidates),
        steps_image=_data_uri(steps_png),
        steps_alt=steps_alt(candidates) if steps_png else "",
        level=f"{(1 - alpha) * 100:g}%",
        verdict="fail" if any(c.summary.verdict != "pass" for c in candidates) else "pass",
    )


def _data_uri(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None


def write_overview(
    out: Path, candidates: Sequence[Candidate], screened_out: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """DIR/index.html and DIR/overview.png (the PNG only when there is something to plot);
    ``screened_out``: candidates a ``--screen`` left out (name: why), listed apart."""
    from collapse_eval.records import atomic_write_text
    from collapse_eval.report.steps import steps_plot

    out.mkdir(parents=True, exist_ok=True)
    png, steps_png = overview_plot(candidates), steps_plot(candidates)
    written = {}
    for name, image in ((OVERVIEW_PNG, png), (OVERVIEW_STEPS_PNG, steps_png)):
        if image is not None:
            (out / name).write_bytes(image)
            written[name] = out / name
    base = candidates[0].summary.base.to_json() if candidates else {}
    page = render_overview(base, candidates, png, screened_out, steps_png)
    atomic_write_text(out / OVERVIEW_HTML, page)
    written[OVERVIEW_HTML] = out / OVERVIEW_HTML
    return written
