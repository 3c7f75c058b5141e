"""The general suite through lm-evaluation-harness: the only module that imports lm_eval.

``EngineLM`` is an ``lm_eval.api.model.LM`` over our Engine, so one loaded checkpoint
serves both the domain runner and lm-eval tasks; each request type reaches the engine
as one batched call. ``run_general_suite`` runs a suite's entries one at a time through
``lm_eval.simple_evaluate`` (so lm-eval applies few-shot, seeds and generation settings
exactly as its CLI does), turns the logged samples into ItemRecords and hands them to
the caller task by task (group tasks such as mmlu are recorded per subtask), so that a
resumed run skips finished tasks.

Task YAMLs shipped under ``collapse_eval/tasks/`` (and those in include paths) name
their ``dataset_kwargs.data_files`` relative to the YAML's own directory. lm-eval would
read them relative to the working directory, so before lm-eval sees them each task
directory is mirrored into a temporary directory whose YAML copies carry absolute
paths (see :func:`materialize_task_dirs`).
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from lm_eval.api.model import LM

from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.errors import CollapseEvalError, ConfigError, did_you_mean
from collapse_eval.progress import QuietBar, counting_requests
from collapse_eval.records import ItemRecord, TaskInfo, canonical_json, sha256_text

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.tasks import TaskManager

    from collapse_eval.config import BenchmarkEntry, Suite
    from collapse_eval.progress import Bar, Progress

log = logging.getLogger("collapse_eval.general")


class _DefaultsApplied(logging.Filter):
    """Drops lm-eval's "metric acc is defined, but aggregation is not. using default ..."
    (and the same for higher_is_better): its own task YAMLs (boolq, arc_easy) leave those
    keys out on purpose, the defaults it then applies are the documented ones, and the
    lines, one per task and model, buried the log. Every other lm-eval warning stays;
    COLLAPSE_EVAL_DEBUG=1 keeps these too."""

    PHRASES = ("is defined, but aggregation is not", "is defined, but higher_is_better is not")

    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get("COLLAPSE_EVAL_DEBUG"):
            return True
        message = record.getMessage()
        return not any(phrase in message for phrase in self.PHRASES)


# On lm-eval's task logger itself, so the filter holds whoever installs the handlers.
logging.getLogger("lm_eval.api.task").addFilter(_DefaultsApplied())

SUITE = "general"
# lm-eval's default seeds for numpy, torch and the few-shot sampler (its CLI's "0,1234,1234,1234").
LM_EVAL_OTHER_SEED = 1234
# dataset_path values that read local files (no hub access).
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")

OnTask = Callable[[str, list[ItemRecord], TaskInfo], None]
_In = TypeVar("_In")
_Out = TypeVar("_Out")


# ---------------------------------------------------------------------- the LM adapter


class EngineLM(LM):  # type: ignore[misc]
    """lm-eval's LM interface over an Engine; one engine call per request type.

    Everything the adapter needs from the engine is declared by the Engine protocol
    (``max_gen_toks``, ``chat_template``, ``render_chat``), so a wrapper such as the
    request cache cannot hide it.
    """

    def __init__(self, engine: Engine, *, max_gen_toks: int | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.max_gen_toks = max_gen_toks or int(engine.max_gen_toks)
        self.bar: Bar = QuietBar()  # counts the requests of the task being evaluated

    def loglikelihood(
        self, requests: list[Instance], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        pairs = [(str(r.args[0]), str(r.args[1])) for r in requests]
        return self._counted(self.engine.loglikelihood, pairs)

    def loglikelihood_rolling(
        self, requests: list[Instance], disable_tqdm: bool = False
    ) -> list[float]:
        texts = [str(r.args[0]) for r in requests]
        return self._counted(self.engine.loglikelihood_rolling, texts)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        gen = [self.gen_request(str(r.args[0]), r.args[1]) for r in requests]
        return self._counted(self.engine.generate, gen)

    def _counted(self, call: Callable[[list[_In]], list[_Out]], requests: list[_In]) -> list[_Out]:
        """One engine call, its requests counted on ``bar`` as the engine answers them."""
        if not requests:
            return []
        self.bar.expect(len(requests))
        with counting_requests(self.bar.advance, len(requests)):
            return call(requests)

    def gen_request(self, context: str, gen_kwargs: Mapping[str, Any] | None) -> GenRequest:
        """lm-eval generation kwargs -> GenRequest, normalised as HFLM normalises them."""
        from lm_eval.models.utils import normalize_gen_kwargs

        kwargs = dict(normalize_gen_kwargs(dict(gen_kwargs or {}), self.max_gen_toks))
        until = kwargs.pop("until", None) or []
        if isinstance(until, str):
            until = [until]
        max_tokens = int(kwargs.pop("max_gen_toks"))
        # Greedy is the GenRequest default (empty params): drop the settings that say so.
        if kwargs.get("do_sample") is False and float(kwargs.get("temperature", 0.0)) == 0.0:
            kwargs.pop("do_sample", None)
            kwargs.pop("temperature", None)
        params = tuple(sorted((key, _hashable(value)) for key, value in kwargs.items()))
        return GenRequest(
            prompt=context, until=tuple(str(s) for s in until), max_tokens=max_tokens, params=params
        )

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        messages = [(m["role"], m["content"]) for m in chat_history]
        return self.engine.render_chat(messages, add_generation_prompt=add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return self.engine.model_name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.engine.chat_template


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


# ---------------------------------------------------------------------- task directories


def shipped_tasks_dir() -> Path:
    """``collapse_eval/tasks``: always on lm-eval's include path."""
    return Path(str(resources.files("collapse_eval").joinpath("tasks")))


def _distinct_roots(roots: Sequence[Path]) -> list[Path]:
    """Resolved roots without repeats or roots nested in another root.

    Indexing one YAML twice makes lm-eval warn that a task "overrides" itself, e.g. when a
    benchmarks.yaml includes a directory under the always-included ``collapse_eval/tasks``.
    """
    resolved = list(dict.fromkeys(Path(r).resolve() for r in roots))
    return [
        r for r in resolved if not any(other != r and r.is_relative_to(other) for other in resolved)
    ]


def materialize_task_dirs(roots: Sequence[Path], out: Path) -> list[Path]:
    """Mirror task directories into ``out`` with YAML paths made absolute.

    In every YAML, ``dataset_kwargs.data_files`` entries and ``include:`` targets that are
    relative are resolved against the directory of the YAML that names them (this
    project's convention; lm-eval itself would use the working directory for data files).
    A data path that exists only relative to the working directory is left as is, so
    ordinary lm-eval YAMLs keep working. Python files are copied (``!function`` helpers
    are looked up next to the YAML); data files are not copied, only pointed at.
    """
    mirrors = []
    for number, root in enumerate(_distinct_roots(roots)):
        target = out / f"{number}-{root.name}"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(root.rglob("*")):
            relative = source.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            if source.is_dir():
                continue
            dest = target / relative
            if source.suffix in (".yaml", ".yml"):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(_absolutize_yaml(source), encoding="utf-8")
            elif source.suffix == ".py":
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
        mirrors.append(target)
    return mirrors


def _absolutize_yaml(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: !function tags survive
    except yaml.YAMLError:
        return text  # lm-eval skips YAMLs it cannot read; let it report them
    if not isinstance(root, yaml.MappingNode):
        return text
    changed = _absolutize_node(root, path.parent)
    if not changed:
        return text
    header = f"# materialised by collapse-eval from {path}: relative paths made absolute\n"
    return header + str(yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True))


def _absolutize_node(node: yaml.Node, base: Path) -> bool:
    changed = False
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key == "include":
                changed |= _rewrite_scalars(value, lambda p: _absolute_include(p, base))
            elif key == "dataset_kwargs" and isinstance(value, yaml.MappingNode):
                for inner_key, inner in value.value:
                    if isinstance(inner_key, yaml.ScalarNode) and inner_key.value == "data_files":
                        changed |= _rewrite_scalars(inner, lambda p: _absolute_data(p, base))
            else:
                changed |= _absolutize_node(value, base)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            changed |= _absolutize_node(item, base)
    return changed


def _rewrite_scalars(node: yaml.Node, rewrite: Callable[[str], str | None]) -> bool:
    """Rewrite string scalars in a scalar / list / mapping-of-lists node, in place."""
    if isinstance(node, yaml.ScalarNode):
        new = rewrite(str(node.value))
        if new is None:
            return False
        node.value, node.tag, node.style = new, "tag:yaml.org,2002:str", '"'
        return True
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [value for _, value in node.value]
    changed = False
    for child in children:
        changed |= _rewrite_scalars(child, rewrite)
    return changed


def _absolute_include(value: str, base: Path) -> str | None:
    if Path(value).is_absolute():
        return None
    return str((base / value).resolve())


def _absolute_data(value: str, base: Path) -> str | None:
    if "://" in value or Path(value).expanduser().is_absolute():
        return None
    beside = base / value
    if not _matches(beside) and _matches(Path.cwd() / value):
        return None  # an lm-eval style path relative to the working directory
    return str(beside.resolve()) if not _has_glob(value) else str(base.resolve() / value)


def _has_glob(value: str) -> bool:
    return any(ch in value for ch in "*?[")


def _matches(path: Path) -> bool:
    if _has_glob(str(path)):
        import glob

        return bool(glob.glob(str(path), recursive=True))
    return path.exists()


# ---------------------------------------------------------------------- the suite runner


class _Prepared:
    """Task directories materialised for one run, and lm-eval's task index over them.

    Indexing lm-eval's own ~10k task YAMLs takes about 15 s on a small CPU, so a suite
    whose names are all local (the demo tasks, the offline copies) is served from an
    index of the local directories alone; the full index is built only when needed.
    """

    def __init__(self, mirrors: Sequence[Path]) -> None:
        self.mirrors = [str(m) for m in mirrors]
        self._local: TaskManager | None = None
        self._full: TaskManager | None = None

    @property
    def local(self) -> TaskManager:
        if self._local is None:
            from lm_eval.tasks import TaskManager

            self._local = TaskManager(include_path=self.mirrors, include_defaults=False)
        return self._local

    @property
    def full(self) -> TaskManager:
        if self._full is None:
            from lm_eval.tasks import TaskManager

            self._full = TaskManager(include_path=self.mirrors)
        return self._full

    def manager_for(self, names: Sequence[str]) -> TaskManager:
        local = self.local
        return local if all(_is_local(n, local) for n in names) else self.full


def _is_local(name: str, manager: TaskManager, depth: int = 0) -> bool:
    """Whether ``name`` and every group member it names are in ``manager``'s index."""
    members = _indexed_members(manager, name)
    if members is None or depth > 8:
        return False
    for member in members:
        if isinstance(member, str) and not _is_local(member, manager, depth + 1):
            return False
        # an inline group definition is local by construction; a reference must resolve
        if (
            isinstance(member, dict)
            and isinstance(member.get("group"), str)
            and "task" not in member
            and not _is_local(member["group"], manager, depth + 1)
        ):
            return False
    return True


# lm-eval has no public way to ask whether a name is indexed, is a group, and which tasks
# the group names. _indexed_members is the one place that uses lm-eval's private task index
# for it (lm_eval.tasks._index, lm_eval.tasks._yaml_loader, TaskManager.task_index), which
# appeared in lm-eval 0.4.12 (0.4.11 has neither module; checked with 0.4.13). An lm-eval
# that moves them needs a change here only.


def _indexed_members(manager: TaskManager, name: str) -> list[Any] | None:
    """The ``task:`` members of ``name`` in ``manager``'s index (strings or inline group
    definitions): [] for a task or a group without a YAML file, None when not indexed."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index.get(name)
    if entry is None:
        return None
    if entry.kind != Kind.GROUP or entry.yaml_path is None:
        return []
    members = load_yaml(entry.yaml_path, resolve_func=False).get("task", [])
    return members if isinstance(members, list) else [members]


def _offline_include(names: Sequence[str]) -> list[Path]:
    """The prepared offline task directory when the suite names offline tasks.

    ``collapse-eval data prepare`` writes those YAMLs into the data cache; when it has not
    run, ``offline_tasks_dir`` raises a ConfigError that says to run it.
    """
    from collapse_eval import data_prepare

    offline = set(data_prepare.offline_task_names())
    if not any(name in offline for name in names):
        return []
    return [data_prepare.offline_tasks_dir()]


@contextlib.contextmanager
def _prepared_tasks(
    include_paths: Sequence[Path], names: Sequence[str] = ()
) -> Iterator[_Prepared]:
    roots = [shipped_tasks_dir(), *[Path(p) for p in include_paths], *_offline_include(names)]
    for root in roots:
        if not Path(root).is_dir():
            raise ConfigError(f"{root}: task include path is not a directory")
    key = _tree_signature([Path(r) for r in roots])
    prepared = _PREPARED.get(key)
    if prepared is None:
        tmp = Path(tempfile.mkdtemp(prefix="collapse-eval-tasks-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        prepared = _PREPARED[key] = _Prepared(materialize_task_dirs([Path(r) for r in roots], tmp))
    yield prepared


# The task directories materialised and indexed once per process (a compare sets lm-eval
# up for both models and checks the names before each run): keyed by the directories, the
# working directory (relative data paths) and every file's size and modification time, so
# an edited or added YAML is seen.
_PREPARED: dict[tuple[Any, ...], _Prepared] = {}


def _tree_signature(roots: Sequence[Path]) -> tuple[Any, ...]:
    files = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return (str(Path.cwd()), tuple(str(r.resolve()) for r in roots), tuple(files))


def index_task_dirs(roots: Sequence[Path]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """lm-eval's index of task directories, for listing (YAMLs parsed with functions
    unresolved, no data read): name -> (``task``, ``group`` or ``tag``, its config)."""
    from lm_eval.tasks._index import Kind, TaskIndex

    index = TaskIndex.build([Path(r) for r in roots if Path(r).is_dir()])
    kinds = {Kind.GROUP: "group", Kind.TAG: "tag"}
    return {
        name: (kinds.get(entry.kind, "task"), entry.cfg if isinstance(entry.cfg, Mapping) else {})
        for name, entry in index.items()
    }


def output_type_metric(output_type: Any) -> str | None:
    """lm-eval's first default metric of an output type (for a YAML without metric_list)."""
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    defaults = DEFAULT_METRIC_REGISTRY.get(str(output_type), [])
    return str(defaults[0]) if defaults else None


def check_task_names(manager: TaskManager, names: Sequence[str], *, where: str = "") -> None:
    """ConfigError naming every unknown task, with close matches from lm-eval's index."""
    from collapse_eval.data_prepare import offline_task_names

    known = set(manager.all_tasks)
    # The offline names are offered whether or not this manager holds them (it does only
    # when another checked name is offline, i.e. depending on what the cache answered), so
    # a typo gets the same hint every time: boolq_ofline -> boolq_offline.
    candidates = list(dict.fromkeys([*offline_task_names(), *manager.all_tasks]))
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        lower = name.lower()
        close += [t for t in candidates if lower in t.lower() and t not in close][
            : max(0, 3 - len(close))
        ]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{where}unknown lm-eval task or group '{name}'.{hint} List the known names "
            "with `collapse-eval tasks PATTERN` (or `lm-eval ls tasks`); local task YAMLs "
            "go in collapse_eval/tasks/ or a directory named in include_paths."
        )


def validate_suite(
    suite: Suite, include_paths: Sequence[Path] = (), *, where: str | None = None
) -> None:
    """Check every task name of ``suite`` before any model is loaded (ConfigError);
    ``where`` starts the message (default: the suite's name)."""
    with _prepared_tasks(include_paths, suite.task_names) as prepared:
        manager = prepared.manager_for(suite.task_names)
        prefix = where if where is not None else f"suite '{suite.name}': "
        check_task_names(manager, suite.task_names, where=prefix)


def run_general_suite(
    engine: Engine,
    suite: Suite,
    *,
    limit: int | None = None,
    seed: int = 0,
    include_paths: Sequence[Path] = (),
    done_tasks: Collection[str] = (),
    on_task: OnTask,
    progress: Progress | None = None,
) -> None:
    """Evaluate every entry of ``suite`` with lm-eval on ``engine``; report per task.

    ``limit`` caps each entry's own limit. ``seed`` is lm-eval's Python ``random`` seed
    (its first ``--seed`` value); numpy, torch and the few-shot sampler use lm-eval's
    default 1234 unless the entry sets ``fewshot_seed``. Leaf tasks named in
    ``done_tasks`` are skipped. ``on_task(task, records, info)`` is called once per leaf
    task (each subtask of a group) as soon as it is finished. ``progress`` gets a bar per
    entry, opened when the entry starts (its items are counted when lm-eval returns).
    """
    from collapse_eval.progress import QuietProgress

    lm = EngineLM(engine)
    progress = progress or QuietProgress()
    with _prepared_tasks(include_paths, suite.task_names) as prepared, _no_run_metadata():
        manager = prepared.manager_for(suite.task_names)
        check_task_names(manager, suite.task_names, where=f"suite '{suite.name}': ")
        for entry in suite.entries:
            _run_entry(
                lm,
                manager,
                entry,
                limit=limit,
                seed=seed,
                done_tasks=done_tasks,
                on_task=on_task,
                progress=progress,
            )


def run_general_documents(
    engine: Engine,
    suite: Suite,
    documents: Mapping[str, Collection[int]],
    *,
    limit: int | None = None,
    seed: int = 0,
    include_paths: Sequence[Path] = (),
    on_task: OnTask,
    progress: Progress | None = None,
) -> None:
    """Evaluate only the documents (by index) of each leaf task named in ``documents``
    (lm-eval's ``samples=``): ``compare --sequential`` evaluates a candidate in rounds this
    way. Entries with the same settings (few-shot count and seed, generation arguments,
    chat template) share one ``simple_evaluate``, so a round is one batched engine call
    per request type however many tasks it holds.

    A leaf whose few-shot examples lm-eval draws from one random stream in document order
    (num_fewshot > 0, sampler not ``first_n``) gets other examples for a document when
    fewer documents come before it, so a subset would not be scored as the full run
    scores it: such a leaf is evaluated whole (under ``limit``, with its entry) instead.
    """
    from collapse_eval.progress import QuietProgress

    lm = EngineLM(engine)
    progress = progress or QuietProgress()
    with _prepared_tasks(include_paths, suite.task_names) as prepared, _no_run_metadata():
        manager = prepared.manager_for(suite.task_names)
        shared: dict[str, tuple[BenchmarkEntry, dict[str, Any], dict[str, BenchmarkEntry]]] = {}
        for entry in suite.entries:
            loaded = _load_tasks(manager, entry.task)
            asked = {n: t for n, t in loaded["tasks"].items() if documents.get(n)}
            whole = {n: t for n, t in asked.items() if not _subset_safe(t, entry)}
            if whole:
                with _bar(lm, progress, entry.task):
                    _evaluate_entry(
                        lm, manager, entry, whole, limit=limit, seed=seed, on_task=on_task
                    )
            first, tasks, owners = shared.setdefault(_settings(entry), (entry, {}, {}))
            for name in asked.keys() - whole.keys():
                tasks[name], owners[name] = asked[name], entry
        for first, tasks, owners in shared.values():
            if not tasks:
                continue
            chosen = {n: sorted(set(documents[n])) for n in tasks}
            with _bar(lm, progress, ", ".join(sorted({e.task for e in owners.values()}))):
                _evaluate_entry(
                    lm,
                    manager,
                    first,
                    tasks,
                    limit=None,
                    seed=seed,
                    on_task=on_task,
                    documents=chosen,
                    owners=owners,
                )


def _settings(entry: BenchmarkEntry) -> str:
    """What ``simple_evaluate`` takes for all its tasks at once (entries that agree on it
    can share a call)."""
    gen_kwargs = dict(entry.gen_kwargs or {})
    return canonical_json(
        [entry.num_fewshot, entry.fewshot_seed, gen_kwargs, entry.apply_chat_template],
        default=repr,
    )


@contextlib.contextmanager
def _bar(lm: EngineLM, progress: Progress, label: str) -> Iterator[None]:
    """A progress bar counting the engine requests of one ``simple_evaluate``; lm-eval
    builds them inside it, so the total is learnt as each request type reaches the
    adapter."""
    with progress.bar(f"general {label}", None) as bar:
        lm.bar = bar
        try:
            yield
        finally:
            lm.bar = QuietBar()


def _subset_safe(task: Any, entry: BenchmarkEntry) -> bool:
    """Whether a document's prompt does not depend on which other documents are evaluated:
    zero-shot, or few-shot examples that are the same for every document (``first_n``)."""
    config = task.config
    shots = entry.num_fewshot if entry.num_fewshot is not None else config.num_fewshot
    fewshot = config.fewshot_config  # a FewshotConfig, a mapping in older lm-eval, or None
    sampler = (
        fewshot.get("sampler")
        if isinstance(fewshot, Mapping)
        else getattr(fewshot, "sampler", None)
    )
    return not shots or sampler == "first_n"


@contextlib.contextmanager
def _no_run_metadata() -> Iterator[None]:
    """Skip what ``simple_evaluate`` adds to its results about the machine, which
    collapse-eval never reads (the run manifest records its own environment):

    - ``get_git_commit_hash`` runs ``git describe``, whose ``fatal: not a git repository``
      reached our stderr outside a checkout;
    - ``add_env_info`` runs torch's ``collect_env`` (``pip list`` and a dozen other
      subprocesses): about 0.45 s per call, and lm-eval is called once per task and model,
      so 3.7 s of a 19 s two-model compare of four small tasks.
    """
    import lm_eval.evaluator as evaluator

    replacements = {"get_git_commit_hash": _no_commit, "add_env_info": _no_env_info}
    originals = {name: getattr(evaluator, name, None) for name in replacements}
    for name, replacement in replacements.items():
        if originals[name] is not None:  # another lm-eval layout: nothing to skip
            setattr(evaluator, name, replacement)
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is not None:
                setattr(evaluator, name, original)


def _no_commit() -> None:
    return None


def _no_env_info(storage: dict[str, Any]) -> None:
    return None


def _effective_limit(entry: BenchmarkEntry, limit: int | None) -> int | None:
    limits = [x for x in (entry.limit, limit) if x is not None]
    return min(limits) if limits else None


def _run_entry(
    lm: EngineLM,
    manager: TaskManager,
    entry: BenchmarkEntry,
    *,
    limit: int | None,
    seed: int,
    done_tasks: Collection[str],
    on_task: OnTask,
    progress: Progress,
) -> None:
    progress.log(f"general {entry.task}: loading the lm-eval task and its data")
    loaded = _load_tasks(manager, entry.task)
    todo = {name: task for name, task in loaded["tasks"].items() if name not in done_tasks}
    if not todo:
        return
    with _bar(lm, progress, entry.task):
        _evaluate_entry(lm, manager, entry, todo, limit=limit, seed=seed, on_task=on_task)


def _evaluate_entry(
    lm: EngineLM,
    manager: TaskManager,
    entry: BenchmarkEntry,
    todo: Mapping[str, Any],
    *,
    limit: int | None,
    seed: int,
    on_task: OnTask,
    documents: Mapping[str, Sequence[int]] | None = None,
    owners: Mapping[str, BenchmarkEntry] | None = None,
) -> None:
    """``documents``: per leaf the document indices to evaluate (lm-eval's ``samples=``;
    ``limit`` is then not used), else every document under ``limit``. They must be
    sorted: lm-eval reads the chosen documents in task order and logs the k-th one read
    as ``samples[k]``, the document's own index (the full run's item id). ``owners``: the
    entry of each leaf when several entries with ``entry``'s settings share the call
    (its metric, group and margin), else ``entry`` for all."""
    import lm_eval

    owner = {name: (owners or {}).get(name, entry) for name in todo}
    for name, task in todo.items():
        names, wanted = expected_metric_names(task), owner[name]
        if wanted.metric is not None and wanted.metric not in names:
            raise ConfigError(
                f"benchmarks entry '{wanted.task}' (line {wanted.line}): task '{name}' has "
                f"no metric '{wanted.metric}'.{did_you_mean(wanted.metric, names, cutoff=0.5)} "
                f"Its metrics: {', '.join(names)}."
            )
    fewshot_seed = entry.fewshot_seed if entry.fewshot_seed is not None else LM_EVAL_OTHER_SEED
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(todo.values()),
        task_manager=manager,
        num_fewshot=entry.num_fewshot,
        limit=None if documents is not None else _effective_limit(entry, limit),
        samples={n: list(ids) for n, ids in documents.items()} if documents else None,
        gen_kwargs=dict(entry.gen_kwargs) if entry.gen_kwargs else None,
        apply_chat_template=entry.apply_chat_template,
        log_samples=True,
        bootstrap_iters=0,  # lm-eval's stderr is not used: statistics are ours, paired
        random_seed=seed,
        numpy_random_seed=LM_EVAL_OTHER_SEED,
        torch_random_seed=LM_EVAL_OTHER_SEED,
        fewshot_random_seed=fewshot_seed,
    )
    if results is None:
        raise ConfigError(f"lm-eval returned no results for '{entry.task}'")
    for name, task in todo.items():
        samples = results["samples"].get(name, [])
        group = owner[name].task if name != owner[name].task else None
        records = records_from_samples(name, task, samples, group=group)
        metrics = sorted({r.metric for r in records})
        if not records:
            raise ConfigError(
                f"task '{name}': lm-eval logged no per-item numeric scores "
                "(corpus-level metrics only?), so it cannot be compared item by "
                "item"
            )
        primary = owner[name].metric or _default_primary(task, metrics)
        info = TaskInfo(
            suite=SUITE,
            primary_metric=primary,
            n=len({r.item_id for r in records}),
            margin=owner[name].margin,
            version=_version(results, name),
            num_fewshot=_num_fewshot(results, name),
            config_hash=config_hash(results.get("configs", {}).get(name, {})),
            higher_is_better=_higher_is_better(results, name, primary),
        )
        on_task(name, records, info)


def _load_tasks(manager: TaskManager, name: str) -> Any:
    """lm-eval's TaskManager.load (which reads the data), with data errors made clear."""
    try:
        return manager.load([name])
    except CollapseEvalError:
        raise
    except Exception as exc:  # datasets / hub errors come in many types
        task, dataset = _failing_dataset(exc)
        failing = f"task '{task}' of '{name}'" if task and task != name else f"task '{name}'"
        where = f" (dataset '{dataset}')" if dataset else ""
        if dataset and dataset.split(" ")[0] in LOCAL_BUILDERS:
            hint = (
                "check its dataset_kwargs.data_files (paths are relative to the task "
                "YAML's directory)"
            )
        else:
            hint = (
                "its data comes from the Hugging Face dataset hub, which is not reachable "
                "or not cached here. For the standard benchmarks run `collapse-eval data "
                "prepare` and use `--suite standard-offline`; otherwise make the hub "
                "reachable or fill HF_DATASETS_CACHE"
            )
        raise ConfigError(
            f"{failing}: its data could not be loaded{where}: "
            f"{type(exc).__name__}: {exc}. What to do: {hint}."
        ) from exc


def _failing_dataset(exc: BaseException) -> tuple[str | None, str | None]:
    """(task name, dataset) of the task whose data failed to load, else (None, None).

    lm-eval builds the tasks of a load one at a time and each reads its data in its
    constructor, so a data error (raised deep inside ``datasets``, naming no task) has the
    Task being built on its traceback as the ``self`` of some frame; the innermost such
    frame is the failing task. lm-eval offers no public hook that names it.
    """
    failing: Any = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        config = getattr(frame.f_locals.get("self"), "config", None)
        if _is_task_config(config):
            failing = config  # frames run outermost to innermost: the last one wins
    if failing is None:
        return None, None
    return str(failing.task), _dataset_label(failing)


def _is_task_config(config: Any) -> bool:
    """Duck-typed lm-eval TaskConfig: it names its task and its dataset."""
    return config is not None and hasattr(config, "dataset_path") and hasattr(config, "task")


def _dataset_label(config: Any) -> str | None:
    """'json [files]' for a local builder, 'path/name' for a hub dataset with a config."""
    path = config.dataset_path
    if path in LOCAL_BUILDERS:
        files = (config.dataset_kwargs or {}).get("data_files")
        path = f"{path} {files}" if files else path
    elif config.dataset_name:
        path = f"{path}/{config.dataset_name}"
    return str(path) if path else None


# ---------------------------------------------------------------------- records


def metric_name(metric: str, filter_name: str, filters: Collection[str]) -> str:
    """``acc`` for single-filter tasks; ``exact_match:strict-match`` when filters differ."""
    return metric if len(filters) <= 1 else f"{metric}:{filter_name}"


def expected_metric_names(task: Any) -> list[str]:
    """The metric names a task's records will carry, in lm-eval's order."""
    filters = [f.name for f in getattr(task, "_filters", [])] or ["none"]
    metrics = list(getattr(task, "_metric_fn_list", {}))
    return [metric_name(m, f, filters) for f in filters for m in metrics]


def _default_primary(task: Any, recorded: Sequence[str]) -> str | None:
    for name in expected_metric_names(task):
        if name in recorded:
            return name
    return recorded[0] if recorded else None


def records_from_samples(
    task_name: str, task: Any, samples: Sequence[Mapping[str, Any]], *, group: str | None = None
) -> list[ItemRecord]:
    """One ItemRecord per (document, metric) from lm-eval's logged samples."""
    filters = sorted({str(s.get("filter", "none")) for s in samples})
    output_type = str(getattr(task, "OUTPUT_TYPE", None) or task.config.output_type)
    records: list[ItemRecord] = []
    for sample in samples:
        doc = sample["doc"]
        choices = _choices(task, doc) if output_type == "multiple_choice" else None
        reference = _reference(sample.get("target"), choices)
        prompt_hash = sha256_text(_stable_json([list(a) for a in sample["arguments"]]))
        doc_hash = sha256_text(_stable_json(doc))
        metadata = {"group": group, "prompt": _doc_text(task, doc)}
        for metric in sample["metrics"]:
            value = sample.get(metric)
            score = _as_score(value)
            if score is None:
                continue  # corpus-level metrics log (prediction, reference) pairs, not scores
            records.append(
                ItemRecord(
                    suite=SUITE,
                    task=task_name,
                    item_id=str(sample["doc_id"]),
                    metric=metric_name(metric, str(sample.get("filter", "none")), filters),
                    score=score,
                    prediction=_prediction(output_type, metric, sample, choices),
                    reference=reference,
                    prompt_hash=prompt_hash,
                    doc_hash=doc_hash,
                    metadata={k: v for k, v in metadata.items() if v} or None,
                )
            )
    return records


def _as_score(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def _doc_text(task: Any, doc: Any) -> str | None:
    """The document's question as lm-eval words it (``doc_to_text``, no few-shot examples):
    the report shows it beside a lost or gained item's answers. None where a task's text
    is not a string (winogrande's is an index into its choices)."""
    try:
        text = task.doc_to_text(doc)
    except Exception:  # a task's own template failing here must not fail the run
        return None
    return text if isinstance(text, str) and text.strip() else None


def _choices(task: Any, doc: Any) -> list[str] | None:
    try:
        choices = task.doc_to_choice(doc)
    except Exception:  # tasks without choices for this doc: no readable prediction
        return None
    return [str(c) for c in choices] if isinstance(choices, list) else None


def _reference(target: Any, choices: list[str] | None) -> Any:
    if choices is not None and isinstance(target, int) and 0 <= target < len(choices):
        return choices[target]
    return json.loads(_stable_json(target))


def _prediction(
    output_type: str, metric: str, sample: Mapping[str, Any], choices: list[str] | None
) -> str | None:
    responses = sample.get("filtered_resps") or []
    if output_type == "multiple_choice":
        lls = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in responses]
        if not lls:
            return None
        if metric == "acc_norm" and choices is not None and len(choices) == len(lls):
            # lm-eval normalises by the choice's length in characters
            scores = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]
        else:
            scores = lls
        best = max(range(len(scores)), key=lambda i: scores[i])
        return choices[best] if choices is not None and best < len(choices) else str(best)
    if not responses:
        return None
    first = responses[0]
    if output_type == "generate_until":
        return first if isinstance(first, str) else _stable_json(first)
    return _stable_json(first)


def _stable_json(value: Any) -> str:
    """canonical_json, with values JSON cannot hold (lm-eval docs may carry dates, ...) as str."""
    return canonical_json(value, default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of a task config without where-it-came-from fields (paths, metadata)."""
    stable = {k: v for k, v in config.items() if k not in ("metadata", "dataset_kwargs")}
    return "sha256:" + hashlib.sha256(_stable_json(stable).encode("utf-8")).hexdigest()


def _version(results: Mapping[str, Any], name: str) -> str | None:
    version = results.get("versions", {}).get(name)
    return None if version is None else str(version)


def _num_fewshot(results: Mapping[str, Any], name: str) -> int | None:
    value = results.get("n-shot", {}).get(name)
    return int(value) if isinstance(value, (int, float)) else None


def _higher_is_better(results: Mapping[str, Any], name: str, metric: str | None) -> bool:
    table = results.get("higher_is_better", {}).get(name, {})
    base = (metric or "").split(":")[0]
    value = table.get(base)
    return bool(value) if value is not None else True
