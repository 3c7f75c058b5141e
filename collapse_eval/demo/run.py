"""`collapse-eval demo`: build (or reuse) the tiny world and compare both candidates to base.

One many-candidate compare: the base is evaluated once (``runs/base``), each candidate's
summary and report go to ``domain-only/`` and ``mixed/``, the overview to ``index.html``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.progress import Progress, QuietProgress


@dataclass(frozen=True, slots=True)
class DemoRow:
    name: str
    verdict: str
    domain_delta: float | None
    general_delta: float | None
    summary: Path


def _overall_delta(summary: dict[str, Any], suite: str) -> float | None:
    """Mean task-level delta of a suite (for the printed table only)."""
    deltas = [
        c["delta"]
        for c in summary["comparisons"]
        if c["suite"] == suite
        and c.get("group_by") is None
        and c.get("metric") != "format_ok"  # format-following is not a task score
        and c.get("delta") is not None
    ]
    return sum(deltas) / len(deltas) if deltas else None


def run_demo(
    out: str | Path,
    *,
    cache_dir: Path | None = None,
    engine: str = "hf",
    progress: Progress | None = None,
    world_config: Any = None,
) -> list[DemoRow]:
    """Run the demo end to end; returns one row per candidate. Verdicts do not raise."""
    from collapse_eval.demo.world import WorldConfig, ensure_demo_world
    from collapse_eval.policy import default_policy
    from collapse_eval.runner import RunSpec, compare_candidates

    progress = progress or QuietProgress()
    out = Path(out)
    world = ensure_demo_world(
        cache_dir, config=world_config or WorldConfig.demo(), progress=progress.log
    )
    spec = RunSpec(
        model=str(world.base),
        domain_files=(world.domain_test,),
        benchmarks=world.benchmarks,
        suite=world.suite,
        engine=engine,
        # Big batches: with a 1.5M-parameter model, per-step overhead dominates, and
        # batch size does not change greedy outputs beyond the last bits of a float.
        engine_args={"batch_size": "64"} if engine == "hf" else {},
        seed=0,
        cache_dir=(cache_dir / "requests") if cache_dir else None,
    )
    names = ("domain-only", "mixed")
    progress.log("demo: comparing domain-only and mixed against base")
    results = compare_candidates(
        str(world.base),
        [str(world.domain_only), str(world.mixed)],
        spec,
        out,
        policy=default_policy(),
        progress=progress,
        names=names,
    )
    return [
        DemoRow(
            name=r.name,
            verdict=r.summary["verdict"],
            domain_delta=_overall_delta(r.summary, "domain"),
            general_delta=_overall_delta(r.summary, "general"),
            summary=r.out / "summary.json",
        )
        for r in results
    ]
