"""ISO 4217 minor units: how many decimals a currency's minor unit has. One table for Concord.

Money in the canonical model and the state is integer minor units of its currency; every place that
turns a decimal amount into minor units, or back, reads the exponent here.
"""

from __future__ import annotations

from typing import Final

# Currencies whose minor unit is not 1/100 (ISO 4217, including funds codes a CRM may carry).
MINOR_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV")
        + ("XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}
DEFAULT_MINOR_UNITS: Final = 2
# The most decimals any currency above has.
MAX_MINOR_UNITS: Final = 4


def minor_units(currency: str) -> int:
    """Decimals of `currency`'s minor unit (an upper-case ISO code; 2 for codes not listed)."""
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)


def rescale(amount: int, digits: int, to: int) -> int:
    """`amount` counted in `digits` decimals, counted in `to` decimals instead.

    Exact when `to` has at least as many decimals; otherwise rounded half to even (an amount with
    more decimals than its currency has: 12.345 in a 2-decimal currency is 1234).
    """
    if to >= digits:
        return amount * 10 ** (to - digits)
    quotient, remainder = divmod(amount, 10 ** (digits - to))
    half = 10 ** (digits - to) // 2  # divmod floors: remainder is in [0, 10**n) for negative amounts too
    if remainder > half or (remainder == half and quotient % 2 == 1):
        quotient += 1
    return quotient
