"""Stage 2, evolution: Evol-Instruct style operators rewrite accepted prompts; every
result is screened (format statement intact, added length bounded, novel against the
pool, and, with ``probe``, the generator answers it on a probe dialogue with an output
the domain scorer of the format can read) and recorded with its lineage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from collapse_eval.databuild.construct import (
    SYSTEM_TEMPLATE,
    Candidate,
    fixed_parts,
    format_statement,
    generate_all,
    screen_candidate,
    system_message,
)
from collapse_eval.databuild.languages import ENGLISH, Language, detect_language
from collapse_eval.databuild.screen import parse_label
from collapse_eval.databuild.spec import BuildSpec, TaskSpec
from collapse_eval.domain.scorers import mixed_tokens
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.progress import Progress

__all__ = ["OPERATOR_WORDING", "evolve", "label_request"]

# What each operator asks for; {fmt} is the task's format statement, {limit} the word bound.
OPERATOR_WORDING = {
    "add_constraint": "Rewrite the instruction so that it adds one more constraint the "
    "annotator must respect (for example how to decide an ambiguous case).",
    "explicit_schema": "Rewrite the instruction so that it states the answer format "
    "explicitly and exactly: {fmt}.",
    "add_example": "Rewrite the instruction so that it includes one short example of a "
    "correct answer in the required format ({fmt}).",
    "reason_first": "Rewrite the instruction so that it asks the annotator to check the "
    "evidence in the dialogue before deciding, while the reply itself stays {fmt}.",
    "rephrase_role": "Rewrite the instruction as {role} would write it.",
}
EVOLUTION_TEMPLATE = (
    "Instruction: {parent}\n\n{what} Keep the task ({description}) and the answer format "
    "({fmt}). Add at most {limit}.{language} Reply with the new instruction only."
)
LANGUAGE_WORDING = " Write it in {language}."
ROLE_VIEWS = (
    "a team lead of the {provider}s training a new colleague",
    "a quality auditor checking the {provider}'s work",
    "a service trainer who explains it to a {customer}-support intern",
)


def _operator_request(
    spec: BuildSpec,
    task: TaskSpec,
    parent_text: str,
    operator: str,
    rng: np.random.Generator,
    language: Language = ENGLISH,
) -> GenRequest:
    """The rewrite request; a prompt in another language than English keeps its language
    (the format statement in its wording, and said)."""
    role = ROLE_VIEWS[int(rng.integers(len(ROLE_VIEWS)))].format(
        provider=spec.provider, customer=spec.customer
    )
    fmt = format_statement(task, language)
    user = EVOLUTION_TEMPLATE.format(
        parent=parent_text,
        what=OPERATOR_WORDING[operator].format(fmt=fmt, role=role),
        description=task.description,
        fmt=fmt,
        limit=f"{spec.evolution.max_added_words * language.per_word} {language.unit}",
        language="" if language == ENGLISH else LANGUAGE_WORDING.format(language=language.name),
    )
    return GenRequest(
        messages=(("system", system_message(spec)), ("user", user)),
        max_tokens=spec.evolution.max_tokens,
    )


def _template(operator: str) -> tuple[str, ...]:
    return fixed_parts(
        EVOLUTION_TEMPLATE, OPERATOR_WORDING[operator], LANGUAGE_WORDING, SYSTEM_TEMPLATE
    )


def label_request(spec: BuildSpec, dialogue: str, instruction: str, max_tokens: int) -> GenRequest:
    """The labeling request for one dialogue and one instruction (also the probe, and the
    messages of the training sample)."""
    system = f"You analyse {spec.domain} dialogues between a {spec.provider} and a {spec.customer}."
    return GenRequest(
        messages=(("system", system), ("user", f"{dialogue}\n\n{instruction}")),
        max_tokens=max_tokens,
    )


def _probe(
    spec: BuildSpec,
    engine: Engine,
    records: Sequence[dict[str, Any]],
    probe_dialogue: str,
    batch_size: int,
    progress: Progress | None,
    what: str,
) -> None:
    """Reject accepted records whose probe answer the domain scorer cannot read."""
    todo = [r for r in records if r["status"] == "accepted"]
    requests = [
        label_request(spec, probe_dialogue, r["text"], spec.labeling.max_tokens) for r in todo
    ]
    answers = generate_all(engine, requests, batch_size, progress, what)
    for record, answer in zip(todo, answers, strict=True):
        _, problem = parse_label(spec.task(record["task_type"]), answer)
        record["probe"] = {"answer": answer, "ok": problem is None}
        if problem is not None:
            record["status"] = "rejected"
            record["reasons"].append(f"probe: {problem}")


def evolve(
    spec: BuildSpec,
    engine: Engine,
    stage1: Sequence[dict[str, Any]],
    probe_dialogue: str,
    batch_size: int,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Stage-1 records followed by every evolved candidate of every generation."""
    evo = spec.evolution
    rng = np.random.default_rng([spec.seed, 2])
    records = [dict(r) for r in stage1]
    pools: dict[str, list[tuple[str, str]]] = {t.name: [] for t in spec.task_types}
    for record in records:
        if record["status"] == "accepted":
            pools[record["task_type"]].append((record["id"], record["text"]))
    parents = [r for r in records if r["status"] == "accepted"]
    for generation in range(1, evo.generations + 1):
        candidates: list[Candidate] = []
        parent_lengths: list[int] = []
        for parent in parents:
            task = spec.task(parent["task_type"])
            language = detect_language(parent["text"])
            k = min(evo.per_prompt, len(evo.operators))
            for index in sorted(rng.choice(len(evo.operators), size=k, replace=False)):
                operator = evo.operators[int(index)]
                request = _operator_request(spec, task, parent["text"], operator, rng, language)
                candidates.append(
                    Candidate(
                        task,
                        parent["id"],
                        operator,
                        generation,
                        request,
                        language,
                        _template(operator),
                    )
                )
                parent_lengths.append(len(mixed_tokens(parent["text"])))
        what = f"evolution {generation}/{evo.generations}"
        requests = [c.request for c in candidates]
        raws = generate_all(engine, requests, batch_size, progress, f"{what}: rewrites")
        new = [
            screen_candidate(
                c,
                raw,
                pools[c.task.name],
                evo.novelty_threshold,
                max_words=evo.max_added_words,
                stage="evolution",
                base_length=length,
            )
            for c, raw, length in zip(candidates, raws, parent_lengths, strict=True)
        ]
        if evo.probe:
            _probe(spec, engine, new, probe_dialogue, batch_size, progress, f"{what}: probes")
            rejected = {r["id"] for r in new if r["status"] == "rejected"}
            for pool in pools.values():
                pool[:] = [(pid, text) for pid, text in pool if pid not in rejected]
        records += new
        parents = [r for r in new if r["status"] == "accepted"]
    return records
