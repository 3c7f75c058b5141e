"""Dataset-level stage: balance over task types / output formats and diversity.

These describe the set, not a sample: normalised entropy of the task-type and
output-format distributions, distinct-1/2 of the responses, and prompt diversity as one
minus the mean pairwise MinHash Jaccard similarity on a seeded sample of prompts (the
caller passes the prompts without their shared context, see context.py).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from collapse_eval.domain.scorers import mixed_tokens
from collapse_eval.quality.lsh import signatures
from collapse_eval.quality.rules import Shingler

__all__ = ["PROMPT_SAMPLE", "normalised_entropy", "distinct_n", "prompt_diversity", "dataset_stats"]

# Prompts drawn (seeded) for the pairwise similarity: 300 prompts are 44,850 pairs.
PROMPT_SAMPLE = 300


def normalised_entropy(labels: Sequence[str]) -> float:
    """Shannon entropy of the label distribution / log(number of distinct labels).

    1 is a uniform distribution; one distinct label (nothing to balance) counts as 1.
    """
    counts = Counter(labels)
    if len(counts) <= 1:
        return 1.0
    total = sum(counts.values())
    entropy = -sum(n / total * math.log(n / total) for n in counts.values())
    return entropy / math.log(len(counts))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the responses (tokens: words, CJK characters)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = mixed_tokens(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def prompt_diversity(prompts: Sequence[str], seed: int, sample: int = PROMPT_SAMPLE) -> float:
    """1 - mean pairwise MinHash Jaccard similarity of a seeded sample of prompts."""
    chosen = list(prompts)
    if len(chosen) > sample:
        chosen = random.Random(seed).sample(chosen, sample)
    shingler = Shingler()
    sets = [s for s in (shingler(mixed_tokens(p)) for p in chosen) if s]
    if len(sets) < 2:
        return 1.0
    values = signatures(sets)
    total, pairs = 0.0, 0
    for i in range(len(values) - 1):
        same = values[i + 1 :] == values[i]
        total += float(same.mean(axis=1).sum())
        pairs += len(values) - 1 - i
    return 1.0 - total / pairs


def dataset_stats(
    task_types: Sequence[str],
    output_formats: Sequence[str],
    prompts: Sequence[str],
    responses: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """The dataset-level numbers and the two dimensions built from them (balance, diversity)."""
    stats: dict[str, Any] = {
        "task_type_entropy": normalised_entropy(task_types),
        "output_format_entropy": normalised_entropy(output_formats),
        "task_type_counts": dict(sorted(Counter(task_types).items())),
        "output_format_counts": dict(sorted(Counter(output_formats).items())),
        "distinct_1": distinct_n(responses, 1),
        "distinct_2": distinct_n(responses, 2),
        "prompt_diversity": prompt_diversity(prompts, seed),
        "prompt_sample": min(len(prompts), PROMPT_SAMPLE),
    }
    stats["balance"] = (stats["task_type_entropy"] + stats["output_format_entropy"]) / 2
    stats["diversity"] = (stats["distinct_1"] + stats["distinct_2"] + stats["prompt_diversity"]) / 3
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()}
