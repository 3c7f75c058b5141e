"""policy.yaml -> frozen Policy (docs/formats.md#policyyaml). Unknown keys fail with a hint.

```
alpha: 0.05
general: {margin: 0.02, fail_on: [regressed], critical: [], margins: {gsm8k: 0.03},
          require: non_inferior, require_per_task: {arc_easy: equivalent}}
domain:  {require_gain: true, min_gain: 0.0, margin: 0.02, fail_on: [], fail_on_format: [],
          require: non_inferior}
```

Extensions (documented in README): ``domain.fail_on`` (statuses of any domain comparison,
task level or per group, that fail the gate; default none: a domain group that regressed is
reported, and fails only if the policy says so). ``general.critical`` tasks
must show non-inferiority: they fail when ``regressed`` or ``inconclusive``.
``general.require`` (default ``non_inferior``) and ``general.require_per_task`` (task ->
``non_inferior`` | ``equivalent``, more specific): a task required to be ``equivalent``
passes only when its whole (1 - 2 alpha) CI lies within +-margin (TOST).
``domain.fail_on_format``: statuses of the domain ``format_ok`` rows that fail the gate.
``domain.require: equivalent``: every domain task-level row (not its groups, not format_ok)
must be equivalent by TOST, as a general task required to be. Named presets
(``PRESETS``: ``release``, the default, and ``equivalence``) stand in for a file.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from collapse_eval.config import parse_guarded, reject_object_tags
from collapse_eval.errors import ConfigError, did_you_mean, unknown_key_error

FAILABLE_STATUSES = ("regressed", "inconclusive")
REQUIREMENTS = ("non_inferior", "equivalent")
DEFAULT_MARGIN = 0.02
_TOP_KEYS = ("alpha", "general", "domain", "sequential")
_SEQUENTIAL_KEYS = ("looks",)
MAX_LOOKS = 20
DEFAULT_LOOKS = 5
_GENERAL_KEYS = ("margin", "fail_on", "critical", "margins", "require", "require_per_task")
_DOMAIN_KEYS = ("require_gain", "min_gain", "margin", "fail_on", "fail_on_format", "require")
# --policy NAME: a named policy instead of a file. ``release`` is the default policy (a
# significant domain gain, no general regression); ``equivalence`` is for a checkpoint
# that should change nothing (a quantized, bf16 or distilled copy): every general and
# domain task within +-margin by TOST, no gain asked for.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "release": {},
    "equivalence": {
        "general": {"require": "equivalent"},
        "domain": {"require": "equivalent", "require_gain": False},
    },
}


class Margin(NamedTuple):
    """A non-inferiority margin and where it was set, as stored in summary.json."""

    value: float
    source: str  # "policy general.margins.TASK" | "benchmarks.yaml" | "policy general.margin" | ...


@dataclass(frozen=True, slots=True)
class GeneralPolicy:
    margin: float = DEFAULT_MARGIN
    fail_on: tuple[str, ...] = ("regressed",)
    critical: tuple[str, ...] = ()
    margins: Mapping[str, float] = field(default_factory=dict)
    require: str = "non_inferior"  # one of REQUIREMENTS, for every general task
    require_per_task: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DomainPolicy:
    require_gain: bool = True
    min_gain: float = 0.0
    margin: float = DEFAULT_MARGIN
    fail_on: tuple[str, ...] = ()
    fail_on_format: tuple[str, ...] = ()
    require: str = "non_inferior"  # one of REQUIREMENTS, for every domain task-level row


@dataclass(frozen=True, slots=True)
class SequentialPolicy:
    """``sequential:`` in policy.yaml: the gate is decided by the group-sequential design
    (docs/statistics.md#sequential-gate) with this many looks."""

    looks: int = DEFAULT_LOOKS


@dataclass(frozen=True, slots=True)
class Policy:
    alpha: float = 0.05
    general: GeneralPolicy = field(default_factory=GeneralPolicy)
    domain: DomainPolicy = field(default_factory=DomainPolicy)
    sequential: SequentialPolicy | None = None  # None: fixed-n unless --sequential
    # Not part of the policy: the file it came from, the line of each dotted key and the
    # keys the file set (to tell "policy general.margin" from the default), for messages.
    source: str | None = field(default=None, compare=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def general_margin_source(self, task: str, benchmark_margin: float | None = None) -> Margin:
        """The margin of a general task and where it comes from. Precedence, most specific
        first, the gate owner's file before the benchmark file: policy general.margins[task]
        > benchmarks.yaml margin of the task > policy general.margin > default."""
        if task in self.general.margins:
            return Margin(self.general.margins[task], f"policy general.margins.{task}")
        if benchmark_margin is not None:
            return Margin(benchmark_margin, "benchmarks.yaml")
        if "general.margin" in self.given:
            return Margin(self.general.margin, "policy general.margin")
        return Margin(self.general.margin, "default")

    def requirement(self, task: str) -> str:
        """``non_inferior`` or ``equivalent``: general.require_per_task, else general.require."""
        return self.general.require_per_task.get(task, self.general.require)

    def domain_margin_source(self) -> Margin:
        source = "policy domain.margin" if "domain.margin" in self.given else "default"
        return Margin(self.domain.margin, source)

    def check_task_names(
        self, tasks: Collection[str], subtasks: Mapping[str, str] | None = None
    ) -> None:
        """ConfigError (exit 2) for a task in general.margins or general.critical that is not
        one of ``tasks`` (the general tasks of the runs), with a did-you-mean hint.

        ``subtasks`` maps subtask name -> group: margins and critical apply to the group.
        """
        subtasks = subtasks or {}
        named = [(f"general.margins.{t}", t) for t in self.general.margins]
        named += [("general.critical", t) for t in self.general.critical]
        named += [(f"general.require_per_task.{t}", t) for t in self.general.require_per_task]
        for key, task in named:
            if task in tasks:
                continue
            if task in subtasks:
                hint = (
                    f" It is a subtask of the group '{subtasks[task]}', which is judged as one "
                    f"task: name '{subtasks[task]}' instead."
                )
            elif tasks:
                hint = (
                    f"{did_you_mean(task, tasks)} General tasks of these runs: "
                    f"{', '.join(sorted(tasks))}."
                )
            else:
                hint = " These runs have no general tasks."
            raise self._error(key, f"unknown task '{task}'.{hint}")

    def _error(self, key: str, message: str) -> ConfigError:
        line = self.lines.get(key)
        where = self.source or "policy"
        if line:
            where += f":{line}"
        return ConfigError(f"{where}: field '{key}': {message}")

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "general": {
                "margin": self.general.margin,
                "fail_on": list(self.general.fail_on),
                "critical": list(self.general.critical),
                "margins": dict(self.general.margins),
                "require": self.general.require,
                "require_per_task": dict(self.general.require_per_task),
            },
            "domain": {
                "require_gain": self.domain.require_gain,
                "min_gain": self.domain.min_gain,
                "margin": self.domain.margin,
                "fail_on": list(self.domain.fail_on),
                "fail_on_format": list(self.domain.fail_on_format),
                "require": self.domain.require,
            },
            # Additive: written only when set, so fixed-n summaries stay as they were.
            **({"sequential": {"looks": self.sequential.looks}} if self.sequential else {}),
        }


def default_policy() -> Policy:
    return Policy()


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, for messages that point at a line."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                path = f"{prefix}{key_node.value}"
                lines[path] = key_node.start_mark.line + 1
                lines.update(_key_lines(value_node, path + "."))
    return lines


class _Reader:
    def __init__(self, source: str, lines: dict[str, int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, key: str, message: str) -> ConfigError:
        line = self.lines.get(key)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: field '{key}': {message}")

    def check_keys(self, obj: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in obj:
            if key not in allowed:
                raise unknown_key_error(
                    self.source,
                    str(key),
                    allowed,
                    where=prefix.rstrip(".") or "the top level",
                    line=self.lines.get(f"{prefix}{key}"),
                )

    def number(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        low: float,
        high: float,
        low_open: bool = False,
    ) -> float:
        if key not in obj:
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.error(path, f"must be a number, got {value!r}")
        if value < low or value > high or (low_open and value == low):
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise self.error(path, f"must be in {bound} on the 0..1 score scale, got {value!r}")
        return float(value)

    def statuses(
        self, obj: Mapping[str, Any], key: str, path: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        if key not in obj:
            return default
        value = obj[key]
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(path, f"must be a list of statuses, e.g. [regressed], got {value!r}")
        for status in value:
            if status not in FAILABLE_STATUSES:
                raise self.error(
                    path,
                    f"unknown status {status!r}."
                    f"{did_you_mean(str(status), FAILABLE_STATUSES)} "
                    f"Allowed: {', '.join(FAILABLE_STATUSES)}",
                )
        return tuple(value)

    def requirement(self, value: Any, path: str) -> str:
        if value not in REQUIREMENTS:
            raise self.error(
                path,
                f"unknown requirement {value!r}.{did_you_mean(str(value), REQUIREMENTS)} "
                f"Allowed: {', '.join(REQUIREMENTS)}",
            )
        return str(value)

    def section(self, obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {type(value).__name__}")
        return value


def policy_from_mapping(
    raw: Any, *, source: str = "<policy>", lines: dict[str, int] | None = None
) -> Policy:
    """Validate a decoded policy mapping (also used for the policy stored in summary.json)."""
    r = _Reader(source, lines or {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a policy must be a mapping of {', '.join(_TOP_KEYS)}")
    r.check_keys(raw, _TOP_KEYS, "")
    alpha = r.number(raw, "alpha", "alpha", 0.05, low=0.0, high=0.5, low_open=True)
    gen = r.section(raw, "general")
    r.check_keys(gen, _GENERAL_KEYS, "general.")
    critical = gen.get("critical") or []
    if not isinstance(critical, list) or not all(isinstance(t, str) for t in critical):
        raise r.error("general.critical", "must be a list of task names")
    margins_raw = gen.get("margins") or {}
    if not isinstance(margins_raw, dict):
        raise r.error("general.margins", "must be a mapping of task name -> margin")
    margins = {
        str(task): r.number(margins_raw, task, f"general.margins.{task}", 0.0, low=0.0, high=1.0)
        for task in margins_raw
    }
    per_task_raw = gen.get("require_per_task") or {}
    if not isinstance(per_task_raw, dict):
        raise r.error(
            "general.require_per_task",
            "must be a mapping of task name -> non_inferior or equivalent",
        )
    general = GeneralPolicy(
        margin=r.number(gen, "margin", "general.margin", 0.02, low=0.0, high=1.0),
        fail_on=r.statuses(gen, "fail_on", "general.fail_on", ("regressed",)),
        critical=tuple(critical),
        margins=margins,
        require=r.requirement(gen.get("require") or "non_inferior", "general.require"),
        require_per_task={
            str(task): r.requirement(value, f"general.require_per_task.{task}")
            for task, value in per_task_raw.items()
        },
    )
    dom = r.section(raw, "domain")
    r.check_keys(dom, _DOMAIN_KEYS, "domain.")
    require_gain = dom.get("require_gain", True)
    if not isinstance(require_gain, bool):
        raise r.error("domain.require_gain", f"must be true or false, got {require_gain!r}")
    domain = DomainPolicy(
        require_gain=require_gain,
        min_gain=r.number(dom, "min_gain", "domain.min_gain", 0.0, low=-1.0, high=1.0),
        margin=r.number(dom, "margin", "domain.margin", 0.02, low=0.0, high=1.0),
        fail_on=r.statuses(dom, "fail_on", "domain.fail_on", ()),
        fail_on_format=r.statuses(dom, "fail_on_format", "domain.fail_on_format", ()),
        require=r.requirement(dom.get("require") or "non_inferior", "domain.require"),
    )
    given = frozenset(
        [f"general.{k}" for k in gen if gen.get(k) is not None]
        + [f"domain.{k}" for k in dom if dom.get(k) is not None]
    )
    return Policy(
        alpha=alpha,
        general=general,
        domain=domain,
        sequential=_sequential(r, raw),
        source=source,
        lines=dict(lines or {}),
        given=given,
    )


def _sequential(r: _Reader, raw: Mapping[str, Any]) -> SequentialPolicy | None:
    """``sequential:`` (a mapping, possibly empty, or true): the sequential gate's settings."""
    if "sequential" not in raw or raw["sequential"] is False:
        return None
    value = raw["sequential"]
    if value is None or value is True:
        return SequentialPolicy()
    if not isinstance(value, dict):
        raise r.error("sequential", f"must be a mapping such as {{looks: 5}}, got {value!r}")
    r.check_keys(value, _SEQUENTIAL_KEYS, "sequential.")
    looks = value.get("looks", DEFAULT_LOOKS)
    if isinstance(looks, bool) or not isinstance(looks, int) or not 1 <= looks <= MAX_LOOKS:
        raise r.error(
            "sequential.looks", f"must be a whole number from 1 to {MAX_LOOKS}, got {looks!r}"
        )
    return SequentialPolicy(looks=looks)


def load_policy(path: str | Path | None) -> Policy:
    """Read policy.yaml, or a preset by name (``equivalence``; a file named like a preset
    is ``./NAME``); None gives the default policy. ConfigError (exit 2) on problems."""
    if path is None:
        return default_policy()
    if isinstance(path, str) and path in PRESETS:
        return policy_from_mapping(dict(PRESETS[path]), source=f"policy preset {path}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: policy file not found, and not a preset.{did_you_mean(str(path), PRESETS)}"
            f" Presets: {', '.join(PRESETS)}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read policy file ({exc})") from None
    return parse_guarded(_parse_policy, text, path, "policy file")


def _parse_policy(text: str, path: Path) -> Policy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            reject_object_tags(node, path)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return policy_from_mapping(raw, source=str(path), lines=_key_lines(node))
