"""The numbers of build.json: acceptance per operator, prompt diversity before and after
evolution, coverage of task types x formats (and the task types a split misses)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from collapse_eval.databuild.screen import rouge_l
from collapse_eval.errors import EXIT_GATE_FAILED, CollapseEvalError
from collapse_eval.quality.dataset_level import distinct_n

__all__ = [
    "PAIR_SAMPLE",
    "CoverageError",
    "operator_table",
    "diversity",
    "coverage",
    "coverage_warnings",
    "missing_types",
    "reason_counts",
]

# Prompts drawn (seeded) for the mean pairwise ROUGE-L: 60 prompts are 1,770 pairs.
PAIR_SAMPLE = 60


def operator_table(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per operator (construction styles as ``construct:<style>``): candidates, accepted,
    acceptance rate."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        if record["stage"] == "seed":
            continue
        counts[str(record["operator"])]["candidates"] += 1
        counts[str(record["operator"])]["accepted"] += record["status"] == "accepted"
    return {
        op: {
            "candidates": c["candidates"],
            "accepted": c["accepted"],
            "acceptance_rate": round(c["accepted"] / c["candidates"], 4)
            if c["candidates"]
            else None,
        }
        for op, c in sorted(counts.items())
    }


def diversity(texts: Sequence[str], seed: int) -> dict[str, Any]:
    """distinct-1/2 of the prompt texts and their mean pairwise ROUGE-L (a seeded sample)."""
    chosen = list(texts)
    if len(chosen) > PAIR_SAMPLE:
        chosen = random.Random(seed).sample(chosen, PAIR_SAMPLE)
    pairs = list(combinations(chosen, 2))
    mean = sum(rouge_l(a, b) for a, b in pairs) / len(pairs) if pairs else None
    return {
        "n_prompts": len(texts),
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
        "mean_pairwise_rouge_l": None if mean is None else round(mean, 4),
    }


def coverage(cells: Iterable[tuple[str, str]], wanted: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Which (task type, output format) cells of the spec have at least one entry."""
    have = Counter(cells)
    return {
        "covered": sum(1 for cell in wanted if have[cell]),
        "total": len(wanted),
        "per_cell": {f"{t}/{f}": have[(t, f)] for t, f in wanted},
    }


def missing_types(cells: Iterable[tuple[str, str]], wanted: Sequence[tuple[str, str]]) -> list[str]:
    """The task types of ``wanted`` (task type, format) with no entry in ``cells``."""
    have = set(cells)
    return [task for task, fmt in wanted if (task, fmt) not in have]


def coverage_warnings(missing: Mapping[str, Sequence[str]], n_types: int) -> list[str]:
    """One sentence per file that misses task types of the spec."""
    return [
        f"{split}.jsonl covers {n_types - len(names)} of {n_types} task types; missing: "
        f"{', '.join(names)} (no usable label: see the reasons in rejected.jsonl and "
        "labeling_rejected.jsonl)"
        for split, names in missing.items()
        if names
    ]


class CoverageError(CollapseEvalError):
    """The build ran but misses task types its spec requires (``require_coverage``): like
    a failed gate, exit 1; the files and build.json are written for inspection."""

    exit_code = EXIT_GATE_FAILED


def reason_counts(reason_lists: Iterable[Sequence[str]]) -> dict[str, int]:
    """How often each kind of reason occurs (reasons are ``code: detail``)."""
    counts: Counter[str] = Counter()
    for reasons in reason_lists:
        for reason in reasons:
            if reason.startswith("note:"):
                continue
            counts[reason.split(":")[0].strip()] += 1
    return dict(sorted(counts.items()))
