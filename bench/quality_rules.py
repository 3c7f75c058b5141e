"""Speed of `collapse-eval quality`: the rule pass on 10,000 samples, on 100,000 samples with
200-word dialogues (against the code of an earlier commit), and the IFD rate.

    python bench/quality_rules.py [--n 10000] [--long 100000] [--baseline fcb3f71]
        [--ifd-n 200] [--batch-size 16]

Rules: 10,000 synthetic training samples built from the demo generators
(``collapse_eval.demo.data``: real-estate dialogues, every question of each), with about
5 % planted defects (invalid JSON, content-free responses, exact and near duplicates,
truncations), loaded and validated with ``load_training_set`` and passed through the
rule stage (``run_rules``, MinHash LSH included) and the dataset-level stage. Prints wall
and CPU seconds; target: rules < 60 s wall on 2 cores.

Long contexts: ``--long`` samples (0: skip) in the study's shape, three different
questions on each distinct ~200-word hotel dialogue (``tests/longdialogues.py``), through
the rule and dataset stages (load + ``assess``) in a fresh subprocess, once with this tree
and once with the ``collapse_eval`` package of ``--baseline`` (extracted with ``git
archive``; "" skips it) on the same file. Prints wall and CPU seconds (user + sys of the
subprocess) and the flags each found; target: < 2 minutes on 2 cores.

IFD: ``--ifd-n`` of those samples scored by the tiny random-init Llama of the tests
(``init_tiny_llama``, transformers engine on CPU, no request cache): two log-likelihood
requests per sample. Prints samples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def synthetic_rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    from collapse_eval.demo.data import domain_items, make_dialogues

    dialogues = make_dialogues(n // 6 + 10, seed, "bench")
    rows = domain_items(dialogues, seed, None, "bq", training=True)[:n]
    rng = random.Random(seed)
    for index in rng.sample(range(len(rows)), n // 20):
        row = rows[index]
        kind = rng.randrange(4)
        if kind == 0 and row["output_format"] == "json":
            row["response"] = row["response"][:-4]  # truncated JSON
        elif kind == 1:
            row["response"] = "..."
        elif kind == 2 and row["output_format"] == "free_text":
            row["response"] = row["response"].rsplit(" ", 2)[0]  # cut mid-sentence
        else:
            rows[rng.randrange(len(rows))] = {**row, "id": row["id"] + "-dup"}
    return rows


def bench_rules(rows: list[dict[str, Any]], directory: Path) -> None:
    import datasketch  # noqa: F401  (import time is not the rule pass)

    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.quality.pipeline import assess

    path = directory / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    wall, cpu = time.perf_counter(), time.process_time()
    items = load_training_set(path)
    load_wall = time.perf_counter() - wall
    result = assess(items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cost = result.quality["cost"]
    flagged = {k: v for k, v in result.quality["flags"].items() if v}
    print(
        f"rules: {len(items)} samples, load {load_wall:.1f} s, rules {cost['rules']['seconds']} s,"
    )
    print(
        f"  dataset level {cost['dataset']['seconds']} s; total {wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    print(f"  flags: {flagged}")


def bench_ifd(rows: list[dict[str, Any]], directory: Path, n: int, batch_size: int) -> None:
    from collapse_eval.cost import token_counter
    from collapse_eval.demo.tinymodel import init_tiny_llama
    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.engines.hf import HFEngine
    from collapse_eval.quality.model_based import score_with_model

    path = directory / "ifd.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]), encoding="utf-8")
    items = load_training_set(path)
    engine = HFEngine(str(init_tiny_llama(directory / "tiny", seed=0)), batch_size=batch_size)
    count, _ = token_counter(engine)
    start = time.perf_counter()
    scores = score_with_model(items, engine, count)
    elapsed = time.perf_counter() - start
    mean_ifd = sum(s.ifd for s in scores if s.ifd is not None) / len(scores)
    print(f"IFD: {len(items)} samples in {elapsed:.1f} s = {len(items) / elapsed:.1f} samples/s")
    print(f"  (tiny Llama, hf engine, CPU, batch {batch_size}); mean IFD {mean_ifd:.3f}")


# Run in a subprocess with PYTHONPATH at the tree under test: the rule and dataset stages.
_STAGES = """
import json, sys, time
import collapse_eval
assert collapse_eval.__file__.startswith(sys.argv[2]), collapse_eval.__file__
import datasketch  # import time is not the rule pass
from collapse_eval.domain.dataset import load_training_set
from collapse_eval.quality.pipeline import assess
start = time.perf_counter()
items = load_training_set(sys.argv[1])
load = time.perf_counter() - start
result = assess(items)
cost = result.quality["cost"]
print(json.dumps({
    "load": load, "rules": cost["rules"]["seconds"], "dataset": cost["dataset"]["seconds"],
    "flags": {k: v for k, v in result.quality["flags"].items() if v},
    "context_reuse": result.quality.get("context_reuse"),
}))
"""


def _run_stages(tree: Path, data: Path) -> dict[str, Any]:
    """The stages' timings from one subprocess, with its wall and CPU seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    # cwd: not the repository, whose collapse_eval "python -c" would import first
    proc = subprocess.Popen(
        [sys.executable, "-c", _STAGES, str(data), str(tree)],
        env=env,
        cwd=data.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"the stages failed in {tree} (exit {proc.returncode})")
    return {**json.loads(out), "wall": wall, "usage": usage.ru_utime + usage.ru_stime}


def _baseline_tree(revision: str, directory: Path) -> Path:
    """The collapse_eval package of ``revision``, extracted (no worktree is registered)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "collapse_eval"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def bench_long(n: int, baseline: str, directory: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.longdialogues import dialogue_rows

    rows = dialogue_rows(-(-n // 3))[:n]
    data = directory / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    trees = {"this tree": Path(__file__).resolve().parents[1]}
    if baseline:
        old = directory / "baseline"
        old.mkdir()
        trees[baseline] = _baseline_tree(baseline, old)
    print(f"long contexts: {n} samples, 3 questions per ~200-word dialogue")
    cpu_before = 0.0
    for name, tree in trees.items():
        r = _run_stages(tree, data)
        cpu, cpu_before = r["usage"] - cpu_before, r["usage"]
        print(
            f"  {name}: rules {r['rules']:.1f} s + dataset {r['dataset']:.1f} s "
            f"(load {r['load']:.1f} s); process {r['wall']:.1f} s wall, {cpu:.1f} s CPU"
        )
        print(f"    flags: {r['flags']}; context_reuse: {r['context_reuse']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--long", type=int, default=100_000)
    parser.add_argument("--baseline", default="fcb3f71")
    parser.add_argument("--ifd-n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.n:
            bench_rules(synthetic_rows(args.n), Path(tmp))
        if args.long:
            bench_long(args.long, args.baseline, Path(tmp))
        if args.ifd_n:
            bench_ifd(
                synthetic_rows(max(args.n, args.ifd_n)), Path(tmp), args.ifd_n, args.batch_size
            )


if __name__ == "__main__":
    main()
