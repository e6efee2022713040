"""Signing in to the web console: browser sessions made from an API key or from a one-time
link that `rgrid console` asks for, and the CSRF token that guards their state changes."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, store
from rgrid.services import Grid, utcnow
from rgrid.services import accounts as account_service
from rgrid.store import consoles as repo

#: a session lasts a working day; signing out, or revoking its key, ends it sooner
SESSION_TTL = timedelta(hours=12)
#: a sign-in link is opened by the browser `rgrid console` starts, within seconds
LINK_TTL = timedelta(minutes=2)
TOKEN_BYTES = 32


@dataclasses.dataclass(frozen=True)
class ConsoleSession:
    token: str
    csrf: str
    principal: domain.Principal


def _token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


async def _open(session: AsyncSession, principal: domain.Principal) -> ConsoleSession:
    token, csrf, now = _token(), _token(), utcnow()
    await repo.insert_session(
        session,
        token=token,
        key_id=principal.key_id,
        csrf=csrf,
        now=now,
        expires=now + SESSION_TTL,
    )
    return ConsoleSession(token, csrf, principal)


async def sign_in_with_key(grid: Grid, key: str) -> ConsoleSession:
    principal = await account_service.authenticate(grid, key.strip())
    async with store.transaction(grid.sessions) as session:
        return await _open(session, principal)


async def make_link(grid: Grid, principal: domain.Principal) -> str:
    """A one-time token for ``/console/signin?token=…``, signing in as ``principal``'s key
    (for ``LINK_TTL``)."""
    token = _token()
    async with store.transaction(grid.sessions) as session:
        await repo.insert_link(
            session, token=token, key_id=principal.key_id, expires=utcnow() + LINK_TTL
        )
    return token


async def sign_in_with_link(grid: Grid, token: str) -> ConsoleSession:
    """The link used up and a session opened, in one transaction."""
    async with store.transaction(grid.sessions) as session:
        key_id = await repo.use_link(session, token, utcnow()) if token else None
        principal = await repo.principal_of_key(session, key_id) if key_id else None
        opened = await _open(session, principal) if principal else None
    if key_id is None:
        raise errors.Unauthorized(
            "this sign-in link is not valid (used already, expired or unknown)",
            hint="run `rgrid console` again, or sign in with an API key",
        )
    if opened is None:
        raise errors.Unauthorized("the API key of this sign-in link was revoked")
    return opened


async def resume(grid: Grid, token: str) -> tuple[domain.Principal, str]:
    """The principal (carrying the session) and CSRF token of a session cookie. Raises
    ``Unauthorized`` when the session ended, expired or its key was revoked."""
    async with store.transaction(grid.sessions) as session:
        found = await repo.find_session(session, token, utcnow())
    if found is None:
        raise errors.Unauthorized(
            "the console session ended (signed out, expired, or its API key was revoked)",
            hint="sign in again",
        )
    principal, csrf = found
    return dataclasses.replace(principal, session=token), csrf


async def ensure_active(grid: Grid, principal: domain.Principal) -> None:
    """Raises ``Unauthorized`` once the principal's key is revoked or, for a console session,
    once the session ended (signed out, expired): a live log re-checks this as it streams.
    A session is live only while its key is (one query checks both)."""
    if principal.session is not None:
        await resume(grid, principal.session)
    else:
        await account_service.ensure_key_active(grid, principal)


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not secrets.compare_digest(expected.encode(), given.encode()):
        raise errors.Forbidden(
            "a console request that changes something needs the session's CSRF token",
            hint="send it in the X-CSRF-Token header",
        )


async def sign_out(grid: Grid, token: str) -> None:
    async with store.transaction(grid.sessions) as session:
        await repo.end_session(session, token, utcnow())


async def forget_ended(grid: Grid) -> int:
    """Delete sessions and sign-in links that can no longer be used (ended, expired, or a
    link used up): the retention janitor calls it. Returns how many rows went."""
    async with store.transaction(grid.sessions) as session:
        return await repo.delete_ended(session, utcnow())
