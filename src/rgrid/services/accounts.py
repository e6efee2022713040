"""Accounts, API keys and authentication."""

from __future__ import annotations

import secrets
import time

from rgrid import bounds, domain, errors, store
from rgrid.services import Grid, utcnow
from rgrid.store import accounts as repo

KEY_RANDOM_BYTES = 30  # 40 url-safe characters after "rg_"


def new_key() -> str:
    return "rg_" + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def _key_shape_ok(key: str) -> bool:
    return key.startswith("rg_") and 35 <= len(key) <= 200


async def authenticate(grid: Grid, key: str | None) -> domain.Principal:
    """The caller behind a bearer key. Raises ``Unauthorized`` naming ``rgrid init``."""
    if not key or not _key_shape_ok(key):
        raise errors.Unauthorized(
            "missing or malformed API key", hint="run `rgrid init` or set RGRID_API_KEY"
        )
    digest = repo.hash_key(key)
    cached = grid.keys.get(digest)
    if cached is not None:
        return cached
    looked_up_at = time.monotonic()
    async with store.transaction(grid.sessions) as session:
        principal = await repo.authenticate(session, key, utcnow())
    if principal is None:
        raise errors.Unauthorized(
            "the API key is not valid (unknown or revoked)",
            hint="run `rgrid init` with a valid key, or check RGRID_API_KEY",
        )
    grid.keys.remember(digest, principal, looked_up_at)
    return principal


async def authorize_metrics(grid: Grid, key: str | None) -> None:
    """``/metrics`` shows every account's activity: it needs RGRID_METRICS_TOKEN (compared in
    constant time) or an admin key. Raises ``Unauthorized`` or ``Forbidden``."""
    token = grid.settings.metrics_token
    if token and key and secrets.compare_digest(key.encode(), token.encode()):
        return
    require_admin(await authenticate(grid, key))


async def ensure_key_active(grid: Grid, principal: domain.Principal) -> None:
    """Raises ``Unauthorized`` once the principal's key is revoked (checked in the store, so a
    revocation through any server process counts)."""
    async with store.transaction(grid.sessions) as session:
        active = await repo.key_active(session, principal.key_id)
    if not active:
        raise errors.Unauthorized("the API key was revoked", hint="use another key")


def require_admin(principal: domain.Principal) -> None:
    if not principal.account.is_admin:
        raise errors.Forbidden("this needs an admin API key")


async def bootstrap_admin(grid: Grid, key: str) -> None:
    """On a fresh grid, create the admin account owning ``key``; otherwise ensure the key exists."""
    async with store.transaction(grid.sessions) as session:
        if await repo.authenticate(session, key, utcnow()) is not None:
            return
        if await repo.count_accounts(session) > 0:
            return  # the grid has an admin already; a changed bootstrap key grants nothing
        now = utcnow()
        account = await repo.insert_account(
            session, account_id=domain.new_id("acct"), name="admin", is_admin=True, now=now
        )
        await repo.insert_key(
            session,
            key_id=domain.new_id("key"),
            account_id=account.id,
            key=key,
            name="admin",
            now=now,
        )


async def create_account(
    grid: Grid, principal: domain.Principal, name: str, is_admin: bool
) -> tuple[domain.Account, str]:
    require_admin(principal)
    bounds.check_name(name, "account")
    if not name.strip():
        raise errors.InvalidRequest("an account needs a name")
    key = new_key()
    async with store.transaction(grid.sessions) as session:
        now = utcnow()
        account = await repo.insert_account(
            session, account_id=domain.new_id("acct"), name=name, is_admin=is_admin, now=now
        )
        await repo.insert_key(
            session,
            key_id=domain.new_id("key"),
            account_id=account.id,
            key=key,
            name="initial",
            now=now,
        )
    return account, key


async def create_key(
    grid: Grid, principal: domain.Principal, account_id: str | None, name: str
) -> tuple[domain.ApiKey, str]:
    """A new key for the caller's account, or (admins) for ``account_id``."""
    bounds.check_name(name, "key")
    target = account_id or principal.account.id
    if target != principal.account.id:
        require_admin(principal)
    key = new_key()
    async with store.transaction(grid.sessions) as session:
        if await repo.get_account(session, target) is None:
            raise errors.NotFound(f"no account {target!r}")
        info = await repo.insert_key(
            session,
            key_id=domain.new_id("key"),
            account_id=target,
            key=key,
            name=name,
            now=utcnow(),
        )
    return info, key


async def list_keys(grid: Grid, principal: domain.Principal) -> list[domain.ApiKey]:
    scope = None if principal.account.is_admin else principal.account.id
    async with store.transaction(grid.sessions) as session:
        return await repo.list_keys(session, scope)


async def revoke_key(grid: Grid, principal: domain.Principal, key_id: str) -> domain.ApiKey:
    async with store.transaction(grid.sessions) as session:
        keys = await repo.list_keys(session, None)
        owned = next((k for k in keys if k.id == key_id), None)
        if owned is None or (
            owned.account_id != principal.account.id and not principal.account.is_admin
        ):
            raise errors.NotFound(f"no key {key_id!r}")
        revoked = await repo.revoke_key(session, key_id, utcnow())
        assert revoked is not None
    grid.keys.forget_key(key_id)
    return revoked
