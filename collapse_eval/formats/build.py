"""build.json (docs/formats.md#data-build-output-directory): the report of
`collapse-eval data build`. ``stages`` stays a name -> object map: each stage's summary is
made by that stage and kept in .build-state.json between runs, so its keys are the
stage's (documented in formats.md), not typed here yet."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from collapse_eval.formats.contamination import ContaminationReport

__all__ = ["BuildReport"]

Count = Annotated[int, Meta(ge=0)]
Share = Annotated[float, Meta(ge=0, le=1)]


class OperatorRow(Struct, frozen=True, forbid_unknown_fields=True):
    candidates: Count
    accepted: Count
    acceptance_rate: Share | None


class PromptDiversity(Struct, frozen=True, forbid_unknown_fields=True):
    n_prompts: Count
    distinct_1: Share
    distinct_2: Share
    mean_pairwise_rouge_l: Share | None


class DiversityBlock(Struct, frozen=True, forbid_unknown_fields=True):
    before_evolution: PromptDiversity
    after_evolution: PromptDiversity


class CellCoverage(Struct, frozen=True, forbid_unknown_fields=True):
    """Task type x output format cells of the spec with at least one entry."""

    covered: Count
    total: Count
    per_cell: dict[str, Count]


class MissingTypes(Struct, frozen=True, forbid_unknown_fields=True):
    train: list[str]
    test: list[str]


class CoverageBlock(Struct, frozen=True, forbid_unknown_fields=True):
    prompts: CellCoverage
    train: CellCoverage
    test: CellCoverage
    missing: MissingTypes


class MergedCluster(Struct, frozen=True, forbid_unknown_fields=True):
    """A cluster of several near-identical dialogues, kept on one side."""

    dialogues: list[str]
    side: Literal["train", "test"]
    links: list[tuple[str, str, Share]]


class SplitReport(Struct, frozen=True, forbid_unknown_fields=True):
    train_dialogues: list[str]
    test_dialogues: list[str]
    overlap: list[str]
    near_duplicate_jaccard: Share
    clusters: Count
    merged: list[MergedCluster]


class Counts(Struct, frozen=True, forbid_unknown_fields=True):
    prompts_accepted: Count
    train: Count
    test: Count
    test_silver: Count
    test_gold: Count
    rejected: Count


class RunCost(Struct, frozen=True, forbid_unknown_fields=True):
    calls: Count
    tokens: Count
    cached: Count
    seconds: Annotated[float, Meta(ge=0)]


class BuildCost(Struct, frozen=True, forbid_unknown_fields=True):
    this_run: RunCost


class BuildReport(Struct, frozen=True, forbid_unknown_fields=True):
    """Written by `collapse-eval data build SPEC.yaml`: what was built, with what, and
    what each stage did."""

    schema_version: Literal[1]
    spec: str
    generator: str
    labeler: str
    engine: str | None
    seed: int
    stages: dict[str, dict[str, Any]]
    operators: dict[str, OperatorRow]
    diversity: DiversityBlock
    coverage: CoverageBlock
    warnings: list[str]
    split: SplitReport
    contamination: ContaminationReport
    counts: Counts
    cost: BuildCost
