"""Drift against forgetting on the demo world: does the label-free KL rank the
checkpoints like their measured general retention?

The demo's 1.5M-parameter model never saw English prose, so the shipped English probe
set is noise to it (every fine-tune moved it by 5 to 7 nats/token, whatever it forgot).
Its general probe here is text in the demo's own general-task format (``Q: What is
12 + 34?\\nA: 46``), drawn fresh from the general tasks' item space with a seed of its
own, never a general test item: what the base learned and a fine-tune can forget. The
shipped probe stays the default of ``collapse-eval drift`` for real models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from collapse_eval.demo import data

if TYPE_CHECKING:
    from collapse_eval.drift.measure import DriftResult
    from collapse_eval.progress import Progress
    from collapse_eval.stats import CorrelationResult

__all__ = [
    "PROBE_PER_TASK",
    "PROBE_SEED",
    "DriftPoint",
    "correlation_line",
    "demo_drifts",
    "demo_probe_texts",
    "drift_table_lines",
    "forgetting_correlation",
]

PROBE_SEED = 6006  # not GENERAL_SEED: other draws than the training pairs'
PROBE_PER_TASK = 50  # 200 texts, about 3,000 tokens: seconds per candidate


def demo_probe_texts(per_task: int = PROBE_PER_TASK) -> list[str]:
    """The demo world's general probe: ``per_task`` question-and-answer texts of each
    general task, interleaved. ``data.general_train_pairs`` never yields a test item;
    arithmetic and sort have few items besides the test ones, so many of these are items
    the base was trained on (what it knows, and a fine-tune may forget); capitals are the
    facts themselves."""
    pairs = data.general_train_pairs(per_task, seed=PROBE_SEED)
    tasks = sorted(pairs)
    return [" ".join(pairs[task][i]) for i in range(per_task) for task in tasks]


def demo_drifts(
    base: Path, checkpoints: Sequence[tuple[str, Path]], progress: Progress | None = None
) -> dict[str, DriftResult]:
    """Each checkpoint's drift from ``base`` on the demo probe (hf, exact KL), by name."""
    from collapse_eval.drift.run import DriftSpec, run_drift

    spec = DriftSpec(engine="hf", probe=tuple(demo_probe_texts()))
    results = {}
    for name, checkpoint in checkpoints:
        if progress is not None:
            progress.log(f"drift: {name} against base (demo probe)")
        results[name] = run_drift(str(base), str(checkpoint), spec)
    return results


@dataclass(frozen=True, slots=True)
class DriftPoint:
    """One candidate: its drift on the general probe and its general retention index."""

    name: str
    drift: float
    retention: float


def forgetting_correlation(points: Sequence[DriftPoint]) -> CorrelationResult:
    """Spearman of drift against forgetting (1 - retention index), with its permutation
    p (exact up to 9 points, else 10,000 random permutations: stats.correlation)."""
    from collapse_eval.stats import correlation

    return correlation([p.drift for p in points], [1 - p.retention for p in points], "spearman")


def correlation_line(label: str, points: Sequence[DriftPoint]) -> str:
    if len(points) < 3:
        return f"drift vs forgetting, {label}: fewer than 3 candidates, no correlation"
    r = forgetting_correlation(points)
    p_words = (
        "exact permutation"
        if r.p_method == "exact_permutation"
        else (f"{r.n_permutations:,} random permutations")
    )
    return (
        f"drift vs forgetting (1 - retention), {label}: Spearman {r.estimate:+.2f} "
        f"(95% CI {r.ci_low:+.2f} to {r.ci_high:+.2f}), p = {r.p_value:.3g} ({p_words}), "
        f"n = {r.n}"
    )


def drift_table_lines(points: Sequence[DriftPoint]) -> list[str]:
    """The terminal table: drift, retention index and forgetting per candidate."""
    lines = [f"{'candidate':<14} {'drift (KL/token)':>16} {'retention':>10} {'forgetting':>11}"]
    lines += [
        f"{p.name:<14} {p.drift:>16.4f} {p.retention:>10.3f} {1 - p.retention:>11.3f}"
        for p in points
    ]
    return lines
