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
def test_adding_identical_items_keeps_sign_of_delta(
    pair: tuple[list[float], list[float]], value: float, extra: int
) -> None:
    base, tuned = pair
    before = S.compare_paired(base, tuned, n_boot=200)
    after = S.compare_paired(base + [value] * extra, tuned + [value] * extra, n_boot=200)
    assert np.sign(after.delta) == np.sign(before.delta)
    assert after.p_value is not None and 0 <= after.p_value <= 1
