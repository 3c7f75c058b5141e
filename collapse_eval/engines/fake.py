"""A deterministic fake engine for unit tests of logic (never for "done")."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collapse_eval.engines.args import Arg, EngineArgSchema
from collapse_eval.engines.base import (
    DEFAULT_MAX_GEN_TOKS,
    EngineDefaults,
    GenRequest,
    truncate_at_stops,
)

# The --engine-arg schema (``--engine fake`` is for tests; answers come as JSON).
ENGINE_ARGS = EngineArgSchema(
    "fake",
    {
        "answers": Arg((dict,)),
        "scores": Arg((dict,)),
        "default_answer": Arg((str,)),
    },
)


class FakeEngine(EngineDefaults):
    """Answers from a lookup table; unknown prompts get a default.

    ``answers`` maps a prompt (or rendered chat) to the generated text; ``scores`` maps
    (context, continuation) to a log-likelihood. Unknown log-likelihood requests get a
    pseudo-random but deterministic value derived from the text. A generated answer is
    cut after ``max_tokens`` "tokens" (a token is a word with its leading whitespace),
    then at the first stop string, as a real engine would.
    """

    kind = "fake"

    def __init__(
        self,
        name: str = "fake-model",
        answers: Mapping[str, str] | Callable[[str], str] | None = None,
        scores: Mapping[tuple[str, str], float] | None = None,
        default_answer: str = "",
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
    ) -> None:
        self._name = name
        self.max_gen_toks = max_gen_toks
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
        return self._budget_args()

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
            out.append(truncate_at_stops(_first_tokens(text, req.max_tokens), req.until))
        return out

    def close(self) -> None:
        self.closed = True


def _first_tokens(text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` words of ``text``, each with its leading whitespace."""
    return "".join(re.findall(r"\s*\S+|\s+$", text)[:max_tokens])
