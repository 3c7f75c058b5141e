"""The Engine protocol: narrow and batched, mirroring lm-eval's LM interface.

One engine instance holds one loaded checkpoint; the domain runner and the lm-eval
adapter (``general.py``) share it, so each checkpoint is loaded once per run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("collapse_eval.engines")

Message = tuple[str, str]  # (role, content)

# HFLM's generation budget for lm-eval tasks whose generation_kwargs name none.
DEFAULT_MAX_GEN_TOKS = 256


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

    @property
    def max_gen_toks(self) -> int:
        """New-token budget for lm-eval tasks whose generation_kwargs name none (HFLM's 256)."""
        ...

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer; None when the engine has none (fake, remote openai)."""
        ...

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's chat template; None when it has none (plain rendering is used)."""
        ...

    def render_chat(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for ``messages``.

        With ``add_generation_prompt`` (the default) an assistant turn is opened; without,
        the final assistant message is continued (lm-eval's ``gen_prefix``), which needs a
        chat template (ConfigError otherwise).
        """
        ...

    def close(self) -> None: ...


class EngineDefaults:
    """What every engine shares beyond its own scoring: the generation budget and chat.

    Subclasses set ``_tokenizer`` (a transformers tokenizer, or None) and may set
    ``max_gen_toks``; chat rendering follows lm-eval's HFLM.apply_chat_template.
    """

    max_gen_toks: int = DEFAULT_MAX_GEN_TOKS
    _tokenizer: Any = None

    @property
    def model_name(self) -> str:
        raise NotImplementedError

    def _budget_args(self) -> dict[str, Any]:
        """``max_gen_toks`` for ``engine_args`` (the manifest) when it is not the default.

        Left out at the default so that the identity of existing runs and caches stays.
        """
        if self.max_gen_toks == DEFAULT_MAX_GEN_TOKS:
            return {}
        return {"max_gen_toks": self.max_gen_toks}

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def chat_template(self) -> str | None:
        template = getattr(self._tokenizer, "chat_template", None)
        return template if isinstance(template, str) and template else None

    def render_chat(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = True
    ) -> str:
        """The chat template's rendering; plain ``role: content`` lines without a template.

        On a template error the rendering is retried without system messages (as HFLM).
        """
        if self.chat_template is None:
            if add_generation_prompt:
                return plain_chat_rendering(messages)
            from collapse_eval.errors import ConfigError

            raise ConfigError(
                f"{self.model_name}: the tokenizer has no chat template, so a final "
                "assistant message cannot be continued (a task with gen_prefix under "
                "apply_chat_template); use a checkpoint with a chat template or turn "
                "apply_chat_template off for that task"
            )
        import jinja2

        history = [{"role": role, "content": content} for role, content in messages]
        try:
            return self._apply_template(history, add_generation_prompt)
        except jinja2.exceptions.TemplateError:
            log.warning("chat template failed; retrying without the system message")
            kept = [m for m in history if m["role"] != "system"]
            return self._apply_template(kept, add_generation_prompt)

    def _apply_template(self, history: list[dict[str, str]], add_generation_prompt: bool) -> str:
        text = self._tokenizer.apply_chat_template(
            history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )
        return str(text)


class EngineWrapper:
    """Base of engine wrappers (the request cache, cost counters): passes every member of
    the Engine protocol through to ``inner`` explicitly, so a wrapper answers exactly as
    the engine would except where it overrides a method (as lm-eval's CachingLM).
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def engine_args(self) -> dict[str, Any]:
        return self.inner.engine_args

    @property
    def max_gen_toks(self) -> int:
        return self.inner.max_gen_toks

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def chat_template(self) -> str | None:
        return self.inner.chat_template

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self.inner.loglikelihood(requests)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return self.inner.loglikelihood_rolling(texts)

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        return self.inner.generate(requests)

    def render_chat(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = True
    ) -> str:
        return self.inner.render_chat(messages, add_generation_prompt=add_generation_prompt)

    def close(self) -> None:
        self.inner.close()


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


def _checkpoint_files(model: str) -> list[Path] | None:
    """The files a local checkpoint's fingerprint hashes; None for a hub name."""
    path = Path(model)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and (p.name in _CONFIG_FILES or p.suffix in _WEIGHT_SUFFIXES)
        )
    return None


def checkpoint_signature(model: str) -> str | None:
    """A cheap stand-in for a local checkpoint's content: each hashed file's path, inode,
    size, modification and change time (any write changes the change time). None for a
    hub name, whose fingerprint is cheap anyway."""
    files = _checkpoint_files(model)
    if files is None:
        return None
    parts = []
    for file in files:
        st = file.stat()
        parts.append(
            f"{file.resolve()}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        )
    return "stat:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


# Fingerprints computed in this process, by signature (the runner and the engine both ask).
_FINGERPRINTS: dict[tuple[str, str | None], str] = {}


def checkpoint_fingerprint(model: str, revision: str | None = None) -> str:
    """Identify a checkpoint's weights: hash of config, tokenizer and weight files.

    Local directories (or a single local .gguf file) are hashed by content; weight files are
    hashed in 1 MiB chunks (once per process while the files are unchanged). Hub names are
    identified by name and revision (nothing is fetched).
    """
    digest = hashlib.sha256()
    files = _checkpoint_files(model)
    if files is None:
        digest.update(f"hub:{model}@{revision or 'main'}".encode())
        return "sha256:" + digest.hexdigest()
    signature = checkpoint_signature(model)
    known = _FINGERPRINTS.get((str(signature), revision))
    if known is not None:
        return known
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    fingerprint = "sha256:" + digest.hexdigest()
    _FINGERPRINTS[(str(signature), revision)] = fingerprint
    return fingerprint
