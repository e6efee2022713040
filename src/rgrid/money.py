"""Money (SPEC §11): integer micros (1 EUR = 1,000,000 µ) and integer microseconds, never floats.

Shared by the CLI (formatting, estimates) and the grid (costs); imports nothing.
"""

from __future__ import annotations

MICROS_PER_UNIT = 1_000_000
US_PER_HOUR = 3_600_000_000  # microseconds


def slot_cost(run_us: int, hourly_price_micros: int, slots: int) -> int:
    """What ``run_us`` microseconds on one slot of a worker cost, rounded down to the micro."""
    if run_us < 0 or hourly_price_micros < 0 or slots < 1:
        raise ValueError("run time and price must be >= 0, slots >= 1")
    return run_us * hourly_price_micros // (US_PER_HOUR * slots)


def format_micros(micros: int) -> str:
    """``€0.000123``: micros as euros, exactly."""
    sign = "-" if micros < 0 else ""
    units, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}€{units}.{fraction:06d}"
