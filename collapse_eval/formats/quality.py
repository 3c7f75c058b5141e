"""quality.json (docs/formats.md#qualityjson): what `collapse-eval quality` and the data
build's quality stage write, and the part of it other commands read back.

``QualityReport`` is the whole file, field for field in the order it is written (fields
that a file may lack are ``UNSET`` and left out). ``QualityScores`` is what `correlate`
reads: the overall score and the dimensions; other keys are not its business, so a
hand-written ``{"schema_version": 1, "overall": ..., "dimensions": {...}}`` still counts.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "Breakdown",
    "ContextReuse",
    "DatasetStats",
    "Ifd",
    "KeepOut",
    "QualityReport",
    "QualityScores",
    "StageCostJson",
    "Stages",
]

Unit = Annotated[float, Meta(ge=0, le=1)]
Count = Annotated[int, Meta(ge=0)]
SAMPLE_DIMENSIONS_REQUIRED = ["format", "completeness", "uniqueness", "fidelity"]
DATASET_DIMENSIONS_REQUIRED = ["balance", "diversity"]
FLAGS_REQUIRED = [
    "invalid_format",
    "empty_response",
    "duplicate",
    "near_duplicate",
    "truncated",
    "copies_prompt",
]
CONTEXT_SOURCES = [
    "metadata.dialogue_id",
    "metadata.cluster",
    "metadata.context_id",
    "common_prefix",
    "common_suffix",
    "shared_block",
]


class Ifd(Struct, frozen=True, forbid_unknown_fields=True):
    """Only with --model: IFD = L(response | prompt) / L(response) over the samples the
    model stage scored. Lower is easier to follow (instruction_following = 1 - IFD);
    IFD-based selection (Cherry LLM, Superfiltering) keeps the highest IFD at most 1 and
    drops those above (n_above_1)."""

    n: Count
    mean: Annotated[float, Meta(ge=0)] | None
    median: Annotated[float, Meta(ge=0)] | None
    n_above_1: Count


class Breakdown(Struct, frozen=True, forbid_unknown_fields=True):
    """One task type's or output format's samples."""

    n: Annotated[int, Meta(ge=1)]
    dimensions: dict[str, Unit]
    score: Unit
    flags: dict[str, Count]
    ifd: Ifd | UnsetType = UNSET


class DatasetStats(Struct, frozen=True, forbid_unknown_fields=True):
    """Dataset-level measures and the balance and diversity dimensions made from them."""

    task_type_entropy: Unit
    output_format_entropy: Unit
    task_type_counts: dict[str, Count]
    output_format_counts: dict[str, Count]
    distinct_1: Unit
    distinct_2: Unit
    prompt_diversity: Unit
    prompt_sample: Count
    balance: Unit
    diversity: Unit


class ContextReuse(Struct, frozen=True, forbid_unknown_fields=True):
    """Information, never a flag: how many samples share a context (the dialogue or
    document several questions ask about), which the near-duplicate rules factor out."""

    n_contexts: Count
    samples_with_context: Count
    samples_per_context_mean: Annotated[float, Meta(ge=0)]
    samples_per_context_max: Count
    found_by: Annotated[
        dict[str, Annotated[int, Meta(ge=1)]],
        Meta(extra_json_schema={"propertyNames": {"enum": CONTEXT_SOURCES}}),
    ]
    min_tokens: Annotated[int, Meta(ge=1)]


class RulesStage(Struct, frozen=True, forbid_unknown_fields=True):
    n_in: Count
    n_passed: Count


class ModelStage(Struct, frozen=True, forbid_unknown_fields=True):
    """The model stage: ``ran`` and a ``note`` when skipped, else the model and counts."""

    ran: bool
    note: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    n_in: Count | UnsetType = UNSET
    n_passed: Count | UnsetType = UNSET


class JudgeStage(Struct, frozen=True, forbid_unknown_fields=True):
    """The judge stage: ``ran`` and a ``note`` when skipped, else the judge and counts."""

    ran: bool
    note: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    n_judged: Count | UnsetType = UNSET
    unparseable: Count | UnsetType = UNSET


class Stages(Struct, frozen=True, forbid_unknown_fields=True):
    rules: RulesStage
    model: ModelStage
    judge: JudgeStage


class StageCostJson(Struct, frozen=True, forbid_unknown_fields=True):
    """Requests sent to an engine (calls; cache hits are ``cached``), their tokens, and
    wall seconds."""

    calls: Count
    tokens: Count
    cached: Count
    seconds: Annotated[float, Meta(ge=0)]


class KeepOut(Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    rejected_path: str
    min_score: Unit
    kept: Count
    rejected: Count


class QualityReport(Struct, frozen=True, forbid_unknown_fields=True):
    """Written by `collapse-eval quality TRAIN.jsonl`. Every score is in 0..1 (higher is
    better). `overall` is the WEIGHTS-weighted mean of `dimensions`, renormalised over the
    dimensions that were computed."""

    schema_version: Literal[1]
    source: Annotated[str | None, Meta(description="The training file assessed.")]
    n_samples: Count
    overall: Unit
    weights: dict[str, Annotated[float, Meta(ge=0)]]
    dimensions: Annotated[
        dict[str, Unit],
        Meta(
            description="Dimension name -> mean over the samples that have it (model and "
            "judge dimensions only over the samples those stages ran on); balance and "
            "diversity are dataset-level.",
            extra_json_schema={
                "required": SAMPLE_DIMENSIONS_REQUIRED + DATASET_DIMENSIONS_REQUIRED
            },
        ),
    ]
    by_task_type: dict[str, Breakdown]
    by_output_format: dict[str, Breakdown]
    flags: Annotated[
        dict[str, Count],
        Meta(
            description="Reason -> number of samples with it. Every repeat after the first "
            "of an exact duplicate counts as duplicate.",
            extra_json_schema={"required": FLAGS_REQUIRED},
        ),
    ]
    n_hard_flagged: Count
    dataset: DatasetStats
    context_reuse: ContextReuse
    stages: Stages
    thresholds: Annotated[
        dict[str, float],
        Meta(description="The thresholds the flags used (name -> value)."),
    ]
    cost: Annotated[
        dict[str, StageCostJson],
        Meta(extra_json_schema={"required": ["rules", "dataset", "model", "judge"]}),
    ]
    ifd: Ifd | UnsetType = UNSET
    keep_out: KeepOut | UnsetType = UNSET


class QualityScores(Struct, frozen=True):
    """What a consumer of quality.json reads: the overall score and the dimensions."""

    overall: Unit
    dimensions: dict[str, Unit]
    schema_version: int = 1


QUALITY_SCORES_DECODER = msgspec.json.Decoder(QualityScores)
