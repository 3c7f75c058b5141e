"""``collapse-eval data build``: construction -> evolution -> labeling -> test review ->
quality -> contamination check -> report.

Every stage writes its output files atomically and records, in ``.build-state.json``, the
hash of its inputs (the spec's settings for it, the files of the stages before it, the
review files, the model's identity, the prompt templates and rule thresholds it applies,
and the source of the modules that implement it) and of its outputs. A re-run skips a
stage whose inputs and outputs are unchanged, so an unchanged build loads no model at all;
a stage that has to run again gets its LLM answers from the request cache, written after
every chunk of requests, so a killed build resumes where it stopped and a re-run costs no
engine call.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from collapse_eval.cache import RequestCache
from collapse_eval.cost import CountedEngine, StageCost, Timer, count_and_cache
from collapse_eval.databuild import construct as construct_mod
from collapse_eval.databuild import evolve as evolve_mod
from collapse_eval.databuild import label as label_mod
from collapse_eval.databuild import report as rep
from collapse_eval.databuild import screen
from collapse_eval.databuild.construct import construct
from collapse_eval.databuild.evolve import evolve
from collapse_eval.databuild.label import (
    Dialogue,
    Labeler,
    Split,
    label_test,
    label_train,
    load_dialogues,
    split_dialogues,
)
from collapse_eval.databuild.spec import BuildSpec
from collapse_eval.domain.dataset import DomainItem, TrainingItem
from collapse_eval.domain.scorers import check_reference
from collapse_eval.engines.base import Engine, GenRequest, checkpoint_fingerprint
from collapse_eval.errors import CollapseEvalError, InputError, did_you_mean
from collapse_eval.formats import to_plain
from collapse_eval.formats.build import (
    BuildCost,
    BuildReport,
    CellCoverage,
    Counts,
    CoverageBlock,
    DiversityBlock,
    MergedCluster,
    MissingTypes,
    OperatorRow,
    PromptDiversity,
    RunCost,
    SplitReport,
)
from collapse_eval.progress import Progress, QuietProgress
from collapse_eval.quality import contamination
from collapse_eval.quality import pipeline as quality_pipeline
from collapse_eval.quality.pipeline import HARD_FLAGS, assess
from collapse_eval.records import (
    atomic_write_json,
    atomic_write_text,
    canonical_json,
    iter_jsonl,
)

__all__ = [
    "BUILD_SCHEMA_VERSION",
    "FILES",
    "BuildOptions",
    "BuildResult",
    "build",
    "read_jsonl",
]

BUILD_SCHEMA_VERSION: Final = 1
STATE_FILE = ".build-state.json"
REVIEW_FILE = "prompts.review.jsonl"
TEST_REVIEW_FILE = "test.review.jsonl"
FILES = {
    "variants": "variants.jsonl",
    "prompts": "prompts.jsonl",
    "labeled": "labeled.jsonl",
    "labeling_rejected": "labeling_rejected.jsonl",
    "test_labeled": "test_labeled.jsonl",
    "test": "test.jsonl",
    "train": "train.jsonl",
    "rejected": "rejected.jsonl",
    "quality": "quality.json",
    "report": "build.json",
}
STAGES = ("construction", "evolution", "labeling", "test_review", "quality")
# The modules whose code decides each stage's output: a change to their source (a new
# screening rule, a reworded template) re-runs the stage, as a changed setting does.
STAGE_CODE = {
    "construction": ("databuild.construct", "databuild.screen", "domain.scorers"),
    "evolution": ("databuild.construct", "databuild.evolve", "databuild.screen", "domain.scorers"),
    "labeling": (
        "databuild.label",
        "databuild.evolve",
        "databuild.screen",
        "domain.scorers",
        "quality.contamination",
    ),
    "test_review": ("databuild.pipeline", "domain.scorers"),
    "quality": (
        "quality.rules",
        "quality.dataset_level",
        "quality.pipeline",
        "domain.scorers",
        "databuild.pipeline",
    ),
}

EngineFactory = Callable[[str], Engine]


@dataclass
class BuildOptions:
    """Who generates and labels, and how (the command line's options)."""

    generator: str
    engine: str | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    labeler: str | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    force: bool = False

    def identity(self, model: str) -> dict[str, Any]:
        """What identifies a model's answers, without loading it (for the stage hashes)."""
        return {
            "model": model,
            "fingerprint": _fingerprint(model),
            "engine": self.engine,
            "engine_args": {k: str(v) for k, v in sorted(self.engine_args.items())},
        }


@functools.lru_cache(maxsize=8)
def _fingerprint(model: str) -> str:
    # Hashes the weight files (hundreds of MB): once per model and process.
    return checkpoint_fingerprint(model)


@dataclass
class BuildResult:
    out: Path
    report: dict[str, Any]


# ------------------------------------------------------------------ files


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@functools.cache
def _source_hash(module: str) -> str:
    """sha256 of a collapse_eval module's source file (the package version where the
    source is not a readable file)."""
    loaded = importlib.import_module(f"collapse_eval.{module}")
    try:
        return hashlib.sha256(Path(str(loaded.__file__)).read_bytes()).hexdigest()
    except OSError:
        from collapse_eval import __version__

        return f"version:{__version__}"


def stage_code(stage: str) -> dict[str, str]:
    """The source hashes of the modules a stage's output depends on (part of its key)."""
    return {module: _source_hash(module) for module in STAGE_CODE[stage]}


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


class _State:
    """``.build-state.json``: per stage, the input key, output hashes and its summary."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.data: dict[str, Any] = {}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}  # a damaged state only costs a re-run of the stages
            self.data = loaded if isinstance(loaded, dict) else {}

    def fresh(self, stage: str, key: str, outputs: Sequence[Path]) -> bool:
        entry = self.data.get(stage)
        if not isinstance(entry, dict) or entry.get("key") != key:
            return False
        hashes = entry.get("outputs", {})
        return all(p.exists() and hashes.get(p.name) == sha256_file(p) for p in outputs)

    def summary(self, stage: str) -> dict[str, Any]:
        return dict(self.data[stage]["summary"])

    def record(
        self, stage: str, key: str, outputs: Sequence[Path], summary: Mapping[str, Any]
    ) -> None:
        self.data[stage] = {
            "key": key,
            "outputs": {p.name: sha256_file(p) for p in outputs},
            "summary": dict(summary),
        }
        atomic_write_json(self.path, self.data)


# ------------------------------------------------------------------ engines


class _Engines:
    """Models are loaded on first use only (an up-to-date build loads none), wrapped as
    cache -> counter -> engine: the counter sees only what the cache could not answer."""

    def __init__(self, factory: EngineFactory, cache: RequestCache | None) -> None:
        self.factory = factory
        self.cache = cache
        self.built: dict[str, CountedEngine] = {}

    def get(self, model: str, cost: StageCost) -> Engine:
        if model not in self.built:
            self.built[model] = count_and_cache(self.factory(model), self.cache, cost)
        wrapped = self.built[model]
        wrapped.counting.cost = cost
        return wrapped.outer

    def hits(self) -> int:
        return sum(wrapped.hits for wrapped in self.built.values())

    def close(self) -> None:
        for wrapped in self.built.values():
            wrapped.engine.close()


# ------------------------------------------------------------------ review


def _review_lines(
    path: Path, fields: set[str], known: Mapping[str, Any], what: tuple[str, str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per line of a review file whose id is in ``known``; a line
    that is not such an object is exit 2 naming the line and the field."""
    if not path.exists():
        return
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            shape = ", ".join(f'"{f}": ...' for f in ["id", *sorted(fields)])
            raise InputError(path, f"expected {{{shape}}}", line=lineno)
        extra = sorted(set(obj) - fields - {"id", "note"})
        if extra:
            raise InputError(
                path,
                f"unknown field.{did_you_mean(extra[0], fields | {'id', 'note'})}",
                line=lineno,
                field=extra[0],
            )
        item_id = obj.get("id")
        if not isinstance(item_id, str) or item_id not in known:
            raise InputError(
                path,
                f"no {what[0]} with id {item_id!r} in {what[1]}."
                f"{did_you_mean(str(item_id), known)}",
                line=lineno,
                field="id",
            )
        yield lineno, obj


def load_review(path: Path, known: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{prompt id: "accept" | "reject"}`` from prompts.review.jsonl (exit 2 on problems)."""
    decisions: dict[str, str] = {}
    for lineno, obj in _review_lines(path, {"decision"}, known, ("prompt", FILES["prompts"])):
        decision = obj.get("decision")
        if decision not in ("accept", "reject"):
            raise InputError(
                path, f"must be accept or reject, got {decision!r}", line=lineno, field="decision"
            )
        decisions[obj["id"]] = str(decision)
    return decisions


@dataclass(frozen=True)
class TestReview:
    """A reviewer's word on one test item: drop it, or its correct reference."""

    drop: bool
    reference: Any = None


def reference_problem(spec: BuildSpec, item: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` cannot be the reference of test item ``item``, or None: the format's
    check, and for ``label`` and ``json`` tasks the spec's label set and keys."""
    problem = check_reference(item["output_format"], value)
    if problem is not None:
        return problem
    task = next((t for t in spec.task_types if t.name == item["task_type"]), None)
    if task is None:
        return None
    if task.output_format == "label" and value not in task.labels:
        return f"{value!r} is not one of the task's labels: {', '.join(task.labels)}"
    if task.output_format == "json" and sorted(value) != sorted(task.keys):
        return f"must have exactly the task's keys: {', '.join(task.keys)}"
    return None


def load_test_review(
    path: Path, items: Mapping[str, Mapping[str, Any]], spec: BuildSpec
) -> dict[str, TestReview]:
    """``{test item id: TestReview}`` from test.review.jsonl: ``{"id", "reference"}`` or
    ``{"id", "decision": "drop"}`` per line (the last line for an id wins); exit 2 naming
    the line and field on an unknown id, a bad decision or a reference the item's format
    or the spec refuses."""
    reviews: dict[str, TestReview] = {}
    what = ("test item", FILES["test_labeled"])
    for lineno, obj in _review_lines(path, {"reference", "decision"}, items, what):
        if ("reference" in obj) == ("decision" in obj):
            raise InputError(
                path,
                'give either "reference" (the correct answer) or "decision": "drop"',
                line=lineno,
            )
        if "decision" in obj:
            if obj["decision"] != "drop":
                raise InputError(
                    path,
                    f'must be "drop", got {obj["decision"]!r} (to correct the item, give '
                    '"reference" instead)',
                    line=lineno,
                    field="decision",
                )
            reviews[obj["id"]] = TestReview(drop=True)
            continue
        problem = reference_problem(spec, items[obj["id"]], obj["reference"])
        if problem is not None:
            raise InputError(path, problem, line=lineno, field="reference")
        reviews[obj["id"]] = TestReview(drop=False, reference=obj["reference"])
    return reviews


def apply_test_review(
    items: Sequence[dict[str, Any]], reviews: Mapping[str, TestReview]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(the test items after review, counts): dropped items leave; a reviewed reference
    makes the item gold (the silver one is kept as ``metadata.silver_reference``)."""
    kept: list[dict[str, Any]] = []
    counts = {"corrected": 0, "confirmed": 0, "dropped": 0}
    for item in items:
        review = reviews.get(item["id"])
        if review is None:
            kept.append(item)
        elif review.drop:
            counts["dropped"] += 1
        else:
            same = canonical_json(review.reference) == canonical_json(item["reference"])
            counts["confirmed" if same else "corrected"] += 1
            metadata = {
                **item["metadata"],
                "reference_source": "gold",
                "silver_reference": item["reference"],
            }
            kept.append({**item, "reference": review.reference, "metadata": metadata})
    return kept, counts


def labeling_pools(
    spec: BuildSpec, prompts: Sequence[dict[str, Any]], review: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Per task type, the prompts labeling may use: accepted by the screening or by a
    human, and not rejected by a human."""
    pools: dict[str, list[dict[str, Any]]] = {t.name: [] for t in spec.task_types}
    for record in prompts:
        decision = review.get(record["id"])
        usable = decision == "accept" or (record["status"] == "accepted" and decision != "reject")
        if usable:
            pools[record["task_type"]].append(record)
    return pools


# ------------------------------------------------------------------ stages


@dataclass
class _Build:
    spec: BuildSpec
    options: BuildOptions
    out: Path
    engines: _Engines
    state: _State
    say: Callable[[str], None]
    split: Split
    dialogues_sha: str
    progress: Progress = field(default_factory=QuietProgress)
    ran: dict[str, bool] = field(default_factory=dict)
    costs: dict[str, StageCost] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.out / FILES[name]

    @property
    def train_dialogues(self) -> list[Dialogue]:
        return self.split.train

    @property
    def test_dialogues(self) -> list[Dialogue]:
        return self.split.test

    def stage(
        self,
        name: str,
        inputs: Any,
        outputs: Sequence[str],
        compute: Callable[[StageCost], dict[str, Any]],
    ) -> dict[str, Any]:
        key = _key({**inputs, "code": stage_code(name)})
        paths = [self.path(o) for o in outputs]
        cost = self.costs.setdefault(name, StageCost())
        if not self.options.force and self.state.fresh(name, key, paths):
            self.say(f"{name}: up to date, skipped")
            self.ran[name] = False
            return self.state.summary(name)
        self.say(f"{name}: running")
        hits = self.engines.hits()
        with Timer(cost):
            summary = compute(cost)
        cost.cached += self.engines.hits() - hits
        self.ran[name] = True
        self.state.record(name, key, paths, summary)
        return summary

    def generator(self, cost: StageCost) -> Engine:
        return self.engines.get(self.options.generator, cost)

    def labeler(self, cost: StageCost) -> Engine:
        return self.engines.get(self.options.labeler or self.options.generator, cost)


def _spec_part(spec: BuildSpec, *keys: str) -> dict[str, Any]:
    return {k: spec.raw.get(k) for k in keys}


def _request_json(request: GenRequest) -> list[Any]:
    return [[list(m) for m in request.messages or ()], request.prompt, request.max_tokens]


def _screen_rules() -> dict[str, Any]:
    return {"min_words": screen.MIN_WORDS, "max_words": screen.MAX_WORDS}


def _label_template(spec: BuildSpec, module: Any) -> list[Any]:
    """The labeling request with placeholders: its wording, as the stage renders it."""
    request = module.label_request(spec, "{dialogue}", "{instruction}", spec.labeling.max_tokens)
    return _request_json(request)


def _construction_rules(spec: BuildSpec) -> dict[str, Any]:
    """Every construction request as it will be sent (the style wording, the system
    message and the request template) and the screening thresholds."""
    candidates = construct_mod._construction_requests(spec)
    return {
        "requests": [_request_json(c.request) for c in candidates],
        "screen": _screen_rules(),
    }


def _evolution_rules(spec: BuildSpec) -> dict[str, Any]:
    """The operator texts, the role views, every operator's request rendered for every
    task type on a placeholder instruction, the probe's request, the screening thresholds."""
    rng = np.random.default_rng(0)
    requests = [
        _request_json(evolve_mod._operator_request(spec, task, "{instruction}", op, rng))
        for task in spec.task_types
        for op in spec.evolution.operators
    ]
    return {
        "operator_wording": dict(evolve_mod.OPERATOR_WORDING),
        "role_views": list(evolve_mod.ROLE_VIEWS),
        "requests": requests,
        "probe": _label_template(spec, evolve_mod),
        "screen": _screen_rules(),
    }


def _construction(b: _Build) -> dict[str, Any]:
    spec = b.spec
    inputs = {
        "spec": _spec_part(spec, "domain", "roles", "languages", "seed", "task_types"),
        "construction": asdict(spec.construction),
        "generator": b.options.identity(b.options.generator),
        "rules": _construction_rules(spec),
    }

    def compute(cost: StageCost) -> dict[str, Any]:
        records = construct(spec, b.generator(cost), spec.labeling.batch_size, b.progress)
        write_jsonl(b.path("variants"), records)
        return {}

    return b.stage("construction", inputs, ["variants"], compute)


def _evolution(b: _Build) -> dict[str, Any]:
    spec = b.spec
    probe = b.train_dialogues[0].text if b.train_dialogues else b.test_dialogues[0].text
    inputs = {
        "variants": sha256_file(b.path("variants")),
        "evolution": asdict(spec.evolution),
        "probe": probe,
        "labeling_max_tokens": spec.labeling.max_tokens,
        "generator": b.options.identity(b.options.generator),
        "rules": _evolution_rules(spec),
    }

    def compute(cost: StageCost) -> dict[str, Any]:
        stage1 = read_jsonl(b.path("variants"))
        records = evolve(
            spec, b.generator(cost), stage1, probe, spec.labeling.batch_size, b.progress
        )
        write_jsonl(b.path("prompts"), records)
        return {}

    return b.stage("evolution", inputs, ["prompts"], compute)


def _labeling(b: _Build) -> dict[str, Any]:
    spec = b.spec
    review_path = b.out / REVIEW_FILE
    labeler = b.options.labeler or b.options.generator
    inputs = {
        "prompts": sha256_file(b.path("prompts")),
        "review": sha256_file(review_path) if review_path.exists() else None,
        "labeling": asdict(spec.labeling),
        "split": asdict(spec.split),
        "seed": spec.seed,
        "dialogues": b.dialogues_sha,
        "sides": [[d.id for d in b.train_dialogues], [d.id for d in b.test_dialogues]],
        "labeler": b.options.identity(labeler),
        "rules": {
            "request": _label_template(spec, label_mod),
            "split_jaccard": label_mod.SPLIT_JACCARD,
        },
    }

    def compute(cost: StageCost) -> dict[str, Any]:
        prompts = read_jsonl(b.path("prompts"))
        review = load_review(review_path, {p["id"]: p for p in prompts})
        pools = labeling_pools(spec, prompts, review)
        engine = b.labeler(cost)
        who = Labeler(labeler, engine.fingerprint)
        samples, rejected = label_train(spec, engine, who, b.train_dialogues, pools, b.progress)
        items, test_rejected = label_test(spec, engine, who, b.test_dialogues, pools, b.progress)
        write_jsonl(b.path("labeled"), samples)
        write_jsonl(b.path("test_labeled"), items)
        write_jsonl(b.path("labeling_rejected"), rejected + test_rejected)
        return {
            "review": {
                "accept": sum(d == "accept" for d in review.values()),
                "reject": sum(d == "reject" for d in review.values()),
            },
            "pool_sizes": {name: len(pool) for name, pool in pools.items()},
        }

    return b.stage("labeling", inputs, ["labeled", "test_labeled", "labeling_rejected"], compute)


def _test_review(b: _Build) -> dict[str, Any]:
    review_path = b.out / TEST_REVIEW_FILE
    inputs = {
        "test_labeled": sha256_file(b.path("test_labeled")),
        "review": sha256_file(review_path) if review_path.exists() else None,
        "task_types": _spec_part(b.spec, "task_types"),
    }

    def compute(cost: StageCost) -> dict[str, Any]:
        items = read_jsonl(b.path("test_labeled"))
        reviews = load_test_review(review_path, {i["id"]: i for i in items}, b.spec)
        kept, counts = apply_test_review(items, reviews)
        write_jsonl(b.path("test"), kept)
        return counts

    return b.stage("test_review", inputs, ["test"], compute)


def _training_item(index: int, sample: Mapping[str, Any]) -> TrainingItem:
    return TrainingItem(
        id=sample["id"],
        response=sample["response"],
        messages=tuple((m["role"], m["content"]) for m in sample["messages"]),
        task_type=sample["task_type"],
        output_format=sample["output_format"],
        metadata=sample["metadata"],
        line=index + 1,
    )


def _quality(b: _Build) -> dict[str, Any]:
    inputs = {
        "labeled": sha256_file(b.path("labeled")),
        "labeling_rejected": sha256_file(b.path("labeling_rejected")),
        "seed": b.spec.seed,
        "rules": {
            "thresholds": quality_pipeline._thresholds(),
            "hard_flags": sorted(HARD_FLAGS),
            "weights": dict(quality_pipeline.WEIGHTS),
        },
    }

    def compute(cost: StageCost) -> dict[str, Any]:
        samples = read_jsonl(b.path("labeled"))
        result = assess(
            [_training_item(i, s) for i, s in enumerate(samples)],
            seed=b.spec.seed,
            source=FILES["labeled"],
        )
        kept, rejected = [], read_jsonl(b.path("labeling_rejected"))
        for sample, checked in zip(samples, result.samples, strict=True):
            reasons = [f for f in checked.flags if f in HARD_FLAGS]
            if not reasons:
                kept.append(sample)
                continue
            detail = checked.detail.get("format_problem") or checked.detail.get("duplicate_of")
            if detail:
                reasons = [f"{r}: {detail}" if i == 0 else r for i, r in enumerate(reasons)]
            rejected.append(
                {
                    "id": sample["id"],
                    "split": "train",
                    "stage": "quality",
                    "reasons": reasons,
                    "sample": sample,
                }
            )
        write_jsonl(b.path("train"), kept)
        write_jsonl(b.path("rejected"), rejected)
        atomic_write_json(b.path("quality"), result.quality)
        return {"overall": result.report.overall, "flags": dict(result.report.flags)}

    return b.stage("quality", inputs, ["train", "rejected", "quality"], compute)


# ------------------------------------------------------------------ report


def _prompt_summary(records: Sequence[dict[str, Any]], stage: str) -> dict[str, Any]:
    chosen = [r for r in records if r["stage"] == stage]
    return {
        "candidates": len(chosen),
        "accepted": sum(r["status"] == "accepted" for r in chosen),
        "rejected": sum(r["status"] == "rejected" for r in chosen),
        "reasons": rep.reason_counts(r["reasons"] for r in chosen),
    }


def _domain_item(index: int, item: Mapping[str, Any]) -> DomainItem:
    return DomainItem(
        id=item["id"],
        task_type=item["task_type"],
        output_format=item["output_format"],
        reference=item["reference"],
        messages=tuple((m["role"], m["content"]) for m in item["messages"]),
        metadata=item["metadata"],
        line=index + 1,
        cluster=item["metadata"]["cluster"],
    )


def _contamination(b: _Build) -> contamination.Contamination:
    """The check a user runs with `quality train.jsonl --against test.jsonl`, on this
    build's outputs."""
    train = [_training_item(i, s) for i, s in enumerate(read_jsonl(b.path("train")))]
    test = [_domain_item(i, t) for i, t in enumerate(read_jsonl(b.path("test")))]
    return contamination.find_contamination(train, test)


def _report(
    b: _Build, summaries: Mapping[str, dict[str, Any]], leaks: contamination.Contamination
) -> BuildReport:
    spec = b.spec
    prompts = read_jsonl(b.path("prompts"))
    labeled = read_jsonl(b.path("labeled"))
    train = read_jsonl(b.path("train"))
    test_labeled = read_jsonl(b.path("test_labeled"))
    test = read_jsonl(b.path("test"))
    rejected = read_jsonl(b.path("rejected"))
    accepted = [p for p in prompts if p["status"] == "accepted"]
    before = [p["text"] for p in accepted if p["stage"] != "evolution"]
    cells = [(t.name, t.output_format) for t in spec.task_types]

    def cover(rows: Iterable[Mapping[str, Any]]) -> CellCoverage:
        return CellCoverage(
            **rep.coverage([(r["task_type"], r["output_format"]) for r in rows], cells)
        )

    # Task types of weight 0 are never asked: only the others must reach each file.
    required = [(t.name, t.output_format) for t in spec.task_types if t.weight > 0]
    missing = {
        "train": rep.missing_types([(s["task_type"], s["output_format"]) for s in train], required),
        "test": rep.missing_types([(i["task_type"], i["output_format"]) for i in test], required)
        if b.test_dialogues
        else [],
    }
    train_ids = {s["metadata"]["dialogue_id"] for s in labeled} | {
        r["sample"]["metadata"]["dialogue_id"] for r in rejected if r["split"] == "train"
    }
    test_ids = {i["metadata"]["dialogue_id"] for i in test} | {
        r["sample"]["metadata"]["dialogue_id"] for r in rejected if r["split"] == "test"
    }
    total = StageCost()
    for cost in b.costs.values():
        total.calls += cost.calls
        total.tokens += cost.tokens
        total.cached += cost.cached
        total.seconds += cost.seconds
    stages: dict[str, Any] = {
        "seeds": {"prompts": sum(p["stage"] == "seed" for p in prompts)},
        "construction": _prompt_summary(prompts, "construction"),
        "evolution": {
            **_prompt_summary(prompts, "evolution"),
            "probed": sum("probe" in p for p in prompts),
            "probe_failed": sum(not p.get("probe", {"ok": True})["ok"] for p in prompts),
        },
        "labeling": {
            **summaries.get("labeling", {}),
            "train_dialogues": len(b.train_dialogues),
            "test_dialogues": len(b.test_dialogues),
            "train_labeled": len(labeled)
            + sum(r["split"] == "train" and r["stage"] == "labeling" for r in rejected),
            "train_unparseable": sum(
                r["split"] == "train" and r["stage"] == "labeling" for r in rejected
            ),
            "test_items": len(test_labeled),
            "test_unparseable": sum(r["split"] == "test" for r in rejected),
            "train_prompts_from": {
                "seed": sum(s["metadata"]["prompt_operator"] == "seed" for s in labeled),
                "generated": sum(s["metadata"]["prompt_operator"] != "seed" for s in labeled),
            },
        },
        "test_review": dict(summaries.get("test_review", {})),
        "quality": {
            **summaries.get("quality", {}),
            "n_in": len(labeled),
            "kept": len(train),
            "rejected": sum(r["stage"] == "quality" for r in rejected),
            "reasons": rep.reason_counts(r["reasons"] for r in rejected if r["stage"] == "quality"),
        },
    }
    for name in STAGES:
        stages[name]["ran"] = b.ran.get(name, False)
        stages[name]["cost"] = b.costs.get(name, StageCost()).as_dict()
    return BuildReport(
        schema_version=BUILD_SCHEMA_VERSION,
        spec=str(spec.path),
        generator=b.options.generator,
        labeler=b.options.labeler or b.options.generator,
        engine=b.options.engine,
        seed=spec.seed,
        stages=stages,
        operators={op: OperatorRow(**row) for op, row in rep.operator_table(prompts).items()},
        diversity=DiversityBlock(
            before_evolution=PromptDiversity(**rep.diversity(before, spec.seed)),
            after_evolution=PromptDiversity(
                **rep.diversity([p["text"] for p in accepted], spec.seed)
            ),
        ),
        coverage=CoverageBlock(
            prompts=cover(p for p in accepted if p["stage"] != "seed"),
            train=cover(train),
            test=cover(test),
            missing=MissingTypes(**missing),
        ),
        warnings=rep.coverage_warnings(missing, len(required)),
        split=SplitReport(
            train_dialogues=sorted(d.id for d in b.train_dialogues),
            test_dialogues=sorted(d.id for d in b.test_dialogues),
            overlap=sorted(train_ids & test_ids),
            near_duplicate_jaccard=label_mod.SPLIT_JACCARD,
            clusters=b.split.n_clusters,
            merged=[MergedCluster(**m) for m in b.split.merged],
        ),
        contamination=leaks.report(FILES["train"], FILES["test"]),
        counts=Counts(
            prompts_accepted=len(accepted),
            train=len(train),
            test=len(test),
            test_silver=sum(i["metadata"]["reference_source"] == "silver" for i in test),
            test_gold=sum(i["metadata"]["reference_source"] == "gold" for i in test),
            rejected=len(rejected),
        ),
        cost=BuildCost(this_run=RunCost(**total.as_dict())),
    )


# ------------------------------------------------------------------ entry point


def build(
    spec: BuildSpec,
    options: BuildOptions,
    out: Path,
    *,
    factory: EngineFactory | None = None,
    say: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> BuildResult:
    """Run (or resume) the build of ``spec`` into ``out``; see the module docstring."""
    if factory is None:
        from collapse_eval.engines.registry import make_engine

        def factory(model: str) -> Engine:
            return make_engine(options.engine, model, options.engine_args)

    dialogues = load_dialogues(spec.dialogues)
    split = split_dialogues(dialogues, spec.split.test_fraction, spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    cache = RequestCache(options.cache_dir) if options.use_cache else None
    engines = _Engines(factory, cache)
    b = _Build(spec, options, out, engines, _State(out), say, split, sha256_file(spec.dialogues))
    b.progress = progress or QuietProgress()
    try:
        summaries = {}
        _construction(b)
        _evolution(b)
        summaries["labeling"] = _labeling(b)
        summaries["test_review"] = _test_review(b)
        summaries["quality"] = _quality(b)
    finally:
        engines.close()
        if cache is not None:
            cache.close()
    leaks = _contamination(b)
    typed = _report(b, summaries, leaks)
    if typed.split.overlap:
        raise AssertionError(f"dialogues in both splits: {typed.split.overlap}")
    report: dict[str, Any] = to_plain(typed)
    atomic_write_json(b.path("report"), report)
    if leaks.n_contaminated:
        first = leaks.leaks[0]
        raise CollapseEvalError(
            f"{b.path('test')}: {leaks.n_contaminated} test item(s) near-duplicate training "
            f"samples although the split keeps near-identical dialogues on one side (first: "
            f"{first.test_id} ~ {first.train_id}, {first.matched} Jaccard "
            f"{first.similarity:.2f}); the pairs are in {b.path('report')} under "
            "'contamination'. This is a bug: please report it with that file."
        )
    for warning in typed.warnings:
        say(f"warning: {warning}")
    if spec.require_coverage and typed.warnings:
        raise rep.CoverageError(
            f"{spec.path}: require_coverage: {'; '.join(typed.warnings)}. The files are "
            f"written ({out / FILES['report']}); give the missing task types clearer seed "
            "instructions or more dialogues, or drop require_coverage to accept the build."
        )
    return BuildResult(out, report)
