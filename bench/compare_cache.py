"""Whole `collapse-eval compare` runs: cold cache vs warm cache vs only-tuned-changed.

Each scenario is a fresh `collapse-eval compare` subprocess into a NEW output directory
(so run directories are not reused; only the request cache can help), timed end to end,
model loading and lm-eval task setup included:
  cold          : empty cache, base + tuned computed;
  warm          : the same compare again, everything from the cache   (target <= 0.05);
  tuned changed : base cached, a new tuned checkpoint                 (target <= 0.55).
Also shown: a re-run into the SAME output directory (complete run dirs, no model loaded).

    python bench/compare_cache.py [--engine hf|vllm] [--limit 50] [--domain-items 100]
                                  [--models BASE,TUNED,TUNED2]

Models: two random-init demo-size Llamas (seeds 0, 1) and a third for "tuned changed";
inputs: the first N items of the demo domain set and the `quick` general suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_compare(
    base: Path, tuned: Path, out: Path, cache: Path, engine: str, limit: int, domain: Path
) -> float:
    cmd = [
        sys.executable,
        "-m",
        "collapse_eval.cli",
        "compare",
        str(base),
        str(tuned),
        "--domain",
        str(domain),
        "--suite",
        "quick",
        "--limit",
        str(limit),
        "--engine",
        engine,
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "-q",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"compare failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--domain-items", type=int, default=100)
    parser.add_argument(
        "--models",
        default=None,
        help="three checkpoint dirs (e.g. the demo world's base, domain-only, "
        "mixed) instead of random-init models",
    )
    options = parser.parse_args()

    from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama
    from collapse_eval.demo.world import DOMAIN_TEST_FILE

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        domain = root / "domain.jsonl"
        lines = DOMAIN_TEST_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
        domain.write_text("".join(lines[: options.domain_items]), encoding="utf-8")
        if options.models:
            base, tuned, tuned2 = (Path(p) for p in options.models.split(","))
        else:
            base, tuned, tuned2 = (
                init_tiny_llama(root / f"m{seed}", DEMO_SIZE, seed=seed) for seed in (0, 1, 2)
            )
        cache = root / "cache"
        args = (cache, options.engine, options.limit, domain)
        cold = timed_compare(base, tuned, root / "cold", *args)
        warm = timed_compare(base, tuned, root / "warm", *args)
        changed = timed_compare(base, tuned2, root / "changed", *args)
        same_out = timed_compare(base, tuned, root / "cold", *args)
    print(
        f"engine={options.engine} limit={options.limit} domain items={options.domain_items}"
        " (demo domain set + quick suite)"
    )
    print(f"cold compare               : {cold:7.1f} s")
    print(f"warm cache, new out dir    : {warm:7.1f} s  ratio {warm / cold:.3f}  (target <= 0.05)")
    print(
        f"tuned changed, base cached : {changed:7.1f} s  ratio {changed / cold:.3f}  "
        "(target <= 0.55)"
    )
    print(f"same out dir (runs reused) : {same_out:7.1f} s  ratio {same_out / cold:.3f}")


if __name__ == "__main__":
    main()
