"""Vectorised paired samples for the sequential-design simulations (tests only).

Each generator returns per-look (delta, se) arrays of shape (R, K) for R replicates whose
looks hold the first n_k = N k / K items (whole clusters for clustered items), the same
statistics ``sequential.look_stat`` computes on one replicate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Arr = NDArray[np.float64]


def looks(n_max: int, k: int) -> list[int]:
    return [round(n_max * (j + 1) / k) for j in range(k)]


def dof(units: int, k: int) -> Arr:
    """Degrees of freedom of the SE at each look: items (or clusters) there - 1."""
    return np.array(looks(units, k), dtype=float) - 1


def _iid(d: Arr, sizes: list[int]) -> tuple[Arr, Arr]:
    """delta and the i.i.d. SE (ddof 1) of each prefix of each row of d."""
    csum, csq = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
    n = np.array(sizes, dtype=float)
    s, q = csum[:, np.array(sizes) - 1], csq[:, np.array(sizes) - 1]
    delta = s / n
    var = (q - n * delta**2) / (n - 1)
    return delta, np.sqrt(np.maximum(var, 1e-300) / n)


def binary(
    rng: np.random.Generator, reps: int, n_max: int, k: int, delta: float, discord: float = 0.2
) -> tuple[Arr, Arr]:
    """Paired 0/1 scores: d = +1 (tuned only right), -1 (base only), 0, E[d] = delta."""
    up, down = (discord + delta) / 2, (discord - delta) / 2
    u = rng.random((reps, n_max))
    d = np.where(u < up, 1.0, np.where(u < up + down, -1.0, 0.0))
    return _iid(d, looks(n_max, k))


def continuous(
    rng: np.random.Generator, reps: int, n_max: int, k: int, delta: float
) -> tuple[Arr, Arr]:
    """Bounded continuous differences: delta + uniform(-0.3, 0.3) noise (skew-free)."""
    d = delta + rng.uniform(-0.3, 0.3, size=(reps, n_max))
    return _iid(d, looks(n_max, k))


def clustered(
    rng: np.random.Generator,
    reps: int,
    n_clusters: int,
    size: int,
    k: int,
    delta: float,
    discord: float = 0.3,
) -> tuple[Arr, Arr]:
    """0/1 items in clusters of ``size`` sharing a cluster effect on their discordance
    direction; the cluster-robust SE with the C/(C-1) correction, looks by whole clusters."""
    shift = rng.normal(0.0, 0.04, size=(reps, n_clusters, 1))
    p_up = np.clip((discord + delta) / 2 + shift, 0.0, discord)
    u = rng.random((reps, n_clusters, size))
    d = np.where(u < p_up, 1.0, np.where(u < discord, -1.0, 0.0))
    # The cluster effect moves mass between +1 and -1, so E[d] = 2 E[p_up] - discord = delta
    # as long as the clip is not reached (shift sd 0.04 << discord / 2).
    totals = d.sum(axis=2)
    cs = [round(n_clusters * (j + 1) / k) for j in range(k)]
    csum, csq = np.cumsum(totals, axis=1), np.cumsum(totals**2, axis=1)
    c = np.array(cs, dtype=float)
    s, q = csum[:, np.array(cs) - 1], csq[:, np.array(cs) - 1]
    n = c * size
    mean = s / n
    ss = q - 2 * size * mean * s + c * size**2 * mean**2
    return mean, np.sqrt(c / (c - 1) * np.maximum(ss, 1e-300)) / n
