"""Growth exponents: the log-log slope of a figure over peer counts."""

from __future__ import annotations

import math

import pytest
from netbench.growth import fitted_exponent, pairwise_exponents


def test_a_power_law_gives_its_exponent_pairwise_and_fitted() -> None:
    sizes = [100, 300, 1000]
    values = [3.0 * n**1.5 for n in sizes]
    pairs = pairwise_exponents(sizes, values)
    assert pairs == [pytest.approx(1.5), pytest.approx(1.5)]
    assert fitted_exponent(sizes, values) == pytest.approx(1.5)


def test_a_constant_figure_grows_with_exponent_zero() -> None:
    assert pairwise_exponents([10, 30], [2.0, 2.0]) == [pytest.approx(0.0)]


def test_pairwise_slope_is_each_step_on_its_own() -> None:
    pairs = pairwise_exponents([100, 300, 1000], [1.0, 3.0, 100.0])
    assert pairs[0] == pytest.approx(1.0)
    assert pairs[1] == pytest.approx(math.log(100 / 3) / math.log(1000 / 300))


def test_missing_or_zero_values_have_no_exponent() -> None:
    assert pairwise_exponents([100, 300, 1000], [None, 2.0, 0.0]) == [None, None]
    assert fitted_exponent([100, 300, 1000], [None, 2.0, 0.0]) is None
    assert fitted_exponent([100, 300, 1000], [1.0, None, 10.0]) == pytest.approx(1.0)


def test_sizes_and_values_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 sizes but 2 values"):
        pairwise_exponents([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 sizes but 1 values"):
        fitted_exponent([1, 2], [1.0])
