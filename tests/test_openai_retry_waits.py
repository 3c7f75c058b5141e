"""The OpenAI engine's waits between attempts (tenacity underneath): Retry-After replaces
one wait without resetting the doubling; an HTTP-date Retry-After falls back to it."""

from __future__ import annotations

from typing import Any

from collapse_eval.engines.base import GenRequest
from tests.test_openai_engine import completion, engine_for, fake_server  # noqa: F401


def test_retry_after_replaces_one_wait_and_the_doubling_goes_on(fake_server) -> None:  # noqa: F811
    answers: list[tuple[int, Any, dict[str, str]]] = [
        (503, {}, {"Retry-After": "2"}),
        (503, {}, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}),  # a date: own backoff
        (502, {}, {}),
        (200, completion("ok"), {}),
    ]
    server = fake_server(lambda n, body: answers[n - 1])
    sleeps: list[float] = []
    engine = engine_for(server, sleeps, backoff_s=0.5, max_backoff_s=3.0)
    assert engine.generate([GenRequest(prompt="x")]) == ["ok"]
    # attempt 1: the server's 2 s; attempts 2 and 3: 0.5 x 2 and 0.5 x 4
    assert sleeps == [2.0, 1.0, 2.0]
    assert engine.requests_sent == 4 and len(server.calls) == 4
