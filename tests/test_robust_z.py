"""robust_z on scipy's MAD: the same numbers, to the last digit, as the formula it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from collapse_eval.quality.rules import robust_z


def _by_hand(values: list[float]) -> list[float]:
    """The formula spelled out with sorted lists (the implementation before scipy)."""
    ordered = sorted(values)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    deviations = sorted(abs(v - median) for v in values)
    mad = (deviations[(n - 1) // 2] + deviations[n // 2]) / 2
    if mad > 0:
        return [0.6745 * (v - median) / mad for v in values]
    mean_ad = sum(deviations) / n
    return [0.0] * n if mean_ad == 0 else [(v - median) / (1.253314 * mean_ad) for v in values]


@pytest.mark.parametrize("n", [1, 2, 5, 8, 51, 400])
def test_equal_to_the_formula_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.log1p(rng.integers(1, 3000, size=n)).tolist()
    assert robust_z(values) == _by_hand(values)


def test_mad_zero_falls_back_to_the_mean_absolute_deviation() -> None:
    # more than half the values equal: MAD 0, mean absolute deviation (0+0+0+3+9)/5 = 2.4
    values = [5.0, 5.0, 5.0, 8.0, 14.0]
    z = robust_z(values)
    assert z == _by_hand(values)
    assert z[-1] == pytest.approx(9 / (1.253314 * 2.4))
    assert z[:3] == [0.0, 0.0, 0.0]
    assert robust_z([2.0, 2.0]) == [0.0, 0.0]


def test_the_rounded_constant_is_kept() -> None:
    # scale="normal" would give 0.674490 * 97; quality.json keeps 0.6745's digits
    assert robust_z([1, 2, 3, 4, 100])[-1] == 0.6745 * 97
