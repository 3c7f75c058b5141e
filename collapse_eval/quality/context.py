"""Shared contexts of training samples: the dialogue or document several questions ask about.

Study-shaped data asks several different questions about one long dialogue; RAG and
document-QA sets ask many questions about one passage. Compared as whole texts, such
samples look like near duplicates because the shared text dominates their shingles. The
near-duplicate rules therefore compare what differs (question and answer) between samples
on one context, and this module finds the context of each sample:

1. ``metadata.dialogue_id``, ``metadata.cluster`` or ``metadata.context_id`` (first one
   present): the samples with the same value share the text their prompts have in common
   (the longest of their common prefix, their common suffix and the paragraphs or
   messages all of them contain);
2. detected, for samples without such metadata: the longest of the prefix the prompt
   shares with another sample's prompt (cut back to a line or word boundary) and the
   paragraphs (blank-line separated) and messages that another sample's prompt also
   contains; failing those, the suffix it shares with another prompt.

Either way the context is at least CONTEXT_MIN_TOKENS tokens long, so a shared template line
("Answer:") never counts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collapse_eval.domain.dataset import TrainingItem

__all__ = [
    "CONTEXT_MIN_TOKENS",
    "CONTEXT_METADATA_KEYS",
    "SampleContext",
    "find_contexts",
    "metadata_key",
    "context_reuse",
]

# Shortest shared text (tokens: words, CJK characters) that counts as a context.
CONTEXT_MIN_TOKENS = 20
CONTEXT_METADATA_KEYS = ("dialogue_id", "cluster", "context_id")

_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")
# A letter or digit (not "_", which tokenisation strips as punctuation).
_WORD_RE = re.compile(r"[^\W_]")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@dataclass(frozen=True)
class SampleContext:
    """Where a sample's shared context sits in its prompt text, and how it was found."""

    text: str
    start: int
    source: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def outside(self, prompt: str) -> str:
        """The prompt without the context: the question asked about it."""
        return prompt[: self.start] + "\n" + prompt[self.end :]


def _token_boundary(text: str, index: int) -> bool:
    """Cutting ``text`` at ``index`` splits no token (whitespace or a CJK character on
    either side), so the tokens of the pieces are the tokens of the whole."""
    if index <= 0 or index >= len(text):
        return True
    left, right = text[index - 1], text[index]
    return left.isspace() or right.isspace() or bool(_CJK_RE.match(left) or _CJK_RE.match(right))


def _cut_prefix(prefix: str) -> str:
    """A common prefix cut back to its last line break, else to a word boundary."""
    end = prefix.rfind("\n")
    if end <= 0:
        end = max(prefix.rfind(" "), prefix.rfind("\t"))
    if end <= 0:
        end = len(prefix)
        while end > 0 and not _token_boundary(prefix, end):
            end -= 1
    return prefix[:end].strip()


def _common_prefix_length(a: str, b: str) -> int:
    # Binary search on slices: C-speed comparisons instead of a Python loop per character.
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _blocks(item: TrainingItem, prompt: str) -> set[str]:
    """Paragraphs of the prompt text and, for chat samples, each message's content."""
    parts = [p.strip() for p in _PARAGRAPH_RE.split(prompt)]
    parts += [content.strip() for _, content in item.messages or ()]
    return {p for p in parts if p}


class _Finder:
    """Places a candidate context in its prompt, checking length and token boundaries."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count_tokens = count_tokens
        self._long: dict[str, bool] = {}

    def long_enough(self, text: str) -> bool:
        if len(text) < CONTEXT_MIN_TOKENS:
            return False
        if text not in self._long:
            # Every whitespace-separated chunk with a letter or digit holds at least one
            # token: enough of them settle it without tokenising (the common case).
            chunks = sum(1 for chunk in text.split() if _WORD_RE.search(chunk))
            long = chunks >= CONTEXT_MIN_TOKENS or self.count_tokens(text) >= CONTEXT_MIN_TOKENS
            self._long[text] = long
        return self._long[text]

    def place(self, prompt: str, text: str, source: str) -> SampleContext | None:
        start = prompt.find(text) if text else -1
        if start < 0 or not self.long_enough(text):
            return None
        end = start + len(text)
        if not (_token_boundary(prompt, start) and _token_boundary(prompt, end)):
            return None
        return SampleContext(text, start, source)

    def best(self, prompt: str, candidates: Sequence[tuple[str, str]]) -> SampleContext | None:
        """The longest candidate (text, source) that is a context of ``prompt`` (the first
        of equally long ones)."""
        for text, source in sorted(candidates, key=lambda c: -len(c[0])):
            found = self.place(prompt, text, source)
            if found is not None:
                return found
        return None


def metadata_key(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, value) of the first CONTEXT_METADATA_KEYS entry naming a context, or None
    (also used by the contamination check, on test items as on training samples)."""
    for key in CONTEXT_METADATA_KEYS:
        value = metadata.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return key, str(value)
    return None


def _common_edges(texts: set[str]) -> list[str]:
    """The prefix and the suffix all ``texts`` share, cut to line or word boundaries."""
    low, high = min(texts), max(texts)  # their common prefix is everyone's
    prefix = _cut_prefix(low[: _common_prefix_length(low, high)])
    reversed_texts = [t[::-1] for t in texts]
    low, high = min(reversed_texts), max(reversed_texts)
    suffix = _cut_prefix(low[: _common_prefix_length(low, high)])[::-1]
    return [prefix, suffix]


def _metadata_contexts(
    items: Sequence[TrainingItem],
    prompts: Sequence[str],
    blocks: Sequence[set[str]],
    finder: _Finder,
) -> dict[int, SampleContext]:
    """Contexts of samples that share a metadata id with at least one other sample."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        group = metadata_key(item.metadata)
        if group is not None:
            groups[group].append(index)
    found: dict[int, SampleContext] = {}
    for (key, _), members in groups.items():
        texts = {prompts[i] for i in members}
        if len(texts) < 2:  # one prompt: its whole text is common, the question included
            continue
        common = _common_edges(texts) + sorted(set.intersection(*(blocks[i] for i in members)))
        candidates = [(text, f"metadata.{key}") for text in common]
        for i in members:
            context = finder.best(prompts[i], candidates)
            if context is not None:
                found[i] = context
    return found


def _neighbour_overlaps(texts: dict[int, str]) -> dict[int, int]:
    """Per text: the longest prefix it shares with another (its neighbours when sorted)."""
    order = sorted(texts, key=texts.__getitem__)
    length = dict.fromkeys(texts, 0)
    for a, b in zip(order, order[1:], strict=False):
        common = _common_prefix_length(texts[a], texts[b])
        length[a] = max(length[a], common)
        length[b] = max(length[b], common)
    return length


def _detected_contexts(
    todo: Sequence[int],
    prompts: Sequence[str],
    blocks: Sequence[set[str]],
    finder: _Finder,
) -> dict[int, SampleContext]:
    """Contexts of the ``todo`` samples found in the texts: a long common prefix or
    suffix, or a shared block, shared with any other sample's prompt (one with a metadata
    context too: its sibling without usable metadata must find the same dialogue).

    All are shared with a *different* prompt: samples with one prompt (several answers to
    one question) would otherwise make the whole prompt, question included, the context.
    """
    first: dict[str, int] = {}
    for i in range(len(prompts)):
        first.setdefault(prompts[i], i)
    distinct = first.values()
    shared = Counter(b for i in distinct for b in blocks[i])
    prefix = _neighbour_overlaps({i: prompts[i] for i in distinct})
    suffix = _neighbour_overlaps({i: prompts[i][::-1] for i in distinct})
    found: dict[int, SampleContext] = {}
    for i in todo:
        prompt, representative = prompts[i], first[prompts[i]]
        candidates = [(b, "shared_block") for b in sorted(blocks[i]) if shared[b] > 1]
        if prefix[representative]:
            text = _cut_prefix(prompt[: prefix[representative]])
            candidates.insert(0, (text, "common_prefix"))
        context = finder.best(prompt, candidates)
        if context is None and suffix[representative]:
            # Only as a fallback: a suffix shared with another prompt often ends with the
            # same question, and a context must not swallow the question (two samples
            # asking it about two dialogues that differ in one line would then be
            # compared on that line alone).
            text = _cut_prefix(prompt[::-1][: suffix[representative]])[::-1]
            context = finder.place(prompt, text, "common_suffix")
        if context is not None:
            found[i] = context
    return found


def find_contexts(
    items: Sequence[TrainingItem], prompts: Sequence[str], count_tokens: Callable[[str], int]
) -> list[SampleContext | None]:
    """Each sample's shared context in its prompt text (``prompts``), or None."""
    finder = _Finder(count_tokens)
    blocks = [_blocks(item, prompt) for item, prompt in zip(items, prompts, strict=True)]
    found = _metadata_contexts(items, prompts, blocks, finder)
    todo = [i for i in range(len(items)) if i not in found]
    found.update(_detected_contexts(todo, prompts, blocks, finder))
    return [found.get(i) for i in range(len(items))]


def context_reuse(contexts: Sequence[SampleContext | None]) -> dict[str, Any]:
    """How often contexts are reused: information for quality.json, never a flag."""
    per_context = Counter(c.text for c in contexts if c is not None)
    sizes = list(per_context.values())
    sources = Counter(c.source for c in contexts if c is not None)
    return {
        "n_contexts": len(per_context),
        "samples_with_context": sum(sizes),
        "samples_per_context_mean": round(sum(sizes) / len(sizes), 6) if sizes else 0.0,
        "samples_per_context_max": max(sizes, default=0),
        "found_by": dict(sorted(sources.items())),
        "min_tokens": CONTEXT_MIN_TOKENS,
    }
