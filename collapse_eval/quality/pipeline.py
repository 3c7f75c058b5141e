"""The quality cascade: rules -> dataset level -> model-based -> LLM judge, cheapest first.

Each per-sample stage runs only on the samples the previous stages passed (no hard
flag). The result is the content of ``quality.json`` plus one record per sample; the
report module writes them.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from collapse_eval.cache import RequestCache
from collapse_eval.cost import StageCost, Timer, count_and_cache
from collapse_eval.domain.dataset import TrainingItem, load_training_set
from collapse_eval.engines.base import Engine
from collapse_eval.formats import to_plain
from collapse_eval.formats.quality import (
    Breakdown,
    ContextReuse,
    DatasetStats,
    Ifd,
    JudgeStage,
    ModelStage,
    QualityReport,
    RulesStage,
    StageCostJson,
    Stages,
)
from collapse_eval.quality import dataset_level, judge, model_based, rules

__all__ = [
    "QUALITY_SCHEMA_VERSION",
    "WEIGHTS",
    "SAMPLE_DIMENSIONS",
    "DATASET_DIMENSIONS",
    "ALL_FLAGS",
    "QualityResult",
    "assess",
    "assess_file",
]

QUALITY_SCHEMA_VERSION: Final = 1

# Weights of the overall score (renormalised over the dimensions that were computed: without
# --model and --judge, the rule and dataset dimensions share the whole weight).
WEIGHTS: dict[str, float] = {
    "format": 0.25,
    "completeness": 0.15,
    "uniqueness": 0.15,
    "fidelity": 0.10,
    "balance": 0.05,
    "diversity": 0.05,
    "instruction_following": 0.10,
    "judge_accuracy": 0.05,
    "judge_relevance": 0.05,
    "judge_faithfulness": 0.05,
}
DATASET_DIMENSIONS = ("balance", "diversity")
SAMPLE_DIMENSIONS = tuple(d for d in WEIGHTS if d not in DATASET_DIMENSIONS)
MODEL_FLAGS = ("ifd_high", "ppl_high")
JUDGE_FLAGS = ("judge_low", "judge_unparseable")
ALL_FLAGS = rules.HARD_FLAGS + rules.SOFT_FLAGS + MODEL_FLAGS + JUDGE_FLAGS
# Flags that stop a sample at its stage (and keep it out of --keep-out). The model flags
# (ifd_high, ppl_high) are soft: IFD is a score, not a reason to drop (a weak scoring
# model flags half of a good set).
HARD_FLAGS = frozenset(rules.HARD_FLAGS)
NO_GROUP = "(none)"


@dataclass
class SampleQuality:
    """Everything the cascade found about one sample."""

    item: TrainingItem
    flags: list[str]
    dimensions: dict[str, float]
    detail: dict[str, Any] = field(default_factory=dict)
    stage: str = "rules"

    @property
    def hard(self) -> bool:
        return any(f in HARD_FLAGS for f in self.flags)

    @property
    def score(self) -> float:
        return weighted_mean(self.dimensions)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.item.id,
            "line": self.item.line,
            "task_type": self.item.task_type,
            "output_format": self.item.output_format,
            "score": round(self.score, 6),
            "hard_flag": self.hard,
            "flags": list(self.flags),
            "stage": self.stage,
            "dimensions": {k: round(v, 6) for k, v in self.dimensions.items()},
            **self.detail,
        }


@dataclass
class QualityResult:
    report: QualityReport
    samples: list[SampleQuality]

    @property
    def quality(self) -> dict[str, Any]:
        """quality.json's content as plain JSON values (what the file holds)."""
        plain: dict[str, Any] = to_plain(self.report)
        return plain


def weighted_mean(values: Mapping[str, float]) -> float:
    """Mean of ``values`` weighted by WEIGHTS, renormalised over the names present."""
    total = sum(WEIGHTS[k] for k in values if k in WEIGHTS)
    if total == 0:
        return 0.0
    return sum(WEIGHTS[k] * v for k, v in values.items() if k in WEIGHTS) / total


# ------------------------------------------------------------------ stages


def _rule_stage(
    items: Sequence[TrainingItem], contexts: Sequence[rules.SampleContext | None], cost: StageCost
) -> list[SampleQuality]:
    with Timer(cost):
        results = rules.run_rules(items, contexts)
    samples = []
    for item, result in zip(items, results, strict=True):
        detail: dict[str, Any] = {"length_tokens": result.length_tokens}
        for name in ("length_z", "format_problem", "duplicate_of"):
            value = getattr(result, name)
            if value is not None:
                detail[name] = value
        samples.append(SampleQuality(item, list(result.flags), dict(result.scores), detail))
    return samples


def _model_stage(
    samples: Sequence[SampleQuality], engine: Engine, cache: RequestCache | None, cost: StageCost
) -> None:
    todo = [s for s in samples if not s.hard]
    with Timer(cost):
        wrapped = count_and_cache(engine, cache, cost)
        items = [s.item for s in todo]
        scores = model_based.score_with_model(items, wrapped.outer, wrapped.counting.count_tokens)
        flags = model_based.model_flags(items, scores)
    cost.cached += wrapped.hits
    for sample, score, extra in zip(todo, scores, flags, strict=True):
        sample.stage = "model"
        sample.detail.update(
            ifd=_round(score.ifd),
            nll=_round(score.nll),
            ppl=_round(score.ppl),
            response_tokens=score.n_tokens,
        )
        if score.instruction_following is not None:
            sample.dimensions["instruction_following"] = score.instruction_following
        sample.flags += extra
    percentiles = model_based.ifd_percentiles([s.detail.get("ifd") for s in todo])
    for sample, percentile in zip(todo, percentiles, strict=True):
        sample.detail["ifd_percentile"] = percentile


def _judge_stage(
    samples: Sequence[SampleQuality],
    engine: Engine,
    cache: RequestCache | None,
    cost: StageCost,
    sample_size: int | None,
    seed: int,
) -> int:
    """Judge the samples without a hard flag (or a seeded sample of them)."""
    todo = [s for s in samples if not s.hard]
    if sample_size is not None and sample_size < len(todo):
        picked = sorted(random.Random(seed).sample(range(len(todo)), sample_size))
        todo = [todo[i] for i in picked]
    with Timer(cost):
        wrapped = count_and_cache(engine, cache, cost)
        verdicts = judge.run_judge([s.item for s in todo], wrapped.outer)
    cost.cached += wrapped.hits
    for sample, verdict in zip(todo, verdicts, strict=True):
        sample.stage = "judge"
        if verdict.scores is None:
            sample.flags.append("judge_unparseable")
            sample.detail["judge"] = {"unparseable": True, "raw": verdict.raw[:500]}
            continue
        sample.detail["judge"] = {**verdict.scores, "rationale": verdict.rationale}
        sample.dimensions.update(verdict.dimension_scores())
        if min(verdict.scores.values()) <= judge.JUDGE_LOW:
            sample.flags.append("judge_low")
    return len(todo)


def _outside_context(item: TrainingItem, context: rules.SampleContext | None) -> str:
    prompt = rules.prompt_text(item)
    return prompt if context is None else context.outside(prompt)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# ------------------------------------------------------------------ aggregation


def _dimension_means(samples: Iterable[SampleQuality]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        for name, value in sample.dimensions.items():
            values[name].append(value)
    return {
        name: round(sum(values[name]) / len(values[name]), 6)
        for name in SAMPLE_DIMENSIONS
        if values.get(name)
    }


def _flag_counts(samples: Iterable[SampleQuality], all_reasons: bool) -> dict[str, int]:
    counts = Counter(flag for s in samples for flag in s.flags)
    if not all_reasons:
        return dict(sorted(counts.items()))
    return {reason: counts.get(reason, 0) for reason in ALL_FLAGS}


def _ifd(samples: Sequence[SampleQuality]) -> Ifd | msgspec.UnsetType:
    """The IFD summary when the model stage scored any of ``samples``, else UNSET."""
    ifds = [s.detail.get("ifd") for s in samples]
    if all(v is None for v in ifds):
        return msgspec.UNSET
    return Ifd(**model_based.ifd_summary(ifds))  # type: ignore[arg-type]


def _breakdown(samples: Sequence[SampleQuality], key: str) -> dict[str, Breakdown]:
    groups: dict[str, list[SampleQuality]] = defaultdict(list)
    for sample in samples:
        groups[getattr(sample.item, key) or NO_GROUP].append(sample)
    return {
        name: Breakdown(
            n=len(group),
            dimensions=_dimension_means(group),
            score=round(sum(s.score for s in group) / len(group), 6),
            flags=_flag_counts(group, all_reasons=False),
            ifd=_ifd(group),
        )
        for name, group in sorted(groups.items())
    }


def _thresholds() -> dict[str, float]:
    return {
        "label_min_count": rules.LABEL_MIN_COUNT,
        "length_robust_z_max": rules.LENGTH_Z_MAX,
        "length_min_group": rules.LENGTH_MIN_GROUP,
        "near_duplicate_jaccard": rules.NEAR_DUP_THRESHOLD,
        "prompt_near_duplicate_jaccard": rules.PROMPT_NEAR_DUP_THRESHOLD,
        "shingle_size": rules.SHINGLE_SIZE,
        "context_min_tokens": rules.CONTEXT_MIN_TOKENS,
        "minhash_num_perm": rules.NUM_PERM,
        "copy_min_tokens": rules.COPY_MIN_TOKENS,
        "copy_share": rules.COPY_SHARE,
        "truncation_min_tokens": rules.TRUNCATION_MIN_TOKENS,
        "script_share_gap": rules.SCRIPT_SHARE_GAP,
        "ifd_max": model_based.IFD_MAX,
        "nll_robust_z_max": model_based.NLL_Z_MAX,
        "judge_low": judge.JUDGE_LOW,
    }


# ------------------------------------------------------------------ entry points


def assess(
    items: Sequence[TrainingItem],
    *,
    model: Engine | None = None,
    judge_engine: Engine | None = None,
    cache: RequestCache | None = None,
    judge_sample: int | None = None,
    seed: int = 0,
    source: str | None = None,
) -> QualityResult:
    """Run the cascade over ``items``; engines are used through ``cache`` when given."""
    costs = {name: StageCost() for name in ("rules", "dataset", "model", "judge")}
    with Timer(costs["rules"]):
        contexts = rules.sample_contexts(items)
    samples = _rule_stage(items, contexts, costs["rules"])
    rules_stage = RulesStage(n_in=len(samples), n_passed=sum(not s.hard for s in samples))
    with Timer(costs["dataset"]):
        dataset = dataset_level.dataset_stats(
            [i.task_type or NO_GROUP for i in items],
            [i.output_format or NO_GROUP for i in items],
            # prompt diversity on what differs: a shared dialogue is not diversity
            [_outside_context(i, c) for i, c in zip(items, contexts, strict=True)],
            [rules.response_text(i) for i in items],
            seed,
        )
    if model is None:
        model_stage = ModelStage(ran=False, note="skipped: no --model given")
    else:
        _model_stage(samples, model, cache, costs["model"])
        model_stage = ModelStage(
            ran=True,
            model=model.model_name,
            n_in=rules_stage.n_passed,
            n_passed=sum(not s.hard for s in samples),
        )
    if judge_engine is None:
        judge_stage = JudgeStage(ran=False, note="skipped: no --judge given")
    else:
        n_judged = _judge_stage(samples, judge_engine, cache, costs["judge"], judge_sample, seed)
        judge_stage = JudgeStage(
            ran=True,
            model=judge_engine.model_name,
            n_judged=n_judged,
            unparseable=sum("judge_unparseable" in s.flags for s in samples),
        )
    stages = Stages(rules=rules_stage, model=model_stage, judge=judge_stage)
    report = _report(samples, dataset, rules.context_reuse(contexts), stages, costs, source)
    return QualityResult(report, samples)


def _report(
    samples: Sequence[SampleQuality],
    dataset: Mapping[str, Any],
    context_reuse: Mapping[str, Any],
    stages: Stages,
    costs: Mapping[str, StageCost],
    source: str | None,
) -> QualityReport:
    """quality.json's content from what the stages found."""
    dimensions = _dimension_means(samples)
    dimensions.update({name: dataset[name] for name in DATASET_DIMENSIONS})
    return QualityReport(
        schema_version=QUALITY_SCHEMA_VERSION,
        source=source,
        n_samples=len(samples),
        overall=round(weighted_mean(dimensions), 6),
        weights=dict(WEIGHTS),
        dimensions=dimensions,
        by_task_type=_breakdown(samples, "task_type"),
        by_output_format=_breakdown(samples, "output_format"),
        flags=_flag_counts(samples, all_reasons=True),
        n_hard_flagged=sum(s.hard for s in samples),
        dataset=DatasetStats(**dataset),
        context_reuse=ContextReuse(**context_reuse),
        stages=stages,
        thresholds=_thresholds(),
        cost={name: StageCostJson(**cost.as_dict()) for name, cost in costs.items()},
        ifd=_ifd(samples),
    )


def assess_file(path: str | Path, **kwargs: Any) -> QualityResult:
    """Load (and validate: bad lines raise InputErrors, exit 2) a training set and assess it.

    Empty responses are loaded and flagged ``empty_response``, not refused."""
    items = load_training_set(path, allow_empty_response=True)
    return assess(items, source=str(path), **kwargs)
