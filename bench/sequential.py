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

``--time`` (demo world only) also measures evaluation wall and CPU time on this machine:
the candidate's checkpoint on all the demo's items, and on as many items per task as the
design needed (general tasks: lm-eval's first N documents, the same count as the design's
random ones; the domain set: the design's own items), both without the request cache. Live
evaluation in rounds is not built yet, so the second number is what the rounds would cost
without their per-round overhead.
"""

from __future__ import annotations

import argparse
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

    sq._bounds.cache_clear()  # each candidate pays for its boundaries, as a fresh run would
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


def _subset_inputs(base: Any, row: dict[str, Any], seed: int, folder: Path) -> tuple[Path, Path]:
    """A benchmarks.yaml limiting each demo task to the items the design evaluated, and
    the domain test set cut to the design's own domain items (ordered as it orders them,
    from the base run's records)."""
    import yaml

    from collapse_eval import sequential as sq
    from collapse_eval.demo.world import BENCHMARKS_FILE, DEMO_SUITE, DOMAIN_TEST_FILE
    from collapse_eval.sequential_compare import strata_names, unit_names

    counts = {t["task"]: t["items_evaluated"] for t in row["tasks"]}
    suite = yaml.safe_load(BENCHMARKS_FILE.read_text(encoding="utf-8"))
    for entry in suite["suites"][DEMO_SUITE]:
        entry["limit"] = max(int(counts.get(entry["task"], 0)), 1)
    benchmarks = folder / "benchmarks.yaml"
    benchmarks.write_text(yaml.safe_dump(suite), encoding="utf-8")
    keep: set[str] = set()
    for suite_name, task in base.order:
        if suite_name != "domain":
            continue
        cols = base.get(("domain", task, "score"))
        units = unit_names(task, cols.item_ids, cols.clusters)
        order = sq.evaluation_order(
            units, strata_names(cols.task_types, cols.output_formats), seed=seed
        )
        keep |= {str(cols.item_ids[i]) for i in order[: int(counts.get(task, len(order)))]}
    lines = DOMAIN_TEST_FILE.read_text(encoding="utf-8").splitlines()
    domain = folder / DOMAIN_TEST_FILE.name
    kept = [line for line in lines if line.strip() and json.loads(line)["id"] in keep]
    domain.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return benchmarks, domain


def _timed_run(checkpoint: str, benchmarks: Path, domain: Path, out: Path) -> dict[str, float]:
    from collapse_eval.demo.world import DEMO_SUITE
    from collapse_eval.runner import RunSpec, run_model

    spec = RunSpec(
        model=checkpoint,
        domain_files=(domain,),
        benchmarks=benchmarks,
        suite=DEMO_SUITE,
        engine="hf",
        engine_args={"batch_size": "64"},  # as the demo evaluates
        seed=0,
        use_cache=False,
    )
    wall, cpu = time.perf_counter(), _cpu()
    run_model(spec, out)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu}


def _time_candidate(base: Any, run_dir: Path, row: dict[str, Any], seed: int) -> dict[str, Any]:
    """Wall and CPU of evaluating the candidate on all items and on the design's count."""
    from collapse_eval.demo.world import BENCHMARKS_FILE, DOMAIN_TEST_FILE
    from collapse_eval.records import read_run_manifest

    checkpoint = str(read_run_manifest(run_dir).model)
    with tempfile.TemporaryDirectory(prefix="bench-sequential-") as tmp:
        folder = Path(tmp)
        full = _timed_run(checkpoint, BENCHMARKS_FILE, DOMAIN_TEST_FILE, folder / "full")
        benchmarks, domain = _subset_inputs(base, row, seed, folder)
        part = _timed_run(checkpoint, benchmarks, domain, folder / "part")
    return {"fixed_n": full, "sequential": part}


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
            full, part = r["time"]["fixed_n"], r["time"]["sequential"]
            print(
                f"{r['candidate']}: evaluation wall {full['wall_s']:.1f} s fixed-n -> "
                f"{part['wall_s']:.1f} s sequential (CPU {full['cpu_s']:.1f} -> "
                f"{part['cpu_s']:.1f} s); statistics {r['design_cpu_s']:.3f} CPU s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_out", nargs="?", type=Path)
    parser.add_argument("--runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--candidates", nargs="+")
    parser.add_argument("--looks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time", action="store_true")
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
            row["time"] = _time_candidate(base, cand, row, args.seed)
        rows.append(row)
    _print(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
