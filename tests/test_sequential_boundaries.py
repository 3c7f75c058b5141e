"""Group-sequential boundaries against published constants, and the design's rules on
hand-made looks (collapse_eval/sequential.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collapse_eval import sequential as sq
from collapse_eval.stats import clustered_se

T5 = [0.2, 0.4, 0.6, 0.8, 1.0]


def test_obf_spending_boundaries_match_the_published_table() -> None:
    # Lan-DeMets O'Brien-Fleming spending, K = 5 equally spaced looks, one-sided 0.025
    # (two-sided 0.05): Jennison & Turnbull (2000) table 7.6 / gsDesign sfLDOF.
    expected = [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]
    assert sq.spending_bounds(T5, 0.025) == pytest.approx(expected, abs=2e-4)


def test_classic_constant_boundaries_hold_their_level() -> None:
    # Jennison & Turnbull (2000) table 2.3 / 2.1, K = 5, two-sided 0.05: O'Brien-Fleming
    # C_B = 2.040 (boundary C_B sqrt(K/k)) and Pocock C_P = 2.413 reach 0.05 in total.
    obf = [2.040 * math.sqrt(1 / t) for t in T5]
    up, down = sq.crossing_probabilities(T5, [-c for c in obf], obf)
    assert up.sum() + down.sum() == pytest.approx(0.05, abs=3e-4)
    poc = [2.413] * 5
    up, down = sq.crossing_probabilities(T5, [-c for c in poc], poc)
    assert up.sum() + down.sum() == pytest.approx(0.05, abs=3e-4)


def test_spent_alpha_per_look_is_the_spending_function() -> None:
    t = [0.15, 0.5, 0.7, 1.0]
    bounds = sq.spending_bounds(t, 0.025)
    up, _ = sq.crossing_probabilities(t, [-math.inf] * 4, bounds)
    assert np.cumsum(up) == pytest.approx(sq.obf_spending(t, 0.025), abs=2e-6)
    # One look at t = 1 is the fixed-n test.
    assert sq.spending_bounds([1.0], 0.025)[0] == pytest.approx(1.959964, abs=1e-5)


def test_fractions_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        sq.spending_bounds([0.5, 0.4], 0.025)


def test_look_stat_uses_the_cluster_robust_se_and_skips_small_interim_looks() -> None:
    rng = np.random.default_rng(1)
    d = rng.choice([-1.0, 0.0, 1.0], size=80)
    clusters = [f"c{i // 4}" for i in range(80)]
    stat = sq.look_stat(d, 200, clusters)
    assert stat.se == pytest.approx(clustered_se(d, clusters)[0])
    assert stat.n_clusters == 20 and stat.t == pytest.approx(0.4)
    assert sq.look_stat(d[:20], 200).se is None  # interim, < MIN_LOOK_ITEMS
    assert sq.look_stat(d[:20], 20).se is not None  # the final look always tests
    assert sq.look_stat(d[:36], 200, clusters[:36]).se is None  # 9 clusters


def _stat(delta: float, se: float, n: int = 100, n_max: int = 500) -> sq.LookStat:
    return sq.LookStat(n=n, n_max=n_max, delta=delta, se=se)


def test_decisions_per_look() -> None:
    task = sq.Gating("arc", "task", margin=0.02)
    c, r = 2.0, 2.5
    assert sq.decide(task, _stat(0.0, 0.009), c, r) == "non_inferior"  # 0.02/0.009 = 2.2
    assert sq.decide(task, _stat(0.0, 0.011), c, r) is None
    assert sq.decide(task, _stat(-0.05, 0.01), c, r) == "regressed"
    # A lower-is-better metric is mirrored: a rise is the drop.
    worse = sq.Gating("ppl", "task", margin=0.02, higher_is_better=False)
    assert sq.decide(worse, _stat(0.05, 0.01), c, r) == "regressed"
    gain = sq.Gating("domain", "gain", margin=0.0)
    assert sq.decide(gain, _stat(0.05, 0.01), c, r) == "gain_shown"
    assert sq.decide(gain, _stat(-0.03, 0.01), c, r) == "gain_ruled_out"
    assert sq.decide(task, sq.LookStat(10, 500, -0.5, None), c, r) is None


def _looks(deltas: list[float], se: float, n_max: int = 500) -> list[sq.LookStat]:
    return [_stat(d, se, n_max * (k + 1) // 5, n_max) for k, d in enumerate(deltas)]


def test_run_stops_when_one_task_regressed_and_keeps_the_others_undecided() -> None:
    gatings = [sq.Gating("a", "task", 0.02), sq.Gating("b", "task", 0.02)]
    stats = [_looks([-0.2, -0.2, -0.2, -0.2, -0.2], 0.02), _looks([0.0] * 5, 0.02)]
    result = sq.run_design(gatings, stats, alpha=0.05)
    assert (result.verdict, result.stop_look) == ("fail", 1)
    assert [c.status for c in result.comparisons] == ["regressed", "undecided"]
    assert [c.n_evaluated for c in result.comparisons] == [100, 100]


def test_run_passes_once_every_task_is_non_inferior() -> None:
    gatings = [sq.Gating("a", "task", 0.02), sq.Gating("b", "task", 0.02)]
    stats = [_looks([0.01] * 5, 0.002), _looks([0.0, 0.0, 0.0, 0.0, 0.0], 0.006)]
    result = sq.run_design(gatings, stats, alpha=0.05)
    # a: (0.01 + 0.02) / 0.002 = 15 > 4.88 at look 1; b: 0.02 / 0.006 = 3.3 < 3.36 at look
    # 2, > 2.68 at look 3.
    assert (result.verdict, result.stop_look) == ("pass", 3)
    assert [c.stop_look for c in result.comparisons] == [1, 3]
    low, high = result.comparisons[1].looks[-1].rci or (0, 0)
    c3 = float(sq.t_scaled(2.6803, 299))  # 300 items: Student's t with 299 df, about 2.70
    assert 2.69 < c3 < 2.71
    assert (low, high) == pytest.approx((-0.006 * c3, 0.006 * c3), abs=1e-4)


def test_undecided_non_critical_task_passes_at_the_end_a_critical_one_fails() -> None:
    stats = [_looks([-0.01] * 5, 0.02)]
    plain = sq.run_design([sq.Gating("a", "task", 0.02)], stats, alpha=0.05)
    assert (plain.verdict, plain.stop_look, plain.comparisons[0].status) == (
        "pass",
        5,
        "inconclusive",
    )
    critical = sq.Gating("a", "task", 0.02, fails_when_undecided=True)
    assert sq.run_design([critical], stats, alpha=0.05).verdict == "fail"


def test_scalar_replay_and_vectorised_simulation_agree() -> None:
    rng = np.random.default_rng(7)
    gatings = [
        sq.Gating("a", "task", 0.03),
        sq.Gating("b", "task", 0.03, fails_when_undecided=True),
        sq.Gating("gain", "gain", 0.0),
    ]
    delta = rng.normal([[[-0.01]], [[0.0]], [[0.02]]], 0.02, size=(3, 300, 5))
    se = np.full((3, 300, 5), 0.01) * np.sqrt(1 / np.array(T5))
    dof = [100 * (k + 1) - 1 for k in range(5)]  # LookStat.dof of n items
    sim = sq.simulate_design(gatings, delta, se, T5, alpha=0.05, dof=dof)
    for r in range(300):
        stats = [
            [
                sq.LookStat(100 * (k + 1), 500, float(delta[i, r, k]), float(se[i, r, k]))
                for k in range(5)
            ]
            for i in range(3)
        ]
        result = sq.run_design(gatings, stats, alpha=0.05)
        assert (result.verdict == "pass") == bool(sim.passed[r])
        assert result.stop_look == int(sim.stop[r])
        codes = [
            sq.DECISIONS.index(c.status) if c.status in sq.DECISIONS else 0
            for c in result.comparisons
        ]
        assert codes == list(sim.status[:, r])


def test_a_look_without_spread_takes_the_se_of_one_item_lost_and_one_gained() -> None:
    stat = sq.look_stat(np.zeros(200), 500)
    assert stat.se == pytest.approx(math.sqrt(2) / 200)
    # 0.02 / (sqrt(2) / 200) = 2.8 < 3.36 at look 2 of 5; at 400 items 5.7 > 2.29.
    task = sq.Gating("capitals", "task", 0.02)
    assert sq.decide(task, stat, 3.36, 3.6) is None
    assert sq.decide(task, sq.look_stat(np.zeros(400), 500), 2.29, 2.5) == "non_inferior"


def test_boundaries_move_to_the_t_scale_with_few_items_or_clusters() -> None:
    stat = sq.LookStat(n=60, n_max=300, delta=0.0, se=0.01, n_clusters=12)
    assert stat.dof == 11  # clusters - 1
    assert sq.LookStat(n=60, n_max=300, delta=0.0, se=0.01).dof == 59
    assert sq.LookStat(n=60, n_max=300, delta=0.0, se=0.01, n_clusters=60).dof == 59
    (look,) = sq.judge_looks(sq.Gating("t", "task", 0.02), [stat], 0.05, 1)
    # 4.877 on the normal scale is the tail probability 5.4e-7; t with 11 df: about 9.6.
    assert look.bound == pytest.approx(float(sq.t_scaled(4.8769, 11)), rel=1e-4)
    assert 9.5 < (look.bound or 0) < 9.8
