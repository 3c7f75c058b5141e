"""Graded-quality domain training sets for the demo's quality -> performance study.

``graded_training_set(k)`` corrupts every sample of the first ``k`` groups of task types
(``TASK_GROUPS``) of the demo's clean domain training split, as when a labeling prompt
breaks for some task types. Each task type has one defect kind, one that the quality
rules detect and that a model trained on it carries into its answers for that task type:

- ``empty``: the response is the empty string (flagged ``empty_response``);
- ``malformed``: JSON targets lose their closing brace, one-sentence summaries are cut off
  before the end, every other target opens a code fence it never closes (``truncated``,
  JSON also ``invalid_format``);
- ``duplicate``: the sample is replaced by a copy of one of ``DUPLICATE_SOURCES`` samples
  of its task type (prompt and response; flagged ``duplicate``), as when a generator
  collapses onto a few outputs.

Why whole task types: spread uniformly over the set, a few percent of empty (or fenced)
answers become the model's greedy answer for every item whose right answer it is unsure
of, so the domain score fell steeply at the first level and then hardly moved (levels 25
to 75 % sat inside each other's noise). Corrupted whole, a task type the model was taught
wrongly scores about zero (its generated answers; its multiple-choice items stay at the
base's level), so each group removes what the model learned for it. The tiny model never
learns three task types even from clean data (span, number and JSON answers: domain
scores near 0), so each of those shares a group with one it does learn.

Why this order. Only the summary is learned steadily (ROUGE-L about 0.7 on every world
seed). The label tasks are answered with about one label per task type, whichever the
fine-tune happened to settle on (``next_action`` scored 0.07 with ``send_listings`` and
0.54 with ``schedule_viewing``, fine-tunes of one base apart), so while a label task is
left clean its score swings from one level to the next by as much as corrupting another
one takes away; corrupted, it stays at its floor. The swingiest ones (``next_action``,
with ``amenities``) therefore go first, and every later step is taken with fewer of them
left to swing; the summary's steady drop of about 8 points comes third, and the last two
levels take the two label tasks the model answers best. With the summary first (the
order before) the last levels were left to near-chance label tasks, and on world seed 2
two of them came out in the wrong order (Spearman +0.83, p = 0.058). The order was
chosen by resampling the per-task-type scores of that order's fine-tunes on world seeds
0 to 3; bench/demo_graded_seeds.py measures each step on world seeds 0 to 4.

A higher level corrupts every sample a lower level does, in the same way, plus more.
``score_graded_sets`` scores each set with the rule and dataset stages of the quality
pipeline (no model needed).
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.demo import data

__all__ = [
    "DEFECT_KINDS",
    "DUPLICATE_SOURCES",
    "GRADED_SEED",
    "TASK_GROUPS",
    "GradedSet",
    "corrupted_share",
    "defect_counts",
    "graded_name",
    "graded_training_set",
    "score_graded_sets",
    "write_graded_set",
]

DEFECT_KINDS = ("empty", "malformed", "duplicate")
GRADED_SEED = 5005
DUPLICATE_SOURCES = 3
# Groups of (task type, defect kind), corrupted in this order (why this order: the module
# docstring). The free-text summary gets ``empty`` (a summary cut short by two words keeps
# most of its ROUGE); a one-line answer behind an unclosed fence leaves only the fence, as
# generation stops at the line end. ``duplicate`` goes to the task types the model does
# not learn anyway: a label task taught from three examples still answers one of their
# labels, often right by chance.
TASK_GROUPS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("next_action", "empty"), ("amenities", "malformed")),
    (("compliance", "malformed"), ("entity_extraction", "duplicate")),
    (("summary", "empty"), ("district", "duplicate")),
    (("satisfaction", "malformed"), ("area", "duplicate")),
    (("intent_classification", "empty"),),
)


def defect_counts(samples: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many samples of each defect kind a graded set holds (``metadata.defect``)."""
    counts = Counter(str(s.get("metadata", {}).get("defect")) for s in samples)
    return {kind: counts[kind] for kind in DEFECT_KINDS}


def _groups(samples: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, str], ...]]:
    """``TASK_GROUPS`` (task types absent from ``samples`` left out), then each task type
    of ``samples`` they do not list as a group of its own, kinds cycling."""
    present = {str(s.get("task_type")) for s in samples}
    groups = [tuple(p for p in group if p[0] in present) for group in TASK_GROUPS]
    listed = {task for group in TASK_GROUPS for task, _ in group}
    others = sorted(present - listed)
    extra = [((t, DEFECT_KINDS[i % len(DEFECT_KINDS)]),) for i, t in enumerate(others)]
    return [g for g in groups if g] + extra


def _corruption_plan(
    samples: Sequence[dict[str, Any]], groups: int, seed: int
) -> tuple[list[tuple[int, str]], dict[str, list[int]]]:
    """(index, kind) of every sample the first ``groups`` groups corrupt, and the indices
    of each ``duplicate`` task type's source samples (kept as they are)."""
    plan = _groups(samples)
    if not 0 <= groups <= len(plan):
        raise ValueError(f"level must be a number of task-type groups, 0 to {len(plan)}")
    rng = random.Random(seed)
    corrupt: list[tuple[int, str]] = []
    sources: dict[str, list[int]] = {}
    for task, kind in (pair for group in plan[:groups] for pair in group):
        indices = [i for i, s in enumerate(samples) if str(s.get("task_type")) == task]
        if kind == "duplicate":
            picked = rng.sample(indices, min(DUPLICATE_SOURCES, len(indices)))
            sources[task] = picked
            indices = [i for i in indices if i not in picked]
        corrupt += [(i, kind) for i in indices]
    return corrupt, sources


def _malformed(sample: dict[str, Any]) -> str:
    response = str(sample["response"])
    if sample.get("output_format") == "json":
        return response.rstrip().removesuffix("}")
    if sample.get("output_format") == "free_text":
        return " ".join(response.split()[:-2])
    return "```\n" + response


def graded_training_set(
    groups: int, samples: Sequence[dict[str, Any]] | None = None, *, seed: int = GRADED_SEED
) -> list[dict[str, Any]]:
    """The clean training split with every sample of the first ``groups`` task-type
    groups corrupted (0: clean; 5: every sample but the duplicates' sources).

    Sample ids and order are kept; each corrupted sample carries ``metadata.defect``.
    """
    clean = [dict(s) for s in (samples if samples is not None else data.domain_train_set())]
    corrupt, sources = _corruption_plan(clean, groups, seed)
    out = [dict(s) for s in clean]
    for position, (index, kind) in enumerate(corrupt):
        if kind == "empty":
            out[index]["response"] = ""
        elif kind == "malformed":
            out[index]["response"] = _malformed(clean[index])
        else:
            pool = sources[str(clean[index].get("task_type"))]
            source = clean[pool[position % len(pool)]]
            copy = {key: value for key, value in source.items() if key != "id"}
            out[index] = {"id": clean[index]["id"], **copy}
        out[index]["metadata"] = {**out[index].get("metadata", {}), "defect": kind}
    return out


@functools.cache
def corrupted_share(groups: int) -> float:
    """The share of the demo's training split that ``groups`` corrupts."""
    clean = data.domain_train_set()
    return len(_corruption_plan(clean, groups, GRADED_SEED)[0]) / len(clean)


def graded_name(groups: int) -> str:
    """Checkpoint / directory name of a graded candidate: its corrupted share in percent
    (``graded-41``: 41 % of the samples corrupted)."""
    return f"graded-{round(corrupted_share(groups) * 100):02d}"


def write_graded_set(path: Path, samples: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class GradedSet:
    """A scored graded training set: where it and its quality.json were written."""

    name: str
    level: int  # task-type groups corrupted
    train: Path
    quality_dir: Path
    overall: float


def score_graded_sets(levels: Sequence[int], out_dir: Path) -> list[GradedSet]:
    """Write each level's training set to ``out_dir/<name>/train.jsonl`` and score it
    (rules + dataset level) into ``out_dir/<name>/quality.json`` (and samples, HTML)."""
    from collapse_eval.quality import assess_file, write_outputs

    scored = []
    for level in levels:
        name = graded_name(level)
        folder = out_dir / name
        train = write_graded_set(folder / "train.jsonl", graded_training_set(level))
        result = assess_file(train)
        write_outputs(result, folder, source=train)
        scored.append(
            GradedSet(
                name=name,
                level=level,
                train=train,
                quality_dir=folder,
                overall=float(result.report.overall),
            )
        )
    return scored
