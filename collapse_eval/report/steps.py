"""The overview's "by training step" figure: learning and forgetting along one run.

When the candidates of a many-candidate compare are checkpoints of one training run,
named with their step (``step-0015``, HF Trainer's ``checkpoint-500``), the overview
plots against the step: the pooled domain gain (learning), the general retention index
(forgetting) and, when measured, the drift on the general probe, one panel each, with
their confidence intervals. Candidates whose name carries no step are left off it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collapse_eval.report.overview import Candidate

__all__ = ["candidate_step", "stepped", "steps_alt", "steps_plot"]

# step-0015, step_15, checkpoint-500, ckpt15, run-a/step-0015: the number ends the name.
_STEP = re.compile(r"(?:^|[^a-z])(?:step|checkpoint|ckpt)[-_]?(\d+)$", re.IGNORECASE)
_DPI = 110
_MIN_POINTS = 2  # one step is no curve


def candidate_step(name: str) -> int | None:
    """The training step a candidate's name carries; None when it carries none."""
    match = _STEP.search(name)
    return int(match.group(1)) if match else None


def stepped(candidates: Sequence[Candidate]) -> list[tuple[int, Candidate]]:
    """(step, candidate) of the candidates whose names carry a step, by step; empty when
    fewer than two do (or two share a step: not one run)."""
    pairs = [(candidate_step(c.name), c) for c in candidates]
    found = sorted(((s, c) for s, c in pairs if s is not None), key=lambda pair: pair[0])
    steps = [s for s, _ in found]
    if len(found) < _MIN_POINTS or len(set(steps)) != len(steps):
        return []
    return found


def _series(points: Sequence[tuple[int, Candidate]]) -> dict[str, list[Any]]:
    """Per panel, (step, value, low, high) in the panel's unit (None where missing)."""
    from collapse_eval.drift.run import summary_drift

    out: dict[str, list[Any]] = {"gain": [], "retention": [], "drift": []}
    for step, c in points:
        pooled = c.summary.domain_overall.pooled if c.summary.domain_overall else None
        if pooled is not None and pooled.delta is not None:
            low, high = pooled.ci_low, pooled.ci_high
            out["gain"].append((step, pooled.delta * 100, _times(low, 100), _times(high, 100)))
        kept = c.summary.retention
        if kept is not None and kept.index is not None:
            out["retention"].append((step, kept.index, kept.ci_low, kept.ci_high))
        drift = summary_drift(c.summary)
        if drift is not None:
            out["drift"].append((step, drift, None, None))
    return out


def _times(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


_PANELS = (
    ("gain", "domain gain (points)", 0.0, "#0072b2"),
    ("retention", "general retention (index)", 1.0, "#d55e00"),
    ("drift", "drift (KL/token, nats)", None, "#cc79a7"),
)


def steps_plot(candidates: Sequence[Candidate]) -> bytes | None:
    """The by-step figure as PNG bytes; None when fewer than two candidates carry steps."""
    points = stepped(candidates)
    if not points:
        return None
    from collapse_eval.report.plots import new_figure

    series = _series(points)
    panels = [p for p in _PANELS if series[p[0]]]
    fig = new_figure(7.5, 1.0 + 2.0 * len(panels), dpi=_DPI)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, label, line, colour) in zip(axes, panels, strict=True):
        xs = [s for s, *_ in series[key]]
        ys = [v for _, v, _, _ in series[key]]
        below = [v - lo if lo is not None else 0.0 for _, v, lo, _ in series[key]]
        above = [hi - v if hi is not None else 0.0 for _, v, _, hi in series[key]]
        ax.errorbar(xs, ys, yerr=[below, above], fmt="o-", color=colour, capsize=3)
        if line is not None:
            ax.axhline(line, color="#8c959f", linewidth=0.8, linestyle="--")
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("training step (from the candidate's name)")
    axes[0].set_title("By training step: learning (up) and forgetting (retention down)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def steps_alt(candidates: Sequence[Candidate]) -> str:
    """The figure's values in words (the image's alt text)."""
    series = _series(stepped(candidates))
    parts = []
    for key, label, _, _ in _PANELS:
        if series[key]:
            values = ", ".join(f"step {s}: {v:.3g}" for s, v, _, _ in series[key])
            parts.append(f"{label}: {values}")
    return "Line plots against the training step. " + "; ".join(parts)
