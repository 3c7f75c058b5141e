"""benchmarks.yaml -> frozen dataclasses (docs/formats.md#benchmarksyaml); unknown keys fail.

```
include_paths: [my_tasks/]        # extra lm-eval task directories, relative to this file
suites:
  quick:
    - {task: arc_easy, limit: 200, num_fewshot: 0, metric: acc, margin: 0.02}
    - my_custom_task                # shorthand for {task: my_custom_task}
```

Every problem is a ConfigError (exit 2) naming the file, the line and the key, with a
did-you-mean hint for misspelt keys and suite names. Task names are checked against
lm-eval's registry later, in ``general.py`` (that needs lm_eval imported).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from collapse_eval.errors import ConfigError, UsageError, did_you_mean, unknown_key_error

BENCHMARKS_FILE = "benchmarks.yaml"
# The packaged file's default suite for a real model: the real benchmarks, on the local
# offline copies when `collapse-eval data prepare` has made them, else from the hub.
# (Its first suite, `quick`, is the demo's toy tasks.)
DEFAULT_SUITE = "standard"
DEFAULT_OFFLINE_SUITE = "standard-offline"
TOP_LEVEL_KEYS = ("include_paths", "suites")
ENTRY_KEYS = (
    "task",
    "limit",
    "num_fewshot",
    "fewshot_seed",
    "metric",
    "gen_kwargs",
    "apply_chat_template",
    "margin",
)


@dataclass(frozen=True, slots=True)
class BenchmarkEntry:
    """One lm-eval task or group in a suite, with its evaluation settings.

    ``limit`` caps the number of documents (the run's ``--limit`` caps it further);
    ``metric`` names the primary metric as recorded (``acc``, ``exact_match:strict-match``);
    ``margin`` is this task's non-inferiority margin (the policy's default when None).
    """

    task: str
    limit: int | None = None
    num_fewshot: int | None = None
    fewshot_seed: int | None = None
    metric: str | None = None
    gen_kwargs: Mapping[str, Any] | None = None
    apply_chat_template: bool = False
    margin: float | None = None
    line: int | None = field(default=None, compare=False)  # where it is written, for messages


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    entries: tuple[BenchmarkEntry, ...]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(entry.task for entry in self.entries)


@dataclass(frozen=True, slots=True)
class BenchmarksConfig:
    path: Path
    include_paths: tuple[Path, ...]
    suites: Mapping[str, Suite]

    def suite(self, name: str | None = None) -> Suite:
        """The named suite, or the first one written in the file."""
        if name is None:
            return next(iter(self.suites.values()))
        if name not in self.suites:
            raise ConfigError(
                f"{self.path}: no suite named '{name}'.{did_you_mean(name, self.suites)} "
                f"Suites in this file: {', '.join(self.suites)}."
            )
        return self.suites[name]


def resolve_suite(
    config: BenchmarksConfig, name: str | None, *, offline_data: Path | None
) -> tuple[Suite, str]:
    """The suite to run and a log line saying which one and why.

    An explicit ``--suite`` wins. Without one, the packaged benchmarks.yaml runs
    ``standard-offline`` when the offline data is prepared (``offline_data`` is where it
    was found, None when it is not prepared) and ``standard`` otherwise; a user's own
    file (./benchmarks.yaml or --benchmarks) runs its first suite.
    """
    if name is not None:
        return config.suite(name), f"suite {name} (--suite)"
    if not _same_file(config.path, packaged_benchmarks_path()):
        first = config.suite(None)
        return first, f"suite {first.name} (default: the first suite in {config.path})"
    if offline_data is not None:
        reason = f"default: prepared offline data found at {offline_data}"
        return config.suite(DEFAULT_OFFLINE_SUITE), f"suite {DEFAULT_OFFLINE_SUITE} ({reason})"
    reason = (
        "default: no prepared offline data; data comes from the Hugging Face hub. "
        f"`collapse-eval data prepare` makes {DEFAULT_OFFLINE_SUITE} the default"
    )
    return config.suite(DEFAULT_SUITE), f"suite {DEFAULT_SUITE} ({reason})"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def packaged_benchmarks_path() -> Path:
    """The benchmarks.yaml shipped inside the package."""
    return Path(str(resources.files("collapse_eval").joinpath(BENCHMARKS_FILE)))


def default_benchmarks_path() -> Path:
    """./benchmarks.yaml when it exists, else the packaged one."""
    local = Path.cwd() / BENCHMARKS_FILE
    return local if local.is_file() else packaged_benchmarks_path()


def load_benchmarks(path: Path | str | None = None) -> BenchmarksConfig:
    """Read and validate a benchmarks.yaml (``None``: the default location)."""
    file = Path(path) if path is not None else default_benchmarks_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found (--benchmarks)") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory; --benchmarks takes a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason})") from None
    return parse_benchmarks(text, file)


T = TypeVar("T")


def parse_guarded(parse: Callable[[str, Path], T], text: str, path: Path, kind: str) -> T:
    """``parse(text, path)``, with YAML that no config file can be (nesting that exhausts
    the stack, integers over Python's 4300-digit limit) as a ConfigError naming ``path``."""
    try:
        return parse(text, path)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a {kind}") from None
    except ValueError as exc:  # a YAML integer over Python's 4300-digit limit
        raise ConfigError(f"{path}: a number is too long ({exc})") from None


def parse_benchmarks(text: str, path: Path) -> BenchmarksConfig:
    """Validate benchmarks.yaml text; ``path`` names it in errors and anchors include_paths."""
    return parse_guarded(_parse_benchmarks, text, path, "benchmarks file")


def compose_yaml(text: str, path: Path, *, when_empty: str) -> yaml.Node:
    """The YAML node tree of ``text`` (safe tags only); bad YAML names its line, an empty
    file says ``when_empty`` (what the file needs)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty; {when_empty}")
    reject_object_tags(root, path)
    return root


def _parse_benchmarks(text: str, path: Path) -> BenchmarksConfig:
    root = compose_yaml(text, path, when_empty="it needs a 'suites:' mapping")
    parser = _Parser(path)
    top = parser.mapping(root, "the top level")
    for key, (key_node, _) in top.items():
        if key not in TOP_LEVEL_KEYS:
            raise unknown_key_error(
                path, key, TOP_LEVEL_KEYS, where="the top level", line=_line(key_node)
            )
    include_paths = parser.include_paths(top.get("include_paths"))
    if "suites" not in top:
        raise ConfigError(
            f"{path}: missing required key 'suites' (a mapping of suite name to a list of tasks)"
        )
    suites: dict[str, Suite] = {}
    for name, (name_node, value) in parser.mapping(top["suites"][1], "'suites'").items():
        suites[name] = parser.suite(name, name_node, value)
    if not suites:
        raise ConfigError(
            f"{path}:{_line(top['suites'][1])}: 'suites' is empty; define at least one suite"
        )
    return BenchmarksConfig(path=path, include_paths=include_paths, suites=MappingProxyType(suites))


def reject_object_tags(node: yaml.Node, path: str | Path) -> None:
    """Refuse YAML tags that would build Python objects (``!!python/object/apply:...``):
    configuration is plain data, and such a tag in a shared file is an attack."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:  # an alias (`*x`) shares its node; `&x [*x]` is a cycle
            continue
        seen.add(id(current))
        if current.tag.startswith("tag:yaml.org,2002:python/"):
            tag = "!!" + current.tag.removeprefix("tag:yaml.org,2002:")
            raise ConfigError(
                f"{path}:{_line(current)}: the YAML tag '{tag}' is not allowed: "
                "collapse-eval reads plain data only (remove the tag)"
            )
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += [key, value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class NodeReader:
    """Walks composed YAML nodes so that every error can name its file and line (the
    benchmarks file here, a `data build` spec in ``databuild/spec.py``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node, message: str, key: str | None = None) -> ConfigError:
        where = f"{self.path}:{_line(node)}"
        if key:
            where += f": field '{key}'"
        return ConfigError(f"{where}: {message}")

    def value(self, node: yaml.Node) -> Any:
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()

    def mapping(
        self, node: yaml.Node, what: str, allowed: Sequence[str] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's keys -> (key node, value node); keys must be strings, unique and,
        when ``allowed`` is given, among them (else a did-you-mean with the line)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value)")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, f"keys in {what} must be strings, got {key!r}")
            if key in out:
                raise self.fail(
                    key_node,
                    f"duplicate key '{key}' in {what} (first on line {_line(out[key][0])})",
                )
            if allowed is not None and key not in allowed:
                raise unknown_key_error(self.path, key, allowed, where=what, line=_line(key_node))
            out[key] = (key_node, value_node)
        return out


class _Parser(NodeReader):
    """The benchmarks file."""

    def include_paths(self, item: tuple[yaml.Node, yaml.Node] | None) -> tuple[Path, ...]:
        if item is None:
            return ()
        node = item[1]
        raw = self.value(node)
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
            raise self.fail(node, "must be a list of directory paths", "include_paths")
        paths = []
        for entry in raw:
            resolved = (self.path.parent / Path(entry).expanduser()).resolve()
            if not resolved.is_dir():
                raise self.fail(
                    node,
                    f"'{entry}' is not a directory (resolved relative to this file: {resolved})",
                    "include_paths",
                )
            paths.append(resolved)
        return tuple(paths)

    def suite(self, name: str, name_node: yaml.Node, node: yaml.Node) -> Suite:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(
                name_node,
                f"suite '{name}' must be a non-empty list of tasks, "
                "e.g. '- {task: arc_easy, limit: 200}'",
            )
        entries: list[BenchmarkEntry] = []
        seen: dict[str, int] = {}
        for item in node.value:
            entry = self.entry(name, item)
            if entry.task in seen:
                raise self.fail(
                    item,
                    f"task '{entry.task}' appears twice in suite '{name}' "
                    f"(first on line {seen[entry.task]})",
                    "task",
                )
            seen[entry.task] = _line(item)
            entries.append(entry)
        return Suite(name=name, entries=tuple(entries))

    def entry(self, suite: str, node: yaml.Node) -> BenchmarkEntry:
        where = f"suite '{suite}'"
        if isinstance(node, yaml.ScalarNode):
            task = self.value(node)
            if not isinstance(task, str) or not task.strip():
                raise self.fail(
                    node, f"entries of {where} are task names or mappings with a 'task' key"
                )
            return BenchmarkEntry(task=task.strip(), line=_line(node))
        fields = self.mapping(node, f"an entry of {where}")
        for key, (key_node, _) in fields.items():
            if key not in ENTRY_KEYS:
                raise unknown_key_error(
                    self.path, key, ENTRY_KEYS, where=f"an entry of {where}", line=_line(key_node)
                )
        if "task" not in fields:
            raise self.fail(
                node, f"an entry of {where} has no 'task' (the lm-eval task or group name)", "task"
            )
        values = {key: (self.value(v), v) for key, (_, v) in fields.items()}
        task, task_node = values["task"]
        if not isinstance(task, str) or not task.strip():
            raise self.fail(task_node, "must be a non-empty task name", "task")
        kwargs: dict[str, Any] = {"task": task.strip(), "line": _line(node)}
        for key in ("limit", "num_fewshot", "fewshot_seed"):
            if key in values:
                kwargs[key] = self.integer(key, *values[key], minimum=1 if key == "limit" else 0)
        if "metric" in values:
            metric, metric_node = values["metric"]
            if not isinstance(metric, str) or not metric:
                raise self.fail(metric_node, "must be a metric name such as acc", "metric")
            kwargs["metric"] = metric
        if "gen_kwargs" in values:
            gen, gen_node = values["gen_kwargs"]
            if not isinstance(gen, dict) or not all(isinstance(k, str) for k in gen):
                raise self.fail(
                    gen_node,
                    "must be a mapping of generation settings, e.g. "
                    "{max_gen_toks: 64, until: ['\\n']}",
                    "gen_kwargs",
                )
            kwargs["gen_kwargs"] = MappingProxyType(dict(gen))
        if "apply_chat_template" in values:
            flag, flag_node = values["apply_chat_template"]
            if not isinstance(flag, bool):
                raise self.fail(
                    flag_node, f"must be true or false, got {flag!r}", "apply_chat_template"
                )
            kwargs["apply_chat_template"] = flag
        if "margin" in values:
            margin, margin_node = values["margin"]
            if (
                isinstance(margin, bool)
                or not isinstance(margin, (int, float))
                or not math.isfinite(margin)
                or not 0 <= margin < 1
            ):
                raise self.fail(
                    margin_node,
                    f"must be a number in [0, 1) on the 0..1 score scale, got {margin!r}",
                    "margin",
                )
            kwargs["margin"] = float(margin)
        return BenchmarkEntry(**kwargs)

    def integer(self, key: str, value: Any, node: yaml.Node, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(node, f"must be an integer >= {minimum}, got {value!r}", key)
        return value


# ---------------------------------------------------------------- --tasks and --num-fewshot

ADHOC_SUITE = "tasks"  # the name of the suite --tasks makes (in logs and the run's messages)


def parse_task_list(values: Sequence[str]) -> tuple[str, ...]:
    """``--tasks a,b --tasks c`` -> ("a", "b", "c"); an empty or repeated name is a UsageError."""
    names: list[str] = []
    for value in values:
        for piece in value.split(","):
            name = piece.strip()
            if not name:
                raise UsageError(
                    f"--tasks {value!r}: an empty task name; give comma-separated lm-eval "
                    "task names, e.g. --tasks arc_easy,hellaswag"
                )
            if name in names:
                raise UsageError(f"--tasks: task '{name}' is named twice; name each task once")
            names.append(name)
    return tuple(names)


def adhoc_suite(tasks: Sequence[str]) -> Suite:
    """The suite ``--tasks`` makes: each task with lm-eval's defaults (its own few-shot
    count, its first metric as the primary one) and the policy's default margin."""
    return Suite(name=ADHOC_SUITE, entries=tuple(BenchmarkEntry(task=task) for task in tasks))


def with_num_fewshot(suite: Suite, num_fewshot: int) -> Suite:
    """Every entry of ``suite`` evaluated with ``num_fewshot`` examples (``--num-fewshot``)."""
    entries = tuple(replace(entry, num_fewshot=num_fewshot) for entry in suite.entries)
    return replace(suite, entries=entries)


def choose_suite(
    config: BenchmarksConfig,
    name: str | None,
    *,
    tasks: Sequence[str] = (),
    num_fewshot: int | None = None,
    offline_data: Path | None = None,
) -> tuple[Suite, str]:
    """The suite a run evaluates and a log line saying which and why.

    ``tasks`` (``--tasks``) makes an ad-hoc suite instead of one from the file (giving
    ``name`` too is a UsageError); ``num_fewshot`` (``--num-fewshot``) then sets the
    few-shot count of every task of the chosen suite, overriding benchmarks.yaml.
    """
    if tasks and name is not None:
        raise UsageError(
            "--tasks and --suite both choose the general suite; give one of them "
            "(--tasks for an ad-hoc list of lm-eval tasks, --suite for a benchmarks.yaml suite)"
        )
    if tasks:
        suite = adhoc_suite(tasks)
        why = (
            f"ad-hoc suite from --tasks: {', '.join(tasks)} (primary metric: each task's "
            "first lm-eval metric; margin: the policy's default; few-shot: "
            + (f"{num_fewshot} (--num-fewshot))" if num_fewshot is not None else "lm-eval's)")
        )
    else:
        suite, why = resolve_suite(config, name, offline_data=offline_data)
        if num_fewshot is not None:
            why += f"; num_fewshot {num_fewshot} for every task (--num-fewshot)"
    if num_fewshot is not None:
        suite = with_num_fewshot(suite, num_fewshot)
    return suite, why
