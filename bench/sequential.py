"""The sequential gate against fixed-n on the demo world: items, verdicts, wall time.

    nice -n 10 python bench/sequential.py DEMO_OUT [--candidates mixed domain-only graded-87]
        [--looks 5] [--time] [--json OUT.json]
    nice -n 10 python bench/sequential.py --runs BASE_RUN CAND_RUN [CAND_RUN ...]

DEMO_OUT is the output directory of `collapse-eval demo --out DEMO_OUT`: its runs/ hold
the base and every candidate, complete. ``--runs`` takes any complete run directories
instead (e.g. SmolLM2 runs on the real offline tasks). Default candidates: mixed (clearly
good), domain-only (collapsed) and the graded level nearest 75 (borderline).

For each candidate it prints the fixed-n comparison of all its items next to the
sequential design replayed on the same records (`compare --sequential`): the verdicts,
the items evaluated, the look that decided and the CPU seconds of the design's statistics
(all K looks' boundaries, computed afresh for each candidate, and their statistics: the
replay's CPU time minus the fixed-n comparison's).

``--time`` (demo world only) also evaluates each candidate's checkpoint on this machine,
without the request cache, twice: on all the demo's items (fixed-n, `collapse-eval run`)
and live in rounds (`compare BASE TUNED --sequential` against the base run: round k
evaluates look k's items of the comparisons still undecided and stops once the verdict is
known), with the wall and CPU seconds of each, the items the live run evaluated and its
verdict, and per round the seconds of evaluation against those of the statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any


def _cpu() -> float:
    self, children = (resource.getrusage(w) for w in (0, -1))  # RUSAGE_SELF, _CHILDREN
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def _default_candidates(runs: Path) -> list[str]:
    graded = [p.name for p in runs.iterdir() if re.fullmatch(r"graded-\d+", p.name)]
    near = min(graded, key=lambda n: abs(int(n.split("-")[1]) - 75), default=None)
    return ["mixed", "domain-only", *([near] if near else [])]


def _compare(base: Any, tuned: Any, looks: int, seed: int) -> dict[str, Any]:
    """Fixed-n and sequential verdicts of one candidate, and the design's CPU seconds."""
    from collapse_eval import sequential as sq
    from collapse_eval.compare import compare_runs
    from collapse_eval.policy import Policy, SequentialPolicy

    sq._bounds_state.cache_clear()  # each candidate pays for its boundaries, as a fresh run would
    start = time.process_time()
    fixed = compare_runs(base, tuned, Policy(), seed=seed)
    fixed_cpu = time.process_time() - start
    start = time.process_time()
    seq = compare_runs(base, tuned, Policy(sequential=SequentialPolicy(looks)), seed=seed)
    block = seq.sequential or {}
    return {
        "fixed_verdict": fixed.verdict,
        "sequential_verdict": seq.verdict,
        "items_available": block.get("items_available"),
        "items_evaluated": block.get("items_evaluated"),
        "decided_fraction": block.get("decided_fraction"),
        "stop_look": block.get("stop_look"),
        "tasks": block.get("tasks"),
        # The replay's extra CPU over the fixed-n comparison: the statistics of K looks.
        "design_cpu_s": max(time.process_time() - start - fixed_cpu, 0.0),
    }


def _spec(checkpoint: str, seed: int) -> Any:
    from collapse_eval.demo.world import BENCHMARKS_FILE, DEMO_SUITE, DOMAIN_TEST_FILE
    from collapse_eval.runner import RunSpec

    return RunSpec(
        model=checkpoint,
        domain_files=(DOMAIN_TEST_FILE,),
        benchmarks=BENCHMARKS_FILE,
        suite=DEMO_SUITE,
        engine="hf",
        engine_args={"batch_size": "64"},  # as the demo evaluates
        seed=seed,
        use_cache=False,
    )


def _timed(call: Any) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), _cpu()
    out = call()
    return out, {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu}


def _time_candidate(
    base: Any, run_dir: Path, looks: int, seed: int, fixed_n: bool
) -> dict[str, Any]:
    """Wall and CPU of evaluating the candidate on all items (``fixed_n``) and live in
    rounds, with the live run's items, verdict and rounds."""
    from collapse_eval.columns import restrict_items
    from collapse_eval.compare import compare_runs
    from collapse_eval.policy import Policy, SequentialPolicy
    from collapse_eval.progress import QuietProgress
    from collapse_eval.records import read_run_manifest
    from collapse_eval.runner import default_engine_factory, run_model
    from collapse_eval.sequential_live import run_live

    spec = _spec(str(read_run_manifest(run_dir).model), seed)
    policy = Policy(sequential=SequentialPolicy(looks))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sequential-") as tmp:
        if fixed_n:
            _, out["fixed_n"] = _timed(lambda: run_model(spec, Path(tmp) / "full"))
        live, out["sequential"] = _timed(
            lambda: run_live(
                base,
                spec,
                Path(tmp) / "live",
                policy,
                progress=QuietProgress(),
                engine_factory=default_engine_factory,
            )
        )
        summary = compare_runs(
            restrict_items(base, live.run), live.run, policy, seed=seed, sequential_block=live.block
        )
    block = summary.sequential or {}
    out["live"] = {
        "verdict": summary.verdict,
        "items_evaluated": block.get("items_evaluated"),
        "stop_look": block.get("stop_look"),
        "rounds": [dataclasses.asdict(r) for r in live.rounds],
    }
    return out


def _print(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'candidate':<14} {'fixed-n':>8} {'seq':>5} {'items fixed-n':>13} "
        f"{'items seq':>10} {'share':>6} {'look':>5} {'design CPU s':>12}"
    )
    print(head)
    for r in rows:
        share = r["decided_fraction"]
        print(
            f"{r['candidate']:<14} {r['fixed_verdict']:>8} {r['sequential_verdict']:>5} "
            f"{r['items_available']:>13} {r['items_evaluated']:>10} "
            f"{share * 100:>5.0f}% {r['stop_look']:>5} {r['design_cpu_s']:>12.3f}"
        )
    for r in rows:
        if "time" in r:
            _print_time(r)


def _print_time(r: dict[str, Any]) -> None:
    t, live = r["time"], r["time"]["live"]
    seq = t["sequential"]
    full = t.get("fixed_n")
    before = f"{full['wall_s']:.1f} s (CPU {full['cpu_s']:.1f} s) fixed-n -> " if full else ""
    print(
        f"{r['candidate']}: live {live['verdict']} at look {live['stop_look']} on "
        f"{live['items_evaluated']} items; evaluation wall {before}{seq['wall_s']:.1f} s "
        f"(CPU {seq['cpu_s']:.1f} s) sequential"
    )
    for rd in live["rounds"]:
        share = rd["stats_s"] / rd["eval_s"] if rd["eval_s"] else float("nan")
        print(
            f"  look {rd['look']}: {rd['items']} items, evaluation {rd['eval_s']:.1f} s, "
            f"statistics {rd['stats_s']:.3f} s ({share:.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_out", nargs="?", type=Path)
    parser.add_argument("--runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--candidates", nargs="+")
    parser.add_argument("--looks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time", action="store_true")
    parser.add_argument(
        "--live-only", action="store_true", help="with --time: skip the fixed-n evaluation"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from collapse_eval.columns import load_run_columns

    if args.runs:
        if len(args.runs) < 2 or args.time:
            parser.error("--runs takes BASE_RUN CAND_RUN...; --time needs the demo world")
        base_dir, cand_dirs = args.runs[0], args.runs[1:]
    elif args.demo_out is not None:
        runs = args.demo_out / "runs"
        base_dir = runs / "base"
        cand_dirs = [runs / c for c in (args.candidates or _default_candidates(runs))]
    else:
        parser.error("give DEMO_OUT or --runs")
    base = load_run_columns(base_dir)
    rows = []
    for cand in cand_dirs:
        row = {
            "candidate": cand.name,
            **_compare(base, load_run_columns(cand), args.looks, args.seed),
        }
        if args.time:
            row["time"] = _time_candidate(base, cand, args.looks, args.seed, not args.live_only)
        rows.append(row)
    _print(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
