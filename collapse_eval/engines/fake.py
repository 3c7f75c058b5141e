"""A deterministic fake engine for unit tests of logic (never for "done")."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collapse_eval.engines.base import GenRequest, Message, plain_chat_rendering, truncate_at_stops


class FakeEngine:
    """Answers from a lookup table; unknown prompts get a default.

    ``answers`` maps a prompt (or rendered chat) to the generated text; ``scores`` maps
    (context, continuation) to a log-likelihood. Unknown log-likelihood requests get a
    pseudo-random but deterministic value derived from the text.
    """

    kind = "fake"

    def __init__(
        self,
        name: str = "fake-model",
        answers: Mapping[str, str] | Callable[[str], str] | None = None,
        scores: Mapping[tuple[str, str], float] | None = None,
        default_answer: str = "",
    ) -> None:
        self._name = name
        self._answers = answers if answers is not None else {}
        self._scores = dict(scores or {})
        self._default = default_answer
        self.calls: list[tuple[str, int]] = []
        self.closed = False

    @property
    def fingerprint(self) -> str:
        return "fake:" + hashlib.sha256(self._name.encode()).hexdigest()[:16]

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def engine_args(self) -> dict[str, Any]:
        return {}

    def _score(self, context: str, continuation: str) -> float:
        if (context, continuation) in self._scores:
            return self._scores[(context, continuation)]
        digest = hashlib.sha256(f"{self._name}\0{context}\0{continuation}".encode()).digest()
        return -1.0 - digest[0] / 32.0

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        self.calls.append(("loglikelihood", len(requests)))
        return [(self._score(c, x), False) for c, x in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        self.calls.append(("loglikelihood_rolling", len(texts)))
        return [self._score("", t) for t in texts]

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        self.calls.append(("generate", len(requests)))
        out = []
        for req in requests:
            prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages or ())
            if callable(self._answers):
                text = self._answers(prompt)
            else:
                text = self._answers.get(prompt, self._default)
            out.append(truncate_at_stops(text, req.until))
        return out

    def render_chat(self, messages: Sequence[Message]) -> str:
        return plain_chat_rendering(messages)

    def close(self) -> None:
        self.closed = True
