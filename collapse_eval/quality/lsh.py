"""Vectorised MinHash signatures and LSH banding for the near-duplicate rules.

datasketch's MinHash and MinHashLSH cost about 100 µs of Python per set and per insert
or query; on 100,000 samples with 200-word dialogues that alone took minutes. Here the
signatures of all sets are computed in a few numpy passes (multiply-add-shift hashing of
the 32-bit shingles, a minimum per set with ``np.minimum.reduceat``), the bands are hashed
as whole columns, and candidate pairs come from sorting the band keys. Candidates are then
confirmed on the exact sets, so the result does not depend on hash collisions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from collections.abc import Set as AbstractSet

import numpy as np
import numpy.typing as npt

__all__ = [
    "NUM_PERM",
    "bands",
    "signatures",
    "candidate_pairs",
    "cross_pairs",
    "similar_pairs",
    "first_matches",
    "jaccard",
]

NUM_PERM = 128
# Shingles hashed per numpy pass: the (chunk x NUM_PERM) uint64 buffer is 32 MiB.
_CHUNK = 32_768
# A bucket member is paired with at most this many earlier members of its bucket, so a
# bucket of thousands of near-identical sets costs linear, not quadratic, work (each of
# them still finds an earlier match: the previous member).
_BUCKET_WINDOW = 256
_EMPTY = np.uint64(0xFFFFFFFF)


def _hash_params() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    # Fixed seed: signatures, and so the candidates, are the same on every run.
    rng = np.random.default_rng(20240601)
    a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
    return a, b


_A, _B = _hash_params()


def _flat(sets: Sequence[Collection[int]]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """All values in one array, and each set's length (sets or numpy arrays of uniques)."""
    parts = [
        s.astype(np.uint64) if isinstance(s, np.ndarray) else np.fromiter(s, np.uint64, len(s))
        for s in sets
    ]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
    return flat, lengths


def signatures(sets: Sequence[Collection[int]]) -> npt.NDArray[np.uint64]:
    """MinHash signatures (rows of NUM_PERM 32-bit values in uint64) of integer sets.

    Each permutation is h(x) = ((a x + b) mod 2^64) >> 32 (Dietzfelbinger's
    multiply-add-shift family); an empty set gets the all-0xFFFFFFFF row.
    """
    flat, lengths = _flat(sets)
    out = np.full((len(sets), NUM_PERM), _EMPTY, dtype=np.uint64)
    ends = np.cumsum(lengths)
    rows = np.flatnonzero(lengths)
    row_ends = ends[rows]
    first = 0
    while first < len(rows):
        # Whole sets per pass (at least one, however large it is).
        start = int(row_ends[first] - lengths[rows[first]])
        last = int(np.searchsorted(row_ends, start + _CHUNK, side="right"))
        last = min(max(last, first + 1), len(rows))
        chunk = rows[first:last]
        values = flat[start : int(row_ends[last - 1])]
        # (NUM_PERM, values): each set's values are contiguous in a row, which makes
        # reduceat four times faster than the transposed layout.
        hashed = _A[:, None] * values[None, :]
        hashed += _B[:, None]
        hashed >>= np.uint64(32)
        offsets = ends[chunk] - lengths[chunk] - start
        out[chunk] = np.minimum.reduceat(hashed, offsets, axis=1).T
        first = last
    return out


def bands(threshold: float, miss: float | None = None) -> tuple[int, int]:
    """(bands, rows per band) of the LSH index for ``threshold``.

    ``miss=None``: the bands datasketch's MinHashLSH would use (false positives and
    negatives weighed equally: fast). The near-duplicate rules use these, queried at
    their threshold minus duplicates.LSH_MARGIN, so a pair at their threshold is rarely
    missed anyway.

    ``miss=p``: the most rows per band (fewest candidates to confirm) that still miss a
    pair exactly at ``threshold`` with probability <= p. The contamination check and the
    data build's split query at the threshold itself, where a missed pair is a leak:
    a band of r rows matches with probability J^r, so a pair of Jaccard J is missed with
    probability (1 - J^r)^bands; datasketch's choice for a 0.6 index missed the demo's
    0.77 pair of dialogues (4 % at 0.77, 21 % at 0.7).
    """
    if miss is None:
        from datasketch.lsh import _optimal_param

        b, r = _optimal_param(threshold, NUM_PERM, 0.5, 0.5)
        return int(b), int(r)
    for rows in range(8, 0, -1):
        if (1 - threshold**rows) ** (NUM_PERM // rows) <= miss:
            return NUM_PERM // rows, rows
    return NUM_PERM, 1


def _band_keys(
    sig: npt.NDArray[np.uint64], n_bands: int, rows: int
) -> list[npt.NDArray[np.uint64]]:
    """Each band's key per row: a random linear combination of its values mod 2^64 (a
    collision only adds a candidate, which the exact check then rejects)."""
    rng = np.random.default_rng(7)
    keys = []
    for band in range(n_bands):
        coeffs = rng.integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
        keys.append((sig[:, band * rows : (band + 1) * rows] * coeffs).sum(axis=1, dtype=np.uint64))
    return keys


def _bucket_pairs(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """(later, earlier) row pairs with equal keys (each row with up to _BUCKET_WINDOW
    earlier rows of its bucket)."""
    order = np.argsort(keys, kind="stable")  # stable: rows of a bucket in index order
    ordered = keys[order]
    new_bucket = np.ones(len(keys), dtype=bool)
    new_bucket[1:] = ordered[1:] != ordered[:-1]
    bucket_start = np.maximum.accumulate(np.where(new_bucket, np.arange(len(keys)), 0))
    position = np.arange(len(keys))
    counts = np.minimum(position - bucket_start, _BUCKET_WINDOW)
    total = int(counts.sum())
    if total == 0:
        return np.empty((0, 2), dtype=np.int64)
    later = np.repeat(position, counts)
    # the k-th partner of a position is k + 1 places before it
    step = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return np.stack([order[later], order[later - step]], axis=1)


def candidate_pairs(sig: npt.NDArray[np.uint64], threshold: float) -> npt.NDArray[np.int64]:
    """Unique (later, earlier) row pairs that share at least one LSH band, sorted."""
    n = len(sig)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    found = [_bucket_pairs(keys) for keys in _band_keys(sig, *bands(threshold))]
    pairs = np.concatenate(found)
    codes = np.unique(pairs[:, 0] * n + pairs[:, 1])
    pairs = np.stack([codes // n, codes % n], axis=1)
    # Pairs whose signatures agree on fewer than ``threshold`` of the values are dropped
    # before the exact check in Python: the estimate's standard deviation is at most
    # 0.044 (128 values), so a pair that reaches the caller's Jaccard threshold (0.1
    # above this one, duplicates.LSH_MARGIN) is dropped with a probability of about
    # 0.001, a hundred times less often than the bands miss it.
    agree = np.concatenate(
        [
            (sig[part[:, 0]] == sig[part[:, 1]]).mean(axis=1)
            for part in np.array_split(pairs, max(1, len(pairs) // 65_536))
        ]
    )
    kept: npt.NDArray[np.int64] = pairs[agree >= threshold]
    return kept


def cross_pairs(
    index_sig: npt.NDArray[np.uint64],
    query_sig: npt.NDArray[np.uint64],
    threshold: float,
    miss: float | None = None,
) -> npt.NDArray[np.int64]:
    """Unique (query row, index row) pairs that share at least one LSH band (bands from
    ``bands(threshold, miss)``), sorted. Unlike ``candidate_pairs`` every pair of a
    bucket is kept and none is dropped on its signature agreement: a caller that counts
    all matches, at the threshold itself, needs them all."""
    n = len(index_sig)
    if n == 0 or len(query_sig) == 0:
        return np.empty((0, 2), dtype=np.int64)
    shape = bands(threshold, miss)
    found = []
    for index_keys, query_keys in zip(
        _band_keys(index_sig, *shape), _band_keys(query_sig, *shape), strict=True
    ):
        order = np.argsort(index_keys, kind="stable")
        ordered = index_keys[order]
        lo = np.searchsorted(ordered, query_keys, side="left")
        counts = np.searchsorted(ordered, query_keys, side="right") - lo
        total = int(counts.sum())
        if total == 0:
            continue
        queries = np.repeat(np.arange(len(query_keys)), counts)
        step = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        found.append(queries * n + order[np.repeat(lo, counts) + step])
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1)


def similar_pairs(
    index: Sequence[AbstractSet[int]],
    queries: Sequence[AbstractSet[int]],
    threshold: float,
    miss: float | None = None,
) -> list[tuple[int, int, float]]:
    """(query, index entry, exact Jaccard) for every LSH candidate pair at or above
    ``threshold``, in (query, index entry) order; empty sets match nothing."""
    filled = np.array([i for i, s in enumerate(index) if s], dtype=np.int64)
    asked = np.array([q for q, s in enumerate(queries) if s], dtype=np.int64)
    if len(filled) == 0 or len(asked) == 0:
        return []
    found = cross_pairs(
        signatures([index[i] for i in filled]),
        signatures([queries[q] for q in asked]),
        threshold,
        miss,
    )
    pairs = []
    for q, i in zip(asked[found[:, 0]].tolist(), filled[found[:, 1]].tolist(), strict=True):
        similarity = jaccard(queries[q], index[i])
        if similarity >= threshold:
            pairs.append((q, i, similarity))
    return pairs


def jaccard(a: AbstractSet[int], b: AbstractSet[int]) -> float:
    """|a ∩ b| / |a ∪ b| of two sets (1 for two empty sets)."""
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def first_matches(
    pairs: npt.NDArray[np.int64],
    threshold: float,
    get_set: Callable[[int], AbstractSet[int]],
    also: Callable[[int, int], bool] | None = None,
) -> dict[int, int]:
    """later -> the earliest candidate whose exact Jaccard is >= ``threshold`` (and for
    which ``also(later, earlier)`` holds, when given)."""
    found: dict[int, int] = {}
    for later, earlier in pairs.tolist():
        if (
            later not in found
            and jaccard(get_set(later), get_set(earlier)) >= threshold
            and (also is None or also(later, earlier))
        ):
            found[later] = earlier
    return found
