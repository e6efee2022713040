"""Billing arithmetic: integer micros, exact splits (property-based)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rgrid.cli.render import money
from rgrid.money import US_PER_HOUR
from rgrid.money import slot_cost as provisional_cost
from rgrid.services.billing import split_period

run_times = st.dictionaries(
    st.text(alphabet="abcdefghij0123456789_", min_size=1, max_size=12),
    st.integers(min_value=0, max_value=US_PER_HOUR),
    max_size=40,
)


@given(price=st.integers(min_value=0, max_value=10**12), runs=run_times)
def test_a_split_is_exact_non_negative_and_proportional_within_one_micro(
    price: int, runs: dict[str, int]
) -> None:
    shares = split_period(price, runs)
    assert set(shares) == set(runs)
    assert all(isinstance(v, int) and v >= 0 for v in shares.values())
    total = sum(runs.values())
    if total == 0:
        assert all(v == 0 for v in shares.values())  # an idle period: charged to no one
        return
    assert sum(shares.values()) == price
    for key, share in shares.items():
        exact = Fraction(price * runs[key], total)
        assert abs(share - exact) < 1


@given(price=st.integers(min_value=0, max_value=10**9), runs=run_times)
def test_a_split_does_not_depend_on_the_order_given(price: int, runs: dict[str, int]) -> None:
    assert split_period(price, dict(reversed(list(runs.items())))) == split_period(price, runs)


def test_known_splits() -> None:
    assert split_period(8000, {"a": 1, "b": 1}) == {"a": 4000, "b": 4000}
    assert split_period(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}  # tie: by id
    assert split_period(100, {"a": 2, "b": 1}) == {"a": 67, "b": 33}
    assert split_period(8000, {"a": 0}) == {"a": 0}


def test_provisional_cost_and_format() -> None:
    # 8,000 µ/h on a 2-slot node: one slot-hour is 4,000 µ
    assert provisional_cost(US_PER_HOUR, 8000, 2) == 4000
    assert provisional_cost(3_000_000, 8000, 2) == 3  # 3 s: 3.33 µ, rounded down
    assert money(123) == "€0.000123"
    assert money(5_000_000) == "€5.000000"
    with pytest.raises(ValueError):
        provisional_cost(-1, 8000, 2)
    with pytest.raises(ValueError):
        split_period(-1, {"a": 1})
