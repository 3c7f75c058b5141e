"""Measure drift: the mean per-token KL(base || tuned) of next-token distributions.

Each text is tokenized once with the base's tokenizer (both models must share it),
prefixed with the token lm-eval conditions a text's first token on (BOS, else EOS), so
that every token of the text is one position: the KL between the two models'
distributions for that token given the text before it. The mean is over all positions
of a set (long texts weigh more), with a standard error that takes the texts as
clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from collapse_eval.drift.kl import lumped_kl_sum, ratio_mean_se
from collapse_eval.errors import UsageError
from collapse_eval.progress import Progress, QuietProgress

DRIFT_SCHEMA_VERSION = 1
PROBE_SET = "general_probe"
DOMAIN_SET = "domain"
FULL = "full"
TOP_K_LUMPED = "top_k_lumped"
DEFAULT_TOP_K = 20  # vLLM's default max_logprobs

# Rows of token ids, and per row per position the reported {token: log-probability}.
Rows = Sequence[list[int]]
TopLogprobs = list[list[dict[Any, float]]]


def probe_passages() -> list[str]:
    """The general probe set shipped in the package (``probe/README.md``: provenance)."""
    text = resources.files("collapse_eval.drift").joinpath("probe/passages.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def texts_hash(texts: Sequence[str]) -> str:
    """Identifies a set's texts in the output (a changed probe set reads as another)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SetDrift:
    """Drift on one set of texts: mean KL per token (nats) with its standard error."""

    name: str
    mean_kl: float
    se: float | None
    n_texts: int
    n_tokens: int
    texts_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_kl": self.mean_kl,
            "se": self.se,
            "n_texts": self.n_texts,
            "n_tokens": self.n_tokens,
            "texts_sha256": self.texts_sha256,
        }


@dataclass(frozen=True, slots=True)
class DriftResult:
    """``drift.json`` / the ``drift`` block of summary.json."""

    base: str
    tuned: str
    engine: str
    method: str  # FULL or TOP_K_LUMPED
    top_k: int | None
    sets: tuple[SetDrift, ...]

    def by_name(self, name: str) -> SetDrift | None:
        return next((s for s in self.sets if s.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": DRIFT_SCHEMA_VERSION,
            "base": self.base,
            "tuned": self.tuned,
            "engine": self.engine,
            "method": self.method,
            "top_k": self.top_k,
            "lower_bound": self.method == TOP_K_LUMPED,
            "sets": {s.name: s.to_json() for s in self.sets},
        }


class FullSource(Protocol):
    """An engine that returns whole next-token distributions (the hf engine)."""

    batch_size: int

    def next_token_logprobs(self, rows: Sequence[list[int]]) -> Any: ...


def full_kl_sums(base: FullSource, tuned: FullSource, rows: Rows) -> list[float]:
    """Per row, the exact KL summed over its positions (all but the last token predict
    the next one), batch by batch with both models' distributions in memory at once."""
    import torch

    sums: list[float] = []
    step = max(1, min(base.batch_size, tuned.batch_size))
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        p_all, q_all = base.next_token_logprobs(chunk), tuned.next_token_logprobs(chunk)
        for i, row in enumerate(chunk):  # row by row: no padding, fewer temporaries
            p, q = p_all[i, : len(row) - 1], q_all[i, : len(row) - 1]
            # p * (log p - log q), 0 where p underflows (0 * -inf would be nan).
            terms = torch.where(p > float("-inf"), p.exp() * (p - q), 0.0)
            sums.append(float(terms.sum(dtype=torch.float64)))
    return sums


def token_rows(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each text as [prefix token] + its tokens, cut to the first ``max_length`` tokens;
    texts with no token are left out."""
    from collapse_eval.engines.tokenization import encode, prefix_token_id

    prefix = prefix_token_id(tokenizer)
    rows = [
        ([prefix] + encode(tokenizer, text, add_special_tokens=False))[:max_length]
        for text in texts
    ]
    return [row for row in rows if len(row) > 1]


def check_same_tokenizer(base: Any, tuned: Any, names: tuple[str, str]) -> None:
    """UsageError unless both tokenizers map the same strings to the same ids: the KL
    compares distributions over one vocabulary, position by position."""
    if base is None or tuned is None:
        missing = names[0] if base is None else names[1]
        raise UsageError(
            f"drift: {missing} has no tokenizer here; with --engine openai give a local "
            "checkpoint as MODEL or --engine-arg tokenizer=DIR"
        )
    if base.get_vocab() != tuned.get_vocab():
        raise UsageError(
            f"drift: {names[0]} and {names[1]} have different tokenizers, so their "
            "next-token distributions cannot be compared token by token; drift needs a "
            "fine-tune of the base (same vocabulary)"
        )


EngineOpener = Callable[[], Any]


@contextmanager
def _opened(open_engine: EngineOpener) -> Iterator[Any]:
    engine = open_engine()
    try:
        yield engine
    finally:
        engine.close()


# A set of texts, or a function of the base engine giving them (chat-rendered prompts).
TextSet = Sequence[str] | Callable[[Any], Sequence[str]]


def _texts(engine: Any, sets: Mapping[str, TextSet]) -> dict[str, Sequence[str]]:
    return {name: texts(engine) if callable(texts) else texts for name, texts in sets.items()}


def _rows_by_set(engine: Any, texts: Mapping[str, Sequence[str]]) -> dict[str, list[list[int]]]:
    max_length = int(getattr(engine, "max_length", None) or 1 << 30)
    return {name: token_rows(engine.tokenizer, t, max_length) for name, t in texts.items()}


def _set_drift(name: str, texts: Sequence[str], rows: Rows, sums: Sequence[float]) -> SetDrift:
    counts = [len(row) - 1 for row in rows]
    mean, se = ratio_mean_se(sums, counts)
    return SetDrift(name, mean, se, len(rows), sum(counts), texts_hash(texts))


def measure_drift(
    open_base: EngineOpener,
    open_tuned: EngineOpener,
    sets: Mapping[str, TextSet],
    *,
    top_k: int | None = None,
    progress: Progress | None = None,
) -> DriftResult:
    """Drift of the tuned model from the base on each named set of texts (a list, or a
    function of the base engine that gives it).

    ``open_base`` and ``open_tuned`` build the two engines (one kind). ``top_k`` None:
    the exact KL from full distributions (``next_token_logprobs``; both models are
    loaded at once). A number: the lumped top-k lower bound (``prompt_top_logprobs``;
    one model at a time, so two vLLM engines never share a GPU)."""
    progress = progress or QuietProgress()
    if top_k is None:
        with _opened(open_base) as base, _opened(open_tuned) as tuned:
            names = (base.model_name, tuned.model_name, base.kind)
            check_same_tokenizer(base.tokenizer, tuned.tokenizer, names[:2])
            texts = _texts(base, sets)
            rows = _rows_by_set(base, texts)
            _log_sets(progress, rows)
            sums = {name: full_kl_sums(base, tuned, r) for name, r in rows.items()}
    else:
        with _opened(open_base) as base:
            names = (base.model_name, "", base.kind)
            texts = _texts(base, sets)
            tokenizer, rows = base.tokenizer, _rows_by_set(base, texts)
            _log_sets(progress, rows)
            base_top = {name: base.prompt_top_logprobs(r, top_k) for name, r in rows.items()}
        with _opened(open_tuned) as tuned:
            names = (names[0], tuned.model_name, names[2])
            check_same_tokenizer(tokenizer, tuned.tokenizer, names[:2])
            tuned_top = {name: tuned.prompt_top_logprobs(r, top_k) for name, r in rows.items()}
        sums = {
            name: [
                lumped_kl_sum(b, t) for b, t in zip(base_top[name], tuned_top[name], strict=True)
            ]
            for name in rows
        }
    return DriftResult(
        base=names[0],
        tuned=names[1],
        engine=names[2],
        method=FULL if top_k is None else TOP_K_LUMPED,
        top_k=top_k,
        sets=tuple(_set_drift(n, texts[n], rows[n], sums[n]) for n in sets),
    )


def _log_sets(progress: Progress, rows: Mapping[str, Rows]) -> None:
    for name, r in rows.items():
        progress.log(f"drift {name}: {len(r)} texts, {sum(len(x) - 1 for x in r)} tokens")
