"""The declared ``--engine-arg`` schema of each backend: names, types, limits, output effect.

Each backend module declares one :class:`EngineArgSchema` next to its constructor
(``hf.ENGINE_ARGS``, ``vllm.ENGINE_ARGS``, ...); the registry checks and types every
argument against it before an engine is built, so a backend's constructor receives
only names it takes and values of the declared types. vLLM declares only the arguments
collapse-eval itself consumes and accepts the fields of ``vllm.EngineArgs`` besides
(read from the dataclass, no model loaded), whose values vLLM checks itself.

``affects_output`` marks the arguments that can change an answer: they are recorded
in ``engine_args`` (the run manifest and the request-cache identity); the others only
change speed or where answers come from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from collapse_eval.errors import ConfigError, UsageError, did_you_mean

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


NoneType = type(None)
_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a JSON object",
    list: "a JSON list",
    NoneType: "none",
}


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument a backend accepts."""

    types: tuple[type, ...]
    affects_output: bool = False
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in self.types)
        return words + (f" >= {self.minimum:g}" if self.minimum is not None else "")


# Arguments every backend takes: they are consumed by collapse-eval, not by the backend.
COMMON_ARGS: Mapping[str, Arg] = {
    "max_gen_toks": Arg(
        (int,),
        affects_output=True,
        minimum=1,
        help="new-token budget of lm-eval tasks whose generation_kwargs name none (256)",
    ),
}


@dataclass(frozen=True)
class EngineArgSchema:
    """What ``--engine-arg`` accepts for one engine kind.

    ``passthrough`` (vLLM) lists further names that are handed to the backend untyped by
    the schema (``typed_value`` only); ``performance_only`` names those among them that
    do not change answers; ``check`` runs the backend's own value checks on them.
    """

    kind: str
    args: Mapping[str, Arg]
    passthrough: Callable[[], Collection[str]] | None = None
    performance_only: frozenset[str] = field(default_factory=frozenset)
    check: Callable[[str, Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", {**COMMON_ARGS, **self.args})

    def names(self) -> list[str]:
        """Every accepted name (declared first, then passthrough names)."""
        extra = list(self.passthrough()) if self.passthrough is not None else []
        return list(self.args) + [n for n in extra if n not in self.args]

    def affects_output(self, name: str) -> bool:
        if name in self.args:
            return self.args[name].affects_output
        return name not in self.performance_only

    def typed(self, model: str, engine_args: Mapping[str, Any]) -> dict[str, Any]:
        """Check names, types and limits; return the typed values (ConfigError, exit 2)."""
        names = self.names()
        out: dict[str, Any] = {}
        passed: dict[str, Any] = {}
        for raw_key, raw in engine_args.items():
            key = raw_key.replace("-", "_")
            if key not in names:
                allowed = ", ".join(sorted(self.args)) + (
                    " and vllm.EngineArgs fields (see `vllm serve --help`)"
                    if self.passthrough
                    else ""
                )
                raise ConfigError(
                    f"--engine-arg {key}: the {self.kind} engine has no argument '{key}'."
                    f"{did_you_mean(key, names)} Allowed: {allowed}."
                )
            if key in self.args:
                out[key] = _typed_declared(self.kind, key, self.args[key], raw)
            else:
                passed[key] = typed_value(raw) if isinstance(raw, str) else raw
        if passed and self.check is not None:
            self.check(model, passed)
        return {**out, **passed}


def _typed_declared(kind: str, key: str, spec: Arg, raw: Any) -> Any:
    """The value of a declared argument, typed by its declaration."""
    value = typed_value(raw) if isinstance(raw, str) else raw
    if not _is_instance(value, spec.types) and isinstance(raw, str) and str in spec.types:
        value = raw  # e.g. revision=20240101 or default_answer=42: the text is meant
    if isinstance(value, int) and not isinstance(value, bool) and float in spec.types:
        value = float(value) if int not in spec.types else value
    bad = not _is_instance(value, spec.types)
    bad = bad or bool(spec.choices and value not in spec.choices)
    if not bad and spec.minimum is not None and isinstance(value, (int, float)):
        bad = value < spec.minimum
    if bad:
        raise ConfigError(
            f"--engine-arg {key}={raw!s}: the {kind} engine expects {spec.describe()} for '{key}'."
        )
    return value


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)
