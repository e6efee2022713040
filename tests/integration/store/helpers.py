"""Helpers for service tests: upload files and submit them like the CLI does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rgrid import digests, domain, schemas
from rgrid.services import Grid
from rgrid.services import blobs as blob_service
from rgrid.services import executions as service


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(grid: Grid, principal: domain.Principal, data: bytes) -> str:
    sha = digests.of_bytes(data)
    await blob_service.upload_blob(grid, principal.account.id, sha, _chunks(data), len(data))
    return sha


async def submit_script(
    grid: Grid,
    principal: domain.Principal,
    source: str,
    *,
    files: dict[str, bytes] | None = None,
    **options: object,
) -> domain.Execution:
    entries = {"main.py": source.encode(), **(files or {})}
    refs = [
        schemas.FileIn(path=path, digest=await upload(grid, principal, data), size=len(data))
        for path, data in entries.items()
    ]
    spec = schemas.ExecutionCreate(script="main.py", files=refs, **options)  # type: ignore[arg-type]
    return await service.submit(grid, principal, spec)


async def wait_terminal(
    grid: Grid, principal: domain.Principal, execution_id: str, timeout: float = 30.0
) -> domain.Execution:
    deadline = asyncio.get_running_loop().time() + timeout
    with grid.notifier.listening(execution_id) as changes:
        while True:
            execution = await service.get(grid, principal, execution_id)
            if execution.state.terminal:
                return execution
            assert asyncio.get_running_loop().time() < deadline, f"still {execution.state}"
            await changes.wait(0.2)


def bare_spec(
    execution_id: str,
    account_id: str,
    attempt: int,
    *,
    script: str = "main.py",
    log_seq_start: int = 0,
) -> domain.ExecutionSpec:
    """What a worker is handed for an attempt, without arguments, environment or inputs: all a
    test needs to record the attempt's logs and outcome."""
    return domain.ExecutionSpec(
        execution_id=execution_id,
        account_id=account_id,
        script=script,
        args=(),
        env={},
        inputs=(),
        timeout_s=60,
        memory_bytes=2**30,
        network=False,
        attempt=attempt,
        log_seq_start=log_seq_start,
    )
