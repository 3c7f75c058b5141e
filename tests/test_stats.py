"""stats.py against scipy / statsmodels references (1e-9) and on edge cases."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from collapse_eval import stats as S

TOL = 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_mcnemar_matches_statsmodels_and_binomtest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = [(0, 0), (0, 1), (1, 0), (5, 5), (0, 30), (200, 180), (1, 1000)]
    cases += [tuple(int(v) for v in rng.integers(0, 60, 2)) for _ in range(100)]
    for b, c in cases:
        ours = S.mcnemar_exact_p(b, c)
        ref = mcnemar([[7, b], [c, 3]], exact=True).pvalue
        assert abs(ours - ref) < TOL, (b, c)
        if b + c:
            assert abs(ours - sps.binomtest(b, b + c).pvalue) < TOL, (b, c)


def test_wilcoxon_matches_scipy_exact_and_asymptotic() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 90))
        decimals = [0, 1, 8][trial % 3]  # 0 and 1 decimals give zeros and ties
        d = np.round(rng.normal(0.2, 1.0, n), decimals)
        ours, method = S.wilcoxon_signed_rank(d)
        if not (d != 0).any():
            assert ours == 1.0
            continue
        nz = d[d != 0]
        expect_exact = nz.size <= 50 and np.unique(np.abs(nz)).size == nz.size
        assert method == ("exact" if expect_exact else "asymptotic")
        ref = sps.wilcoxon(d, method=method, correction=False, zero_method="wilcox").pvalue
        assert abs(ours - ref) < TOL, (n, decimals)


def test_wilcoxon_edge_cases() -> None:
    assert S.wilcoxon_signed_rank([0.0, 0.0, 0.0]) == (1.0, "exact")  # all ties at zero
    assert S.wilcoxon_signed_rank([0.3]) == (1.0, "exact")  # n = 1: both signs equally likely
    p, _ = S.wilcoxon_signed_rank([1.0] * 10)  # all tied, all positive
    ref = sps.wilcoxon([1.0] * 10, method="asymptotic", correction=False).pvalue
    assert abs(p - ref) < TOL


def test_holm_and_bh_match_statsmodels(monkeypatch: pytest.MonkeyPatch) -> None:
    # statsmodels' Holm branch calls gc.collect() on every call (a memory habit, no
    # effect on the result); with torch and vLLM loaded in the test process that is about
    # 0.7 s a call, 23 s of CI for these 30 calls.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(1)
    for m in [1, 2, 3, 7, 40]:
        for _ in range(6):
            p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
            p[rng.random(m) < 0.2] = p[0]  # ties
            assert np.allclose(
                S.holm_adjust(p), multipletests(p, method="holm")[1], atol=TOL, rtol=0
            )
            assert np.allclose(
                S.bh_qvalues(p), multipletests(p, method="fdr_bh")[1], atol=TOL, rtol=0
            )
    assert S.holm_adjust([]).size == 0


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_correlation_estimates_match_scipy(method: str) -> None:
    ref_fn = {"pearson": sps.pearsonr, "spearman": sps.spearmanr, "kendall": sps.kendalltau}
    rng = np.random.default_rng(2)
    for n in [3, 5, 8, 9, 30]:
        for _ in range(10):
            x = np.round(rng.normal(size=n), 1)  # rounding creates ties
            y = x + np.round(rng.normal(size=n), 1)
            res = S.correlation(x, y, method, n_boot=200, seed=0)
            assert abs(res.estimate - ref_fn[method](x, y).statistic) < TOL


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_exact_permutation_p_matches_scipy_permutation_test(method: str) -> None:
    ref_fn = {"pearson": sps.pearsonr, "spearman": sps.spearmanr, "kendall": sps.kendalltau}
    rng = np.random.default_rng(3)
    for n in [4, 6]:
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n)
        res = S.correlation(x, y, method, n_boot=200)
        # Two-sided as |r| >= |r_observed| over all n! pairings.
        assert res.p_method == "exact_permutation" and res.n_permutations == math.factorial(n)
        ref = sps.permutation_test(
            (x,),
            lambda a, y=y: abs(ref_fn[method](a, y).statistic),
            permutation_type="pairings",
            n_resamples=math.inf,
            alternative="greater",
        ).pvalue
        assert abs(res.p_value - ref) < TOL, n


def test_exact_permutation_p_n8_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=8)
    y = 0.8 * x + rng.normal(size=8)
    res = S.correlation(x, y, "pearson", n_boot=200)
    assert res.n_permutations == 40320
    ref = sps.permutation_test(
        (x,),
        lambda a, axis: np.abs(sps.pearsonr(a, np.broadcast_to(y, a.shape), axis=axis)[0]),
        permutation_type="pairings",
        n_resamples=math.inf,
        alternative="greater",
        vectorized=True,
    ).pvalue
    assert abs(res.p_value - ref) < TOL


def test_correlation_monte_carlo_and_ci() -> None:
    rng = np.random.default_rng(4)
    x = np.arange(12, dtype=float)
    y = x + rng.normal(0, 2, 12)
    res = S.correlation(x, y, "spearman", n_boot=2000, seed=1)
    assert res.p_method == "monte_carlo_permutation"
    hits = res.p_value * 2001 - 1  # (hits + 1) / (B + 1): never exactly 0
    assert hits == pytest.approx(round(hits)) and 0 <= round(hits) <= 4
    assert res.ci_low < res.estimate < res.ci_high <= 1.0
    again = S.correlation(x, y, "spearman", n_boot=2000, seed=1)
    assert again == res  # seeded
    const = S.correlation([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], "pearson", n_boot=100)
    assert math.isnan(const.estimate) and math.isnan(const.p_value)
    with pytest.raises(ValueError):
        S.correlation([1.0, 2.0], [1.0, 2.0])


def _newcombe_textbook(a: int, b: int, c: int, d: int, alpha: float = 0.05) -> tuple[float, float]:
    """Scalar transcription of Newcombe (1998) method 10 / Fagerland et al. (2017) eq. 8.x."""
    n = a + b + c + d
    z = sps.norm.ppf(1 - alpha / 2)

    def wilson(k: int) -> tuple[float, float]:
        p = k / n
        centre = (2 * n * p + z * z) / (2 * (n + z * z))
        half = z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
        return centre - half, centre + half

    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b)
    l2, u2 = wilson(a + c)
    if 0 in (a + b, c + d, a + c, b + d):
        psi = 0.0
    else:
        cross = a * d - b * c
        cross = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        psi = cross / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2))
    high = p1 - p2 + math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1))
    return low, high


def test_newcombe_textbook_example_and_transcription() -> None:
    # Fagerland, Lydersen & Laake (2017), airway hyper-responsiveness (Bentur et al. 2009):
    # table [[1, 1], [7, 12]] gives -0.2857 with 95% CI -0.5069 to -0.0256.
    low, high = S.newcombe_paired_ci(1, 1, 7, 12)
    assert round(float(low), 4) == -0.5069 and round(float(high), 4) == -0.0256
    rng = np.random.default_rng(5)
    for _ in range(200):
        cells = [int(v) for v in rng.integers(0, 40, 4)]
        if sum(cells) == 0:
            continue
        ours = S.newcombe_paired_ci(*cells)
        ref = _newcombe_textbook(*cells)
        assert abs(float(ours[0]) - max(ref[0], -1)) < TOL
        assert abs(float(ours[1]) - min(ref[1], 1)) < TOL


def test_binary_edge_cases() -> None:
    all_right = S.compare_paired(np.ones(50), np.ones(50))
    assert all_right.test == "mcnemar_exact" and all_right.p_value == 1.0
    assert all_right.delta == 0.0 and all_right.ci_low < 0 < all_right.ci_high
    assert all_right.mde is None  # no discordant pairs: no variance to size an effect by
    one = S.compare_paired([1.0], [0.0])
    assert one.n == 1 and one.delta == -1.0 and one.p_value == 1.0
    assert -1.0 <= one.ci_low < one.ci_high <= 1.0
    r = S.compare_paired([1, 1, 1, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1])
    assert (r.tuned_only, r.base_only) == (0, 3)
    assert r.p_value == pytest.approx(0.25)  # 2 * 0.5**3


def test_continuous_uses_wilcoxon_and_bootstrap() -> None:
    rng = np.random.default_rng(6)
    base = rng.random(300)
    tuned = np.clip(base - 0.05 + rng.normal(0, 0.1, 300), 0, 1)
    r = S.compare_paired(base, tuned, n_boot=4000, seed=3)
    assert r.test == "wilcoxon" and r.ci_method == "bootstrap_percentile"
    assert r.p_value == pytest.approx(S.wilcoxon_signed_rank(tuned - base)[0])
    d = tuned - base
    # The percentile bootstrap CI of a mean is close to mean +- 1.96 sd / sqrt(n).
    half = 1.96 * d.std() / math.sqrt(d.size)
    assert r.ci_low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert r.ci_high == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert S.compare_paired(base, tuned, n_boot=4000, seed=3) == r
    assert S.compare_paired(base, tuned, n_boot=4000, seed=4) != r
    constant = S.compare_paired(
        np.full(S.MIN_BOOTSTRAP_ITEMS, 0.5), np.full(S.MIN_BOOTSTRAP_ITEMS, 0.7)
    )
    assert (constant.ci_low, constant.ci_high) == pytest.approx((0.2, 0.2))
    two = S.compare_paired([0.5, 0.5], [0.7, 0.7])  # too few items for a bootstrap CI
    assert (two.ci_low, two.ci_high, two.delta) == (None, None, pytest.approx(0.2))


def test_bootstrap_paths_agree() -> None:
    """Few-distinct-values (multinomial) and item-resampling paths estimate the same CI."""
    rng = np.random.default_rng(7)
    d = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=2000, p=[0.1, 0.15, 0.5, 0.15, 0.1])
    few = S.paired_bootstrap_cis([d], n_boot=20000, seed=0)[0]
    jitter = d + rng.normal(0, 1e-9, d.size)  # > 64 distinct values: the other path
    many = S.paired_bootstrap_cis([jitter], n_boot=20000, seed=0)[0]
    assert few == pytest.approx(many, abs=0.003)


def test_clustered_se_matches_formula_and_statsmodels_ols() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(40), 5)
    x = rng.normal(size=40)[clusters] + rng.normal(size=200)
    se, k = S.clustered_se(x, [str(c) for c in clusters])
    assert k == 40
    # Intercept-only OLS with cluster-robust covariance: statsmodels applies
    # G/(G-1) * (N-1)/(N-K); with K = 1 the second factor is 1, as in Miller (2024).
    fit = sm.OLS(x, np.ones((200, 1))).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    assert se == pytest.approx(float(fit.bse[0]), abs=TOL)
    assert S.clustered_se([1.0, 2.0], ["a", "a"]) == (None, 1)
    r = S.compare_paired(np.zeros(200), x, [str(c) for c in clusters])
    assert r.test == "cluster_robust_z" and r.n_clusters == 40
    assert r.se_clustered == pytest.approx(se) and r.se_clustered > 1.5 * r.se


def test_mde() -> None:
    assert S.minimum_detectable_effect(0.01, 0.05) == pytest.approx(
        (1.959964 + 0.841621) * 0.01, rel=1e-6
    )
    assert S.minimum_detectable_effect(0.0, 0.05) is None


def test_retention_and_macro() -> None:
    rng = np.random.default_rng(9)
    samples = []
    for _ in range(4):
        base = (rng.random(400) < 0.6).astype(float)
        tuned = base * (rng.random(400) < 0.9)
        samples.append(S.PairedSample.of(base, tuned))
    ret = S.retention_index(samples)
    expected = np.mean([s.tuned.mean() for s in samples]) / np.mean(
        [s.base.mean() for s in samples]
    )
    assert ret.index == pytest.approx(expected)
    assert ret.ci_low < ret.index < ret.ci_high < 1.0  # a 10 % loss is clearly detected
    macro = S.macro_comparison(samples)
    assert macro.delta == pytest.approx(np.mean([(s.tuned - s.base).mean() for s in samples]))
    assert macro.p_value < 1e-6


def test_bootstrap_rejects_empty() -> None:
    with pytest.raises(ValueError, match="cannot bootstrap an empty sample"):
        S.paired_bootstrap_cis([np.array([])])
