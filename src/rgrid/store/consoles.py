"""The web console's browser sessions and one-time sign-in links. Tokens are stored only as
sha256 hashes; a session is valid only while the API key it signed in with is not revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store.accounts import account_of, hash_key
from rgrid.store.models import AccountRow, ApiKeyRow, ConsoleLinkRow, ConsoleSessionRow


async def insert_session(
    session: AsyncSession, *, token: str, key_id: str, csrf: str, now: datetime, expires: datetime
) -> None:
    session.add(
        ConsoleSessionRow(
            token_hash=hash_key(token), key_id=key_id, csrf=csrf, created_at=now, expires_at=expires
        )
    )
    await session.flush()


async def find_session(
    session: AsyncSession, token: str, now: datetime
) -> tuple[domain.Principal, str] | None:
    """The principal and CSRF token of a live session whose key is not revoked; else None."""
    row = (
        await session.execute(
            select(ConsoleSessionRow, ApiKeyRow, AccountRow)
            .join(ApiKeyRow, ApiKeyRow.id == ConsoleSessionRow.key_id)
            .join(AccountRow, AccountRow.id == ApiKeyRow.account_id)
            .where(
                ConsoleSessionRow.token_hash == hash_key(token),
                ConsoleSessionRow.ended_at.is_(None),
                ConsoleSessionRow.expires_at > now,
                ApiKeyRow.revoked_at.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    console, key, account = row
    return domain.Principal(account=account_of(account), key_id=key.id), console.csrf


async def end_session(session: AsyncSession, token: str, now: datetime) -> None:
    await session.execute(
        update(ConsoleSessionRow)
        .where(
            ConsoleSessionRow.token_hash == hash_key(token), ConsoleSessionRow.ended_at.is_(None)
        )
        .values(ended_at=now)
    )


async def insert_link(session: AsyncSession, *, token: str, key_id: str, expires: datetime) -> None:
    session.add(ConsoleLinkRow(token_hash=hash_key(token), key_id=key_id, expires_at=expires))
    await session.flush()


async def use_link(session: AsyncSession, token: str, now: datetime) -> str | None:
    """Mark an unused, unexpired link used and return its key id; None if it is not one.
    The conditional UPDATE makes a second use lose even when two arrive at once."""
    return await session.scalar(
        update(ConsoleLinkRow)
        .where(
            ConsoleLinkRow.token_hash == hash_key(token),
            ConsoleLinkRow.used_at.is_(None),
            ConsoleLinkRow.expires_at > now,
        )
        .values(used_at=now)
        .returning(ConsoleLinkRow.key_id)
    )


async def principal_of_key(session: AsyncSession, key_id: str) -> domain.Principal | None:
    """The principal of an unrevoked key, by its id."""
    row = (
        await session.execute(
            select(ApiKeyRow, AccountRow)
            .join(AccountRow, AccountRow.id == ApiKeyRow.account_id)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
        )
    ).first()
    return None if row is None else domain.Principal(account=account_of(row[1]), key_id=key_id)


async def delete_ended(session: AsyncSession, now: datetime) -> int:
    """Sessions that ended or expired and links used or expired, deleted."""

    sessions = await session.execute(
        delete(ConsoleSessionRow).where(
            or_(ConsoleSessionRow.ended_at.is_not(None), ConsoleSessionRow.expires_at <= now)
        )
    )
    links = await session.execute(
        delete(ConsoleLinkRow).where(
            or_(ConsoleLinkRow.used_at.is_not(None), ConsoleLinkRow.expires_at <= now)
        )
    )
    return int(sessions.rowcount or 0) + int(links.rowcount or 0)  # type: ignore[attr-defined]
