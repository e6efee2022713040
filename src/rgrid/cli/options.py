"""Parsers for option values: durations, sizes, KEY=VALUE pairs, times."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import click

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


class Duration(click.ParamType[float, object]):
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` → seconds."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        match = _DURATION.match(str(value))
        if not match or float(match.group(1)) <= 0:
            self.fail(f"{value!r} is not a duration like 30s, 5m or 2h", param, ctx)
        return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


class Size(click.ParamType[int, object]):
    """``512MiB``, ``2GiB``, ``1.5G``, ``1000000`` → bytes."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size like 512MiB or 2GiB", param, ctx)
        unit = (match.group(2) or "").lower().removesuffix("b")
        return int(float(match.group(1)) * _SIZE_UNITS[unit])


def key_values(
    pairs: tuple[str, ...], option: str, *, local_fallback: bool = False
) -> dict[str, str]:
    """``K=V`` pairs; with ``local_fallback`` a bare ``K`` takes this shell's value of K."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            if not local_fallback:
                raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
            if key not in os.environ:
                raise click.BadParameter(f"{key} is not set in this shell", param_hint=option)
            value = os.environ[key]
        if not key:
            raise click.BadParameter(f"{pair!r} has an empty key", param_hint=option)
        out[key] = value
    return out


def utc_time(value: str | None, option: str) -> str | None:
    """An ISO date or time as UTC ISO 8601 (a time without zone is local): the grid refuses
    times without a zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        return parsed.astimezone(UTC).isoformat()
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD[THH:MM])", param_hint=option
        ) from exc
