"""Stage 1, construction: the generator writes instruction variants for every task type
in different styles and languages, from the spec's seed instructions; a variant is kept
when it passes the screening (format statement, length, language, no echo of the request,
no stated answer, novelty against the pool: see screen.py)."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collapse_eval.databuild.languages import ENGLISH, Language, by_name, detect_language
from collapse_eval.databuild.screen import (
    clean_instruction,
    echo_problem,
    format_problem,
    invented_answer,
    language_problem,
    length_problem,
    most_similar,
)
from collapse_eval.databuild.spec import BuildSpec, TaskSpec
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.progress import Progress, QuietProgress

__all__ = [
    "STYLE_WORDING",
    "format_statement",
    "generate_all",
    "prompt_id",
    "seed_records",
    "construct",
    "system_message",
]

# The construction request (English: small instruct models follow English requests best;
# the prompt's own language is named, with its format statement to copy).
CONSTRUCTION_TEMPLATE = (
    "Task: {description}.\n"
    "The annotator's answer must be {fmt}.\n"
    "Example instruction: {example}\n\n"
    "Write a new instruction for the same task in {style} style, in {language}. "
    "It must state the answer format.{variant} Reply with the instruction only."
)
VARIANT_WORDING = " Write variant {k}, worded differently."
SYSTEM_TEMPLATE = (
    "You write instructions for annotators who label {domain} dialogues "
    "between a {provider} and a {customer}."
)

STYLE_WORDING = {
    "formal": "a formal, precise",
    "colloquial": "a colloquial, friendly",
    "terse": "a terse (as short as possible)",
    "step_by_step": "a step-by-step (short numbered steps)",
}


def format_statement(task: TaskSpec, language: Language = ENGLISH) -> str:
    """How the answer must look, in words the screening rules recognise."""
    return language.format_statement(task.output_format, task.labels or task.keys)


def request_statement(task: TaskSpec, language: Language) -> str:
    """The format statement of a request: English, with the target language's wording
    to copy when the prompt is to be written in another language."""
    english = format_statement(task)
    if language == ENGLISH:
        return english
    return f"{english} (in {language.name}: {format_statement(task, language)})"


def fixed_parts(*templates: str) -> tuple[str, ...]:
    """The literal text of templates, between their placeholders (what an echo repeats)."""
    return tuple(
        literal
        for template in templates
        for literal, *_ in string.Formatter().parse(template)
        if literal.strip()
    )


def system_message(spec: BuildSpec) -> str:
    return SYSTEM_TEMPLATE.format(
        domain=spec.domain, provider=spec.provider, customer=spec.customer
    )


def prompt_id(task: str, parent: str | None, operator: str, generation: int, text: str) -> str:
    """A stable id from the prompt's lineage and text (the same run gives the same ids,
    so prompts.review.jsonl keeps pointing at the right prompts)."""
    key = "\0".join((task, parent or "", operator, str(generation), text))
    return "p-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def generate_all(
    engine: Engine,
    requests: Sequence[GenRequest],
    batch_size: int,
    progress: Progress | None = None,
    what: str = "requests",
) -> list[str]:
    """Generate in chunks: each chunk reaches the request cache as soon as it is done, so a
    killed build resumes after the last finished chunk; ``progress`` counts the requests."""
    out: list[str] = []
    if not requests:
        return out
    with (progress or QuietProgress()).bar(what, len(requests)) as bar:
        for start in range(0, len(requests), batch_size):
            chunk = list(requests[start : start + batch_size])
            out += engine.generate(chunk)
            bar.advance(len(chunk))
    return out


@dataclass
class Candidate:
    """A prompt candidate before screening (what was asked, for whom)."""

    task: TaskSpec
    parent: str | None
    operator: str
    generation: int
    request: GenRequest
    language: Language = ENGLISH  # the language the prompt must be written in
    template: tuple[str, ...] = ()  # the request's fixed wording (see echo_problem)


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
                    "language": detect_language(text).name,
                    "status": "accepted",
                    "reasons": [] if problem is None else [f"note: seed {problem}"],
                }
            )
    return records


def _construction_requests(spec: BuildSpec) -> list[Candidate]:
    c = spec.construction
    template = fixed_parts(CONSTRUCTION_TEMPLATE, VARIANT_WORDING, SYSTEM_TEMPLATE)
    out = []
    for task in spec.task_types:
        for s_index, style in enumerate(c.styles):
            for language in map(by_name, spec.languages):
                for k in range(c.variants_per_style):
                    seed_index = (s_index + k) % len(task.seeds)
                    user = CONSTRUCTION_TEMPLATE.format(
                        description=task.description,
                        fmt=request_statement(task, language),
                        example=task.seeds[seed_index],
                        style=STYLE_WORDING[style],
                        language=language.name,
                        variant=VARIANT_WORDING.format(k=k + 1) if k else "",
                    )
                    request = GenRequest(
                        messages=(("system", system_message(spec)), ("user", user)),
                        max_tokens=c.max_tokens,
                    )
                    operator = f"construct:{style}" + (
                        f":{language.name}" if len(spec.languages) > 1 else ""
                    )
                    parent = f"seed-{task.name}-{seed_index + 1}"
                    out.append(Candidate(task, parent, operator, 0, request, language, template))
    return out


def screen_candidate(
    candidate: Candidate,
    raw: str,
    pool: list[tuple[str, str]],
    threshold: float,
    max_words: int,
    stage: str,
    base_length: int = 0,
) -> dict[str, Any]:
    """One screened prompt record; ``pool`` (id, text) of its task type grows when accepted.
    At most ``base_length`` (a parent's length, in its language's unit) plus ``max_words``
    words."""
    text = clean_instruction(raw)
    task = candidate.task
    pid = prompt_id(task.name, candidate.parent, candidate.operator, candidate.generation, text)
    reasons = []
    for code, problem in (
        ("length", length_problem(text, max_words, base_length)),
        ("format", format_problem(task, text)),
        ("language", language_problem(text, candidate.language)),
        ("echo", echo_problem(text, candidate.template)),
        ("invented_answer", invented_answer(task, text)),
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
        "language": candidate.language.name,
        "status": "rejected" if reasons else "accepted",
        "reasons": reasons,
        "most_similar": {"id": similar.id, "rouge_l": round(similar.score, 4)},
        "raw": raw,
    }
    if not reasons:
        pool.append((pid, text))
    return record


def construct(
    spec: BuildSpec, engine: Engine, batch_size: int, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Seeds plus every construction candidate, screened, in a deterministic order."""
    records = seed_records(spec)
    candidates = _construction_requests(spec)
    requests = [c.request for c in candidates]
    raws = generate_all(engine, requests, batch_size, progress, "construction: prompt variants")
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
