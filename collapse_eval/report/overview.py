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

OVERVIEW_HTML = "index.html"
OVERVIEW_PNG = "overview.png"
_VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate of a many-candidate compare: its name (= its folder) and summary."""

    name: str
    summary: Mapping[str, Any]


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
    overall = summary.get("domain_overall") or {}
    pooled = overall.get("pooled") or {}
    retention = summary.get("retention") or {}
    return _Point(
        name=candidate.name,
        verdict=str(summary.get("verdict")),
        gain=pooled.get("delta"),
        gain_low=pooled.get("ci_low"),
        gain_high=pooled.get("ci_high"),
        retention=retention.get("index"),
        retention_low=retention.get("ci_low"),
        retention_high=retention.get("ci_high"),
    )


def _errors(value: float, low: float | None, high: float | None) -> list[list[float]]:
    """matplotlib's asymmetric error bar for one point (zero where the CI is missing)."""
    below = value - low if low is not None else 0.0
    above = high - value if high is not None else 0.0
    return [[max(below, 0.0)], [max(above, 0.0)]]


def overview_plot(candidates: Sequence[Candidate]) -> bytes | None:
    """The learning-versus-forgetting scatter as PNG bytes; None if no candidate has both
    a domain gain and a retention index."""
    points = [p for p in map(_point, candidates) if p.gain is not None and p.retention is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    ax.axvline(1.0, color="#8c959f", linewidth=0.8, linestyle="--")
    ax.axhline(0.0, color="#8c959f", linewidth=0.8, linestyle="--")
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
        ax.annotate(
            f"{p.name} ({p.verdict})",
            (p.retention, p.gain * 100),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
            color=colour,
        )
    ax.set_xlabel("general retention index (tuned / base; 1.0 = nothing forgotten)")
    ax.set_ylabel("domain gain (points, pooled domain items)")
    ax.set_title("Learning versus forgetting (bars: confidence intervals)")
    ax.margins(0.15)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
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
            c
            for c in candidate.summary.get("comparisons", [])
            if c.get("suite") == "general" and not c.get("group_by")
        ]
        reasons = candidate.summary.get("reasons") or []
        rows.append(
            {
                "name": p.name,
                "model": str((candidate.summary.get("tuned") or {}).get("model") or ""),
                "verdict": p.verdict,
                "gain": _interval(p.gain, p.gain_low, p.gain_high, 100),
                "retention": _interval(p.retention, p.retention_low, p.retention_high, 1),
                "regressed": sum(c.get("status") == "regressed" for c in general),
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
    alphas = [c.summary.get("alpha") for c in candidates]
    alpha = next((float(a) for a in alphas if isinstance(a, (int, float))), 0.05)
    return env.get_template("overview.html.j2").render(
        base=base,
        rows=_rows(candidates),
        image=("data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None),
        alt=_alt_text(candidates),
        level=f"{(1 - alpha) * 100:g}%",
        verdict="fail" if any(c.summary.get("verdict") != "pass" for c in candidates) else "pass",
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
    base = dict(candidates[0].summary.get("base") or {}) if candidates else {}
    atomic_write_text(out / OVERVIEW_HTML, render_overview(base, candidates, png))
    written[OVERVIEW_HTML] = out / OVERVIEW_HTML
    return written
