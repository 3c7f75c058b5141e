"""Labeling: the held-out split by dialogue, weighted random sampling of prompts per
dialogue, labels from the labeler, training samples and domain test items.

Dialogues are split before anything is labeled, by clusters of near-identical text
(MinHash candidates confirmed on the exact Jaccard similarity of word 3-gram shingles), so
no dialogue, nor a copy of it under another id with a word changed, is in both the
training data and the test set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collapse_eval.databuild.construct import generate_all
from collapse_eval.databuild.evolve import label_request
from collapse_eval.databuild.screen import parse_label
from collapse_eval.databuild.spec import BuildSpec, TaskSpec
from collapse_eval.engines.base import Engine
from collapse_eval.errors import InputError, InputErrors
from collapse_eval.progress import Progress
from collapse_eval.quality.contamination import (
    CONTEXT_THRESHOLD,
    Link,
    near_identical_groups,
)
from collapse_eval.records import iter_jsonl

__all__ = [
    "Dialogue",
    "Labeler",
    "SPLIT_JACCARD",
    "Split",
    "load_dialogues",
    "split_dialogues",
    "label_train",
    "label_test",
]


# Dialogues this similar or more (Jaccard of word 3-gram shingles) stay on one side: the
# contamination check's context threshold, so a build's outputs leave it nothing to find.
SPLIT_JACCARD = CONTEXT_THRESHOLD


@dataclass(frozen=True)
class Dialogue:
    id: str
    text: str


@dataclass(frozen=True)
class Labeler:
    """Who wrote the labels: the model as named and its engine fingerprint ("sha256:...").
    ``compare`` reads them from a test item's metadata to tell when a compared model is
    the one that wrote the references."""

    name: str
    fingerprint: str

    def metadata(self) -> dict[str, str]:
        return {"labeler": self.name, "labeler_fingerprint": self.fingerprint}


def load_dialogues(path: Path) -> list[Dialogue]:
    """``{"id": ..., "text": ...}`` per line; every problem reported at once (exit 2)."""
    problems: list[InputError] = []
    dialogues: list[Dialogue] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, problems):
        if not isinstance(obj, dict):
            problems.append(InputError(path, "expected an object {id, text}", line=lineno))
            continue
        extra = sorted(set(obj) - {"id", "text", "metadata"})
        for key in extra:
            problems.append(InputError(path, "unknown field", line=lineno, field=key))
        did, text = obj.get("id"), obj.get("text")
        if not isinstance(did, (str, int)) or isinstance(did, bool) or not str(did).strip():
            problems.append(InputError(path, "must be a non-empty string", line=lineno, field="id"))
            continue
        if not isinstance(text, str) or not text.strip():
            problems.append(
                InputError(path, "must be the dialogue as text", line=lineno, field="text")
            )
            continue
        if str(did) in seen:
            problems.append(
                InputError(
                    path,
                    f"duplicate id {did!r} (first on line {seen[str(did)]})",
                    line=lineno,
                    field="id",
                )
            )
            continue
        seen[str(did)] = lineno
        dialogues.append(Dialogue(str(did), text))
    if not dialogues and not problems:
        problems.append(InputError(path, "no dialogues: the file is empty"))
    if problems:
        raise InputErrors(path, problems)
    return dialogues


@dataclass(frozen=True)
class Split:
    """The dialogues of each side, and the clusters of several dialogues (each kept on
    one side) as build.json records them."""

    train: list[Dialogue]
    test: list[Dialogue]
    merged: list[dict[str, Any]] = field(default_factory=list)
    n_clusters: int = 0


def split_dialogues(dialogues: Sequence[Dialogue], test_fraction: float, seed: int) -> Split:
    """Clusters of near-identical dialogues (Jaccard >= SPLIT_JACCARD) go to one side: a
    seeded permutation of the clusters, ordered by their first dialogue's id (data without
    near-identical dialogues splits as the exact-text grouping before it did)."""
    groups, links = near_identical_groups([d.text for d in dialogues], SPLIT_JACCARD)
    groups.sort(key=lambda g: dialogues[g[0]].id)
    order = np.random.default_rng([seed, 3]).permutation(len(groups))
    n_test = int(round(test_fraction * len(groups)))
    if test_fraction > 0 and len(groups) >= 2:
        n_test = min(max(n_test, 1), len(groups) - 1)
    in_test = {int(i) for i in order[:n_test]}
    return Split(
        train=[dialogues[i] for k, g in enumerate(groups) if k not in in_test for i in g],
        test=[dialogues[i] for k, g in enumerate(groups) if k in in_test for i in g],
        merged=_merged(dialogues, groups, links, in_test),
        n_clusters=len(groups),
    )


def _merged(
    dialogues: Sequence[Dialogue],
    groups: Sequence[Sequence[int]],
    links: Sequence[Link],
    in_test: set[int],
) -> list[dict[str, Any]]:
    """build.json's record of each cluster of several dialogues: ids, side, and the
    near-identical pairs that joined it."""
    group_of = {i: k for k, g in enumerate(groups) for i in g}
    joined: dict[int, list[list[Any]]] = defaultdict(list)
    for link in links:
        joined[group_of[link.a]].append(
            [dialogues[link.a].id, dialogues[link.b].id, link.similarity]
        )
    return [
        {
            "dialogues": [dialogues[i].id for i in g],
            "side": "test" if k in in_test else "train",
            "links": joined[k],
        }
        for k, g in enumerate(groups)
        if len(g) > 1
    ]


def _sample_prompts(
    spec: BuildSpec, pools: Mapping[str, Sequence[dict[str, Any]]], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Weighted random sampling without replacement of task types (spec weights), then one
    prompt of each drawn type uniformly from its pool."""
    tasks = [t for t in spec.task_types if t.weight > 0 and pools.get(t.name)]
    weights = np.array([t.weight for t in tasks], dtype=float)
    k = min(spec.labeling.prompts_per_dialogue, len(tasks))
    drawn = rng.choice(len(tasks), size=k, replace=False, p=weights / weights.sum())
    chosen = []
    for index in sorted(int(i) for i in drawn):
        pool = pools[tasks[index].name]
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def _lineage(prompt: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt_id": prompt["id"],
        "prompt_parent": prompt["parent"],
        "prompt_operator": prompt["operator"],
        "prompt_generation": prompt["generation"],
    }


def _messages(request_messages: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in request_messages]


def label_train(
    spec: BuildSpec,
    engine: Engine,
    labeler: Labeler,
    dialogues: Sequence[Dialogue],
    pools: Mapping[str, Sequence[dict[str, Any]]],
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training samples, rejected entries): one sample per (dialogue, sampled prompt)."""
    rng = np.random.default_rng([spec.seed, 4])
    jobs = [(d, p) for d in dialogues for p in _sample_prompts(spec, pools, rng)]
    requests = [label_request(spec, d.text, p["text"], spec.labeling.max_tokens) for d, p in jobs]
    answers = generate_all(
        engine, requests, spec.labeling.batch_size, progress, "labeling: train labels"
    )
    samples, rejected = [], []
    for n, ((dialogue, prompt), request, answer) in enumerate(
        zip(jobs, requests, answers, strict=True), start=1
    ):
        task = spec.task(prompt["task_type"])
        sample = {
            "id": f"train-{n:05d}",
            "task_type": task.name,
            "output_format": task.output_format,
            "messages": _messages(request.messages or ()),
            "response": answer.strip(),
            "metadata": {
                "cluster": dialogue.id,
                "dialogue_id": dialogue.id,
                **_lineage(prompt),
                **labeler.metadata(),
            },
        }
        _, problem = parse_label(task, answer)
        if problem is not None:
            rejected.append(_reject(sample, "train", "labeling", [f"unparseable_label: {problem}"]))
        else:
            samples.append(sample)
    return samples, rejected


def _reject(sample: dict[str, Any], split: str, stage: str, reasons: list[str]) -> dict[str, Any]:
    return {
        "id": sample["id"],
        "split": split,
        "stage": stage,
        "reasons": reasons,
        "sample": sample,
    }


def _test_prompts(
    spec: BuildSpec, pools: Mapping[str, Sequence[dict[str, Any]]], rng: np.random.Generator
) -> list[tuple[TaskSpec, dict[str, Any]]]:
    out = []
    for task in spec.task_types:
        if task.weight <= 0 or not pools.get(task.name):
            continue
        pool = pools[task.name]
        if spec.split.test_prompts == "seeds":
            seeds = [p for p in pool if p["operator"] == "seed"] or list(pool)
            out.append((task, seeds[0]))
        else:
            out.append((task, pool[int(rng.integers(len(pool)))]))
    return out


def label_test(
    spec: BuildSpec,
    engine: Engine,
    labeler: Labeler,
    dialogues: Sequence[Dialogue],
    pools: Mapping[str, Sequence[dict[str, Any]]],
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(domain test items, rejected entries): every task type on every test dialogue; the
    labeler's answer, read by the format's scorer, is the reference: a silver label, so
    marked (``reference_source``) until a reviewer corrects it."""
    rng = np.random.default_rng([spec.seed, 5])
    jobs = [(d, task, p) for d in dialogues for task, p in _test_prompts(spec, pools, rng)]
    requests = [
        label_request(spec, d.text, p["text"], spec.labeling.max_tokens) for d, _, p in jobs
    ]
    answers = generate_all(
        engine, requests, spec.labeling.batch_size, progress, "labeling: test labels"
    )
    items, rejected = [], []
    for n, ((dialogue, task, prompt), request, answer) in enumerate(
        zip(jobs, requests, answers, strict=True), start=1
    ):
        value, problem = parse_label(task, answer)
        item: dict[str, Any] = {
            "id": f"test-{n:05d}",
            "task_type": task.name,
            "output_format": task.output_format,
            "messages": _messages(request.messages or ()),
            "reference": value,
            "metadata": {
                "cluster": dialogue.id,
                "dialogue_id": dialogue.id,
                **_lineage(prompt),
                "reference_source": "silver",
                **labeler.metadata(),
                "raw_label": answer,
            },
        }
        if problem is not None:
            rejected.append(_reject(item, "test", "labeling", [f"unparseable_label: {problem}"]))
        else:
            items.append(item)
    return items, rejected
