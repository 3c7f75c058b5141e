"""Simulation checks of the statistics (fixed seeds; tolerances from Monte-Carlo error).

Measured with these seeds (alpha 0.05, margin 0.02):
  A/A binary n=500, 2000 runs: false "regressed" 0.0185, any p < alpha 0.0365
  A/A continuous, 5 tasks x n=200, Holm, 1000 runs: any false "regressed" 0.020
  Newcombe coverage: 0.9533 (n=200), 0.9498 (n=2000), 20000 tables each
  bootstrap coverage: 0.9453 (n=200), 0.9512 (n=2000), 6000 runs each
  power, 5-point drop at n=1000: 0.943 (item-level), 0.944 (250 clusters of 4)
Total runtime about 30 s on 2 cores.
"""

from __future__ import annotations

import math

import numpy as np

from collapse_eval import stats as S
from collapse_eval.verdict import comparison_status

ALPHA = 0.05


def _mc_bound(rate: float, runs: int, k: float = 3.0) -> float:
    """rate + k Monte-Carlo standard errors: the tolerance for an observed frequency."""
    return rate + k * math.sqrt(rate * (1 - rate) / runs)


def _correlated_binary(rng: np.random.Generator, n: int, drop: float = 0.0) -> tuple:
    # Items differ in difficulty (U-shaped, as greedy LLM answers mostly are), so base
    # and tuned outcomes are strongly correlated; tuned loses `drop` on every item.
    p = np.clip(rng.beta(0.3, 0.3, n), drop + 0.01, 1.0)
    return (rng.random(n) < p).astype(float), (rng.random(n) < p - drop).astype(float)


def test_aa_false_regressed_rate_binary() -> None:
    rng = np.random.default_rng(10)
    runs, regressed, significant = 2000, 0, 0
    for _ in range(runs):
        base, tuned = _correlated_binary(rng, 500)
        r = S.compare_paired(base, tuned)
        status = comparison_status(
            r.delta, r.ci_low, r.ci_high, r.p_value, alpha=ALPHA, margin=0.02
        )
        regressed += status == "regressed"
        significant += r.p_value < ALPHA
    # Measured: regressed 0.0185, significant 0.0365 (exact McNemar is slightly conservative).
    assert regressed / runs <= _mc_bound(ALPHA / 2, runs)
    assert significant / runs <= _mc_bound(ALPHA, runs)


def test_aa_false_regressed_rate_continuous_and_familywise() -> None:
    rng = np.random.default_rng(11)
    runs, tasks = 1000, 5
    regressed_any = 0
    for _ in range(runs):
        samples = []
        for _ in range(tasks):
            quality = rng.beta(2, 2, 200)
            base = np.clip(quality + rng.normal(0, 0.1, 200), 0, 1)
            tuned = np.clip(quality + rng.normal(0, 0.1, 200), 0, 1)
            samples.append(S.PairedSample.of(base, tuned))
        results = S.compare_many(samples, n_boot=1000, seed=int(rng.integers(1 << 30)))
        adjusted = S.holm_adjust([r.p_value for r in results])
        statuses = [
            comparison_status(r.delta, r.ci_low, r.ci_high, p, alpha=ALPHA, margin=0.02)
            for r, p in zip(results, adjusted, strict=True)
        ]
        regressed_any += "regressed" in statuses
    # Holm keeps the family-wise rate of any false "regressed" at or below alpha / 2
    # (one direction). Measured: 0.020.
    assert regressed_any / runs <= _mc_bound(ALPHA / 2, runs)


def test_newcombe_coverage_n200_n2000() -> None:
    rng = np.random.default_rng(12)
    # Cells: both right, tuned only, base only, neither. Highly concordant, like LLM evals.
    truth = np.array([0.55, 0.04, 0.07, 0.34])
    runs = 20000
    for n in (200, 2000):
        cells = rng.multinomial(n, truth, size=runs)
        low, high = S.newcombe_paired_ci(*cells.T, alpha=ALPHA)
        true_delta = truth[1] - truth[2]
        coverage = float(((low <= true_delta) & (true_delta <= high)).mean())
        # Monte-Carlo SE 0.0015; measured 0.9533 (n=200), 0.9498 (n=2000).
        assert 0.94 <= coverage <= 0.96, (n, coverage)


def test_bootstrap_coverage_n200_n2000() -> None:
    rng = np.random.default_rng(13)
    runs = 6000
    for n in (200, 2000):
        # Skewed bounded scores: base ~ Beta(2, 3); tuned = 0.7 base + 0.3 Beta(1, 4).
        # True mean difference: 0.7*0.4 + 0.3*0.2 - 0.4 = -0.06.
        base = rng.beta(2, 3, (runs, n))
        diffs = 0.7 * base + 0.3 * rng.beta(1, 4, (runs, n)) - base
        # paired_bootstrap_cis shares one resampling matrix per (seed, n) across the arrays
        # passed together; a fresh seed per batch of 100 runs keeps that shared Monte-Carlo
        # noise from biasing the coverage estimate.
        cis = [
            ci
            for start in range(0, runs, 100)
            for ci in S.paired_bootstrap_cis(
                list(diffs[start : start + 100]), alpha=ALPHA, n_boot=2000, seed=start
            )
        ]
        low, high = np.array(cis).T
        coverage = float(((low <= -0.06) & (high >= -0.06)).mean())
        # Normal-theory interval on the same simulated data: separates the bootstrap's
        # own error from the Monte-Carlo noise of the simulated data sets.
        mean, se = diffs.mean(axis=1), diffs.std(axis=1, ddof=1) / math.sqrt(n)
        normal = float((np.abs(mean + 0.06) <= 1.959964 * se).mean())
        # Monte-Carlo SE 0.0028; measured 0.9453 (normal 0.9480) at n=200, 0.9512 (0.9527)
        # at n=2000.
        assert 0.94 <= coverage <= 0.96, (n, coverage)
        assert abs(coverage - normal) <= 0.006, (n, coverage, normal)


def test_power_planted_five_point_drop_n1000() -> None:
    rng = np.random.default_rng(14)
    runs, flagged = 1000, 0
    for _ in range(runs):
        base, tuned = _correlated_binary(rng, 1000, drop=0.05)
        r = S.compare_paired(base, tuned)
        flagged += (
            comparison_status(r.delta, r.ci_low, r.ci_high, r.p_value, alpha=ALPHA, margin=0.02)
            == "regressed"
        )
    # Measured: 0.943.
    assert flagged / runs >= 0.90


def test_power_planted_drop_clustered_items() -> None:
    rng = np.random.default_rng(15)
    runs, flagged = 500, 0
    clusters = [str(i // 4) for i in range(1000)]  # 250 dialogues, 4 questions each
    for _ in range(runs):
        dialogue = np.repeat(rng.beta(0.3, 0.3, 250), 4)  # questions share difficulty
        p = np.clip(dialogue, 0.06, 1.0)
        base = (rng.random(1000) < p).astype(float)
        tuned = (rng.random(1000) < p - 0.05).astype(float)
        r = S.compare_paired(base, tuned, clusters)
        assert r.test == "cluster_robust_z"
        flagged += (
            comparison_status(r.delta, r.ci_low, r.ci_high, r.p_value, alpha=ALPHA, margin=0.02)
            == "regressed"
        )
    # Measured: 0.944.
    assert flagged / runs >= 0.90
