"""Hypothesis properties of the paired comparison."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_eval import stats as S

binary_pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
    )
)
scores = st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3))
continuous_pairs = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(scores, min_size=n, max_size=n), st.lists(scores, min_size=n, max_size=n)
    )
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(binary_pairs, continuous_pairs))
def test_swapping_negates_delta_and_ci_and_keeps_p(pair: tuple[list[float], list[float]]) -> None:
    base, tuned = pair
    fwd = S.compare_paired(base, tuned, n_boot=500, seed=1)
    rev = S.compare_paired(tuned, base, n_boot=500, seed=1)
    assert np.isclose(rev.delta, -fwd.delta, atol=1e-12)
    assert rev.p_value is not None and fwd.p_value is not None
    assert np.isclose(rev.p_value, fwd.p_value, atol=1e-12)
    if fwd.ci_low is None or fwd.ci_high is None:  # too few items for a CI
        assert rev.ci_low is None and rev.ci_high is None and fwd.note == rev.note
        return
    assert rev.ci_low is not None and rev.ci_high is not None
    assert np.isclose(rev.ci_low, -fwd.ci_high, atol=1e-6)
    assert np.isclose(rev.ci_high, -fwd.ci_low, atol=1e-6)
    assert fwd.ci_low <= fwd.delta + 1e-9 and fwd.delta <= fwd.ci_high + 1e-9


@settings(max_examples=60, deadline=None)
@given(st.one_of(binary_pairs, continuous_pairs), scores, st.integers(1, 50))
def test_adding_identical_items_dilutes_delta_and_keeps_the_test(
    pair: tuple[list[float], list[float]], value: float, extra: int
) -> None:
    """Items both models score the same add zero differences: the mean difference shrinks
    by exactly n / (n + extra), and both paired tests ignore them (McNemar counts only
    discordant pairs, Wilcoxon drops zero differences), so the p-value is unchanged
    whenever the same test applies (a non-0/1 value turns a binary sample continuous)."""
    base, tuned = pair
    n = len(base)
    before = S.compare_paired(base, tuned, n_boot=200)
    after = S.compare_paired(base + [value] * extra, tuned + [value] * extra, n_boot=200)
    assert after.n == n + extra
    assert np.isclose(after.delta, before.delta * n / (n + extra), atol=1e-12)
    assert after.p_value is not None and before.p_value is not None
    if after.test == before.test:
        assert np.isclose(after.p_value, before.p_value, rtol=1e-9, atol=1e-12)
    if before.binary and after.binary:
        assert (after.tuned_only, after.base_only) == (before.tuned_only, before.base_only)
    else:
        assert after.test == "wilcoxon"
