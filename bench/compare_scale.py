"""`collapse-eval compare RUN RUN` at scale: time and peak memory for 10k, 100k, 1M records.

Generates two synthetic run directories (base, tuned) per size, then times one
`collapse-eval compare BASE_RUN TUNED_RUN --out OUT -q` subprocess (loading, pairing,
statistics, summary.json, summary.md, report.html, plots) and reads its CPU seconds and
peak RSS from ``os.wait4``; checks that the report was written; then deletes the report
and times `collapse-eval report OUT` alone (reading both runs again for the examples,
summary.md, report.html, junit.xml, plots) the same way. Targets at 1M records per run:
< 60 s, < 2 GB.

Records are a realistic mix: 40 % general (binary acc on three tasks, one with a second
metric, and a group of two subtasks named in metadata), 60 % domain (continuous scores
in [0, 1] with clusters of 5 items, four task types, two output formats), each with a
prediction, a reference, a prompt hash and a document hash, as `collapse-eval run` writes.

    python bench/compare_scale.py [--sizes 10000,100000,1000000] [--keep DIR]

Before the compare, one run's records.jsonl is read alone (``read_record_columns``, the
validating reader compare uses) in a fresh process, and its CPU seconds are printed: the
reading speed, without the statistics and the report around it.

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


def time_command(args: list[str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code) of one collapse-eval subprocess.

    CPU seconds (user + sys, the subprocess and its children) do not depend on how busy
    the machine is; wall time does. ``os.wait4`` gives this one subprocess's usage (its
    peak RSS is that of its largest process), so commands can be measured in any order."""
    cmd = [sys.executable, "-m", "collapse_eval.cli", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            stderr.seek(0)
            tail = stderr.read().decode("utf-8", "replace")[-3000:]
            sys.exit(f"{args[0]} failed ({code}):\n{tail}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code


READ_ONLY = (
    "import sys, time\n"
    "from collapse_eval.columns import read_record_columns\n"
    "start = time.process_time()\n"
    "read_record_columns(sys.argv[1])\n"
    "print(time.process_time() - start)\n"
)


def time_read(records: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of reading one records.jsonl in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", READ_ONLY, str(records)], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - start, float(done.stdout)


def time_compare(base: Path, tuned: Path, out: Path) -> tuple[float, float, float, int]:
    """`collapse-eval compare BASE TUNED --out OUT -q`, timed as ``time_command``."""
    return time_command(["compare", str(base), str(tuned), "--out", str(out), "-q"])


REPORT_FILES = ("summary.json", "summary.md", "report.html", "junit.xml")


def check_report(out: Path) -> str:
    """Raise unless the compare wrote its report; a short description of it."""
    missing = [name for name in REPORT_FILES if not (out / name).is_file()]
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    if missing or not plots:
        sys.exit(f"report incomplete in {out}: missing {missing or 'plots/*.png'}")
    html = (out / "report.html").read_text(encoding="utf-8")
    examples = html.count("data-direction=")
    return f"report.html {len(html) // 1024} KB, {examples} examples, {len(plots)} plots"


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
            out = root / f"n{n}" / "out"
            wall, cpu = time_read(base / "records.jsonl")
            print(f"{n:>9,} records/run: read   {wall:7.1f} s wall  {cpu:7.1f} s CPU", flush=True)
            wall, cpu, rss, code = time_compare(base, tuned, out)
            results.append((n, wall, rss))
            print(
                f"{n:>9,} records/run: compare {wall:7.1f} s wall  {cpu:7.1f} s CPU  "
                f"peak RSS {rss:7.0f} MB  (exit {code}); {check_report(out)}",
                flush=True,
            )
            for name in REPORT_FILES[1:]:
                (out / name).unlink()
            wall, cpu, rss, code = time_command(["report", str(out)])
            print(
                f"{'':>9}              report  {wall:7.1f} s wall  {cpu:7.1f} s CPU  "
                f"peak RSS {rss:7.0f} MB  (exit {code}); {check_report(out)}",
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
