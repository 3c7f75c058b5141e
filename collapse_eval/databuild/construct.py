"""Stage 1, construction: the generator writes instruction variants for every task type
in different styles and languages, from the spec's seed instructions; a variant is kept
when it states the output format and is novel against the pool (see screen.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collapse_eval.databuild.screen import (
    clean_instruction,
    format_problem,
    length_problem,
    most_similar,
)
from collapse_eval.databuild.spec import BuildSpec, TaskSpec
from collapse_eval.engines.base import Engine, GenRequest

__all__ = [
    "STYLE_WORDING",
    "format_statement",
    "generate_all",
    "prompt_id",
    "seed_records",
    "construct",
    "system_message",
]

STYLE_WORDING = {
    "formal": "a formal, precise",
    "colloquial": "a colloquial, friendly",
    "terse": "a terse (as short as possible)",
    "step_by_step": "a step-by-step (short numbered steps)",
}


def format_statement(task: TaskSpec) -> str:
    """How the answer must look, in words the screening rules recognise."""
    fmt = task.output_format
    if fmt == "label":
        return "exactly one of: " + ", ".join(task.labels)
    if fmt == "json":
        return "a JSON object with the keys " + ", ".join(task.keys)
    return {
        "yes_no": "yes or no",
        "number": "a number",
        "list": "a comma-separated list",
        "span": "a short phrase copied from the dialogue",
        "free_text": "one or two sentences of free text",
    }[fmt]


def system_message(spec: BuildSpec) -> str:
    return (
        f"You write instructions for annotators who label {spec.domain} dialogues "
        f"between a {spec.provider} and a {spec.customer}."
    )


def prompt_id(task: str, parent: str | None, operator: str, generation: int, text: str) -> str:
    """A stable id from the prompt's lineage and text (the same run gives the same ids,
    so prompts.review.jsonl keeps pointing at the right prompts)."""
    key = "\0".join((task, parent or "", operator, str(generation), text))
    return "p-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def generate_all(engine: Engine, requests: Sequence[GenRequest], batch_size: int) -> list[str]:
    """Generate in chunks: each chunk reaches the request cache as soon as it is done, so a
    killed build resumes after the last finished chunk."""
    out: list[str] = []
    for start in range(0, len(requests), batch_size):
        out += engine.generate(list(requests[start : start + batch_size]))
    return out


@dataclass
class Candidate:
    """A prompt candidate before screening (what was asked, for whom)."""

    task: TaskSpec
    parent: str | None
    operator: str
    generation: int
    request: GenRequest


def seed_records(spec: BuildSpec) -> list[dict[str, Any]]:
    """The spec's seed instructions: generation 0, always accepted (they are the fallback
    pool when every generated variant is rejected)."""
    records = []
    for task in spec.task_types:
        for index, text in enumerate(task.seeds):
            problem = format_problem(task, text)
            records.append(
                {
                    "id": f"seed-{task.name}-{index + 1}",
                    "parent": None,
                    "operator": "seed",
                    "generation": 0,
                    "stage": "seed",
                    "text": text,
                    "task_type": task.name,
                    "output_format": task.output_format,
                    "status": "accepted",
                    "reasons": [] if problem is None else [f"note: seed {problem}"],
                }
            )
    return records


def _construction_requests(spec: BuildSpec) -> list[Candidate]:
    c = spec.construction
    out = []
    for task in spec.task_types:
        for s_index, style in enumerate(c.styles):
            for language in spec.languages:
                for k in range(c.variants_per_style):
                    seed_index = (s_index + k) % len(task.seeds)
                    variant = f" Write variant {k + 1}, worded differently." if k else ""
                    user = (
                        f"Task: {task.description}.\n"
                        f"The annotator's answer must be {format_statement(task)}.\n"
                        f"Example instruction: {task.seeds[seed_index]}\n\n"
                        f"Write a new instruction for the same task in {STYLE_WORDING[style]} "
                        f"style, in {language}. It must state the answer format.{variant} "
                        "Reply with the instruction only."
                    )
                    request = GenRequest(
                        messages=(("system", system_message(spec)), ("user", user)),
                        max_tokens=c.max_tokens,
                    )
                    operator = f"construct:{style}" + (
                        f":{language}" if len(spec.languages) > 1 else ""
                    )
                    parent = f"seed-{task.name}-{seed_index + 1}"
                    out.append(Candidate(task, parent, operator, 0, request))
    return out


def screen_candidate(
    candidate: Candidate,
    raw: str,
    pool: list[tuple[str, str]],
    threshold: float,
    max_words: int,
    stage: str,
) -> dict[str, Any]:
    """One screened prompt record; ``pool`` (id, text) of its task type grows when accepted."""
    text = clean_instruction(raw)
    task = candidate.task
    pid = prompt_id(task.name, candidate.parent, candidate.operator, candidate.generation, text)
    reasons = []
    for code, problem in (
        ("length", length_problem(text, max_words)),
        ("format", format_problem(task, text)),
    ):
        if problem is not None:
            reasons.append(f"{code}: {problem}")
    similar = most_similar(text, pool)
    if similar.score >= threshold:
        reasons.append(f"novelty: ROUGE-L {similar.score:.2f} to {similar.id}")
    record = {
        "id": pid,
        "parent": candidate.parent,
        "operator": candidate.operator,
        "generation": candidate.generation,
        "stage": stage,
        "text": text,
        "task_type": task.name,
        "output_format": task.output_format,
        "status": "rejected" if reasons else "accepted",
        "reasons": reasons,
        "most_similar": {"id": similar.id, "rouge_l": round(similar.score, 4)},
        "raw": raw,
    }
    if not reasons:
        pool.append((pid, text))
    return record


def construct(spec: BuildSpec, engine: Engine, batch_size: int) -> list[dict[str, Any]]:
    """Seeds plus every construction candidate, screened, in a deterministic order."""
    records = seed_records(spec)
    candidates = _construction_requests(spec)
    raws = generate_all(engine, [c.request for c in candidates], batch_size)
    pools: dict[str, list[tuple[str, str]]] = {t.name: [] for t in spec.task_types}
    for record in records:
        pools[record["task_type"]].append((record["id"], record["text"]))
    for candidate, raw in zip(candidates, raws, strict=True):
        records.append(
            screen_candidate(
                candidate,
                raw,
                pools[candidate.task.name],
                spec.construction.novelty_threshold,
                max_words=200,
                stage="construction",
            )
        )
    return records
