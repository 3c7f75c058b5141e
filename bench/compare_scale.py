"""`collapse-eval compare RUN RUN` at scale: time and peak memory for 10k, 100k, 1M records.

Generates two synthetic run directories (base, tuned) per size, then times one
`collapse-eval compare BASE_RUN TUNED_RUN --out OUT -q` subprocess (loading, pairing,
statistics, summary.json, summary.md, report.html, plots) and reads its peak RSS from
``resource.getrusage(RUSAGE_CHILDREN)``. Targets at 1M records per run: < 60 s, < 2 GB.

Records are a realistic mix: 40 % general (binary acc on three tasks, one with a second
metric, and a group of two subtasks named in metadata), 60 % domain (continuous scores
in [0, 1] with clusters of 5 items, four task types, two output formats), each with a
prediction, a reference, a prompt hash and a document hash, as `collapse-eval run` writes.

    python bench/compare_scale.py [--sizes 10000,100000,1000000] [--keep DIR]

Peak RSS is the largest process of the compare (the parent; run directories of more
than 32 MB are parsed in a forked child in parallel, whose peak is lower).

The code measured is whatever `python -m collapse_eval.cli` imports (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERAL_TASKS = (
    ("arc_easy", "acc", None),
    ("hellaswag", "acc", None),
    ("mmlu_law", "acc", "mmlu"),
    ("mmlu_math", "acc", "mmlu"),
)
DOMAIN_TASKS = ("listings", "contracts")
TASK_TYPES = ("extract", "classify", "summarise", "qa")
FORMATS = ("json", "text")


def _manifest(model: str) -> dict[str, object]:
    tasks: dict[str, dict[str, object]] = {
        name: {"suite": "general", "primary_metric": metric} for name, metric, _ in GENERAL_TASKS
    }
    tasks.update({name: {"suite": "domain", "primary_metric": "score"} for name in DOMAIN_TASKS})
    return {"schema_version": 1, "model": model, "complete": True, "tasks": tasks}


def write_synthetic_run(path: Path, n_records: int, *, seed: int, shift: float) -> None:
    """A run directory of about ``n_records`` records (same item ids for any seed)."""
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(_manifest(f"model-{seed}")), encoding="utf-8")
    n_general = int(n_records * 0.4)
    per_general = n_general // (len(GENERAL_TASKS) + 1)  # hellaswag carries two metrics
    per_domain = (n_records - per_general * (len(GENERAL_TASKS) + 1)) // len(DOMAIN_TASKS)
    dumps = json.dumps
    with (path / "records.jsonl").open("w", encoding="utf-8") as fh:
        for task, metric, group in GENERAL_TASKS:
            metrics = (metric, "acc_norm") if task == "hellaswag" else (metric,)
            for i in range(per_general):
                doc = hashlib.sha256(f"{task}/{i}".encode()).hexdigest()
                for m in metrics:
                    rec = {
                        "schema_version": 1,
                        "suite": "general",
                        "task": task,
                        "item_id": str(i),
                        "metric": m,
                        "score": float(rng.random() < 0.6 + shift),
                        "task_type": None,
                        "output_format": None,
                        "format_ok": None,
                        "prediction": f"choice {rng.randrange(4)}",
                        "reference": "choice 1",
                        "prompt_hash": "sha256:" + doc,
                        "doc_hash": "sha256:" + doc,
                    }
                    if group:
                        rec["metadata"] = {"group": group}
                    fh.write(dumps(rec) + "\n")
        for task in DOMAIN_TASKS:
            for i in range(per_domain):
                doc = hashlib.sha256(f"{task}/{i}".encode()).hexdigest()
                score = min(1.0, max(0.0, rng.betavariate(4, 3) + shift))
                rec = {
                    "schema_version": 1,
                    "doc_hash": "sha256:" + doc,
                    "cluster": f"{task}-c{i // 5}",
                    "suite": "domain",
                    "task": task,
                    "item_id": f"{task}-{i}",
                    "metric": "score",
                    "score": score,
                    "task_type": TASK_TYPES[i % len(TASK_TYPES)],
                    "output_format": FORMATS[i % len(FORMATS)],
                    "format_ok": rng.random() < 0.95,
                    "prediction": f"The answer for item {i} is {score:.4f} "
                    + "x" * rng.randrange(20, 120),
                    "reference": {"value": i, "text": f"reference answer {i}"},
                    "prompt_hash": "sha256:" + doc,
                }
                fh.write(dumps(rec) + "\n")


def time_compare(base: Path, tuned: Path, out: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code) of one compare subprocess.

    CPU seconds (user + sys, the subprocess and its children) do not depend on how busy
    the machine is; wall time does."""
    cmd = [
        sys.executable,
        "-m",
        "collapse_eval.cli",
        "compare",
        str(base),
        str(tuned),
        "--out",
        str(out),
        "-q",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_kb = after.ru_maxrss
    if proc.returncode not in (0, 1):
        sys.exit(f"compare failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if peak_kb <= before.ru_maxrss:
        print("  (peak RSS not above an earlier child's; run sizes in increasing order)")
    return elapsed, cpu, peak_kb / 1024, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep run dirs here")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = options.keep or Path(tmp)
        results = []
        for n in sorted(sizes):
            base, tuned = root / f"n{n}" / "base", root / f"n{n}" / "tuned"
            if not (tuned / "records.jsonl").exists():
                write_synthetic_run(base, n, seed=1, shift=0.0)
                write_synthetic_run(tuned, n, seed=2, shift=-0.01)
            wall, cpu, rss, code = time_compare(base, tuned, root / f"n{n}" / "out")
            results.append((n, wall, rss))
            print(
                f"{n:>9,} records/run: {wall:7.1f} s wall  {cpu:7.1f} s CPU  "
                f"peak RSS {rss:7.0f} MB  (exit {code})",
                flush=True,
            )
        if len(results) > 1:
            (n0, w0, r0), (n1, w1, r1) = results[0], results[-1]
            print(
                f"growth {n0:,} -> {n1:,} ({n1 / n0:.0f}x records): "
                f"time x{w1 / w0:.1f}, peak RSS x{r1 / r0:.1f}"
            )


if __name__ == "__main__":
    main()
