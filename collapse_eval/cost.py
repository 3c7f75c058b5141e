"""Counting what reaches an engine: calls, tokens and seconds per stage (the quality
cascade's and the data build's).

``count_and_cache`` wraps an engine as cache -> counter -> engine: ``CountingEngine``
sits between the request cache and the real engine, so it only sees the requests the
cache could not answer, and a re-run answered from the cache counts zero calls and zero
tokens. Below both ``quality/`` and ``databuild/``, which share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from collapse_eval.cache import CachedEngine, RequestCache
from collapse_eval.domain.scorers import mixed_tokens
from collapse_eval.engines.base import Engine, EngineWrapper, GenRequest

__all__ = ["StageCost", "CountingEngine", "CountedEngine", "count_and_cache", "token_counter"]

TokenCounter = Callable[[str], int]


@dataclass
class StageCost:
    """Engine calls (requests sent, not answered from the cache), their tokens, seconds."""

    calls: int = 0
    tokens: int = 0
    cached: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens": self.tokens,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
        }


def token_counter(engine: Any) -> tuple[TokenCounter, str]:
    """Count tokens with the engine's tokenizer when it exposes one (hf), else count
    words and CJK characters; the second value names the unit."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and callable(tokenizer):

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

        return count, "tokenizer"
    return (lambda text: len(mixed_tokens(text))), "words"


class CountingEngine(EngineWrapper):
    """Forwards to ``inner`` and counts requests and tokens into ``cost``."""

    def __init__(self, inner: Engine, cost: StageCost) -> None:
        super().__init__(inner)
        self.cost = cost
        self.count_tokens, _unit = token_counter(inner)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        self.cost.calls += len(requests)
        self.cost.tokens += sum(self.count_tokens(c) + self.count_tokens(x) for c, x in requests)
        return self.inner.loglikelihood(requests)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        self.cost.calls += len(texts)
        self.cost.tokens += sum(self.count_tokens(t) for t in texts)
        return self.inner.loglikelihood_rolling(texts)

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        outputs = self.inner.generate(requests)
        self.cost.calls += len(requests)
        for req, out in zip(requests, outputs, strict=False):
            prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages or ())
            self.cost.tokens += self.count_tokens(prompt) + self.count_tokens(out)
        return outputs


@dataclass(frozen=True, slots=True)
class CountedEngine:
    """``engine`` behind a counter, and the request cache in front of it when there is one."""

    engine: Engine  # the wrapped engine (its owner closes it)
    counting: CountingEngine
    cached: CachedEngine | None

    @property
    def outer(self) -> Engine:
        """What to call: the cache, else the counter."""
        return self.cached if self.cached is not None else self.counting

    @property
    def hits(self) -> int:
        """Requests the cache answered so far (0 without a cache)."""
        return self.cached.stats.hits if self.cached is not None else 0


def count_and_cache(engine: Engine, cache: RequestCache | None, cost: StageCost) -> CountedEngine:
    """``engine`` wrapped as cache -> counter -> engine, counting into ``cost``."""
    counting = CountingEngine(engine, cost)
    cached = CachedEngine(counting, cache) if cache is not None else None
    return CountedEngine(engine, counting, cached)


class Timer:
    """Adds the seconds spent inside ``with`` to a StageCost."""

    def __init__(self, cost: StageCost) -> None:
        self.cost = cost
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cost.seconds += time.perf_counter() - self._start
