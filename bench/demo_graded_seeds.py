"""The demo's quality -> domain score result over world seeds.

For each world seed, builds the demo world's base and graded candidates (the same
configuration as `collapse-eval demo`, seed changed; the domain-only and mixed fine-tunes
are left out, they play no part in the graded study), evaluates each on the domain test
set with the demo's own engine settings (general tasks left out), and prints per seed the
graded candidates' domain deltas against the base (points), the smallest step between
adjacent levels in standard errors (paired over the 540 items), and the Spearman
correlation of training-data quality with domain score with its exact permutation p.

    nice -n 10 python bench/demo_graded_seeds.py [--seeds 0 1 2 3 4] [--workers 2]
        [--cache-dir /tmp/demo-graded-seeds] [--json OUT.json]

Every training and evaluation job of every seed runs in one pool of ``--workers``
single-threaded processes. Checkpoints and runs are kept under ``--cache-dir`` (a re-run
reuses them); the training sets' quality does not depend on the seed and is scored once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import time
from pathlib import Path
from typing import Any


def _tasks(seed: int, root: Path, runs: Path) -> list[Any]:
    """Training (base, graded candidates) and domain evaluation jobs of one seed."""
    from collapse_eval.demo.run import _evaluate_one
    from collapse_eval.demo.world import WorldConfig, world_tasks
    from collapse_eval.runner import RunSpec
    from collapse_eval.workers import Task

    config = dataclasses.replace(WorldConfig.demo(), seed=seed)
    from collapse_eval.demo.world import DOMAIN_TEST_FILE, world_key

    folder = root / world_key(config)
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"s{seed}/"
    train = [
        Task(tag + t.name, t.fn, t.args, tuple(tag + a for a in t.after))
        for t in world_tasks(folder, config, None, graded_only=True)
    ]
    built = {t.name for t in train}
    spec = RunSpec(
        model="",
        domain_files=(DOMAIN_TEST_FILE,),
        engine="hf",
        engine_args={"batch_size": "64"},  # as the demo evaluates
        run_general=False,
        use_cache=False,
    )

    def evaluate(name: str) -> list[Any]:
        run_dir = runs / f"seed-{seed}" / name
        if (run_dir / "manifest.json").is_file():
            return []
        after = (tag + name,) if tag + name in built else ()
        return [
            Task(f"{tag}evaluate {name}", _evaluate_one, (spec, str(folder / name), run_dir), after)
        ]

    # Each evaluation listed right after its checkpoint's training, so a seed's results
    # come in as its checkpoints do.
    tasks = evaluate("base")
    for task in train:
        name = task.name.removeprefix(tag)
        tasks += ([] if name == "base" else [task]) + (evaluate(name) if name != "base" else [])
    return [t for t in train if t.name == tag + "base"] + tasks


def _name(level: float) -> str:
    from collapse_eval.demo.graded import graded_name

    return graded_name(level)


def _item_scores(run_dir: Path) -> dict[str, float]:
    from collapse_eval.records import load_run

    run = load_run(run_dir)
    primary = {task: run.primary_metric(task) for task in {r.task for r in run.records}}
    return {
        f"{r.task}/{r.item_id}": r.score
        for r in run.records
        if r.suite == "domain" and r.metric == primary[r.task]
    }


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean of a - b over their shared items and its standard error."""
    diffs = [a[k] - b[k] for k in a if k in b]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(var / n)


def _seed_result(seed: int, runs: Path, levels: tuple[float, ...], quality: list[float]) -> dict:
    from collapse_eval.stats import correlation

    folder = runs / f"seed-{seed}"
    base = _item_scores(folder / "base")
    graded = [_item_scores(folder / _name(level)) for level in levels]
    deltas = [_paired(g, base) for g in graded]
    steps = [_paired(hi, lo) for hi, lo in zip(graded, graded[1:], strict=False)]
    scores = [sum(g.values()) / len(g) for g in graded]
    rho = correlation(quality, scores, "spearman", n_boot=2000, seed=0)
    return {
        "seed": seed,
        "base": sum(base.values()) / len(base),
        "scores": scores,
        "deltas": [d for d, _ in deltas],
        "delta_se": [se for _, se in deltas],
        "steps": [s for s, _ in steps],
        "step_se": [se for _, se in steps],
        "min_step_z": min(s / se if se > 0 else math.inf for s, se in steps),
        "spearman": rho.estimate,
        "p_value": rho.p_value,
        "p_method": rho.p_method,
    }


def _print_steps(results: list[dict], names: list[str]) -> None:
    """Each step down from one level to the next: points lost (paired SE) and how many
    SEs that is, the number the requirement (several SEs per step) is about."""
    pairs = [
        f"{a.removeprefix('graded-')}->{b.removeprefix('graded-')}"
        for a, b in zip(names, names[1:], strict=False)
    ]
    print("domain score lost from one level to the next, points (paired SE) = SEs:")
    print("seed  " + "  ".join(f"{p:>18}" for p in pairs))
    for r in results:
        cells = "  ".join(
            f"{100 * d:+5.1f} ({100 * se:.1f}) = {d / se if se > 0 else math.inf:+5.1f}"
            for d, se in zip(r["steps"], r["step_se"], strict=True)
        )
        print(f"{r['seed']:>4}  {cells}")


def main() -> None:
    # allow_abbrev off: a misspelt option (--seed, --work) is refused, not taken as a prefix
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/demo-graded-seeds"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from collapse_eval.demo.graded import score_graded_sets
    from collapse_eval.demo.world import WorldConfig
    from collapse_eval.workers import run_tasks

    levels = WorldConfig.demo().graded_levels
    root, runs = args.cache_dir / "worlds", args.cache_dir / "runs"
    wall = time.monotonic()
    tasks = [t for seed in args.seeds for t in _tasks(seed, root, runs)]
    print(f"{len(tasks)} jobs for seeds {args.seeds} in {args.workers} processes", flush=True)
    run_tasks(tasks, args.workers, on_done=lambda t, _r: print(f"  done: {t.name}", flush=True))
    scored = score_graded_sets(levels, args.cache_dir / "quality")
    quality = [s.overall for s in scored]
    results = [_seed_result(seed, runs, levels, quality) for seed in args.seeds]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime
    names = [_name(level) for level in levels]
    print()
    print(
        "quality (overall): "
        + ", ".join(f"{n} {q:.3f}" for n, q in zip(names, quality, strict=True))
    )
    print("domain delta vs base, points (paired SE):")
    print("seed  base   " + "  ".join(f"{n:>12}" for n in names) + "  min step/SE  spearman  p")
    for r in results:
        cells = "  ".join(
            f"{100 * d:+6.1f} ({100 * se:.1f})"
            for d, se in zip(r["deltas"], r["delta_se"], strict=True)
        )
        print(
            f"{r['seed']:>4}  {r['base']:.3f}  {cells}  {r['min_step_z']:>11.1f}"
            f"  {r['spearman']:+8.2f}  {r['p_value']:.4f} ({r['p_method']})"
        )
    _print_steps(results, names)
    ok = all(r["spearman"] > 0 and r["p_value"] < 0.05 for r in results)
    print(f"positive and p < 0.05 on every seed: {'yes' if ok else 'NO'}")
    print(f"wall {time.monotonic() - wall:.0f} s, CPU {cpu:.0f} s (this process and its workers)")
    if args.json is not None:
        args.json.write_text(json.dumps({"quality": quality, "seeds": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
