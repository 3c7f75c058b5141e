"""`collapse-eval demo --sweep`: the training-step sweep evaluated, compared and drifted.

After the demo (whose base run it reuses), the sweep's checkpoints (sweep.py) are each
evaluated into ``OUT/sweep/runs/<step>`` in the demo's two worker processes, compared
against the base in one many-candidate compare (``OUT/sweep/``: each step's summary and
report, and the overview with its by-step figure) with each checkpoint's drift on the
demo probe (drift_study.py) in its summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapse_eval.demo.run import (
    DemoRow,
    _demo_spec,
    _log_evaluated,
    _row,
    drift_points,
    evaluation_tasks,
)
from collapse_eval.progress import Progress, QuietProgress

SWEEP_DIR = "sweep"


def run_sweep_study(
    out: str | Path,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    world_config: Any = None,
    sweep_config: Any = None,
    workers: int | None = None,
) -> list[DemoRow]:
    """Evaluate and compare the sweep of the demo world against its base; one row per
    checkpoint, in step order. ``out`` is the demo's output (its ``runs/base`` is the
    base run; the demo must have run there first)."""
    from collapse_eval.demo.drift_study import demo_drifts
    from collapse_eval.demo.sweep import SweepConfig, ensure_sweep
    from collapse_eval.demo.world import WorldConfig, default_workers, ensure_demo_world
    from collapse_eval.runner import compare_candidates
    from collapse_eval.workers import run_tasks

    progress = progress or QuietProgress()
    out = Path(out)
    config = world_config or WorldConfig.demo()
    world = ensure_demo_world(cache_dir, config=config, progress=progress.log)
    sweep = ensure_sweep(
        cache_dir, config=config, sweep=sweep_config or SweepConfig(), progress=progress.log
    )
    spec = _demo_spec(world, "hf", cache_dir)
    named = [(c.name, c.checkpoint) for c in sweep.checkpoints]
    runs = out / SWEEP_DIR / "runs"
    tasks = evaluation_tasks(named, spec, runs)
    run_tasks(
        tasks,
        default_workers() if workers is None else workers,
        on_done=lambda task, result: _log_evaluated(progress, task, result),
    )
    drifts = demo_drifts(world.base, named, progress)
    progress.log(f"demo: comparing the {len(named)} sweep checkpoints against base")
    results = compare_candidates(
        str(out / "runs" / "base"),
        [str(runs / name) for name, _ in named],
        spec,
        out / SWEEP_DIR,
        progress=progress,
        names=[name for name, _ in named],
        drifts=drifts,
    )
    return [_row(r.name, r.summary, r.out / "summary.json") for r in results]


def sweep_report_lines(sweep: Sequence[DemoRow], demo: Sequence[DemoRow]) -> list[str]:
    """Per step: domain delta, retention and drift; whether forgetting grows with the
    step; and the Spearman of drift against forgetting over the sweep, and over the sweep
    and the demo's candidates together."""
    from collapse_eval.demo.drift_study import correlation_line
    from collapse_eval.report.steps import candidate_step
    from collapse_eval.stats import correlation

    lines = [f"{'step':<10} {'domain delta':>12} {'retention':>10} {'drift (KL/token)':>16}"]
    for r in sweep:
        delta = "n/a" if r.domain_delta is None else f"{r.domain_delta * 100:+.1f}"
        kept = "n/a" if r.retention is None else f"{r.retention:.3f}"
        drift = "n/a" if r.drift is None else f"{r.drift:.4f}"
        lines.append(f"{r.name:<10} {delta:>12} {kept:>10} {drift:>16}")
    ours, theirs = drift_points(sweep), drift_points(demo)
    if len(ours) >= 3:
        steps = [candidate_step(p.name) or 0 for p in ours]
        grows = correlation(steps, [1 - p.retention for p in ours], "spearman")
        lines.append(
            f"forgetting (1 - retention) against the step over the sweep: Spearman "
            f"{grows.estimate:+.2f}, p = {grows.p_value:.3g}, n = {grows.n}"
        )
    lines.append(correlation_line("the sweep", ours))
    lines.append(correlation_line("the sweep and the demo's candidates", [*ours, *theirs]))
    return lines
