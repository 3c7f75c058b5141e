"""Does drift rank the demo's candidates like their general retention? (issue 23)

For each candidate of a built demo world, the drift from the demo base (`collapse-eval
drift` with the hf engine: exact mean per-token KL on the general probe set and on the
demo test set's prompts) beside its general retention index from the demo's
summary.json; then Spearman's correlation of drift with forgetting (1 - retention) with
the exact permutation p, over the six graded candidates and over all eight.

    python bench/drift_demo.py [--world DIR] [--demo-out reports/demo]

--world: the world's checkpoints (default: the current world key in the user cache);
--demo-out: the output of `collapse-eval demo` on that world (its summary.json files).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

OTHERS = ["domain-only", "mixed"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _spearman(label: str, drift: list[float], forgetting: list[float]) -> str:
    from collapse_eval.stats import correlation

    r = correlation(drift, forgetting, "spearman")
    return (
        f"drift vs forgetting (1 - retention), {label}: spearman {r.estimate:+.2f}, "
        f"p = {r.p_value:.3g} ({r.p_method}), n = {r.n}"
    )


def main() -> None:
    from collapse_eval.demo.graded import graded_name
    from collapse_eval.demo.train import WorldConfig
    from collapse_eval.demo.world import default_cache_dir, world_key
    from collapse_eval.drift.run import DriftSpec, run_drift

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, default=None)
    parser.add_argument("--demo-out", type=Path, default=Path("reports/demo"))
    args = parser.parse_args()
    world = args.world or default_cache_dir() / world_key(WorldConfig())
    domain = Path(__file__).resolve().parents[1] / "collapse_eval/tasks/demo/realestate_test.jsonl"
    spec = DriftSpec(engine="hf", domain_files=(domain,))
    wall, cpu = time.monotonic(), _cpu()
    rows = []
    print(f"{'candidate':<12} {'probe KL':>9} {'(SE)':>8} {'domain KL':>10} {'retention':>10}")
    names = [graded_name(level) for level in WorldConfig.demo().graded_levels]
    for name in names + OTHERS:
        result = run_drift(str(world / "base"), str(world / name), spec)
        summary = json.loads((args.demo_out / name / "summary.json").read_text())
        retention = float(summary["retention"]["index"])
        probe, dom = result.by_name("general_probe"), result.by_name("domain")
        assert probe is not None and dom is not None
        rows.append((name, probe.mean_kl, retention))
        print(
            f"{name:<12} {probe.mean_kl:>9.4f} {probe.se or 0:>8.4f} {dom.mean_kl:>10.4f} "
            f"{retention:>10.3f}",
            flush=True,
        )
    graded = rows[: len(names)]
    print(_spearman("six graded", [r[1] for r in graded], [1 - r[2] for r in graded]))
    print(_spearman("all eight", [r[1] for r in rows], [1 - r[2] for r in rows]))
    print(f"{time.monotonic() - wall:.1f} s wall, {_cpu() - cpu:.1f} s CPU (this process)")


if __name__ == "__main__":
    main()
