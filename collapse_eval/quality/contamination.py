"""Near-identical texts: the clusters the data build splits by, and the train/test
contamination check (``collapse-eval quality TRAIN.jsonl --against TEST.jsonl``).

Texts are compared as sets of word 3-gram shingles (CJK characters count as words, as in
the quality rules); MinHash LSH proposes candidate pairs and the exact Jaccard similarity
of the shingle sets confirms them, so a reported pair never rests on a hash collision.

A test item leaks when it near-duplicates a training sample, by what it shares:

- its *context* (the dialogue or passage several items ask about) near-identical to a
  training sample's context: a model trained on that sample has read the test item's
  text, whatever the question;
- its *prompt* (the whole input: context and question, or the whole prompt when there is
  no context) near-identical to a training sample's: the model may have seen the answer.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from collapse_eval.domain.dataset import DomainItem, TrainingItem
from collapse_eval.domain.scorers import mixed_tokens, normalize_text
from collapse_eval.formats import to_plain
from collapse_eval.formats.contamination import (
    ContaminationPair,
    ContaminationReport,
    ContaminationThresholds,
    TaskTypeLeaks,
)
from collapse_eval.quality import lsh
from collapse_eval.quality.context import CONTEXT_MIN_TOKENS, metadata_key
from collapse_eval.quality.rules import NUM_PERM, SHINGLE_SIZE, Shingler, jaccard
from collapse_eval.records import atomic_write_json

__all__ = [
    "LSH_MISS",
    "NUM_PERM",
    "Shingler",
    "jaccard",
    "detect_contexts",
    "similar_pairs",
    "summary_lines",
    "CONTAMINATION_FILE",
    "CONTAMINATION_SCHEMA_VERSION",
    "CONTEXT_THRESHOLD",
    "PROMPT_THRESHOLD",
    "CONTEXT_MIN_TOKENS",
    "Contamination",
    "Leak",
    "Link",
    "find_contamination",
    "input_text",
    "near_identical_groups",
    "near_identical_to",
    "write_contamination",
]

CONTAMINATION_SCHEMA_VERSION: Final = 1
CONTAMINATION_FILE = "contamination.json"
# Jaccard similarity of word 3-gram shingles at or above which two contexts (dialogues,
# passages) are near-identical: one word changed in a 20-word text still scores 0.74,
# while the demo's distinct template-made dialogues stay below 0.6. The data build's
# split uses the same threshold, so its outputs are free of context leaks by construction.
CONTEXT_THRESHOLD = 0.7
# The same for whole prompts (inputs without a detected context, or context + question).
PROMPT_THRESHOLD = 0.7
# Items without a context key whose inputs begin with the same this many characters share
# a context: the longest prefix common to all of them.
PREFIX_CHARS = 200
# Largest chance that LSH fails to propose a pair exactly at the threshold (higher
# similarities are missed far less often: 5e-6 at 0.75 for the 0.7 threshold).
LSH_MISS = 1e-3

Matched = Literal["context", "prompt"]


# ------------------------------------------------------------------ near-identical pairs


def _shingle_sets(texts: Sequence[str], shingler: Shingler) -> list[set[int]]:
    return [shingler(mixed_tokens(t)) for t in texts]


def similar_pairs(
    index: Sequence[set[int]], queries: Sequence[set[int]], threshold: float
) -> list[tuple[int, int, float]]:
    """(query, index entry, Jaccard) for every pair at or above ``threshold``, in query
    order; empty sets (texts without a token) match nothing. Stricter bands than the
    near-duplicate rules' (LSH_MISS): here the query is at the threshold itself, and a
    missed pair is a leak or a split that puts near-identical dialogues on both sides."""
    return lsh.similar_pairs(index, queries, threshold, miss=LSH_MISS)


@dataclass(frozen=True)
class Link:
    """Two texts found near-identical (indices into the input; ``a`` < ``b``)."""

    a: int
    b: int
    similarity: float


def near_identical_groups(
    texts: Sequence[str], threshold: float = CONTEXT_THRESHOLD
) -> tuple[list[list[int]], list[Link]]:
    """(groups, links): texts joined by a chain of near-identical pairs (or equal after
    normalisation) form one group of indices, in input order, groups ordered by their first
    member; ``links`` are the pairs that joined two groups (a spanning tree of each)."""
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links: list[Link] = []

    def join(a: int, b: int, similarity: float) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            links.append(Link(min(a, b), max(a, b), round(similarity, 4)))

    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        join(first.setdefault(normalize_text(text), i), i, 1.0)
    sets = _shingle_sets(texts, Shingler(SHINGLE_SIZE))
    for a, b, similarity in similar_pairs(sets, sets, threshold):
        if a != b:
            join(a, b, similarity)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(texts)):
        groups[root(i)].append(i)
    return sorted(groups.values()), links


def near_identical_to(
    texts: Sequence[str], against: Sequence[str], threshold: float = CONTEXT_THRESHOLD
) -> set[int]:
    """Indices of ``texts`` near-identical to at least one of ``against`` (the check's own
    shingles, LSH and Jaccard threshold): what a generator of training data drops so that
    the check finds no context leak in its output."""
    shingler = Shingler(SHINGLE_SIZE)  # one vocabulary for both sides
    index, queries = _shingle_sets(against, shingler), _shingle_sets(texts, shingler)
    return {q for q, _, _ in similar_pairs(index, queries, threshold)}


# ------------------------------------------------------------------ contexts


@dataclass(frozen=True)
class _Input:
    """What a test item or training sample shows the model, split into context and rest."""

    id: str
    task_type: str
    text: str
    context: str | None


def input_text(prompt: str | None, messages: Sequence[tuple[str, str]] | None) -> str:
    """The prompt, or the non-system messages' contents (a system message is the same
    boilerplate for every item of a set: it would make every pair look alike)."""
    if prompt is not None:
        return prompt
    shown = [content for role, content in messages or () if role != "system"]
    return "\n".join(shown or [content for _, content in messages or ()])


def _cut(shared: str) -> str:
    """A shared prefix cut back to where the context ends: its last blank line, else its
    last line break, else its last space (so a question's first words stay out)."""
    for mark in ("\n\n", "\n", " "):
        end = shared.rfind(mark)
        if end > 0:
            return shared[:end]
    return shared


def _before_last_blank_line(text: str) -> str:
    end = text.rstrip().rfind("\n\n")
    return text[:end] if end > 0 else ""


# Not context.find_contexts (the near-duplicate rules'), on purpose: here a context must be
# a prefix of the input (the question is what follows it), cut back to a blank line first,
# and an item alone in its group (a test set often asks one question per dialogue) still
# gets the text before its last blank line, where find_contexts needs a second sample
# sharing the text. Only the metadata keys (context.metadata_key) and CONTEXT_MIN_TOKENS
# are shared, so both find the same named dialogues.
def detect_contexts(
    texts: Sequence[str], metadata: Sequence[Mapping[str, Any]]
) -> list[str | None]:
    """Per item, its context (a prefix of its text) or None.

    Items with the same ``metadata.dialogue_id`` (else ``cluster``, else ``context_id``),
    or without one but with the same first PREFIX_CHARS characters, share the longest
    prefix common to all of them; an item alone in its group has the text before its last
    blank line (the usual context-then-question layout). A context needs at least
    CONTEXT_MIN_TOKENS tokens.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (text, meta) in enumerate(zip(texts, metadata, strict=True)):
        named = metadata_key(meta)
        if named is not None:
            key = ":".join(named)
        elif len(text) > PREFIX_CHARS:
            key = f"prefix:{text[:PREFIX_CHARS]}"
        else:
            key = f"item:{i}"
        groups[key].append(i)
    contexts: list[str | None] = [None] * len(texts)
    for members in groups.values():
        if len(members) > 1:
            shared = _cut(os.path.commonprefix([texts[i] for i in members]))
        else:
            shared = _before_last_blank_line(texts[members[0]])
        if len(mixed_tokens(shared)) >= CONTEXT_MIN_TOKENS:
            for i in members:
                contexts[i] = shared
    return contexts


def _inputs(items: Sequence[TrainingItem | DomainItem]) -> list[_Input]:
    texts = [input_text(item.prompt, item.messages) for item in items]
    contexts = detect_contexts(texts, [item.metadata for item in items])
    return [
        _Input(item.id, item.task_type or "(none)", text, context)
        for item, text, context in zip(items, texts, contexts, strict=True)
    ]


# ------------------------------------------------------------------ the check


@dataclass(frozen=True)
class Leak:
    """A test item and the training sample it near-duplicates most closely."""

    test_id: str
    train_id: str
    task_type: str
    matched: Matched
    similarity: float
    # How many training samples the test item near-duplicates (context or prompt).
    train_matches: int

    def pair(self) -> ContaminationPair:
        return ContaminationPair(
            test_id=self.test_id,
            train_id=self.train_id,
            task_type=self.task_type,
            matched=self.matched,
            similarity=self.similarity,
            train_matches=self.train_matches,
        )


@dataclass(frozen=True)
class Contamination:
    """What ``find_contamination`` found: one Leak per contaminated test item."""

    n_train: int
    n_test: int
    leaks: tuple[Leak, ...]
    # (task type, number of test items), in order of first appearance in the test set.
    test_task_types: tuple[tuple[str, int], ...]
    context_threshold: float = CONTEXT_THRESHOLD
    prompt_threshold: float = PROMPT_THRESHOLD

    @property
    def n_contaminated(self) -> int:
        return len(self.leaks)

    def by_task_type(self) -> dict[str, dict[str, int]]:
        """Task type -> test items, contaminated ones, and how many matched by context
        and by prompt (as plain JSON values)."""
        plain: dict[str, dict[str, int]] = to_plain(self._task_type_leaks())
        return plain

    def _task_type_leaks(self) -> dict[str, TaskTypeLeaks]:
        leaks = [(leak.task_type, leak.matched) for leak in self.leaks]
        return {
            name: TaskTypeLeaks(
                n_test=n,
                contaminated=sum(t == name for t, _ in leaks),
                context=leaks.count((name, "context")),
                prompt=leaks.count((name, "prompt")),
            )
            for name, n in self.test_task_types
        }

    def report(self, train: str | None = None, test: str | None = None) -> ContaminationReport:
        return ContaminationReport(
            schema_version=CONTAMINATION_SCHEMA_VERSION,
            train=train,
            test=test,
            n_train=self.n_train,
            n_test=self.n_test,
            n_contaminated=self.n_contaminated,
            thresholds=ContaminationThresholds(
                context_jaccard=self.context_threshold,
                prompt_jaccard=self.prompt_threshold,
                context_min_tokens=CONTEXT_MIN_TOKENS,
                shingle_size=SHINGLE_SIZE,
                minhash_num_perm=NUM_PERM,
            ),
            by_task_type=self._task_type_leaks(),
            pairs=[leak.pair() for leak in self.leaks],
        )

    def to_json(self, train: str | None = None, test: str | None = None) -> dict[str, Any]:
        """contamination.json's content as plain JSON values."""
        plain: dict[str, Any] = to_plain(self.report(train, test))
        return plain


def _by_context(inputs: Sequence[_Input]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(inputs):
        if item.context is not None:
            out[item.context].append(i)
    return out


class _Matches:
    """Every (test, train) match found, by kind, with its similarity."""

    def __init__(self) -> None:
        self.found: dict[int, dict[int, tuple[Matched, float]]] = defaultdict(dict)

    def add(self, test: int, train: int, matched: Matched, similarity: float) -> None:
        old = self.found[test].get(train)
        # A prompt match says more than a context match (the question is there too).
        if old is None or (matched, similarity) > old:
            self.found[test][train] = (matched, similarity)

    def best(self, test: int) -> tuple[int, Matched, float]:
        train, (matched, similarity) = max(
            self.found[test].items(), key=lambda kv: (kv[1][0] == "prompt", kv[1][1], -kv[0])
        )
        return train, matched, similarity


def _context_matches(
    train: Sequence[_Input],
    test: Sequence[_Input],
    shingler: Shingler,
    whole: tuple[list[set[int]], list[set[int]]],
    matches: _Matches,
    thresholds: tuple[float, float],
) -> None:
    """Test items whose context near-duplicates a training sample's; a prompt match when
    the rest (the question) is near-identical too."""
    context_threshold, prompt_threshold = thresholds
    train_ctx, test_ctx = _by_context(train), _by_context(test)
    train_keys, test_keys = list(train_ctx), list(test_ctx)
    pairs = similar_pairs(
        _shingle_sets(train_keys, shingler), _shingle_sets(test_keys, shingler), context_threshold
    )
    rests: dict[tuple[str, int], set[int]] = {}

    def rest(side: str, inputs: Sequence[_Input], i: int) -> set[int]:
        if (side, i) not in rests:
            context = inputs[i].context or ""
            rests[side, i] = shingler(mixed_tokens(inputs[i].text[len(context) :]))
        return rests[side, i]

    for q, k, similarity in pairs:
        for t in test_ctx[test_keys[q]]:
            for r in train_ctx[train_keys[k]]:
                same_question = jaccard(rest("test", test, t), rest("train", train, r))
                if same_question >= prompt_threshold:
                    matches.add(t, r, "prompt", round(jaccard(whole[1][t], whole[0][r]), 4))
                else:
                    matches.add(t, r, "context", round(similarity, 4))


def find_contamination(
    train_items: Sequence[TrainingItem],
    test_items: Sequence[DomainItem],
    *,
    context_threshold: float = CONTEXT_THRESHOLD,
    prompt_threshold: float = PROMPT_THRESHOLD,
) -> Contamination:
    """The test items whose context or prompt near-duplicates a training sample.

    Two items that both have a context leak when their contexts are near-identical (a
    prompt match when their questions are too); otherwise their whole inputs are compared.
    """
    train, test = _inputs(train_items), _inputs(test_items)
    shingler = Shingler(SHINGLE_SIZE)  # one vocabulary for both sides
    whole = (
        _shingle_sets([t.text for t in train], shingler),
        _shingle_sets([t.text for t in test], shingler),
    )
    matches = _Matches()
    thresholds = (context_threshold, prompt_threshold)
    _context_matches(train, test, shingler, whole, matches, thresholds)
    for t, r, similarity in similar_pairs(whole[0], whole[1], prompt_threshold):
        if test[t].context is None or train[r].context is None:
            matches.add(t, r, "prompt", round(similarity, 4))
    leaks = []
    for t in sorted(matches.found):
        r, matched, similarity = matches.best(t)
        leaks.append(
            Leak(
                test[t].id,
                train[r].id,
                test[t].task_type,
                matched,
                similarity,
                len(matches.found[t]),
            )
        )
    counts = Counter(item.task_type for item in test)
    return Contamination(
        n_train=len(train),
        n_test=len(test),
        leaks=tuple(leaks),
        test_task_types=tuple(counts.items()),
        context_threshold=context_threshold,
        prompt_threshold=prompt_threshold,
    )


def write_contamination(
    result: Contamination, out: Path, *, train: str | None = None, test: str | None = None
) -> Path:
    """``OUT/contamination.json`` (atomically); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONTAMINATION_FILE
    atomic_write_json(path, result.to_json(train, test))
    return path


def summary_lines(result: Contamination, limit: int = 5) -> list[str]:
    """The terminal summary: the count, per task type, and the first pairs."""
    lines = [
        f"contamination: {result.n_contaminated} of {result.n_test} test items near-duplicate "
        f"a training sample (Jaccard >= {result.context_threshold:g} on the context, "
        f">= {result.prompt_threshold:g} on the prompt)"
    ]
    for name, row in result.by_task_type().items():
        if row["contaminated"]:
            lines.append(
                f"  {name}: {row['contaminated']} of {row['n_test']} "
                f"(context {row['context']}, prompt {row['prompt']})"
            )
    shown: Iterable[Leak] = result.leaks[:limit]
    for leak in shown:
        lines.append(
            f"  {leak.test_id} ~ {leak.train_id}: {leak.matched} {leak.similarity:.2f}"
            + (f" (+{leak.train_matches - 1} more)" if leak.train_matches > 1 else "")
        )
    if result.n_contaminated > limit:
        lines.append(f"  ... {result.n_contaminated - limit} more in contamination.json")
    return lines
