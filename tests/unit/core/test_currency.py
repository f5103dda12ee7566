from __future__ import annotations

import pytest

from concord.core.currency import minor_units, rescale


@pytest.mark.parametrize(("currency", "digits"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("DJF", 0), ("KWD", 3),
                                                 ("IQD", 3), ("CLF", 4), ("XYZ", 2)])
def test_minor_units_follow_iso_4217(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


@pytest.mark.parametrize(("amount", "digits", "to", "expected"), [
    (123, 0, 2, 12300),  # more decimals: exact
    (12300, 2, 0, 123),  # fewer, nothing lost
    (1234, 3, 3, 1234),
    (12345, 2, 0, 123),  # fewer, rounded half to even
    (12350, 2, 0, 124),
    (12250, 2, 0, 122),
    (-12350, 2, 0, -124),
    (-12349, 2, 0, -123),
    (1235, 3, 2, 124),
])
def test_rescale(amount: int, digits: int, to: int, expected: int) -> None:
    assert rescale(amount, digits, to) == expected
