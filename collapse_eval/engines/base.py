"""The Engine protocol: narrow and batched, mirroring lm-eval's LM interface.

One engine instance holds one loaded checkpoint; the domain runner and the lm-eval
adapter (``general.py``) share it, so each checkpoint is loaded once per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True, slots=True)
class GenRequest:
    """A greedy generation request.

    Exactly one of ``prompt`` (raw text, used as is) or ``messages`` (rendered with the
    model's chat template) is set. Generation stops at the first of ``until`` (the stop
    string is not included), at end-of-sequence, or after ``max_tokens`` new tokens.
    """

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    until: tuple[str, ...] = ()
    max_tokens: int = 128
    # Extra generation parameters (temperature, top_p, ...). Empty means greedy.
    params: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("GenRequest needs exactly one of prompt or messages")


@runtime_checkable
class Engine(Protocol):
    """What every backend (vllm, hf, openai, fake) provides."""

    @property
    def kind(self) -> str:
        """ "vllm" | "hf" | "openai" | "fake"."""
        ...

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (hash of config + weight files, or a revision)."""
        ...

    @property
    def model_name(self) -> str: ...

    @property
    def engine_args(self) -> dict[str, Any]:
        """The arguments that change outputs (dtype, max_model_len, ...) for the manifest."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """For each (context, continuation): (sum log p(continuation | context), is_greedy)."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Full-sequence log-likelihood of each text (perplexity tasks)."""
        ...

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        """Greedy continuations, one string per request, stop strings removed."""
        ...

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The prompt text for ``messages`` with a generation prompt appended."""
        ...

    def close(self) -> None: ...


def plain_chat_rendering(messages: Sequence[Message]) -> str:
    """Fallback rendering for tokenizers without a chat template (documented in README)."""
    parts = [f"{role}: {content}" for role, content in messages]
    return "\n".join(parts) + "\nassistant:"


def truncate_at_stops(text: str, until: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string, as lm-eval does (``s.split(term)[0]``)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


def checkpoint_fingerprint(model: str, revision: str | None = None) -> str:
    """Identify a checkpoint's weights: hash of config, tokenizer and weight files.

    Local directories (or a single local .gguf file) are hashed by content; weight files are
    hashed in 1 MiB chunks. Hub names are identified by name and revision (nothing is fetched).
    """
    import hashlib
    from pathlib import Path

    path = Path(model)
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and (p.name in _CONFIG_FILES or p.suffix in _WEIGHT_SUFFIXES)
        )
    else:
        digest.update(f"hub:{model}@{revision or 'main'}".encode())
        return "sha256:" + digest.hexdigest()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
