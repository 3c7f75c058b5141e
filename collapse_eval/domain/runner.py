"""Evaluate one engine on one domain test set, batch by batch, into ItemRecords.

Items without ``choices`` are answered by greedy generation and scored by the scorer of
their ``output_format``; items with ``choices`` are scored by log-likelihood ranking
(1.0 when the most likely choice is the reference). Every engine call is batched: one
``generate`` and at most one ``loglikelihood`` call per batch of items.

Record conventions (one record per item): suite "domain", task = the file's task name,
metric "score", prediction = the raw generation (or the chosen choice), prompt_hash =
sha256 of the rendered prompt, doc_hash = ``item_doc_hash(item)``, format_ok = None for
ranked items (the model could not choose a format).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from collapse_eval.domain.dataset import DomainItem, item_doc_hash
from collapse_eval.domain.scorers import score_prediction
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.errors import EngineError
from collapse_eval.records import ItemRecord, sha256_text

__all__ = [
    "evaluate_domain",
    "MAX_TOKENS_BY_FORMAT",
    "SINGLE_LINE_FORMATS",
    "METRIC",
    "stop_strings",
    "choice_continuation",
]

METRIC = "score"

# Enough room for a well-formed answer of each format plus a little slack; a model that
# rambles past this is cut off, which its score and format_ok then reflect.
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


def stop_strings(output_format: str) -> tuple[str, ...]:
    return ("\n\n", "\n") if output_format in SINGLE_LINE_FORMATS else ("\n\n",)


def choice_continuation(context: str, choice: str) -> str:
    """The continuation scored for a choice: a separating space unless the context has one."""
    return choice if not context or context[-1].isspace() else " " + choice


def _rendered_prompt(engine: Engine, item: DomainItem) -> str:
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


def _generate_batch(engine: Engine, items: Sequence[DomainItem], task: str) -> list[ItemRecord]:
    requests = [
        GenRequest(
            prompt=item.prompt,
            messages=None if item.prompt is not None else item.messages,
            until=stop_strings(item.output_format),
            max_tokens=MAX_TOKENS_BY_FORMAT.get(item.output_format, _DEFAULT_MAX_TOKENS),
        )
        for item in items
    ]
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
                rendered_prompt=_rendered_prompt(engine, item),
            )
        )
    return records


def _rank_batch(engine: Engine, items: Sequence[DomainItem], task: str) -> list[ItemRecord]:
    contexts = [_rendered_prompt(engine, item) for item in items]
    requests = [
        (context, choice_continuation(context, choice))
        for item, context in zip(items, contexts, strict=True)
        for choice in item.choices or ()
    ]
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
) -> None:
    """Score every item not in ``done_item_ids``; hand each batch's records to ``on_batch``.

    ``on_batch`` receives the records of one batch in item order (the caller appends and
    flushes them, so an interrupted run resumes from the last finished batch);
    ``on_progress`` receives the number of items just finished.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    done = set(done_item_ids)
    todo = [item for item in items if item.id not in done]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        ranked = [item for item in batch if item.choices is not None]
        generated = [item for item in batch if item.choices is None]
        by_id: dict[str, ItemRecord] = {}
        if generated:
            by_id.update((r.item_id, r) for r in _generate_batch(engine, generated, task))
        if ranked:
            by_id.update((r.item_id, r) for r in _rank_batch(engine, ranked, task))
        on_batch([by_id[item.id] for item in batch])
        if on_progress is not None:
            on_progress(len(batch))
