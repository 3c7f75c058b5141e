"""Cold vs warm request cache (CachedEngine) over a tiny-model workload.

Scenarios, each timed on a fresh cache directory:
  cold       : empty cache, base and tuned checkpoints computed;
  warm       : the same run again: everything answered from the cache (target <= 0.05);
  new tuned  : base cached, a new tuned checkpoint computed (target <= 0.55).
Model loading is timed separately and not included in the ratios (a full `compare`
re-run adds it unless the runner loads models lazily).

    python bench/cache_warm_cold.py [--engine hf|vllm] [--items 120]

The workload is the demo domain set (generation) plus demo multiple-choice general
questions (log-likelihood), on two random-init demo-size checkpoints (seeds 0 and 1).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def workload(items: int) -> tuple[list[Any], list[tuple[str, str]]]:
    from collapse_eval.demo.data import domain_test_set, general_test_docs
    from collapse_eval.engines.base import GenRequest

    generate = []
    for item in domain_test_set()[:items]:
        if "messages" in item:
            messages = tuple((m["role"], m["content"]) for m in item["messages"])
            generate.append(GenRequest(messages=messages, until=("\n",), max_tokens=24))
        else:
            generate.append(GenRequest(prompt=str(item["prompt"]), until=("\n",), max_tokens=24))
    loglikelihood = [
        (str(doc["question"]), " " + choice)
        for doc in general_test_docs("demo_capitals")[:items]
        for choice in doc["choices"]
    ]
    return generate, loglikelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--items", type=int, default=120)
    options = parser.parse_args()

    from collapse_eval.cache import CachedEngine, RequestCache
    from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama
    from collapse_eval.engines.registry import make_engine

    generate, loglikelihood = workload(options.items)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_dir = init_tiny_llama(root / "base", DEMO_SIZE, seed=0)
        tuned_dir = init_tiny_llama(root / "tuned", DEMO_SIZE, seed=1)
        started = time.perf_counter()
        engines = {
            name: make_engine(options.engine, str(path), {})
            for name, path in (("base", base_dir), ("tuned", tuned_dir))
        }
        load_s = time.perf_counter() - started

        def run(cache_dir: Path, which: tuple[str, ...]) -> tuple[float, int, int]:
            cache = RequestCache(cache_dir)
            hits = misses = 0
            start = time.perf_counter()
            for name in which:
                cached = CachedEngine(engines[name], cache)
                cached.generate(generate)
                cached.loglikelihood(loglikelihood)
                hits, misses = hits + cached.stats.hits, misses + cached.stats.misses
            elapsed = time.perf_counter() - start
            cache.close()
            return elapsed, hits, misses

        cold = run(root / "cache-a", ("base", "tuned"))
        warm = run(root / "cache-a", ("base", "tuned"))
        run(root / "cache-b", ("base",))  # only the base is cached
        new_tuned = run(root / "cache-b", ("base", "tuned"))
        for engine in engines.values():
            engine.close()

    n = len(generate) + len(loglikelihood)
    print(
        f"engine {options.engine}: {len(generate)} generations + {len(loglikelihood)} "
        f"log-likelihoods per checkpoint ({n} requests); loading both models: {load_s:.1f} s"
    )
    for label, (seconds, hits, misses) in (
        ("cold", cold),
        ("warm", warm),
        ("new tuned", new_tuned),
    ):
        print(f"{label:10s}: {seconds:8.3f} s  hits {hits:5d}  misses {misses:5d}")
    print(f"warm / cold      = {warm[0] / cold[0]:.4f}  (target <= 0.05)")
    print(f"new tuned / cold = {new_tuned[0] / cold[0]:.4f}  (target <= 0.55)")


if __name__ == "__main__":
    main()
