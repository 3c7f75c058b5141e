"""Evaluate one engine on one domain test set, batch by batch, into ItemRecords.

Items without ``choices`` are answered by greedy generation and scored by the scorer of
their ``output_format``; items with ``choices`` are scored by log-likelihood ranking
(1.0 when the most likely choice is the reference). Every engine call is batched: one
``generate`` and at most one ``loglikelihood`` call per batch of items.

Each format's new-token budget fits the test set's references (see
:func:`generation_budgets`), so a model that rambles stops soon after the length of a
correct answer instead of at the format's cap.

Record conventions (one record per item): suite "domain", task = the file's task name,
metric "score", prediction = the raw generation (or the chosen choice), prompt_hash =
sha256 of the rendered prompt, doc_hash = ``item_doc_hash(item)``, format_ok = None for
ranked items (the model could not choose a format).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from collapse_eval.domain.dataset import DomainItem, item_doc_hash
from collapse_eval.domain.scorers import score_prediction
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.errors import EngineError
from collapse_eval.progress import counting_requests
from collapse_eval.records import ItemRecord, sha256_text

__all__ = [
    "evaluate_domain",
    "MAX_TOKENS_BY_FORMAT",
    "SINGLE_LINE_FORMATS",
    "METRIC",
    "stop_strings",
    "choice_continuation",
    "generation_budgets",
    "generation_rule",
    "reference_text",
    "request_count",
]

METRIC = "score"

# The most any answer of a format may take (the budget before references were measured):
# enough room for a well-formed answer plus slack; a model that rambles past its budget
# is cut off, which its score and format_ok then reflect.
MAX_TOKENS_BY_FORMAT: dict[str, int] = {
    "label": 16,
    "yes_no": 8,
    "number": 24,
    "json": 160,
    "list": 96,
    "span": 64,
    "free_text": 160,
}
_DEFAULT_MAX_TOKENS = 128

# Answers of these formats fit on one line, so the first newline ends them.
SINGLE_LINE_FORMATS = frozenset({"label", "yes_no", "number", "span"})


# A format's budget: its longest reference in the model's tokens, times BUDGET_FACTOR, plus
# BUDGET_SLACK, capped at MAX_TOKENS_BY_FORMAT. The factor and slack leave room for a
# correct answer written longer than its reference (a unit, "Answer:", a code fence).
BUDGET_FACTOR = 1.5
BUDGET_SLACK = 8


def stop_strings(output_format: str) -> tuple[str, ...]:
    """Where an answer ends: single-line formats at a newline, the others at a blank line.

    json gets no end-of-object stop: a stop string is cut off the output (as lm-eval
    does), and "}" would cut a nested or pretty-printed object; its budget bounds it.
    """
    return ("\n\n", "\n") if output_format in SINGLE_LINE_FORMATS else ("\n\n",)


def reference_text(output_format: str, reference: Any) -> str:
    """The reference written out as a correct answer at its longest usual form: JSON
    indented, a list as bullet lines, yes/no as a word."""
    if output_format == "json":
        return json.dumps(reference, ensure_ascii=False, indent=2)
    if output_format == "list" and isinstance(reference, list):
        return "\n".join(f"- {item}" for item in reference)
    if isinstance(reference, bool):
        return "yes" if reference else "no"
    return str(reference)


def token_counter(engine: Engine) -> Callable[[str], int]:
    """Counts an answer's tokens with the engine's tokenizer (after the usual leading space).

    Without one (a remote server, the fake engine) UTF-8 bytes are counted: a byte-level
    tokenizer never needs more tokens than bytes.
    """
    tokenizer = engine.tokenizer
    if tokenizer is None:
        return lambda text: len(text.encode("utf-8"))
    from collapse_eval.engines.tokenization import encode

    return lambda text: len(encode(tokenizer, " " + text, add_special_tokens=False))


def generation_budgets(items: Sequence[DomainItem], engine: Engine) -> dict[str, int]:
    """New-token budget per output format of the generated items (see BUDGET_FACTOR)."""
    count = token_counter(engine)
    longest: dict[str, int] = {}
    for item in items:
        if item.choices is None:
            n = count(reference_text(item.output_format, item.reference))
            longest[item.output_format] = max(n, longest.get(item.output_format, 0))
    return {
        fmt: min(_cap(fmt), math.ceil(BUDGET_FACTOR * n) + BUDGET_SLACK)
        for fmt, n in sorted(longest.items())
    }


def generation_rule() -> dict[str, Any]:
    """How budgets and stops are chosen, for a domain task's spec (manifest, cache key)."""
    return {
        "budget": "longest reference in tokens x factor + slack, capped",
        "factor": BUDGET_FACTOR,
        "slack": BUDGET_SLACK,
        "caps": dict(MAX_TOKENS_BY_FORMAT),
        "default_cap": _DEFAULT_MAX_TOKENS,
        "stops": {fmt: list(stop_strings(fmt)) for fmt in MAX_TOKENS_BY_FORMAT},
    }


def _cap(output_format: str) -> int:
    return MAX_TOKENS_BY_FORMAT.get(output_format, _DEFAULT_MAX_TOKENS)


def request_count(items: Sequence[DomainItem]) -> int:
    """Engine requests for ``items``: one generation, or one log-likelihood per choice."""
    return sum(1 if item.choices is None else len(item.choices) for item in items)


def choice_continuation(context: str, choice: str) -> str:
    """The continuation scored for a choice: a separating space unless the context has one."""
    return choice if not context or context[-1].isspace() else " " + choice


def rendered_prompt(engine: Engine, item: DomainItem) -> str:
    """The text a model is given for ``item``: its prompt, or its messages rendered
    with the chat template (also what `drift` measures on the domain prompts)."""
    if item.prompt is not None:
        return item.prompt
    return engine.render_chat(item.messages or ())


def _record(
    item: DomainItem,
    task: str,
    *,
    score: float,
    format_ok: bool | None,
    prediction: str,
    rendered_prompt: str,
) -> ItemRecord:
    return ItemRecord(
        suite="domain",
        task=task,
        item_id=item.id,
        metric=METRIC,
        score=score,
        task_type=item.task_type,
        output_format=item.output_format,
        format_ok=format_ok,
        prediction=prediction,
        reference=item.reference,
        prompt_hash=sha256_text(rendered_prompt),
        doc_hash=item_doc_hash(item),
        cluster=item.cluster,
        metadata=dict(item.metadata) or None,
    )


def _generate_batch(
    engine: Engine,
    items: Sequence[DomainItem],
    task: str,
    budgets: Mapping[str, int],
    on_progress: Callable[[int], None],
) -> list[ItemRecord]:
    requests = [
        GenRequest(
            prompt=item.prompt,
            messages=None if item.prompt is not None else item.messages,
            until=stop_strings(item.output_format),
            max_tokens=budgets.get(item.output_format, _cap(item.output_format)),
        )
        for item in items
    ]
    with counting_requests(on_progress, len(requests)):
        outputs = engine.generate(requests)
    if len(outputs) != len(requests):
        raise EngineError(
            f"engine returned {len(outputs)} generations for {len(requests)} requests"
        )
    records = []
    for item, output in zip(items, outputs, strict=True):
        result = score_prediction(item.output_format, output, item.reference)
        records.append(
            _record(
                item,
                task,
                score=result.score,
                format_ok=result.format_ok,
                prediction=output,
                rendered_prompt=rendered_prompt(engine, item),
            )
        )
    return records


def _rank_batch(
    engine: Engine,
    items: Sequence[DomainItem],
    task: str,
    on_progress: Callable[[int], None],
) -> list[ItemRecord]:
    contexts = [rendered_prompt(engine, item) for item in items]
    requests = [
        (context, choice_continuation(context, choice))
        for item, context in zip(items, contexts, strict=True)
        for choice in item.choices or ()
    ]
    with counting_requests(on_progress, len(requests)):
        scores = engine.loglikelihood(requests)
    if len(scores) != len(requests):
        raise EngineError(
            f"engine returned {len(scores)} log-likelihoods for {len(requests)} requests"
        )
    records, offset = [], 0
    for item, context in zip(items, contexts, strict=True):
        choices = item.choices or ()
        logprobs = [lp for lp, _ in scores[offset : offset + len(choices)]]
        offset += len(choices)
        # Ties go to the first choice listed, so a run is reproducible.
        best = max(range(len(choices)), key=lambda i: (logprobs[i], -i))
        chosen = choices[best]
        records.append(
            _record(
                item,
                task,
                score=float(chosen == item.reference),
                format_ok=None,
                prediction=chosen,
                rendered_prompt=context,
            )
        )
    return records


def evaluate_domain(
    engine: Engine,
    items: Sequence[DomainItem],
    task: str,
    *,
    done_item_ids: Collection[str] = (),
    batch_size: int = 64,
    on_batch: Callable[[list[ItemRecord]], None],
    on_progress: Callable[[int], None] | None = None,
    budgets: Mapping[str, int] | None = None,
) -> None:
    """Score every item not in ``done_item_ids``; hand each batch's records to ``on_batch``.

    ``on_batch`` receives the records of one batch in item order (the caller appends and
    flushes them, so an interrupted run resumes from the last finished batch);
    ``on_progress`` receives the number of engine requests just answered (see
    :func:`request_count`), as the engine answers them. ``budgets`` (new tokens per
    output format) defaults to :func:`generation_budgets` of all ``items``, done or not,
    so a resumed run generates with the same budgets.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    done = set(done_item_ids)
    todo = [item for item in items if item.id not in done]
    if not todo:
        return
    if budgets is None:
        budgets = generation_budgets(items, engine)
    advance = on_progress or _ignore
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        ranked = [item for item in batch if item.choices is not None]
        generated = [item for item in batch if item.choices is None]
        by_id: dict[str, ItemRecord] = {}
        if generated:
            records = _generate_batch(engine, generated, task, budgets, advance)
            by_id.update((r.item_id, r) for r in records)
        if ranked:
            by_id.update((r.item_id, r) for r in _rank_batch(engine, ranked, task, advance))
        on_batch([by_id[item.id] for item in batch])


def _ignore(n: int) -> None:
    pass
