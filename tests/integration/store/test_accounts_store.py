"""Accounts and keys on both databases: hashed keys, revocation, last use, scoping."""

from __future__ import annotations

import pytest
from tests.integration.store.conftest import ADMIN_KEY

from rgrid import errors, store
from rgrid.services import Grid
from rgrid.services import accounts as service
from rgrid.store.models import ApiKeyRow


async def test_bootstrap_key_authenticates_as_admin(grid: Grid) -> None:
    principal = await service.authenticate(grid, ADMIN_KEY)
    assert principal.account.is_admin
    # bootstrapping again (a server restart) creates nothing new
    await service.bootstrap_admin(grid, ADMIN_KEY)
    assert len(await service.list_keys(grid, principal)) == 1


async def test_keys_are_stored_only_as_hashes(grid: Grid) -> None:
    admin = await service.authenticate(grid, ADMIN_KEY)
    _, key = await service.create_account(grid, admin, "bob", is_admin=False)
    async with store.transaction(grid.sessions) as session:
        rows = (await session.scalars(ApiKeyRow.__table__.select())).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert key not in stored and ADMIN_KEY not in stored


@pytest.mark.parametrize(
    "bad", [None, "", "nope", "rg_short", "rg_" + "b" * 40, ADMIN_KEY[:-1] + "b"]
)
async def test_bad_keys_are_refused_with_a_hint(grid: Grid, bad: str | None) -> None:
    with pytest.raises(errors.Unauthorized) as caught:
        await service.authenticate(grid, bad)
    assert "rgrid init" in (caught.value.hint or "")


async def test_revoked_key_stops_working_and_last_use_is_recorded(grid: Grid) -> None:
    admin = await service.authenticate(grid, ADMIN_KEY)
    info, key = await service.create_key(grid, admin, None, "ci")
    assert info.last_used_at is None
    await service.authenticate(grid, key)
    used = next(k for k in await service.list_keys(grid, admin) if k.id == info.id)
    assert used.last_used_at is not None
    await service.revoke_key(grid, admin, info.id)
    with pytest.raises(errors.Unauthorized):
        await service.authenticate(grid, key)


async def test_non_admin_cannot_administer_or_see_other_keys(grid: Grid) -> None:
    admin = await service.authenticate(grid, ADMIN_KEY)
    _, bob_key = await service.create_account(grid, admin, "bob", is_admin=False)
    bob = await service.authenticate(grid, bob_key)
    with pytest.raises(errors.Forbidden):
        await service.create_account(grid, bob, "mallory", is_admin=True)
    with pytest.raises(errors.Forbidden):
        await service.create_key(grid, bob, admin.account.id, "steal")
    assert {k.account_id for k in await service.list_keys(grid, bob)} == {bob.account.id}
    admin_key_id = admin.key_id
    with pytest.raises(errors.NotFound):
        await service.revoke_key(grid, bob, admin_key_id)
