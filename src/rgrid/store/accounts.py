"""Accounts and API keys. Keys are stored only as sha256 hashes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store.models import AccountRow, ApiKeyRow

KEY_PREFIX_CHARS = 12
LAST_USED_PRECISION = timedelta(
    minutes=1
)  # "rg_" + 9 chars: enough to find the row, useless to an attacker


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def account_of(row: AccountRow) -> domain.Account:
    return domain.Account(
        id=row.id, name=row.name, is_admin=row.is_admin, created_at=row.created_at
    )


def _key(row: ApiKeyRow) -> domain.ApiKey:
    return domain.ApiKey(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


async def insert_account(
    session: AsyncSession, *, account_id: str, name: str, is_admin: bool, now: datetime
) -> domain.Account:
    row = AccountRow(id=account_id, name=name, is_admin=is_admin, created_at=now)
    session.add(row)
    await session.flush()
    return account_of(row)


async def get_account(session: AsyncSession, account_id: str) -> domain.Account | None:
    row = await session.get(AccountRow, account_id)
    return account_of(row) if row else None


async def count_accounts(session: AsyncSession) -> int:
    return len((await session.execute(select(AccountRow.id))).all())


async def insert_key(
    session: AsyncSession, *, key_id: str, account_id: str, key: str, name: str, now: datetime
) -> domain.ApiKey:
    row = ApiKeyRow(
        id=key_id,
        account_id=account_id,
        name=name,
        prefix=key[:KEY_PREFIX_CHARS],
        key_hash=hash_key(key),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return _key(row)


async def authenticate(session: AsyncSession, key: str, now: datetime) -> domain.Principal | None:
    """The principal owning an unrevoked key, recording its use; None for anything else."""
    # the key and its account in one round trip: every request of every client asks this
    found = await session.execute(
        select(ApiKeyRow, AccountRow)
        .join(AccountRow, AccountRow.id == ApiKeyRow.account_id)
        .where(ApiKeyRow.prefix == key[:KEY_PREFIX_CHARS])
    )
    wanted = hash_key(key)
    for row, account in found:
        # Constant-time compare: the prefix lookup must not turn into a timing oracle on the rest.
        if hmac.compare_digest(row.key_hash, wanted) and row.revoked_at is None:
            # A write per request would serialise every call on SQLite: minute precision is
            # plenty for "when was this key last used".
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
                await session.execute(
                    update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(last_used_at=now)
                )
            return domain.Principal(account=account_of(account), key_id=row.id)
    return None


async def list_keys(session: AsyncSession, account_id: str | None) -> list[domain.ApiKey]:
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
    if account_id is not None:
        query = query.where(ApiKeyRow.account_id == account_id)
    return [_key(row) for row in await session.scalars(query)]


async def revoke_key(session: AsyncSession, key_id: str, now: datetime) -> domain.ApiKey | None:
    row = await session.get(ApiKeyRow, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
        await session.flush()
    return _key(row)


async def key_active(session: AsyncSession, key_id: str) -> bool:
    """Whether the key exists and is not revoked."""
    revoked = await session.execute(select(ApiKeyRow.revoked_at).where(ApiKeyRow.id == key_id))
    row = revoked.first()
    return row is not None and row[0] is None
