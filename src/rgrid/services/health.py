"""What /health and /metrics report: whether the store and the storage answer, the sandbox's
strength, and how many executions are in each state."""

from __future__ import annotations

from rgrid import errors, store
from rgrid.sandbox import detect
from rgrid.services import Grid
from rgrid.store import executions as repo


async def check(grid: Grid) -> tuple[str, str]:
    """("ok" or "error: …") for the store and for the storage."""
    store_status = storage_status = "ok"
    try:
        async with store.transaction(grid.sessions) as session:
            await repo.ping(session)
    except errors.RgridError as exc:
        store_status = f"error: {exc.message}"
    try:
        await grid.storage.health()
    except errors.RgridError as exc:
        storage_status = f"error: {exc.message}"
    return store_status, storage_status


def sandbox_strength() -> str:
    return detect().strength


async def state_counts(grid: Grid) -> dict[str, int]:
    """How many executions are in each state."""
    async with store.transaction(grid.sessions) as session:
        return await repo.state_counts(session)
