"""cost.count_and_cache, the one cache -> counter -> engine stack of quality and the data
build: the counter sees only what the cache could not answer."""

from __future__ import annotations

from pathlib import Path

from collapse_eval.cache import RequestCache
from collapse_eval.cost import StageCost, count_and_cache
from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine


def _ask(engine: FakeEngine, cache: RequestCache | None, cost: StageCost) -> tuple[int, list]:
    wrapped = count_and_cache(engine, cache, cost)
    outputs = wrapped.outer.generate([GenRequest(prompt="hello there"), GenRequest(prompt="b")])
    lls = wrapped.outer.loglikelihood([("ctx", " cont")])
    return wrapped.hits, [outputs, lls]


def test_a_second_pass_is_answered_by_the_cache_and_counts_nothing(tmp_path: Path) -> None:
    engine = FakeEngine(answers={"hello there": "general kenobi"})
    cache = RequestCache(tmp_path / "cache")
    first, second = StageCost(), StageCost()
    hits, answers = _ask(engine, cache, first)
    # two generations (prompt + answer words) and one log-likelihood (context + continuation)
    assert (hits, first.calls, first.tokens) == (0, 3, 2 + 2 + 1 + 0 + 1 + 1)
    hits_again, answers_again = _ask(engine, cache, second)
    assert (hits_again, second.calls, second.tokens) == (3, 0, 0)
    assert answers_again == answers and answers[0] == ["general kenobi", ""]


def test_without_a_cache_the_counter_is_what_is_called(tmp_path: Path) -> None:
    cost = StageCost()
    wrapped = count_and_cache(FakeEngine(), None, cost)
    assert wrapped.outer is wrapped.counting and wrapped.cached is None and wrapped.hits == 0
    wrapped.outer.loglikelihood_rolling(["one two three"])
    assert (cost.calls, cost.tokens) == (1, 3)
