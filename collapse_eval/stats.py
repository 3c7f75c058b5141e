"""Paired statistics for base-vs-tuned comparisons (docs/statistics.md). Pure functions, no I/O.

Methods, and why:

* Binary metrics (every paired score in {0, 1}): exact McNemar test, i.e. a two-sided
  binomial test with p = 1/2 on the discordant pairs (no mid-p: it is not guaranteed to
  hold alpha). The CI for the paired difference is Newcombe's hybrid score interval
  (Newcombe 1998, method 10): Wilson intervals for both marginal proportions, combined
  with the phi correlation of the 2x2 table. It has close-to-nominal coverage at small n,
  never leaves [-1, 1], needs no iteration, and is vectorisable, unlike Tango's score
  interval which needs root finding per table.
* Continuous metrics: Wilcoxon signed-rank test (zero differences dropped, "wilcox"
  convention, the most widely reported one); exact null distribution when there are at
  most 50 non-zero differences and no ties, otherwise the normal approximation with the
  tie correction and no continuity correction. CI: percentile paired bootstrap of the mean
  difference (seeded, vectorised). Percentile rather than BCa because the statistic is a
  plain mean of bounded differences, where the percentile interval already covers at the
  nominal rate for n >= 200 (checked by simulation in the tests) and BCa's jackknife
  acceleration would cost O(n^2) at no gain.
* Clustered items (several questions about one dialogue): the i.i.d. tests above are
  invalid, so the test becomes a cluster-robust z-test on the mean difference with the
  clustered standard error of Miller (2024) "Adding Error Bars to Evals", including the
  C/(C-1) small-sample correction, and the CI is the matching normal interval.
  When every cluster holds a single item, clustering changes nothing and the i.i.d.
  methods are used.
* Small samples: the exact binary methods hold at any n. The percentile bootstrap and the
  cluster-robust normal interval do not: below ``MIN_BOOTSTRAP_ITEMS`` items (continuous)
  or ``MIN_CLUSTERS`` clusters they undercover badly and collapse to a single point when
  the few differences are equal. There the comparison has no CI (``ci_low``/``ci_high``
  None; with too few clusters no p-value either) and a ``note`` saying why, so its status
  is ``inconclusive``: a drop beyond the margin cannot be ruled out with so little data.
* Multiple comparisons: Holm within each family; Benjamini-Hochberg q-values as an extra.
* Equivalence (TOST): every comparison also carries its (1 - 2 alpha) CI by the same
  method (Newcombe at 2 alpha, the alpha and 1 - alpha bootstrap quantiles of the same
  draws, or the one-sided normal quantile); two one-sided level-alpha tests reject "the
  change is at least the margin" exactly when that CI lies within (-margin, +margin).
* Flips: items that got worse / better / neither (|tuned - base| <= ``FLIP_EPS``), and for
  continuous scores quantiles of the per-item differences.
* Minimum detectable effect: (z_{1-alpha/2} + z_{0.8}) * SE of the mean paired difference
  (clustered SE when clusters are given), i.e. the true drop that a two-sided level-alpha
  test detects with 80 % power at this n and this item-level variance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special
from scipy.stats import norm, rankdata

FloatArray = NDArray[np.float64]

DEFAULT_N_BOOT = 10_000
POWER = 0.8
# Up to this many distinct paired differences, the bootstrap draws multinomial counts over
# the distinct values (cost B*K) instead of over items (cost B*n).
_FEW_VALUES = 64
# Wilcoxon exact null distribution up to this many non-zero differences (as scipy's "auto").
_WILCOXON_EXACT_MAX_N = 50
# Rows of the bootstrap count matrix generated at once: bounds memory to ~chunk * n floats.
_BOOT_CHUNK_ELEMENTS = 8_000_000
# Fewest items for a percentile bootstrap CI of a continuous paired difference, and fewest
# clusters for a cluster-robust CI. Below these, a comparison has no CI (see the docstring).
MIN_BOOTSTRAP_ITEMS = 10
MIN_CLUSTERS = 10


# ---------------------------------------------------------------- small building blocks


def _safe_ratio(num: ArrayLike, den: ArrayLike, fallback: float) -> FloatArray:
    """num / den where den > 0, else ``fallback`` (no warnings)."""
    n = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    return np.where(d > 0, n / np.where(d > 0, d, 1.0), fallback)


def _z_test_p(delta: float, se: float) -> float:
    """Two-sided normal p-value; a zero SE gives 1 for a zero delta and 0 otherwise."""
    if se > 0:
        return float(2 * norm.sf(abs(delta) / se))
    return 1.0 if delta == 0 else 0.0


def mcnemar_exact_p(tuned_only: int, base_only: int) -> float:
    """Exact two-sided McNemar p-value from the two discordant counts.

    Equals ``statsmodels...mcnemar(table, exact=True).pvalue`` and
    ``scipy.stats.binomtest(tuned_only, tuned_only + base_only).pvalue``.
    """
    discordant = tuned_only + base_only
    if discordant == 0:
        return 1.0
    low = min(tuned_only, base_only)
    # P(X <= low) for X ~ Bin(discordant, 1/2), doubled (the null is symmetric).
    cdf = float(special.bdtr(low, discordant, 0.5))
    return min(1.0, 2.0 * cdf)


def wilson_interval(
    successes: ArrayLike, n: ArrayLike, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a binomial proportion (vectorised)."""
    k = np.asarray(successes, dtype=float)
    nn = np.asarray(n, dtype=float)
    z = norm.ppf(1 - alpha / 2)
    p = k / nn
    denom = nn + z * z
    centre = (k + z * z / 2) / denom
    half = z * np.sqrt(k * (nn - k) / nn + z * z / 4) / denom
    return np.clip(centre - half, 0.0, p), np.clip(centre + half, p, 1.0)


def newcombe_paired_ci(
    both: ArrayLike,
    tuned_only: ArrayLike,
    base_only: ArrayLike,
    neither: ArrayLike,
    alpha: float = 0.05,
) -> tuple[FloatArray, FloatArray]:
    """Newcombe (1998) hybrid score CI, method 10, for tuned_mean - base_mean on paired 0/1 data.

    Arguments are the 2x2 table cells (vectorised: arrays of tables are fine).
    """
    a = np.asarray(both, dtype=float)
    b = np.asarray(tuned_only, dtype=float)
    c = np.asarray(base_only, dtype=float)
    d = np.asarray(neither, dtype=float)
    n = a + b + c + d
    p_tuned = (a + b) / n
    p_base = (a + c) / n
    l1, u1 = wilson_interval(a + b, n, alpha)
    l2, u2 = wilson_interval(a + c, n, alpha)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's phi with his continuity adjustment of the numerator (as in Fagerland,
    # Lydersen & Laake 2017, ch. 8): AD - BC shrinks by n/2 towards 0 when positive; phi
    # is 0 when a margin is empty.
    cross = a * d - b * c
    adjusted = np.where(cross > n / 2, cross - n / 2, np.where(cross >= 0, 0.0, cross))
    phi = _safe_ratio(adjusted, np.sqrt(margins), 0.0)
    delta = p_tuned - p_base
    lower_sq = (p_tuned - l1) ** 2 - 2 * phi * (p_tuned - l1) * (u2 - p_base) + (u2 - p_base) ** 2
    upper_sq = (u1 - p_tuned) ** 2 - 2 * phi * (u1 - p_tuned) * (p_base - l2) + (p_base - l2) ** 2
    low = delta - np.sqrt(np.maximum(lower_sq, 0.0))
    high = delta + np.sqrt(np.maximum(upper_sq, 0.0))
    return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)


def _wilcoxon_exact_null(n: int) -> FloatArray:
    """P(T+ = t), t = 0..n(n+1)/2, under the null, by the subset-sum recursion."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        shifted = counts[:-k].copy()
        counts[k:] += shifted
    return counts / 2.0**n


def wilcoxon_signed_rank(diffs: ArrayLike) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences and the method used.

    Zeros are dropped ("wilcox"); exact null distribution when at most 50 non-zero
    differences remain and none are tied, else normal approximation with tie correction
    and no continuity correction. Matches ``scipy.stats.wilcoxon(d, method=...)``.
    """
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 1.0, "exact"
    ranks = rankdata(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    _, tie_sizes = np.unique(np.abs(d), return_counts=True)
    has_ties = bool((tie_sizes > 1).any())
    if n <= _WILCOXON_EXACT_MAX_N and not has_ties:
        pmf = _wilcoxon_exact_null(n)
        t = round(r_plus)
        p_low = float(pmf[: t + 1].sum())
        p_high = float(pmf[t:].sum())
        return min(1.0, 2.0 * min(p_low, p_high)), "exact"
    mean = n * (n + 1) / 4.0
    tie_term = float((tie_sizes.astype(float) ** 3 - tie_sizes).sum())
    var = n * (n + 1) * (2 * n + 1) / 24.0 - tie_term / 48.0
    if var <= 0:
        return 1.0, "asymptotic"
    z = (r_plus - mean) / math.sqrt(var)
    return float(min(1.0, 2.0 * norm.sf(abs(z)))), "asymptotic"


def cluster_codes(clusters: Sequence[object]) -> tuple[NDArray[np.intp], int]:
    """(code per item, number of clusters); codes number the clusters in sorted order of
    their names, as ``np.unique(names, return_inverse=True)`` does, but hash-based (a
    sort of the distinct names only), so a million items take milliseconds, not seconds."""
    import pandas as pd

    first, uniques = pd.factorize(np.asarray(clusters, dtype=object), use_na_sentinel=False)
    names, inverse = np.unique(np.asarray(uniques, dtype=object).astype(str), return_inverse=True)
    return np.asarray(inverse, dtype=np.intp).reshape(-1)[first], int(names.size)


def clustered_se(values: ArrayLike, clusters: Sequence[object]) -> tuple[float | None, int]:
    """Cluster-robust SE of the mean (Miller 2024, eq. 4, with the C/(C-1) correction).

    Returns (se, number of clusters); se is None with fewer than two clusters.
    """
    x = np.asarray(values, dtype=float)
    totals, n_clusters = _cluster_totals(np.stack([x - x.mean()]), clusters)
    if totals is None:
        return None, n_clusters
    var = n_clusters / (n_clusters - 1) * float((totals[0] ** 2).sum()) / x.size**2
    return math.sqrt(var), n_clusters


def _cluster_totals(rows: FloatArray, clusters: Sequence[object]) -> tuple[FloatArray | None, int]:
    """(per-cluster sums of each row of ``rows`` (rows x clusters), number of clusters);
    the sums are None with fewer than two clusters, where no cluster-robust estimate exists.
    The one place that codes clusters for the cluster-robust SE and covariance."""
    codes, n_clusters = cluster_codes(clusters)
    if n_clusters < 2:
        return None, n_clusters
    return np.stack([np.bincount(codes, weights=r, minlength=n_clusters) for r in rows]), n_clusters


def minimum_detectable_effect(se: float | None, alpha: float, power: float = POWER) -> float | None:
    """Smallest true |delta| a two-sided level-alpha test detects with ``power``."""
    if se is None or not se > 0:
        return None
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def holm_adjust(p_values: ArrayLike) -> FloatArray:
    """Holm step-down adjusted p-values (= statsmodels multipletests(method='holm'))."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def bh_qvalues(p_values: ArrayLike) -> FloatArray:
    """Benjamini-Hochberg q-values (= statsmodels multipletests(method='fdr_bh'))."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


# ---------------------------------------------------------------- paired bootstrap


def _rng(seed: int, *salt: int) -> np.random.Generator:
    # A stream per (seed, n, ...): a task's CI never depends on which other tasks are present.
    return np.random.default_rng(np.random.SeedSequence([seed, *salt]))


def _percentile(means: FloatArray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap_cis(
    diffs: Sequence[ArrayLike], *, alpha: float = 0.05, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> list[tuple[float, float]]:
    """Percentile bootstrap CIs of the mean of each array of paired differences.

    See ``paired_bootstrap_quantiles`` for how the resampling is batched and seeded.
    """
    quantiles = paired_bootstrap_quantiles(
        diffs, (alpha / 2, 1 - alpha / 2), n_boot=n_boot, seed=seed
    )
    return [(float(q[0]), float(q[1])) for q in quantiles]


def paired_bootstrap_quantiles(
    diffs: Sequence[ArrayLike],
    probs: Sequence[float],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> list[FloatArray]:
    """Quantiles ``probs`` of the bootstrap distribution of the mean of each array.

    Vectorised two ways: arrays with few distinct values draw multinomial counts over those
    values; the others are grouped by length n and share one count matrix per n
    (resampling weights are the same for any data of that length), so every task of that
    length costs one matrix product. Seeded per (seed, n): reproducible and independent
    of the other arrays passed in.
    """
    arrays = [np.asarray(d, dtype=float) for d in diffs]
    out: list[FloatArray | None] = [None] * len(arrays)
    qs = list(probs)
    by_length: dict[int, list[int]] = {}
    for i, d in enumerate(arrays):
        if d.size == 0:
            raise ValueError("cannot bootstrap an empty sample")
        values, first, counts = np.unique(d, return_index=True, return_counts=True)
        # Categories in order of first appearance, not sorted: negating d (swapping base
        # and tuned) then maps every draw to its mirror image, so the CI negates exactly.
        by_appearance = np.argsort(first)
        values, counts = values[by_appearance], counts[by_appearance]
        if values.size == 1:
            out[i] = np.full(len(qs), float(values[0]))
        elif values.size <= _FEW_VALUES:
            rng = _rng(seed, d.size, values.size)
            draws = rng.multinomial(d.size, counts / d.size, size=n_boot)
            out[i] = np.quantile(draws @ values / d.size, qs)
        else:
            by_length.setdefault(d.size, []).append(i)
    for n, members in by_length.items():
        centres = np.array([arrays[i].mean() for i in members])
        # Centred float32 columns: the matrix product is twice as fast and its rounding
        # (~1e-7 of the spread) is far below the Monte-Carlo error of the bootstrap.
        columns = np.stack([arrays[i] - arrays[i].mean() for i in members], axis=1).astype(
            np.float32
        )
        means = _bootstrap_means_shared(columns, n_boot, _rng(seed, n)) + centres
        for j, i in enumerate(members):
            out[i] = np.quantile(means[:, j], qs)
    return [o for o in out if o is not None]


def _bootstrap_means_shared(
    columns: NDArray[np.float32], n_boot: int, rng: np.random.Generator
) -> FloatArray:
    n = columns.shape[0]
    index_dtype = np.uint16 if n <= 65_535 else np.uint32
    chunk = max(1, min(n_boot, _BOOT_CHUNK_ELEMENTS // n))
    result = np.empty((n_boot, columns.shape[1]))
    counts = np.empty((chunk, n), dtype=np.float32)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        picks = rng.integers(0, n, size=(rows, n), dtype=index_dtype)
        for r in range(rows):
            counts[r] = np.bincount(picks[r], minlength=n)
        result[start : start + rows] = counts[:rows] @ columns
    return np.asarray(result / n, dtype=float)


# ---------------------------------------------------------------- one paired comparison


@dataclass(frozen=True, slots=True)
class PairedSample:
    """Aligned per-item scores of both models; ``clusters`` optional, one id per item."""

    base: FloatArray
    tuned: FloatArray
    clusters: tuple[str, ...] | None = None

    @staticmethod
    def of(
        base: ArrayLike, tuned: ArrayLike, clusters: Sequence[str | None] | None = None
    ) -> PairedSample:
        b = np.asarray(base, dtype=float)
        t = np.asarray(tuned, dtype=float)
        if b.shape != t.shape or b.ndim != 1:
            raise ValueError("base and tuned must be 1-d arrays of the same length")
        if clusters is not None and any(c is None for c in clusters):
            clusters = None  # clustering needs every item to carry an id
        cl = tuple(str(c) for c in clusters) if clusters is not None else None
        if cl is not None and len(cl) != b.size:
            raise ValueError("one cluster id per item is needed")
        return PairedSample(b, t, cl)

    @property
    def is_binary(self) -> bool:
        return bool(np.isin(self.base, (0.0, 1.0)).all() and np.isin(self.tuned, (0.0, 1.0)).all())


# ---------------------------------------------------------------- flips


FLIP_EPS = 1e-9  # a paired difference within +-FLIP_EPS counts as unchanged
DELTA_QUANTILES = (("p05", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95))


@dataclass(frozen=True, slots=True)
class Flips:
    """Items that got worse (``lost``: right -> wrong for 0/1 scores, delta < -eps for
    continuous ones), better (``gained``) or stayed within +-eps (``same``)."""

    lost: int
    gained: int
    same: int

    def mirrored(self) -> Flips:
        """For metrics where lower is better: a rise is a loss."""
        return Flips(self.gained, self.lost, self.same)


def flip_counts(diffs: ArrayLike, eps: float = FLIP_EPS) -> Flips:
    """Count paired differences (tuned - base) below -eps, above eps and in between."""
    d = np.asarray(diffs, dtype=float)
    lost = int((d < -eps).sum())
    gained = int((d > eps).sum())
    return Flips(lost, gained, int(d.size) - lost - gained)


def delta_quantiles(diffs: ArrayLike) -> dict[str, float]:
    """p05, p25, p50, p75, p95 of the paired differences (numpy's linear interpolation)."""
    d = np.asarray(diffs, dtype=float)
    values = np.quantile(d, [q for _, q in DELTA_QUANTILES])
    return {name: float(v) for (name, _), v in zip(DELTA_QUANTILES, values, strict=True)}


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Result of one paired comparison; ``delta = tuned_mean - base_mean``.

    ``ci_low``/``ci_high`` (and for too few clusters ``p_value``) are None when the sample
    is too small for the method; ``note`` then says why.
    """

    n: int
    base_mean: float
    tuned_mean: float
    delta: float
    ci_low: float | None
    ci_high: float | None
    test: str  # mcnemar_exact | wilcoxon | cluster_robust_z
    p_value: float | None
    ci_method: str  # newcombe_hybrid_score | bootstrap_percentile | cluster_robust_normal
    se: float
    se_clustered: float | None
    n_clusters: int | None
    mde: float | None
    binary: bool
    tuned_only: int | None = None  # discordant pairs (binary only): tuned right, base wrong
    base_only: int | None = None
    note: str | None = None
    # The (1 - 2 alpha) CI by the same method, for equivalence (TOST); None as ci_low/high.
    eq_ci_low: float | None = None
    eq_ci_high: float | None = None
    flips: Flips | None = None
    delta_quantiles: dict[str, float] | None = None  # continuous metrics only


_Method = Literal[
    "cluster_robust", "too_few_clusters", "exact_binary", "bootstrap", "too_few_items"
]


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which method a sample gets; decided once, so batching and judging agree."""

    method: _Method
    se_clustered: float | None = None
    n_clusters: int | None = None


def _plan(sample: PairedSample) -> _Plan:
    n = sample.base.size
    se_cl: float | None = None
    n_cl: int | None = None
    if sample.clusters is not None:
        se_cl, n_cl = clustered_se(sample.tuned - sample.base, sample.clusters)
        if n_cl < n:  # some cluster holds several items: they are not independent
            method: _Method = "cluster_robust" if n_cl >= MIN_CLUSTERS else "too_few_clusters"
            return _Plan(method, se_cl, n_cl)
    if sample.is_binary:
        return _Plan("exact_binary", se_cl, n_cl)
    return _Plan("bootstrap" if n >= MIN_BOOTSTRAP_ITEMS else "too_few_items", se_cl, n_cl)


def _table(sample: PairedSample) -> tuple[int, int, int]:
    """(both right, tuned only right, base only right) of a binary sample."""
    both = int(((sample.tuned == 1) & (sample.base == 1)).sum())
    tuned_only = int(((sample.tuned == 1) & (sample.base == 0)).sum())
    base_only = int(((sample.tuned == 0) & (sample.base == 1)).sum())
    return both, tuned_only, base_only


def compare_many(
    samples: Sequence[PairedSample],
    *,
    alpha: float = 0.05,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> list[PairedComparison]:
    """Paired comparison of each sample; bootstraps of all samples are batched."""
    plans = [_plan(s) for s in samples]
    boot_needed = [i for i, plan in enumerate(plans) if plan.method == "bootstrap"]
    # The 1 - alpha CI and the 1 - 2 alpha one (equivalence) from the same draws.
    boot = paired_bootstrap_quantiles(
        [samples[i].tuned - samples[i].base for i in boot_needed],
        (alpha / 2, 1 - alpha / 2, alpha, 1 - alpha),
        n_boot=n_boot,
        seed=seed,
    )
    cis = {i: tuple(float(x) for x in q) for i, q in zip(boot_needed, boot, strict=True)}
    return [
        _compare_one(s, plan, alpha, cis.get(i))
        for i, (s, plan) in enumerate(zip(samples, plans, strict=True))
    ]


def compare_paired(
    base: ArrayLike,
    tuned: ArrayLike,
    clusters: Sequence[str | None] | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of one task (see the module docstring for the methods)."""
    sample = PairedSample.of(base, tuned, clusters)
    return compare_many([sample], alpha=alpha, n_boot=n_boot, seed=seed)[0]


@dataclass(frozen=True, slots=True)
class _Inference:
    test: str
    ci_method: str
    ci: tuple[float, float] | None
    p_value: float | None
    note: str | None = None
    eq_ci: tuple[float, float] | None = None  # at level 1 - 2 alpha


_BootQuantiles = tuple[float, ...]  # (alpha/2, 1 - alpha/2, alpha, 1 - alpha) quantiles


def _infer(
    sample: PairedSample, plan: _Plan, alpha: float, boot_ci: _BootQuantiles | None
) -> _Inference:
    """Test, CI and p-value by the planned method."""
    n = sample.base.size
    d = sample.tuned - sample.base
    delta = float(d.mean())
    if plan.method == "cluster_robust":
        assert plan.se_clustered is not None
        half = float(norm.ppf(1 - alpha / 2)) * plan.se_clustered
        ci = (delta - half, delta + half)
        eq_half = float(norm.ppf(1 - alpha)) * plan.se_clustered
        p = _z_test_p(delta, plan.se_clustered)
        return _Inference(
            "cluster_robust_z",
            "cluster_robust_normal",
            ci,
            p,
            eq_ci=(delta - eq_half, delta + eq_half),
        )
    if plan.method == "too_few_clusters":
        note = (
            f"{n} items in {plan.n_clusters} cluster(s): a cluster-robust CI needs at least "
            f"{MIN_CLUSTERS} clusters"
        )
        return _Inference("cluster_robust_z", "cluster_robust_normal", None, None, note)
    if plan.method == "exact_binary":
        both, tuned_only, base_only = _table(sample)
        neither = n - both - tuned_only - base_only
        lo_arr, hi_arr = newcombe_paired_ci(both, tuned_only, base_only, neither, alpha)
        eq_lo, eq_hi = newcombe_paired_ci(both, tuned_only, base_only, neither, 2 * alpha)
        p = mcnemar_exact_p(tuned_only, base_only)
        return _Inference(
            "mcnemar_exact",
            "newcombe_hybrid_score",
            (float(lo_arr), float(hi_arr)),
            p,
            eq_ci=(float(eq_lo), float(eq_hi)),
        )
    p, _ = wilcoxon_signed_rank(d)
    if plan.method == "too_few_items":
        note = f"{n} item(s): a bootstrap CI needs at least {MIN_BOOTSTRAP_ITEMS}"
        return _Inference("wilcoxon", "bootstrap_percentile", None, p, note)
    if boot_ci is None:
        raise ValueError("a continuous comparison planned for the bootstrap got no CI")
    return _Inference(
        "wilcoxon",
        "bootstrap_percentile",
        (boot_ci[0], boot_ci[1]),
        p,
        eq_ci=(boot_ci[2], boot_ci[3]),
    )


def _compare_one(
    sample: PairedSample, plan: _Plan, alpha: float, boot_ci: _BootQuantiles | None
) -> PairedComparison:
    n = sample.base.size
    if n == 0:
        raise ValueError("cannot compare zero items")
    d = sample.tuned - sample.base
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    binary = sample.is_binary
    tuned_only = base_only = None
    if binary:
        _, tuned_only, base_only = _table(sample)
    inference = _infer(sample, plan, alpha, boot_ci)
    if plan.method == "too_few_clusters":
        mde = None  # the i.i.d. SE would understate it, the clustered SE is unreliable
    else:
        mde = minimum_detectable_effect(
            plan.se_clustered if plan.method == "cluster_robust" else se, alpha
        )
    low, high = inference.ci if inference.ci is not None else (None, None)
    eq_low, eq_high = inference.eq_ci if inference.eq_ci is not None else (None, None)
    return PairedComparison(
        n=n,
        base_mean=float(sample.base.mean()),
        tuned_mean=float(sample.tuned.mean()),
        delta=float(d.mean()),
        ci_low=low,
        ci_high=high,
        test=inference.test,
        p_value=inference.p_value,
        ci_method=inference.ci_method,
        se=se,
        se_clustered=plan.se_clustered,
        n_clusters=plan.n_clusters,
        mde=mde,
        binary=binary,
        tuned_only=tuned_only,
        base_only=base_only,
        note=inference.note,
        eq_ci_low=eq_low,
        eq_ci_high=eq_high,
        flips=flip_counts(d),
        delta_quantiles=None if binary else delta_quantiles(d),
    )


# ---------------------------------------------------------------- aggregate indices


def _mean_covariance(sample: PairedSample) -> FloatArray:
    """2x2 covariance matrix of (base_mean, tuned_mean), cluster-robust when clustered."""
    n = sample.base.size
    resid = np.stack([sample.base - sample.base.mean(), sample.tuned - sample.tuned.mean()])
    if sample.clusters is not None:
        sums, c = _cluster_totals(resid, sample.clusters)
        if sums is not None:
            return np.asarray(c / (c - 1) * (sums @ sums.T) / n**2)
    if n < 2:
        return np.zeros((2, 2))
    return np.asarray(resid @ resid.T / (n - 1) / n)


@dataclass(frozen=True, slots=True)
class RetentionIndex:
    """tuned/base ratio of the macro-averaged general scores, with a delta-method CI."""

    index: float | None
    ci_low: float | None
    ci_high: float | None
    base_macro: float
    tuned_macro: float
    n_tasks: int


def retention_index(samples: Sequence[PairedSample], alpha: float = 0.05) -> RetentionIndex:
    """General-capability retention: mean over tasks of tuned means / same for base.

    CI: delta method on log(ratio) (tasks are independent samples, base and tuned means
    of a task covary through the pairing), exponentiated back; 1.0 = nothing lost.
    """
    k = len(samples)
    if k == 0:
        return RetentionIndex(None, None, None, float("nan"), float("nan"), 0)
    base_macro = float(np.mean([s.base.mean() for s in samples]))
    tuned_macro = float(np.mean([s.tuned.mean() for s in samples]))
    if base_macro <= 0:
        return RetentionIndex(None, None, None, base_macro, tuned_macro, k)
    cov = sum((_mean_covariance(s) for s in samples), np.zeros((2, 2))) / k**2
    ratio = tuned_macro / base_macro
    if tuned_macro <= 0:
        return RetentionIndex(ratio, 0.0, None, base_macro, tuned_macro, k)
    var_log = (
        cov[1, 1] / tuned_macro**2
        + cov[0, 0] / base_macro**2
        - 2 * cov[0, 1] / (tuned_macro * base_macro)
    )
    half = float(norm.ppf(1 - alpha / 2) * math.sqrt(max(var_log, 0.0)))
    return RetentionIndex(
        ratio, ratio * math.exp(-half), ratio * math.exp(half), base_macro, tuned_macro, k
    )


@dataclass(frozen=True, slots=True)
class MacroComparison:
    """Macro average over strata (e.g. task types) of the per-stratum paired deltas."""

    n_groups: int
    base_mean: float
    tuned_mean: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float


def macro_comparison(samples: Sequence[PairedSample], alpha: float = 0.05) -> MacroComparison:
    """Each stratum weighs the same; strata hold disjoint items, so their variances add."""
    k = len(samples)
    if k == 0:
        raise ValueError("no groups to average")
    deltas = np.array([float((s.tuned - s.base).mean()) for s in samples])
    variances = []
    for s in samples:
        cov = _mean_covariance(s)
        variances.append(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(float(np.sum(variances)), 0.0)) / k
    delta = float(deltas.mean())
    z = norm.ppf(1 - alpha / 2)
    p = _z_test_p(delta, se)
    return MacroComparison(
        n_groups=k,
        base_mean=float(np.mean([s.base.mean() for s in samples])),
        tuned_mean=float(np.mean([s.tuned.mean() for s in samples])),
        delta=delta,
        ci_low=delta - z * se,
        ci_high=delta + z * se,
        p_value=p,
        se=se,
    )


# ---------------------------------------------------------------- correlation


CorrelationMethod = Literal["spearman", "pearson", "kendall"]
EXACT_PERMUTATION_MAX_N = 8


@dataclass(frozen=True, slots=True)
class CorrelationResult:
    """Correlation with a percentile bootstrap CI and a two-sided permutation p-value.

    Undefined values (constant input, bootstrap resamples that are all constant) are NaN.
    """

    method: str
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    p_method: str  # exact_permutation | monte_carlo_permutation
    n_boot: int
    n_permutations: int


def _pearson_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = (xc * yc).sum(axis=-1)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    return np.asarray(np.clip(_safe_ratio(num, den, np.nan), -1.0, 1.0))


def _kendall_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    """Kendall tau-b per row (= scipy.stats.kendalltau's default variant)."""
    n = x.shape[-1]
    iu, ju = np.triu_indices(n, k=1)
    out = np.empty(x.shape[0])
    step = max(1, 4_000_000 // max(iu.size, 1))
    for s in range(0, x.shape[0], step):
        dx = np.sign(x[s : s + step, iu] - x[s : s + step, ju])
        dy = np.sign(y[s : s + step, iu] - y[s : s + step, ju])
        den = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
        out[s : s + step] = _safe_ratio((dx * dy).sum(axis=1), den, np.nan)
    return out


def _correlation_rows(x: FloatArray, y: FloatArray, method: str) -> FloatArray:
    if method == "pearson":
        return _pearson_rows(x, y)
    if method == "spearman":
        return _pearson_rows(rankdata(x, axis=-1), rankdata(y, axis=-1))
    if method == "kendall":
        return _kendall_rows(x, y)
    raise ValueError(f"unknown correlation method {method!r}; use spearman, pearson or kendall")


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: CorrelationMethod = "spearman",
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    exact_max_n: int = EXACT_PERMUTATION_MAX_N,
) -> CorrelationResult:
    """Correlation of x and y (e.g. data quality vs. score over checkpoints).

    p-value: permutation test of "no association" by shuffling y against x, over all n!
    orderings when n <= ``exact_max_n`` (exact; 9! = 362,880 orderings still fit in
    memory), else ``n_boot`` random ones ((hits + 1)/(B + 1)).
    CI: percentile bootstrap over (x, y) pairs, degenerate resamples dropped.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be 1-d arrays of the same length")
    n = xs.size
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 points, got {n}")
    estimate = float(_correlation_rows(xs[None, :], ys[None, :], method)[0])
    rng = _rng(seed, n)
    picks = rng.integers(0, n, size=(n_boot, n))
    boot = _correlation_rows(xs[picks], ys[picks], method)
    boot = boot[~np.isnan(boot)]
    alpha = 0.05
    if boot.size and not math.isnan(estimate):
        ci_low, ci_high = _percentile(boot, alpha)
    else:
        ci_low = ci_high = float("nan")
    if n <= exact_max_n:
        orders = np.array(list(itertools.permutations(range(n))))
        p_method = "exact_permutation"
    else:
        orders = rng.permuted(np.tile(np.arange(n), (n_boot, 1)), axis=1)
        p_method = "monte_carlo_permutation"
    perm = _correlation_rows(np.broadcast_to(xs, orders.shape), ys[orders], method)
    if math.isnan(estimate):
        p = float("nan")
    else:
        # A relative tolerance so that permutations tied with the observed value count.
        hits = int((np.abs(perm) >= abs(estimate) * (1 - 1e-12) - 1e-15).sum())
        p = (
            hits / orders.shape[0]
            if p_method == "exact_permutation"
            else (hits + 1) / (orders.shape[0] + 1)
        )
    return CorrelationResult(
        method=method,
        n=n,
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=float(p),
        p_method=p_method,
        n_boot=n_boot,
        n_permutations=int(orders.shape[0]),
    )
