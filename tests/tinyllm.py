"""Helpers shared by the engine tests that run the tiny checkpoint on real backends."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from collapse_eval.engines.base import GenRequest

# Texts whose rolling log-likelihood every backend must give as transformers does.
ROLLING_TEXTS = ["The capital of France is Paris.", "Customer: I want to rent a flat in Lyon."]


def sharpened_copy(source: Path, target: Path, factor: float = 4.0) -> Path:
    """Copy a checkpoint with every 2-D weight multiplied by ``factor``.

    A random-init tiny Llama has logits so flat that every prompt gets the same greedy
    output, so agreement between engines would prove nothing; x4 gives ~30 distinct
    generations over 105 demo prompts.
    """
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    for weights in target.glob("*.safetensors"):
        state = load_file(str(weights))
        state = {n: (t * factor if t.ndim == 2 else t).contiguous() for n, t in state.items()}
        save_file(state, str(weights), metadata={"format": "pt"})
    return target


def domain_items(n: int) -> list[dict[str, Any]]:
    from collapse_eval.demo.data import domain_test_set

    return domain_test_set()[:n]


def gen_requests() -> list[GenRequest]:
    """105 requests: demo domain items (prompt and messages) and demo general questions."""
    from collapse_eval.demo.data import general_test_docs

    requests = []
    for item in domain_items(60):
        if "messages" in item:
            messages = tuple((m["role"], m["content"]) for m in item["messages"])
            requests.append(GenRequest(messages=messages, until=("\n",), max_tokens=12))
        else:
            requests.append(GenRequest(prompt=str(item["prompt"]), until=("\n",), max_tokens=12))
    for task in ("demo_arithmetic", "demo_copy", "demo_sort"):
        for doc in general_test_docs(task)[:15]:
            requests.append(
                GenRequest(prompt=str(doc["question"]), until=("\n\n", "Q:"), max_tokens=16)
            )
    return requests


def ll_requests() -> list[tuple[str, str]]:
    """Multiple-choice requests from the demo general suite (25 questions, 4 choices
    each: the first 100), plus boundary cases."""
    from collapse_eval.demo.data import general_test_docs

    requests = []
    for doc in general_test_docs("demo_capitals")[:25]:
        requests += [(str(doc["question"]), " " + choice) for choice in doc["choices"]]
    requests += [
        ("", "an empty context is conditioned on the prefix token"),
        ("trailing spaces move to the continuation   ", "so boundaries match"),
        ("digits 12", "345 split into single tokens"),
        ("   ", "a context of only spaces"),
        ("nothing to score", ""),
    ]
    return requests


def transformers_answers(checkpoint: Path) -> dict[str, Any]:
    """The transformers engine's answers on ``checkpoint`` to :func:`gen_requests`,
    :func:`ll_requests` and :data:`ROLLING_TEXTS`: the reference the vLLM engine and
    `vllm serve` are compared with."""
    from collapse_eval.engines.hf import HFEngine

    engine = HFEngine(str(checkpoint), dtype="float32", max_length=512)
    try:
        return {
            "generate": engine.generate(gen_requests()),
            "loglikelihood": engine.loglikelihood(ll_requests()),
            "rolling": engine.loglikelihood_rolling(ROLLING_TEXTS),
        }
    finally:
        engine.close()
