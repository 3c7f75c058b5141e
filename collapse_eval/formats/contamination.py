"""contamination.json (docs/formats.md#contaminationjson), also build.json's
``contamination``: the test items of a domain test set that near-duplicate a training
sample."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

__all__ = ["ContaminationPair", "ContaminationReport", "ContaminationThresholds", "TaskTypeLeaks"]

Count = Annotated[int, Meta(ge=0)]
Jaccard = Annotated[float, Meta(ge=0, le=1)]


class ContaminationThresholds(Struct, frozen=True, forbid_unknown_fields=True):
    """Jaccard similarity at or above which contexts, or whole prompts, are near-identical;
    the shortest shared text that counts as a context; words per shingle; MinHash size."""

    context_jaccard: Jaccard
    prompt_jaccard: Jaccard
    context_min_tokens: Annotated[int, Meta(ge=1)]
    shingle_size: Annotated[int, Meta(ge=1)]
    minhash_num_perm: Annotated[int, Meta(ge=1)]


class TaskTypeLeaks(Struct, frozen=True, forbid_unknown_fields=True):
    """One test task type: its test items, the contaminated ones, and of those how many
    matched by context and by prompt."""

    n_test: Count
    contaminated: Count
    context: Count
    prompt: Count


class ContaminationPair(Struct, frozen=True, forbid_unknown_fields=True):
    """A contaminated test item and the training sample it near-duplicates most."""

    test_id: str
    train_id: str
    task_type: str
    matched: Literal["context", "prompt"]
    similarity: Jaccard
    train_matches: Annotated[int, Meta(ge=1)]


class ContaminationReport(Struct, frozen=True, forbid_unknown_fields=True):
    """Written by `collapse-eval quality TRAIN.jsonl --against TEST.jsonl`: the test items
    that near-duplicate a training sample, one pair each, in test-file order."""

    schema_version: Literal[1]
    train: str | None
    test: str | None
    n_train: Count
    n_test: Count
    n_contaminated: Count
    thresholds: ContaminationThresholds
    by_task_type: dict[str, TaskTypeLeaks]
    pairs: list[ContaminationPair]
