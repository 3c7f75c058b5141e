"""KL divergence arithmetic for ``drift``: pure functions, no model, no I/O.

Two estimators of KL(base || tuned) at one next-token position:

- ``full``: from both models' complete distributions (the hf engine), exact.
- ``top_k_lumped``: from the top-k log-probabilities a server returns (vLLM, an
  OpenAI-compatible API). Every token whose probability both sides report keeps its own
  bin; all other tokens are lumped into one "rest" bin whose mass is what the reported
  tokens leave (1 - their sum), on each side. KL of these coarse distributions is never
  above the true KL (the log-sum inequality: merging outcomes can only lose divergence),
  so the estimate is a **lower bound**, tight when the top-k hold most of both
  distributions' mass.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

# A rest bin below this mass counts as empty: the top-k sum can exceed 1 by rounding.
_EMPTY = 1e-12


def lumped_kl(base: Mapping[Hashable, float], tuned: Mapping[Hashable, float]) -> float:
    """KL(base || tuned) in nats over the tokens both report plus one lumped rest bin;
    ``base`` and ``tuned`` map tokens to log-probabilities (a lower bound of the true
    KL, see the module docstring)."""
    shared = base.keys() & tuned.keys()
    total = 0.0
    base_left = tuned_left = 1.0
    for token in shared:
        p, log_q = math.exp(base[token]), tuned[token]
        total += p * (base[token] - log_q)
        base_left -= p
        tuned_left -= math.exp(log_q)
    if base_left > _EMPTY:
        total += base_left * math.log(base_left / max(tuned_left, _EMPTY))
    return max(total, 0.0)


def lumped_kl_sum(
    base: Sequence[Mapping[Hashable, float]], tuned: Sequence[Mapping[Hashable, float]]
) -> float:
    """The lumped KL summed over the positions of one text (both sides aligned)."""
    if len(base) != len(tuned):
        raise ValueError(f"{len(base)} base positions against {len(tuned)} tuned positions")
    return sum(lumped_kl(b, t) for b, t in zip(base, tuned, strict=True))


def ratio_mean_se(sums: Sequence[float], counts: Sequence[int]) -> tuple[float, float | None]:
    """The per-token mean sum(sums) / sum(counts) and its standard error with the texts as
    clusters (the delta method for a ratio, as for cluster-robust errors): tokens of one
    text are not independent. None for the error with fewer than two texts."""
    n = len(sums)
    tokens = sum(counts)
    if tokens == 0:
        return 0.0, None
    mean = sum(sums) / tokens
    if n < 2:
        return mean, None
    residual = sum((s - mean * c) ** 2 for s, c in zip(sums, counts, strict=True))
    mean_count = tokens / n
    return mean, math.sqrt(residual / (n - 1) / n) / mean_count
