"""Graded-quality domain training sets for the demo's quality -> performance study.

``graded_training_set(level)`` corrupts a deterministic share ``level`` of the demo's clean
domain training split, cycling through three defects that the quality rules detect and
that hurt a model trained on them:

- ``empty``: the response is the empty string (flagged ``empty_response``);
- ``malformed``: JSON targets lose their closing brace, one-sentence summaries are cut off
  before the end, every other target opens a code fence it never closes (``truncated``,
  JSON also ``invalid_format``);
- ``duplicate``: the sample is replaced by a copy of a clean sample (prompt and response;
  flagged ``duplicate``), so the set holds fewer distinct examples.

The corrupted samples of a level are a prefix of one seeded order, so a higher level
corrupts every sample a lower level does, plus more. ``score_graded_sets`` scores each set
with the rule and dataset stages of the quality pipeline (no model needed).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.demo import data

__all__ = [
    "DEFECT_KINDS",
    "GRADED_SEED",
    "GradedSet",
    "defect_counts",
    "graded_name",
    "graded_training_set",
    "score_graded_sets",
    "write_graded_set",
]

DEFECT_KINDS = ("empty", "malformed", "duplicate")
GRADED_SEED = 5005


def graded_name(level: float) -> str:
    """Checkpoint / directory name of a graded candidate: ``graded-25`` for 0.25."""
    return f"graded-{round(level * 100):02d}"


def defect_counts(n: int, level: float) -> dict[str, int]:
    """How many samples of each defect kind a set of ``n`` samples gets at ``level``."""
    k = round(level * n)
    return {kind: len(range(i, k, len(DEFECT_KINDS))) for i, kind in enumerate(DEFECT_KINDS)}


def _malformed(sample: dict[str, Any]) -> str:
    response = str(sample["response"])
    if sample.get("output_format") == "json":
        return response.rstrip().removesuffix("}")
    if sample.get("output_format") == "free_text":
        return " ".join(response.split()[:-2])
    return "```\n" + response


def graded_training_set(
    level: float, samples: Sequence[dict[str, Any]] | None = None, *, seed: int = GRADED_SEED
) -> list[dict[str, Any]]:
    """The clean training split with a share ``level`` (0 to 0.75) of its samples corrupted.

    Sample ids and order are kept; each corrupted sample carries ``metadata.defect``.
    """
    if not 0.0 <= level <= 0.75:
        raise ValueError(f"level must be between 0 and 0.75, got {level}")
    clean = [dict(s) for s in (samples if samples is not None else data.domain_train_set())]
    order = list(range(len(clean)))
    random.Random(seed).shuffle(order)
    out = [dict(s) for s in clean]
    k = round(level * len(clean))
    # Duplicate sources come from the end of the order: never corrupted at level <= 0.75.
    sources = iter(reversed(order))
    for position, index in enumerate(order[:k]):
        kind = DEFECT_KINDS[position % len(DEFECT_KINDS)]
        if kind == "empty":
            out[index]["response"] = ""
        elif kind == "malformed":
            out[index]["response"] = _malformed(clean[index])
        else:
            source = clean[next(sources)]
            copy = {key: value for key, value in source.items() if key != "id"}
            out[index] = {"id": clean[index]["id"], **copy}
        out[index]["metadata"] = {**out[index].get("metadata", {}), "defect": kind}
    return out


def write_graded_set(path: Path, samples: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class GradedSet:
    """A scored graded training set: where it and its quality.json were written."""

    name: str
    level: float
    train: Path
    quality_dir: Path
    overall: float


def score_graded_sets(levels: Sequence[float], out_dir: Path) -> list[GradedSet]:
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
                overall=float(result.quality["overall"]),
            )
        )
    return scored
