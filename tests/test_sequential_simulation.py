"""Seeded simulations of the sequential gate (docs/statistics.md#sequential-gate):
error rates under optional stopping, power and expected items next to fixed-n, coverage
of the repeated CI at the stopping look. Vectorised; tolerances are 3 Monte-Carlo SEs."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from collapse_eval import sequential as sq
from tests import seqsim

ALPHA, M, K = 0.05, 0.02, 5
T = [(k + 1) / K for k in range(K)]


def _mc(p: float, reps: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / reps)


def test_false_non_inferiority_at_the_margin_binary() -> None:
    rng = np.random.default_rng(11)
    reps = 4000
    delta, se = seqsim.binary(rng, reps, 600, K, delta=-M)
    g = [sq.Gating("t", "task", M)]
    sim = sq.simulate_design(g, delta[None], se[None], T, alpha=ALPHA, dof=seqsim.dof(600, K))
    rate = float((sim.status[0] == 1).mean())
    assert rate <= ALPHA / 2 + _mc(ALPHA / 2, reps), rate
    assert rate > 0.01  # the test is not vacuous: it is near its level


def test_false_regression_without_a_drop_binary_and_clustered() -> None:
    rng = np.random.default_rng(12)
    reps = 4000
    for (delta, se), dof in (
        (seqsim.binary(rng, reps, 600, K, delta=0.0), seqsim.dof(600, K)),
        (seqsim.clustered(rng, reps, 150, 4, K, delta=0.0), seqsim.dof(150, K)),
    ):
        gatings = [sq.Gating("t", "task", M)]
        sim = sq.simulate_design(gatings, delta[None], se[None], T, alpha=ALPHA, dof=dof)
        rate = float((sim.status[0] == 2).mean())
        assert rate <= ALPHA / 2 + _mc(ALPHA / 2, reps), rate


def _family(
    rng: np.random.Generator, reps: int, deltas: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Six tasks: two binary, two continuous, two clustered, with the given true deltas."""
    gens = [
        lambda d: seqsim.binary(rng, reps, 500, K, d),
        lambda d: seqsim.binary(rng, reps, 300, K, d, discord=0.3),
        lambda d: seqsim.continuous(rng, reps, 400, K, d),
        lambda d: seqsim.continuous(rng, reps, 200, K, d),
        lambda d: seqsim.clustered(rng, reps, 100, 4, K, d),
        lambda d: seqsim.clustered(rng, reps, 60, 5, K, d),
    ]
    pairs = [g(d) for g, d in zip(gens, deltas, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# Degrees of freedom of the six tasks' SEs at each look (items, or clusters, - 1).
FAMILY_DOF = np.stack([seqsim.dof(u, K) for u in (500, 300, 400, 200, 100, 60)])


def test_family_of_six_tasks_holds_both_error_rates() -> None:
    rng = np.random.default_rng(13)
    reps = 2500
    gatings = [sq.Gating(f"t{i}", "task", M) for i in range(6)]
    # No task dropped: a failure (any task regressed) is a false one.
    delta, se = _family(rng, reps, [0.0] * 6)
    sim = sq.simulate_design(gatings, delta, se, T, alpha=ALPHA, dof=FAMILY_DOF)
    false_fail = float((sim.status == 2).any(axis=0).mean())
    assert false_fail <= ALPHA / 2 + _mc(ALPHA / 2, reps), false_fail
    # One task dropped by exactly its margin, the others much better: "every task
    # non-inferior" is false (critical tasks: passing needs each one shown non-inferior).
    critical = [sq.Gating(f"t{i}", "task", M, fails_when_undecided=True) for i in range(6)]
    delta, se = _family(rng, reps, [0.1, 0.1, 0.1, -M, 0.1, 0.1])
    sim = sq.simulate_design(critical, delta, se, T, alpha=ALPHA, dof=FAMILY_DOF)
    false_pass = float(sim.passed.mean())
    assert false_pass <= ALPHA / 2 + _mc(ALPHA / 2, reps), false_pass


def test_power_and_expected_items_next_to_fixed_n() -> None:
    rng = np.random.default_rng(14)
    reps, n_max, margin = 4000, 1000, 0.03
    g = [sq.Gating("t", "task", margin)]
    # Clearly fine (no drop, discordance 0.1): fixed-n power of the z test at alpha/2.
    delta, se = seqsim.binary(rng, reps, n_max, K, 0.0, discord=0.1)
    dof = seqsim.dof(n_max, K)
    sim = sq.simulate_design(g, delta[None], se[None], T, alpha=ALPHA, dof=dof)
    fixed = float(((delta[:, -1] + margin) / se[:, -1] >= norm.ppf(1 - ALPHA / 2)).mean())
    seq_power = float((sim.status[0] == 1).mean())
    items = float((sim.stop / K).mean())
    assert fixed - 0.03 <= seq_power <= fixed + 0.01, (seq_power, fixed)
    assert items < 0.8, items  # decided on fewer items on average
    # Clearly regressed (15 points): failed on at most 40 % of the items on average.
    delta, se = seqsim.binary(rng, reps, n_max, K, -0.15, discord=0.3)
    sim = sq.simulate_design(g, delta[None], se[None], T, alpha=ALPHA, dof=dof)
    assert float((sim.status[0] == 2).mean()) > 0.99
    assert float((sim.stop / K).mean()) <= 0.4


def test_repeated_ci_covers_at_the_stopping_look() -> None:
    rng = np.random.default_rng(15)
    reps = 4000
    for true in (-0.01, -0.03):
        delta, se = seqsim.binary(rng, reps, 800, K, true)
        dof = seqsim.dof(800, K)
        g = [sq.Gating("t", "task", M)]
        sim = sq.simulate_design(g, delta[None], se[None], T, alpha=ALPHA, dof=dof)
        look = np.minimum(sim.decided_at[0], K) - 1
        bound = sq.t_scaled(sq.spending_bounds(T, ALPHA / 2), dof)[look]
        d = np.take_along_axis(delta, look[:, None], axis=1)[:, 0]
        s = np.take_along_axis(se, look[:, None], axis=1)[:, 0]
        covered = float((np.abs(d - true) <= bound * s).mean())
        assert covered >= 1 - ALPHA - _mc(ALPHA, reps), covered


def test_domain_gain_errors() -> None:
    rng = np.random.default_rng(16)
    reps = 4000
    gain = [sq.Gating("gain", "gain", 0.0)]
    # No true gain: showing one is the false claim (one-sided alpha/2).
    delta, se = seqsim.clustered(rng, reps, 150, 4, K, delta=0.0)
    sim = sq.simulate_design(gain, delta[None], se[None], T, alpha=ALPHA, dof=seqsim.dof(150, K))
    shown = float((sim.status[0] == 3).mean())
    assert shown <= ALPHA / 2 + _mc(ALPHA / 2, reps), shown
    # A true gain of min_gain (0.03): ruling it out is the false failure.
    delta, se = seqsim.continuous(rng, reps, 400, K, delta=0.03)
    sim = sq.simulate_design(
        [sq.Gating("gain", "gain", 0.03)],
        delta[None],
        se[None],
        T,
        alpha=ALPHA,
        dof=seqsim.dof(400, K),
    )
    ruled_out = float((sim.status[0] == 4).mean())
    assert ruled_out <= ALPHA / 2 + _mc(ALPHA / 2, reps), ruled_out
