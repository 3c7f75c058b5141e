"""SPEC.yaml for ``collapse-eval data build``: parsed and validated like benchmarks.yaml.

Every problem is a ConfigError (exit 2) naming the file and line; unknown keys get a
did-you-mean hint. Paths (``dialogues``) are relative to the spec file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collapse_eval.config import NodeReader, compose_yaml, parse_guarded
from collapse_eval.databuild.languages import resolve_language, supported_names
from collapse_eval.domain.scorers import output_formats
from collapse_eval.errors import ConfigError, did_you_mean

__all__ = [
    "BuildSpec",
    "TaskSpec",
    "ConstructionSpec",
    "EvolutionSpec",
    "LabelingSpec",
    "SplitSpec",
    "OPERATORS",
    "STYLES",
    "load_spec",
    "parse_spec",
]

# Evol-Instruct style operators adapted to labeling prompts (see evolve.py for the wording).
OPERATORS = ("add_constraint", "explicit_schema", "add_example", "reason_first", "rephrase_role")
STYLES = ("formal", "colloquial", "terse", "step_by_step")

TOP_KEYS = (
    "domain",
    "roles",
    "dialogues",
    "languages",
    "seed",
    "task_types",
    "construction",
    "evolution",
    "labeling",
    "split",
    "require_coverage",
)
ROLE_KEYS = ("provider", "customer")
TASK_KEYS = ("description", "output_format", "labels", "keys", "weight", "seeds")
CONSTRUCTION_KEYS = ("styles", "variants_per_style", "max_tokens", "novelty_threshold")
EVOLUTION_KEYS = (
    "operators",
    "generations",
    "per_prompt",
    "max_tokens",
    "max_added_words",
    "novelty_threshold",
    "probe",
)
LABELING_KEYS = ("prompts_per_dialogue", "max_tokens", "batch_size")
SPLIT_KEYS = ("test_fraction", "test_prompts")
REQUIRED = ("domain", "roles", "dialogues", "task_types")


@dataclass(frozen=True)
class TaskSpec:
    """One task type: what it asks, how the answer is formatted, seed instructions."""

    name: str
    description: str
    output_format: str
    seeds: tuple[str, ...]
    labels: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class ConstructionSpec:
    styles: tuple[str, ...] = STYLES
    variants_per_style: int = 1
    max_tokens: int = 96
    novelty_threshold: float = 0.7


@dataclass(frozen=True)
class EvolutionSpec:
    operators: tuple[str, ...] = OPERATORS
    generations: int = 1
    per_prompt: int = 1
    max_tokens: int = 128
    max_added_words: int = 60
    novelty_threshold: float = 0.7
    probe: bool = True


@dataclass(frozen=True)
class LabelingSpec:
    prompts_per_dialogue: int = 2
    max_tokens: int = 96
    batch_size: int = 8


@dataclass(frozen=True)
class SplitSpec:
    test_fraction: float = 0.2
    test_prompts: str = "seeds"  # "seeds" (the spec's first seed) or "pool" (sampled)


@dataclass(frozen=True)
class BuildSpec:
    path: Path
    domain: str
    provider: str
    customer: str
    dialogues: Path
    task_types: tuple[TaskSpec, ...]
    languages: tuple[str, ...] = ("English",)
    seed: int = 0
    construction: ConstructionSpec = field(default_factory=ConstructionSpec)
    evolution: EvolutionSpec = field(default_factory=EvolutionSpec)
    labeling: LabelingSpec = field(default_factory=LabelingSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    # Every task type of weight > 0 must reach train.jsonl and test.jsonl, or the build
    # fails (exit 1) instead of warning.
    require_coverage: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.task_types if t.name == name)


def load_spec(path: str | Path) -> BuildSpec:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found (SPEC.yaml)") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory; `data build` takes a SPEC.yaml file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason})") from None
    return parse_guarded(parse_spec, text, file, "build spec")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader(NodeReader):
    """Walks composed YAML nodes so that every error names its line (the typed readers of
    a build spec on top of the benchmarks file's)."""

    def string(self, node: yaml.Node, key: str) -> str:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"must be a non-empty string, got {value!r}", key)
        return value.strip()

    def strings(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        value = self.value(node)
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not all(isinstance(v, str) and v.strip() for v in value)
            or (not value and not allow_empty)
        ):
            raise self.fail(node, "must be a list of non-empty strings", key)
        if len(set(value)) != len(value):
            raise self.fail(node, "has repeated entries", key)
        return tuple(v.strip() for v in value)

    def integer(self, node: yaml.Node, key: str, minimum: int) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(node, f"must be an integer >= {minimum}, got {value!r}", key)
        return value

    def number(self, node: yaml.Node, key: str, low: float, high: float) -> float:
        value = self.value(node)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise self.fail(node, f"must be a number in [{low:g}, {high:g}], got {value!r}", key)
        return float(value)

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.fail(node, f"must be true or false, got {value!r}", key)
        return value

    def choices(self, node: yaml.Node, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = self.strings(node, key)
        for value in values:
            if value not in allowed:
                raise self.fail(
                    node,
                    f"unknown {key[:-1] if key.endswith('s') else key} '{value}'."
                    f"{did_you_mean(value, allowed)} Choose from: {', '.join(allowed)}.",
                    key,
                )
        return values


def parse_spec(text: str, path: Path) -> BuildSpec:
    """Validate SPEC.yaml text; ``path`` names it in errors and anchors relative paths."""
    root = compose_yaml(text, path, when_empty="see README, 'Building training data'")
    r = _Reader(path)
    top = r.mapping(root, "the top level", TOP_KEYS)
    for key in REQUIRED:
        if key not in top:
            raise ConfigError(f"{path}:{_line(root)}: missing required key '{key}'")
    roles = r.mapping(top["roles"][1], "'roles'", ROLE_KEYS)
    for key in ROLE_KEYS:
        if key not in roles:
            raise r.fail(top["roles"][1], f"'roles' needs '{key}'", "roles")
    dialogues_node = top["dialogues"][1]
    dialogues = (path.parent / Path(r.string(dialogues_node, "dialogues")).expanduser()).resolve()
    if not dialogues.is_file():
        raise r.fail(
            dialogues_node,
            f"not a file: {dialogues} (resolved relative to this spec)",
            "dialogues",
        )
    kwargs: dict[str, Any] = {
        "path": path,
        "domain": r.string(top["domain"][1], "domain"),
        "provider": r.string(roles["provider"][1], "provider"),
        "customer": r.string(roles["customer"][1], "customer"),
        "dialogues": dialogues,
        "task_types": _task_types(r, top["task_types"][1]),
        "raw": yaml.safe_load(text),
    }
    if "languages" in top:
        kwargs["languages"] = _languages(r, top["languages"][1])
    if "require_coverage" in top:
        kwargs["require_coverage"] = r.boolean(top["require_coverage"][1], "require_coverage")
    if "seed" in top:
        kwargs["seed"] = r.integer(top["seed"][1], "seed", 0)
    if "construction" in top:
        kwargs["construction"] = _construction(r, top["construction"][1])
    if "evolution" in top:
        kwargs["evolution"] = _evolution(r, top["evolution"][1])
    if "labeling" in top:
        kwargs["labeling"] = _labeling(r, top["labeling"][1])
    if "split" in top:
        kwargs["split"] = _split(r, top["split"][1])
    return BuildSpec(**kwargs)


def _languages(r: _Reader, node: yaml.Node) -> tuple[str, ...]:
    """Canonical names (English, Chinese) of the languages named; any other is refused:
    screening it with another language's rules would be wrong, not lenient."""
    names = []
    for value in r.strings(node, "languages"):
        language = resolve_language(value)
        if language is None:
            raise r.fail(
                node,
                f"unsupported language '{value}': prompts can be constructed and screened "
                f"in {supported_names()}.",
                "languages",
            )
        if language.name in names:
            raise r.fail(node, f"names {language.name} twice ('{value}')", "languages")
        names.append(language.name)
    return tuple(names)


def _task_types(r: _Reader, node: yaml.Node) -> tuple[TaskSpec, ...]:
    tasks = []
    for name, (name_node, value) in r.mapping(node, "'task_types'", None).items():
        where = f"task type '{name}'"
        fields = r.mapping(value, where, TASK_KEYS)
        for key in ("output_format", "seeds"):
            if key not in fields:
                raise r.fail(name_node, f"{where} needs '{key}'", key)
        fmt_node = fields["output_format"][1]
        fmt = r.string(fmt_node, "output_format")
        if fmt not in output_formats():
            raise r.fail(
                fmt_node,
                f"unknown output_format '{fmt}'.{did_you_mean(fmt, output_formats())} "
                f"Choose from: {', '.join(output_formats())}.",
                "output_format",
            )
        labels = r.strings(fields["labels"][1], "labels") if "labels" in fields else ()
        keys = r.strings(fields["keys"][1], "keys") if "keys" in fields else ()
        if fmt == "label" and not labels:
            raise r.fail(name_node, f"{where} (output_format label) needs 'labels'", "labels")
        if fmt == "json" and not keys:
            raise r.fail(name_node, f"{where} (output_format json) needs 'keys'", "keys")
        if labels and fmt != "label":
            raise r.fail(fields["labels"][1], "only output_format label takes labels", "labels")
        if keys and fmt != "json":
            raise r.fail(fields["keys"][1], "only output_format json takes keys", "keys")
        tasks.append(
            TaskSpec(
                name=name,
                description=(
                    r.string(fields["description"][1], "description")
                    if "description" in fields
                    else name.replace("_", " ")
                ),
                output_format=fmt,
                seeds=r.strings(fields["seeds"][1], "seeds"),
                labels=labels,
                keys=keys,
                weight=(
                    r.number(fields["weight"][1], "weight", 0.0, 1e6) if "weight" in fields else 1.0
                ),
            )
        )
    if not tasks:
        raise r.fail(node, "'task_types' is empty; define at least one task type")
    if sum(t.weight for t in tasks) <= 0:
        raise r.fail(node, "every task type has weight 0; give at least one a weight > 0")
    return tuple(tasks)


def _construction(r: _Reader, node: yaml.Node) -> ConstructionSpec:
    f = r.mapping(node, "'construction'", CONSTRUCTION_KEYS)
    kw: dict[str, Any] = {}
    if "styles" in f:
        kw["styles"] = r.choices(f["styles"][1], "styles", STYLES)
    if "variants_per_style" in f:
        kw["variants_per_style"] = r.integer(f["variants_per_style"][1], "variants_per_style", 0)
    if "max_tokens" in f:
        kw["max_tokens"] = r.integer(f["max_tokens"][1], "max_tokens", 1)
    if "novelty_threshold" in f:
        kw["novelty_threshold"] = r.number(f["novelty_threshold"][1], "novelty_threshold", 0, 1)
    return ConstructionSpec(**kw)


def _evolution(r: _Reader, node: yaml.Node) -> EvolutionSpec:
    f = r.mapping(node, "'evolution'", EVOLUTION_KEYS)
    kw: dict[str, Any] = {}
    if "operators" in f:
        kw["operators"] = r.choices(f["operators"][1], "operators", OPERATORS)
    for key, minimum in (
        ("generations", 0),
        ("per_prompt", 1),
        ("max_tokens", 1),
        ("max_added_words", 1),
    ):
        if key in f:
            kw[key] = r.integer(f[key][1], key, minimum)
    if "novelty_threshold" in f:
        kw["novelty_threshold"] = r.number(f["novelty_threshold"][1], "novelty_threshold", 0, 1)
    if "probe" in f:
        kw["probe"] = r.boolean(f["probe"][1], "probe")
    return EvolutionSpec(**kw)


def _labeling(r: _Reader, node: yaml.Node) -> LabelingSpec:
    f = r.mapping(node, "'labeling'", LABELING_KEYS)
    kw = {key: r.integer(f[key][1], key, 1) for key in LABELING_KEYS if key in f}
    return LabelingSpec(**kw)


def _split(r: _Reader, node: yaml.Node) -> SplitSpec:
    f = r.mapping(node, "'split'", SPLIT_KEYS)
    kw: dict[str, Any] = {}
    if "test_fraction" in f:
        kw["test_fraction"] = r.number(f["test_fraction"][1], "test_fraction", 0.0, 0.9)
    if "test_prompts" in f:
        kw["test_prompts"] = r.choices(f["test_prompts"][1], "test_prompts", ("seeds", "pool"))[0]
    return SplitSpec(**kw)
