"""Model-based stage: instruction-following difficulty (IFD) and perplexity of responses.

For a sample with prompt P and response R, with L(R | P) the mean per-token negative
log-likelihood of R after P and L(R) the same without P (conditioned only on the
model's prefix token):

    IFD = L(R | P) / L(R)

Both losses are over the same continuation tokens, so IFD is also the ratio of the two
summed log-likelihoods. IFD < 1: the prompt makes the response easier to predict;
IFD > 1: it does not help (flag ``ifd_high``). ``nll`` is L(R | P) and ``ppl`` is
exp(L(R | P)). Works through any Engine; the caller wraps it in the request cache.

Two directions. The ``instruction_following`` dimension is 1 - IFD (clipped to 0..1):
high when the prompt explains the response, so a set whose answers do not follow from
their prompts scores low. The literature that selects training data with IFD goes the
other way: Cherry LLM (Li et al., "From Quantity to Quality", NAACL 2024) and
Superfiltering (Li et al., ACL 2024) keep the samples with the HIGHEST IFD below 1 (the
prompt helps, but the response is still hard for the model to produce, so the sample
teaches it most) and drop those with IFD > 1. ``ifd_percentile`` reports each sample's
place in that order (1.0: picked first) and ``ifd_summary`` the IFD per group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collapse_eval.domain.dataset import TrainingItem
from collapse_eval.engines.base import Engine
from collapse_eval.quality.rules import response_text, robust_z

__all__ = [
    "IFD_MAX",
    "NLL_Z_MAX",
    "ModelScore",
    "ifd_percentiles",
    "ifd_requests",
    "ifd_summary",
    "score_with_model",
]

# ifd_high when IFD > IFD_MAX (the prompt does not make the response more likely).
IFD_MAX = 1.0
# ppl_high when the per-token NLL is a robust outlier (z > NLL_Z_MAX) within its task type
# (groups of at least NLL_MIN_GROUP scored samples).
NLL_Z_MAX = 3.5
NLL_MIN_GROUP = 10


@dataclass(frozen=True, slots=True)
class ModelScore:
    """Log-likelihoods of one response with and without its prompt, and what follows."""

    logprob_conditional: float
    logprob_unconditional: float
    n_tokens: int
    ifd: float | None
    nll: float | None
    ppl: float | None

    @property
    def instruction_following(self) -> float | None:
        """1 - IFD clipped to 0..1: the share of the response's loss the prompt removes."""
        return None if self.ifd is None else min(1.0, max(0.0, 1.0 - self.ifd))


def _context(item: TrainingItem, engine: Engine) -> str:
    if item.prompt is not None:
        return item.prompt
    return engine.render_chat(item.messages or ())


def _continuation(context: str, response: str) -> str:
    # As in training (prompt + " " + response): a space unless the context ends in one.
    if context and not context[-1].isspace() and not response[:1].isspace():
        return " " + response
    return response


def ifd_requests(
    items: Sequence[TrainingItem], engine: Engine
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Per sample: ((prompt, response), ("", response)), the same continuation in both."""
    out = []
    for item in items:
        context = _context(item, engine)
        continuation = _continuation(context, response_text(item))
        out.append(((context, continuation), ("", continuation)))
    return out


def _score(cond: float, uncond: float, n_tokens: int) -> ModelScore:
    ifd = cond / uncond if uncond < 0 else None
    nll = -cond / n_tokens if n_tokens > 0 else None
    ppl = math.exp(min(nll, 700.0)) if nll is not None else None
    return ModelScore(cond, uncond, n_tokens, ifd, nll, ppl)


def score_with_model(
    items: Sequence[TrainingItem], engine: Engine, count_tokens: Callable[[str], int]
) -> list[ModelScore]:
    """IFD, per-token NLL and perplexity of each sample's response, in one batched call."""
    if not items:
        return []
    pairs = ifd_requests(items, engine)
    flat = [request for pair in pairs for request in pair]
    answers = engine.loglikelihood(flat)
    scores = []
    for index, (conditional, _) in enumerate(pairs):
        cond, uncond = answers[2 * index][0], answers[2 * index + 1][0]
        scores.append(_score(cond, uncond, count_tokens(conditional[1])))
    return scores


def model_flags(items: Sequence[TrainingItem], scores: Sequence[ModelScore]) -> list[list[str]]:
    """``ifd_high`` (IFD > IFD_MAX) and ``ppl_high`` (NLL robust z > NLL_Z_MAX per task type)."""
    flags: list[list[str]] = [[] for _ in scores]
    groups: dict[str, list[int]] = defaultdict(list)
    for index, (item, score) in enumerate(zip(items, scores, strict=True)):
        if score.ifd is not None and score.ifd > IFD_MAX:
            flags[index].append("ifd_high")
        if score.nll is not None:
            groups[item.task_type or ""].append(index)
    for indices in groups.values():
        if len(indices) < NLL_MIN_GROUP:
            continue
        nlls = [scores[i].nll for i in indices]
        zs = robust_z([v for v in nlls if v is not None])
        for i, z in zip(indices, zs, strict=True):
            if z > NLL_Z_MAX:
                flags[i].append("ppl_high")
    return flags


def ifd_percentiles(ifds: Sequence[float | None]) -> list[float | None]:
    """Each sample's place in the order Cherry LLM / Superfiltering select in: among the
    samples with IFD <= IFD_MAX, the share with an IFD at most its own (1.0: the highest
    IFD, selected first). None above IFD_MAX (those methods drop them) or without IFD."""
    kept = sorted(v for v in ifds if v is not None and v <= IFD_MAX)
    if not kept:
        return [None for _ in ifds]
    from bisect import bisect_right

    return [
        None if v is None or v > IFD_MAX else round(bisect_right(kept, v) / len(kept), 6)
        for v in ifds
    ]


def ifd_summary(ifds: Sequence[float | None]) -> dict[str, float | int | None]:
    """IFD over a group of samples: how many have one, its mean and median, and how many
    are above IFD_MAX (flagged ``ifd_high``; the samples IFD-based selection drops)."""
    values = sorted(v for v in ifds if v is not None)
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "median": None, "n_above_1": 0}
    middle = n // 2
    median = values[middle] if n % 2 else (values[middle - 1] + values[middle]) / 2
    return {
        "n": n,
        "mean": round(sum(values) / n, 6),
        "median": round(median, 6),
        "n_above_1": sum(v > IFD_MAX for v in values),
    }
