"""Engine for a checkpoint already served behind an OpenAI-compatible API.

Works with ``vllm serve``, SGLang, TGI and llama.cpp's server:

- generation: ``/completions`` for prompts, ``/chat/completions`` for ``messages``
  (the server applies its chat template), greedy (``temperature=0``) unless a request
  sets parameters;
- log-likelihood: ``/completions`` with ``echo=true, logprobs=1, max_tokens=1``. With a
  local tokenizer (``tokenizer=DIR``, or MODEL itself when it is a local checkpoint) the
  prompt is sent as token ids cut with lm-eval's boundaries, and vLLM's
  ``prompt_logprobs`` extension (token ids, not strings) is used when the server returns
  it; without one, the text is sent and the boundary is the first token starting at or
  after the end of the context (``text_offset``);
- requests run on a bounded thread pool, each with a timeout; 429 and 5xx answers and
  connection failures are retried with exponential backoff (``Retry-After`` honoured).

The API key is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``) at request time; it is never stored in ``engine_args``, the
manifest, the cache key or any message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from collapse_eval.engines.args import Arg, EngineArgSchema, NoneType
from collapse_eval.engines.base import (
    DEFAULT_MAX_GEN_TOKS,
    EngineDefaults,
    GenRequest,
    checkpoint_fingerprint,
    truncate_at_stops,
)
from collapse_eval.engines.tokenization import (
    encode_pair,
    fit_scoring_input,
    rolling_loglikelihoods,
    score_continuation,
)
from collapse_eval.errors import ConfigError, EngineError
from collapse_eval.progress import requests_answered

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

# The --engine-arg schema (``model`` names the served model; checked by the registry).
ENGINE_ARGS = EngineArgSchema(
    "openai",
    {
        "base_url": Arg((str,)),
        "model": Arg((str,), affects_output=True, help="the served model name"),
        "api_key_env": Arg((str,)),
        "tokenizer": Arg((str, NoneType), affects_output=True),
        "max_concurrency": Arg((int,), minimum=1),
        "timeout_s": Arg((float,), minimum=0.001),
        "max_retries": Arg((int,), minimum=0),
        "backoff_s": Arg((float,), minimum=0),
        "max_backoff_s": Arg((float,), minimum=0),
        "max_length": Arg((int, NoneType), affects_output=True, minimum=2),
    },
)


class OpenAIEngine(EngineDefaults):
    """The Engine protocol over HTTP to an OpenAI-compatible server.

    ``model`` is what the run is about: a local checkpoint directory (then its tokenizer
    is used and its content hash is the fingerprint) or any name. ``served_model`` is the
    name the server knows (``--engine-arg model=NAME``; default: ``model``).
    """

    kind = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        served_model: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        tokenizer: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"--engine-arg base_url={base_url!r} is not an http(s) URL; "
                "e.g. base_url=http://127.0.0.1:8000/v1"
            )
        self._model = model
        # Credentials embedded in the URL (user:password@) become a Basic auth header and
        # never reach the manifest or messages.
        userinfo, _, host = parsed.netloc.rpartition("@")
        self._basic_auth = (
            base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode() if userinfo else None
        )
        self._public_url = urllib.parse.urlunsplit(parsed._replace(netloc=host)).rstrip("/")
        self._base_url = self._public_url
        self._served = served_model or model
        self._api_key_env = api_key_env
        self._max_concurrency = max_concurrency
        self._timeout_s = float(timeout_s)
        self._max_retries = max_retries
        self._backoff_s = float(backoff_s)
        self._max_backoff_s = float(max_backoff_s)
        self._max_length = max_length
        self.max_gen_toks = max_gen_toks
        self._sleep = sleep
        self._tokenizer = _load_tokenizer(tokenizer, model)
        self._fingerprint: str | None = None
        self.requests_sent = 0  # HTTP attempts, retries included (for tests and benches)
        self._count_lock = threading.Lock()
        self._is_vllm: bool | None = None

    @classmethod
    def from_engine_args(cls, model: str, engine_args: Mapping[str, Any]) -> OpenAIEngine:
        """Build from checked ``--engine-arg`` values (``ENGINE_ARGS``); ``model=NAME`` is
        the served name."""
        args = dict(engine_args)
        served = args.pop("model", None)
        return cls(model, served_model=None if served is None else str(served), **args)

    # -- identity -----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if Path(self._model).is_dir():
                self._fingerprint = checkpoint_fingerprint(self._model)
            else:
                # Remote weights cannot be hashed: identify them by server and served name.
                identity = f"openai:{self._public_url}|{self._served}"
                self._fingerprint = "sha256:" + hashlib.sha256(identity.encode()).hexdigest()
        return self._fingerprint

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def engine_args(self) -> dict[str, Any]:
        # Output-affecting only: no key, no URL (a new port must not invalidate the cache).
        args: dict[str, Any] = {
            "served_model": self._served,
            "scoring": "tokens" if self._tokenizer is not None else "text",
        }
        if self._max_length is not None:
            args["max_length"] = self._max_length
        return args | self._budget_args()

    @property
    def max_length(self) -> int | None:
        """The context length given (``--engine-arg max_length``); None: the server's."""
        return self._max_length

    @property
    def base_url(self) -> str:
        """The server URL without credentials (for the manifest)."""
        return self._public_url

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self._model!r}, base_url={self._public_url!r})"

    # -- HTTP ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self._basic_auth:
            headers["Authorization"] = f"Basic {self._basic_auth}"
        return headers

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST JSON with retries on 429/5xx/connection errors; EngineError when it gives up."""
        # Imported here: the base install (no `run` extra) imports this module for its
        # ENGINE_ARGS schema alone.
        import tenacity

        data = json.dumps(body).encode("utf-8")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            answer: dict[str, Any] = retrying(self._attempt, path, data)
        except _Retryable as last:
            raise EngineError(
                f"{self._public_url}/{path} failed after {self._max_retries + 1} attempts "
                f"(last: {last}). Is the server running and serving '{self._served}'?"
            ) from last
        return answer

    def _attempt(self, path: str, data: bytes) -> dict[str, Any]:
        """One POST: the answer, EngineError for a client error, _Retryable otherwise."""
        with self._count_lock:
            self.requests_sent += 1
        url = f"{self._base_url}/{path}"
        request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read().decode("utf-8"))
                return answer
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}: {_server_message(exc)}"
            if exc.code not in RETRY_STATUSES:
                raise EngineError(
                    f"{self._public_url}/{path} rejected the request ({problem})"
                ) from exc
            retry_after = _retry_after_seconds(exc.headers.get("Retry-After"))
            raise _Retryable(problem, retry_after) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(reason).__name__}: {reason}") from exc
        except json.JSONDecodeError as exc:
            raise _Retryable(f"the answer is not JSON ({exc})") from exc

    def _wait(self, state: Any) -> float:
        """Seconds before the next attempt: the server's Retry-After, else exponential
        backoff (``backoff_s`` doubling per attempt); never over ``max_backoff_s``."""
        import tenacity

        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _Retryable) and failure.retry_after is not None:
            return min(self._max_backoff_s, failure.retry_after)
        backoff = tenacity.wait_exponential(multiplier=self._backoff_s, max=self._max_backoff_s)
        return float(backoff(state))

    def _server_is_vllm(self) -> bool:
        """Whether the server is vLLM (its /models lists owned_by "vllm"); asked once."""
        with self._count_lock:
            if self._is_vllm is None:
                request = urllib.request.Request(
                    f"{self._base_url}/models", headers=self._headers()
                )
                try:
                    with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                        listing = json.loads(response.read().decode("utf-8"))
                    owners = {m.get("owned_by") for m in listing.get("data", [])}
                    self._is_vllm = owners == {"vllm"}
                except (OSError, ValueError, AttributeError):
                    self._is_vllm = False
            return self._is_vllm

    def _map(
        self, function: Callable[[Any], Any], items: Sequence[Any], *, count: bool = True
    ) -> list[Any]:
        """Run ``function`` over ``items`` with at most ``max_concurrency`` in flight.

        With ``count``, each answer is counted for the progress bar as it arrives (here, in
        the calling thread: the pool's threads do not see the caller's count)."""
        if len(items) <= 1:
            return self._counted(map(function, items), count)
        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(items))) as pool:
            return self._counted(pool.map(function, items), count)

    @staticmethod
    def _counted(answers: Iterator[Any], count: bool) -> list[Any]:
        out = []
        for answer in answers:
            out.append(answer)
            if count:
                requests_answered(1)
        return out

    # -- scoring ------------------------------------------------------------------------

    def _score_ids(self, pair: tuple[list[int], list[int]]) -> tuple[float, bool]:
        context_enc, continuation_enc = pair
        if self._max_length is not None:
            tokens, ctxlen = fit_scoring_input(context_enc, continuation_enc, self._max_length - 1)
        else:
            tokens, ctxlen = list(context_enc) + list(continuation_enc), len(context_enc)
        choice = self._echo(tokens)
        prompt_logprobs = choice.get("prompt_logprobs")
        if isinstance(prompt_logprobs, list) and len(prompt_logprobs) == len(tokens):
            # vLLM's extension: per position {token id: {"logprob": x, ...}}.
            return score_continuation(
                tokens,
                ctxlen,
                [
                    None
                    if options is None
                    else {int(t): float(v["logprob"]) for t, v in options.items()}
                    for options in prompt_logprobs
                ],
            )
        logprobs = choice.get("logprobs") or {}
        return _from_token_strings(logprobs, range(ctxlen, len(tokens)))

    def _score_text(self, pair: tuple[str, str]) -> tuple[float, bool]:
        context, continuation = pair
        prompt = context + continuation
        logprobs = self._echo(prompt).get("logprobs") or {}
        offsets = logprobs.get("text_offset") or []
        positions = [i for i, offset in enumerate(offsets) if len(context) <= offset < len(prompt)]
        return _from_token_strings(logprobs, positions)

    def _echo(self, prompt: str | list[int], top: int = 1) -> dict[str, Any]:
        answer = self._post(
            "completions",
            {
                "model": self._served,
                "prompt": prompt,
                "max_tokens": 1,
                "temperature": 0,
                "echo": True,
                "logprobs": top,
            },
        )
        choices = answer.get("choices") or [{}]
        choice: dict[str, Any] = choices[0]
        return choice

    def prompt_top_logprobs(
        self, rows: Sequence[list[int]], k: int
    ) -> list[list[dict[Any, float]]]:
        """Per row of token ids, for each token after the first: the server's ``k`` most
        likely tokens there with their log-probabilities, plus the row's own token
        (``echo`` + ``logprobs=k``; servers cap k, OpenAI's API at 5, vLLM at its
        ``max_logprobs``). Keys are token ids (vLLM's ``prompt_logprobs``) or token
        strings. ``drift`` bounds the KL divergence from them."""
        return self._map(
            lambda row: prompt_top_logprobs_of(self._echo(list(row), top=k), len(row)), list(rows)
        )

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        if self._tokenizer is None:
            return self._map(self._score_text, list(requests))
        pairs = [encode_pair(self._tokenizer, c, x) for c, x in requests]
        return self._map(self._score_ids, pairs)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        if self._tokenizer is None:
            # The server's first token has no log-prob; the rest are summed.
            return [score for score, _ in self._map(self._score_text, [("", t) for t in texts])]
        max_seq = (self._max_length - 2) if self._max_length else 1 << 30
        return rolling_loglikelihoods(
            self._tokenizer,
            texts,
            max_seq,
            # Windows are not requests (a text has one or more): the caller counts texts.
            lambda windows: self._map(self._score_ids, windows, count=False),
        )

    # -- generation ---------------------------------------------------------------------

    def _generate_one(self, req: GenRequest) -> str:
        body: dict[str, Any] = {
            "model": self._served,
            "max_tokens": req.max_tokens,
            "temperature": 0,
        }
        if req.until:
            body["stop"] = list(req.until)
        decode_ids = self._tokenizer is not None and self._server_is_vllm()
        if decode_ids:
            body["return_token_ids"] = True  # vLLM extension, see _decode
        body.update(dict(req.params))
        if req.messages is not None:
            body["messages"] = [{"role": r, "content": c} for r, c in req.messages]
            answer = self._post("chat/completions", body)
            choice = (answer.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content")
        else:
            body["prompt"] = req.prompt
            answer = self._post("completions", body)
            choice = (answer.get("choices") or [{}])[0]
            text = choice.get("text")
        token_ids = choice.get("token_ids")
        if decode_ids and isinstance(token_ids, list) and self._tokenizer is not None:
            # Decode the ids like the transformers and vllm engines do: a server's
            # incremental detokenizer drops a trailing incomplete UTF-8 sequence.
            text = self._tokenizer.decode(token_ids, skip_special_tokens=True)
        if not isinstance(text, str):
            raise EngineError(f"{self._public_url}: the answer has no text: {answer!r:.300}")
        return truncate_at_stops(text, req.until)

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        return self._map(self._generate_one, list(requests))

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""


def _load_tokenizer(tokenizer: str | None, model: str) -> Any:
    source = tokenizer
    if source is None and (Path(model) / "tokenizer_config.json").is_file():
        source = model
    if source is None:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--engine-arg tokenizer={source}: cannot load a tokenizer ({exc})"
        ) from exc


def _server_message(exc: urllib.error.HTTPError) -> str:
    """The error text the server sent (OpenAI style ``{"error": {"message": ...}}``)."""
    try:
        raw = exc.read().decode("utf-8", "replace")
    except OSError:
        return exc.reason if isinstance(exc.reason, str) else str(exc)
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:500] or str(exc.reason)
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error)[:500]


class _Retryable(Exception):
    """A failed attempt worth another: what went wrong, and the server's Retry-After."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _from_token_strings(
    logprobs: Mapping[str, Any], positions: Sequence[int]
) -> tuple[float, bool]:
    """OpenAI ``logprobs`` (token strings): sum and greedy check over ``positions``."""
    tokens = logprobs.get("tokens") or []
    token_logprobs = logprobs.get("token_logprobs") or []
    top = logprobs.get("top_logprobs") or [None] * len(tokens)
    total = 0.0
    greedy = True
    for i in positions:
        value = token_logprobs[i]
        if value is None:
            continue
        total += float(value)
        options = top[i] if i < len(top) else None
        if options:
            greedy = greedy and max(options, key=options.__getitem__) == tokens[i]
    return total, greedy


def prompt_top_logprobs_of(choice: Mapping[str, Any], n: int) -> list[dict[Any, float]]:
    """The top log-probabilities at positions 1..n-1 of an echoed prompt of ``n`` tokens:
    vLLM's ``prompt_logprobs`` (token ids) when present, else the OpenAI ``logprobs``
    object (token strings), with each position's own token added."""
    prompt_logprobs = choice.get("prompt_logprobs")
    if isinstance(prompt_logprobs, list) and len(prompt_logprobs) >= n:
        return [
            {int(t): float(v["logprob"]) for t, v in (options or {}).items()}
            for options in prompt_logprobs[1:n]
        ]
    logprobs = choice.get("logprobs") or {}
    tokens = logprobs.get("tokens") or []
    own = logprobs.get("token_logprobs") or []
    top = logprobs.get("top_logprobs") or []
    if min(len(tokens), len(own), len(top)) < n:
        raise EngineError(
            f"the server echoed {len(tokens)} prompt tokens with log-probabilities, "
            f"expected {n}: it does not return prompt log-probabilities (echo + logprobs)"
        )
    positions = []
    for i in range(1, n):
        options = {str(t): float(v) for t, v in (top[i] or {}).items()}
        if own[i] is not None:
            options[str(tokens[i])] = float(own[i])
        positions.append(options)
    return positions
