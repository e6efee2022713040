"""The web console's sessions and sign-in links on both databases: stored hashed, one use per
link, ended by signing out, by expiry and by revoking the key; the CSRF token checked."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from tests.integration.store.conftest import ADMIN_KEY

from rgrid import errors, store
from rgrid.services import Grid, consoles, utcnow
from rgrid.services import accounts as account_service
from rgrid.store.models import ConsoleLinkRow, ConsoleSessionRow


async def _user(grid: Grid) -> tuple[str, str]:
    """A fresh account's key and the key's id."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    _, key = await account_service.create_account(grid, admin, "carol", is_admin=False)
    principal = await account_service.authenticate(grid, key)
    return key, principal.key_id


async def test_a_session_from_a_key_resumes_and_stores_only_hashes(grid: Grid) -> None:
    key, key_id = await _user(grid)
    session = await consoles.sign_in_with_key(grid, f"  {key}\n")  # pasted with blanks
    principal, csrf = await consoles.resume(grid, session.token)
    assert principal.key_id == key_id and principal.account.name == "carol"
    assert csrf == session.csrf and csrf != session.token
    async with store.transaction(grid.sessions) as db:
        rows = (await db.scalars(select(ConsoleSessionRow))).all()
    assert [r.key_id for r in rows] == [key_id]
    assert session.token not in rows[0].token_hash


@pytest.mark.parametrize("bad", ["", "nope", "rg_" + "z" * 40])
async def test_signing_in_with_a_bad_key_is_refused(grid: Grid, bad: str) -> None:
    with pytest.raises(errors.Unauthorized):
        await consoles.sign_in_with_key(grid, bad)


async def test_a_link_signs_in_once(grid: Grid) -> None:
    key, key_id = await _user(grid)
    principal = await account_service.authenticate(grid, key)
    token = await consoles.make_link(grid, principal)
    first = await consoles.sign_in_with_link(grid, token)
    assert first.principal.key_id == key_id
    with pytest.raises(errors.Unauthorized, match="used already, expired or unknown"):
        await consoles.sign_in_with_link(grid, token)
    with pytest.raises(errors.Unauthorized):
        await consoles.sign_in_with_link(grid, "")


async def test_a_link_used_twice_at_once_signs_in_only_once(grid: Grid) -> None:
    key, _ = await _user(grid)
    token = await consoles.make_link(grid, await account_service.authenticate(grid, key))
    results = await asyncio.gather(
        *(consoles.sign_in_with_link(grid, token) for _ in range(2)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["ConsoleSession", "Unauthorized"]


async def test_an_expired_link_or_one_of_a_revoked_key_is_refused(grid: Grid) -> None:
    key, key_id = await _user(grid)
    principal = await account_service.authenticate(grid, key)
    expired = await consoles.make_link(grid, principal)
    async with store.transaction(grid.sessions) as db:
        await db.execute(update(ConsoleLinkRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(errors.Unauthorized):
        await consoles.sign_in_with_link(grid, expired)
    fresh = await consoles.make_link(grid, principal)
    await account_service.revoke_key(grid, principal, key_id)
    with pytest.raises(errors.Unauthorized, match="revoked"):
        await consoles.sign_in_with_link(grid, fresh)


async def test_signing_out_expiry_and_revoking_the_key_end_a_session(grid: Grid) -> None:
    key, key_id = await _user(grid)
    ended, expired, revoked = [await consoles.sign_in_with_key(grid, key) for _ in range(3)]
    await consoles.sign_out(grid, ended.token)
    with pytest.raises(errors.Unauthorized):
        await consoles.resume(grid, ended.token)
    async with store.transaction(grid.sessions) as db:
        await db.execute(
            update(ConsoleSessionRow)
            .where(ConsoleSessionRow.csrf == expired.csrf)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(errors.Unauthorized):
        await consoles.resume(grid, expired.token)
    await consoles.resume(grid, revoked.token)  # still fine
    await account_service.revoke_key(grid, revoked.principal, key_id)
    with pytest.raises(errors.Unauthorized, match="revoked"):
        await consoles.resume(grid, revoked.token)


@pytest.mark.parametrize("given", [None, "", "x" * 43])
def test_a_missing_or_wrong_csrf_token_is_forbidden(given: str | None) -> None:
    with pytest.raises(errors.Forbidden, match="CSRF"):
        consoles.check_csrf("y" * 43, given)
    consoles.check_csrf("y" * 43, "y" * 43)


async def test_ended_sessions_and_used_links_are_forgotten_and_a_live_one_kept(grid: Grid) -> None:
    key, _ = await _user(grid)
    live, ended = [await consoles.sign_in_with_key(grid, key) for _ in range(2)]
    await consoles.sign_out(grid, ended.token)
    principal = await account_service.authenticate(grid, key)
    used = await consoles.make_link(grid, principal)
    await consoles.sign_in_with_link(grid, used)  # a third session, live
    await consoles.make_link(grid, principal)  # unused, unexpired: kept
    assert await consoles.forget_ended(grid) == 2  # the ended session, the used link
    await consoles.resume(grid, live.token)
    async with store.transaction(grid.sessions) as db:
        assert len((await db.scalars(select(ConsoleLinkRow))).all()) == 1


async def test_a_live_log_of_a_session_that_ended_is_refused(grid: Grid) -> None:
    key, _ = await _user(grid)
    session = await consoles.sign_in_with_key(grid, key)
    principal = dataclasses.replace(session.principal, session=session.token)
    await consoles.ensure_active(grid, principal)
    await consoles.sign_out(grid, session.token)
    with pytest.raises(errors.Unauthorized):
        await consoles.ensure_active(grid, principal)
    await consoles.ensure_active(grid, session.principal)  # the key alone is still fine
