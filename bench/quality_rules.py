"""Speed of `collapse-eval quality`: the rule pass on 10,000 samples, and the IFD rate.

    python bench/quality_rules.py [--n 10000] [--ifd-n 200] [--batch-size 16]

Rules: 10,000 synthetic training samples built from the demo generators
(``collapse_eval.demo.data``: real-estate dialogues, every question of each), with about
5 % planted defects (invalid JSON, content-free responses, exact and near duplicates,
truncations), loaded and validated with ``load_training_set`` and passed through the
rule stage (``run_rules``, MinHash LSH included) and the dataset-level stage. Prints wall
and CPU seconds; target: rules < 60 s wall on 2 cores.

IFD: ``--ifd-n`` of those samples scored by the tiny random-init Llama of the tests
(``init_tiny_llama``, transformers engine on CPU, no request cache): two log-likelihood
requests per sample. Prints samples/s.
"""

from __future__ import annotations

import argparse
import json
import random
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
    from collapse_eval.demo.tinymodel import init_tiny_llama
    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.engines.hf import HFEngine
    from collapse_eval.quality.cost import token_counter
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--ifd-n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rows = synthetic_rows(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        bench_rules(rows, Path(tmp))
        if args.ifd_n:
            bench_ifd(rows, Path(tmp), args.ifd_n, args.batch_size)


if __name__ == "__main__":
    main()
