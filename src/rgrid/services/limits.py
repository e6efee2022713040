"""Spending limits (SPEC §11): per account and period; at 80 % every submit warns, at 100 % new
executions are refused with SPENDING_LIMIT_EXCEEDED (402). Running executions finish."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, store
from rgrid.money import format_micros
from rgrid.services import Grid, utcnow
from rgrid.store import limits as repo

PERIODS = ("day", "week", "month")
WARN_AT = Decimal("0.8")
#: the largest spending limit, in euros (its micros fit the store's BIGINT many times over)
MAX_AMOUNT = Decimal(1_000_000_000)
MAX_AMOUNT_CHARS = 32


@dataclasses.dataclass(frozen=True)
class Limit:
    limit_micros: int
    period: str
    spent_micros: int
    period_start: datetime


def parse_amount(text: str) -> int:
    """ "5.00" (euros) → 5,000,000 micros; exact, never through a float.

    Raises ``InvalidRequest`` for anything but an amount in (0, ``MAX_AMOUNT``] with at most
    6 decimals, written in at most ``MAX_AMOUNT_CHARS`` characters."""
    if len(text) > MAX_AMOUNT_CHARS:
        raise errors.InvalidRequest(
            f"an amount is written in at most {MAX_AMOUNT_CHARS} characters",
            hint="e.g. 5.00 (euros)",
        )
    try:
        amount = Decimal(text.strip())
    except InvalidOperation as exc:
        raise errors.InvalidRequest(f"{text!r} is not an amount", hint="e.g. 5.00 (euros)") from exc
    if not amount.is_finite() or amount <= 0:
        raise errors.InvalidRequest(f"a spending limit must be above 0, not {text!r}")
    if amount > MAX_AMOUNT:
        raise errors.InvalidRequest(f"a spending limit is at most {MAX_AMOUNT:,} euros")
    micros = amount * 1_000_000
    if micros != micros.to_integral_value():
        raise errors.InvalidRequest(f"{text!r} has more than 6 decimals (micros)")
    return int(micros)


def period_start(period: str, now: datetime) -> datetime:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight
    if period == "week":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


async def _current(session: AsyncSession, account_id: str, now: datetime) -> Limit | None:
    row = await repo.get(session, account_id)
    if row is None:
        return None
    start = period_start(row.period, now)
    spent = await repo.spent_since(session, account_id, start)
    return Limit(row.limit_micros, row.period, spent, start)


async def show(grid: Grid, principal: domain.Principal) -> Limit | None:
    async with store.transaction(grid.sessions) as session:
        return await _current(session, principal.account.id, utcnow())


async def set_limit(grid: Grid, principal: domain.Principal, amount: str, period: str) -> Limit:
    if period not in PERIODS:
        raise errors.InvalidRequest(f"unknown period {period!r}", hint="day, week or month")
    micros = parse_amount(amount)
    async with store.transaction(grid.sessions) as session:
        await repo.put(session, principal.account.id, micros, period, utcnow())
        current = await _current(session, principal.account.id, utcnow())
    assert current is not None
    return current


async def remove(grid: Grid, principal: domain.Principal) -> bool:
    async with store.transaction(grid.sessions) as session:
        return await repo.remove(session, principal.account.id)


async def before_submit(grid: Grid, principal: domain.Principal) -> str | None:
    """Before anything new is queued: ``SpendingLimitExceeded`` (402) once the account spent
    its limit this period; a warning from 80 %; else None."""
    async with store.transaction(grid.sessions) as session:
        return await check(session, principal.account.id)


async def check(session: AsyncSession, account_id: str) -> str | None:
    """See ``before_submit``."""
    current = await _current(session, account_id, utcnow())
    if current is None:
        return None
    spent, limit = current.spent_micros, current.limit_micros
    words = f"spent {format_micros(spent)} of your {format_micros(limit)} {current.period}ly limit"
    if spent >= limit:
        raise errors.SpendingLimitExceeded(
            f"spending limit reached: {words}",
            hint="running executions finish; `rgrid cost limit set` raises it, `remove` drops it",
            details={"spent_micros": spent, "limit_micros": limit, "period": current.period},
        )
    if Decimal(spent) >= WARN_AT * limit:
        return f"{words} ({spent * 100 // limit}%)"
    return None
