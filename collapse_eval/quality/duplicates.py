"""Exact and near duplicates, with the shared context of samples factored out.

Samples without a shared context are compared as whole texts (prompt + response, word
3-gram shingles; CJK characters are tokens). Samples on one context (the dialogue or
document several questions ask about, see ``context.py``) are compared on what differs:
their question and answer, as token multisets (a one-word edit of a 15-word question and
answer keeps 0.88 of it, where its 3-gram shingles would keep 0.6). Samples on different
contexts, and a sample with and one without a context, compare whole texts as before, so
a near-copy of a dialogue with the same question and answer is still found (an edited
copy of a dialogue never has the same context text as its original: at most the part
before or after the edit).

The whole-text MinHash signature of a sample on a context is the element-wise minimum of
its context's signature (computed once per context) and the signature of its remaining
shingles: MinHash of a union is the minimum of the MinHashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import numpy.typing as npt

from collapse_eval.domain.scorers import mixed_tokens
from collapse_eval.quality import lsh

__all__ = [
    "NEAR_DUP_THRESHOLD",
    "PROMPT_NEAR_DUP_THRESHOLD",
    "SHINGLE_SIZE",
    "NUM_PERM",
    "Shingler",
    "shingles",
    "bag",
    "jaccard",
    "near_duplicates",
    "codes",
    "SampleTexts",
]

# Near duplicates: Jaccard similarity at or above these, found with MinHash LSH and
# confirmed on the exact sets.
NEAR_DUP_THRESHOLD = 0.85
PROMPT_NEAR_DUP_THRESHOLD = 0.9
SHINGLE_SIZE = 3
NUM_PERM = lsh.NUM_PERM
# LSH runs this far below the Jaccard threshold (datasketch's usual margin): a pair of
# Jaccard 0.85 is proposed with probability 0.87, of 0.9 with 0.98. A margin of 0.2 (0.994)
# made the 100k bench 2.3 times slower: templated texts at Jaccard 0.4-0.5 fill the
# 8-value bands' buckets.
LSH_MARGIN = 0.1
# For the question-and-answer bags (short sets, noisier estimates; salted per context, so
# only samples on one context can share a bucket and a wide margin costs little).
BAG_MARGIN = 0.25
Array = npt.NDArray[np.uint32]


class Shingler:
    """Word ``size``-gram shingles of token lists as 32-bit integers.

    Tokens get integer ids in order of first sight, a shingle packs its ids into one
    32-bit integer (the tuple hash of its ids): fast, deterministic for one input order,
    and what MinHash needs.
    """

    def __init__(self, size: int = SHINGLE_SIZE) -> None:
        self.size = size
        self.vocab: dict[str, int] = {}

    def ids(self, tokens: Sequence[str]) -> list[int]:
        vocab = self.vocab
        return [vocab.setdefault(t, len(vocab)) for t in tokens]

    def grams(self, ids: Sequence[int], starts: Iterable[int]) -> set[int]:
        """The shingles that start at ``starts`` (all of them: ``range(len - size + 1)``)."""
        size = self.size
        return {hash(tuple(ids[i : i + size])) & 0xFFFFFFFF for i in starts}

    def __call__(self, tokens: Sequence[str]) -> set[int]:
        ids = self.ids(tokens)
        if len(ids) < self.size:
            return {_mix(ids)} if ids else set()
        return self.grams(ids, range(len(ids) - self.size + 1))


def _mix(ids: Sequence[int]) -> int:
    # Tuples of ints hash the same in every process (only str/bytes hashing is salted).
    return hash(tuple(ids)) & 0xFFFFFFFF


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[int]:
    """The integer shingles of one text (its own token ids; compare texts with one Shingler)."""
    return Shingler(size)(mixed_tokens(text))


def bag(ids: Sequence[int], salt: int) -> set[int]:
    """The tokens as a set with multiplicity (the k-th "the" is its own element), salted:
    sets with different salts share no element. Their Jaccard is the multiset Jaccard."""
    seen: dict[int, int] = {}
    out = set()
    for token in ids:
        k = seen.get(token, 0)
        seen[token] = k + 1
        out.add(hash((salt, token, k)) & 0xFFFFFFFF)
    return out


def _matches(
    rows: npt.NDArray[np.int64],
    sig: npt.NDArray[np.uint64],
    threshold: float,
    get_set: Callable[[int], AbstractSet[int]],
    groups: npt.NDArray[np.int64] | None = None,
    apart: npt.NDArray[np.int64] | None = None,
    also: Callable[[int, int], bool] | None = None,
    margin: float = LSH_MARGIN,
) -> dict[int, int]:
    """Sample ``rows[k]`` (signature ``sig[k]``) -> the earliest earlier row whose exact
    Jaccard is >= ``threshold`` among the LSH candidates (LSH threshold ``threshold -
    margin``) for which ``also`` holds; pairs in different ``groups``, or in the same
    ``apart`` group (>= 0), are never matched."""
    pairs = rows[lsh.candidate_pairs(sig, max(threshold - margin, 0.1))]
    keep = np.ones(len(pairs), dtype=bool)
    if groups is not None:
        keep &= groups[pairs[:, 0]] == groups[pairs[:, 1]]
    if apart is not None:
        mine, theirs = apart[pairs[:, 0]], apart[pairs[:, 1]]
        keep &= (mine < 0) | (mine != theirs)
    return lsh.first_matches(pairs[keep], threshold, get_set, also)


def near_duplicates(
    shingle_sets: Sequence[set[int]],
    threshold: float,
    groups: Sequence[str] | None = None,
    skip: Iterable[int] = (),
    apart: Sequence[int | None] | None = None,
) -> dict[int, int]:
    """index -> index of an earlier sample whose shingles have Jaccard >= ``threshold``.

    MinHash LSH proposes candidates; the exact Jaccard of the shingle sets confirms them,
    so the result does not depend on hash collisions. ``groups`` restricts matches to
    samples of the same group; samples with the same non-None ``apart`` value are never
    matched; indices in ``skip`` are neither matched nor indexed.
    """
    skipped = set(skip)
    rows = np.array(
        [i for i in range(len(shingle_sets)) if i not in skipped and shingle_sets[i]],
        dtype=np.int64,
    )
    return _matches(
        rows,
        lsh.signatures([shingle_sets[i] for i in rows]),
        threshold,
        shingle_sets.__getitem__,
        None if groups is None else codes(groups),
        None if apart is None else codes(apart),
    )


def codes(values: Sequence[Any]) -> npt.NDArray[np.int64]:
    """Integer codes of hashable values (None -> -1)."""
    table: dict[Any, int] = {}
    return np.array(
        [-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int64
    )


def jaccard(a: AbstractSet[int], b: AbstractSet[int]) -> float:
    return lsh.jaccard(a, b)


def _array(values: AbstractSet[int]) -> Array:
    return np.fromiter(values, dtype=np.uint32, count=len(values))


class SampleTexts:
    """Token ids and shingles of every sample, built once, for the duplicate rules.

    ``spans[i]`` is where sample i's context sits in its prompt tokens (None without a
    context) and ``context_keys[i]`` names the context (equal keys: one context).
    """

    def __init__(
        self,
        prompt_tokens: Sequence[list[str]],
        response_tokens: Sequence[list[str]],
        spans: Sequence[tuple[int, int] | None],
        context_keys: Sequence[str | None],
    ) -> None:
        self.shingler = Shingler()
        self.context_of = codes(context_keys)
        contexts: dict[int, list[int]] = {}
        self.prompt_ids: list[list[int]] = []
        self.response_ids = [self.shingler.ids(r) for r in response_tokens]
        for tokens, span, key in zip(prompt_tokens, spans, self.context_of.tolist(), strict=True):
            self.prompt_ids.append(self._prompt_ids(tokens, span, key, contexts))
        self.spans = spans
        self.context_sets = [_array(self._all_grams(contexts[k])) for k in range(len(contexts))]
        self.context_sig = lsh.signatures(self.context_sets)

    def _prompt_ids(
        self, tokens: list[str], span: tuple[int, int] | None, key: int, cache: dict[int, list[int]]
    ) -> list[int]:
        # Each context's tokens get their ids once (the long part of every prompt).
        if span is None:
            return self.shingler.ids(tokens)
        start, end = span
        if key not in cache:
            cache[key] = self.shingler.ids(tokens[start:end])
        ids = self.shingler.ids
        return ids(tokens[:start]) + cache[key] + ids(tokens[end:])

    def _all_grams(self, ids: Sequence[int]) -> set[int]:
        size = self.shingler.size
        if len(ids) < size:
            return {_mix(ids)} if ids else set()
        return self.shingler.grams(ids, range(len(ids) - size + 1))

    def _context_set(self, key: int) -> set[int]:
        return set(self.context_sets[key].tolist())

    def _others(self, ids: list[int], span: tuple[int, int] | None) -> set[int]:
        """Shingles of ``ids`` not wholly inside the context (all of them without one)."""
        if span is None:
            return self._all_grams(ids)
        size, (start, end) = self.shingler.size, span
        starts = [*range(0, start), *range(end - size + 1, len(ids) - size + 1)]
        return self.shingler.grams(ids, starts)

    def _whole(
        self, rows: Sequence[int], texts: Callable[[int], list[int]]
    ) -> tuple[npt.NDArray[np.uint64], Callable[[int], AbstractSet[int]]]:
        """Signatures of whole texts ``texts(i)`` (context included) and their exact sets."""
        others = [self._others(texts(i), self.spans[i]) for i in rows]
        sig = lsh.signatures(others)
        keys = self.context_of[np.asarray(rows, dtype=np.int64)]
        has = keys >= 0
        sig[has] = np.minimum(sig[has], self.context_sig[keys[has]])
        by_row = dict(zip(rows, others, strict=True))

        def exact(i: int) -> AbstractSet[int]:
            key = int(self.context_of[i])
            return by_row[i] | self._context_set(key) if key >= 0 else by_row[i]

        return sig, exact

    def _outside(self, i: int, with_response: bool) -> list[int]:
        span = self.spans[i]
        assert span is not None  # only called for samples on a context
        ids = self.prompt_ids[i][: span[0]] + self.prompt_ids[i][span[1] :]
        return ids + self.response_ids[i] if with_response else ids

    def _differing(
        self, rows: Sequence[int], threshold: float, salt: Callable[[int], int], response: bool
    ) -> dict[int, int]:
        """Samples on one context whose question (and answer) token multisets have Jaccard
        >= ``threshold``; salted by context, so that nothing else collides."""
        bags = {i: bag(self._outside(i, response), salt(i)) for i in rows}
        kept = np.array([i for i in rows if bags[i]], dtype=np.int64)
        # Short bags make MinHash estimates noisy (a 20-token bag: +-0.03), and only
        # samples on one context can collide, so a wider LSH margin costs next to nothing.
        sig = lsh.signatures([bags[i] for i in kept])
        return _matches(kept, sig, threshold, bags.__getitem__, margin=BAG_MARGIN)

    def _rows(self, skip: AbstractSet[int]) -> tuple[list[int], list[int]]:
        """Samples not in ``skip``: all of them, and those on a context."""
        rows = [i for i in range(len(self.prompt_ids)) if i not in skip]
        return rows, [i for i in rows if self.context_of[i] >= 0]

    def near_samples(self, skip: AbstractSet[int]) -> dict[int, int]:
        """index -> an earlier near duplicate (prompt + response)."""
        rows, on_context = self._rows(skip)
        sig, exact = self._whole(rows, lambda i: self.prompt_ids[i] + self.response_ids[i])
        found = _matches(
            np.array(rows, dtype=np.int64), sig, NEAR_DUP_THRESHOLD, exact, apart=self.context_of
        )
        todo = [i for i in on_context if i not in found]
        context = self.context_of.tolist()
        found.update(self._differing(todo, NEAR_DUP_THRESHOLD, context.__getitem__, True))
        return found

    def near_prompts(self, skip: AbstractSet[int], tasks: npt.NDArray[np.int64]) -> dict[int, int]:
        """index -> an earlier sample of the same task type with a near-identical prompt."""
        rows, on_context = self._rows(skip)
        sig, exact = self._whole(rows, self.prompt_ids.__getitem__)
        found = _matches(
            np.array(rows, dtype=np.int64),
            sig,
            PROMPT_NEAR_DUP_THRESHOLD,
            exact,
            groups=tasks,
            apart=self.context_of,
        )
        todo = [i for i in on_context if i not in found]
        context, task = self.context_of.tolist(), tasks.tolist()
        found.update(
            self._differing(
                todo, PROMPT_NEAR_DUP_THRESHOLD, lambda i: hash((context[i], task[i])), False
            )
        )
        return found
