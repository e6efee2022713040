"""Credentials for one attempt of one execution (SPEC §9): what a runner on another machine
shows the control plane. A credential names the execution, the attempt and the worker that
holds it, signed with a key derived from the grid's secret; it is good only while that attempt
holds the execution, so it stops working the moment the attempt ends (outcome recorded, lease
lost, cancelled). It opens the plane's operations for that attempt (``services.plane``) and
its ``--env`` values, nothing else: no account, no other execution."""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
from collections.abc import AsyncIterator

from rgrid import domain, errors, store
from rgrid.services import Grid, blobs
from rgrid.services.plane import Attempt
from rgrid.storage import blob_key
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store.executions import Held

__all__ = ["SCHEME", "Held", "input_of", "input_url", "issue", "resolve", "store_output"]

#: what the credential's HTTP header starts with: ``Authorization: Attempt <credential>``
SCHEME = "attempt"
_PURPOSE = "attempt-credential-v1"
#: how long a direct URL to an input stays good (long enough for a slow 1 GiB download)
INPUT_URL_S = 3600


def _mac(grid: Grid, claim: str) -> str:
    key = grid.secrets.derive(_PURPOSE)
    return hmac.new(key, claim.encode(), hashlib.sha256).hexdigest()


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def issue(grid: Grid, execution_id: str, attempt: int, worker: str) -> str:
    """The credential of ``worker``'s ``attempt`` of ``execution_id``."""
    claim = f"{execution_id}.{attempt}.{_encode(worker)}"
    return f"{claim}.{_mac(grid, claim)}"


async def resolve(grid: Grid, credential: str | None) -> tuple[Attempt, Held]:
    """The attempt a credential was issued for, and what its requests need of the execution,
    if that attempt still holds it (one query); ``Unauthorized`` otherwise (forged,
    malformed, or the attempt is over)."""
    refused = errors.Unauthorized("this attempt's credential is not valid (any more)")
    if not credential or credential.count(".") != 3:
        raise refused
    claim, _, mac = credential.rpartition(".")
    if not hmac.compare_digest(mac, _mac(grid, claim)):
        raise refused
    execution_id, attempt_text, worker_b64 = claim.split(".")
    try:
        attempt, worker = int(attempt_text), _decode(worker_b64)
    except (ValueError, UnicodeDecodeError):
        raise refused from None
    async with store.transaction(grid.sessions) as session:
        found = await repo.held(session, execution_id, worker, attempt)
    if found is None:
        raise refused
    return Attempt(found.account_id, execution_id, attempt, worker), found


#: the inputs of executions asked about lately, by content (an execution's inputs never change)
_INPUTS: collections.OrderedDict[str, dict[str, domain.FileRef]] = collections.OrderedDict()
_INPUTS_KEPT = 256


async def input_of(grid: Grid, who: Attempt, execution: Held, digest: str) -> domain.FileRef:
    """The input of the attempt's execution with content ``digest`` (a named input, its stdin
    or a file of its tree); ``NotFound`` for anything else, so a credential reads only its own
    execution's inputs."""
    inputs = _INPUTS.get(who.execution_id)
    if inputs is None:
        async with store.transaction(grid.sessions) as session:
            named = await blob_repo.list_files(session, who.execution_id, domain.ArtifactKind.INPUT)
            tree = (
                await grid.trees.get(session, who.account_id, execution.tree_digest)
                if execution.tree_digest is not None
                else None
            )
        inputs = {ref.digest: ref for ref in (*(tree.files if tree else ()), *named)}
        if execution.stdin_digest is not None:
            stdin = domain.FileRef(
                domain.STDIN_PATH, execution.stdin_digest, execution.stdin_size or 0
            )
            inputs.setdefault(stdin.digest, stdin)
        _INPUTS[who.execution_id] = inputs
        while len(_INPUTS) > _INPUTS_KEPT:
            _INPUTS.popitem(last=False)
    _INPUTS.move_to_end(who.execution_id)
    ref = inputs.get(digest)
    if ref is None:
        raise errors.NotFound(f"no input of {who.execution_id} has content {digest[:19]}")
    return ref


async def input_url(grid: Grid, who: Attempt, ref: domain.FileRef) -> str | None:
    """A direct, expiring URL to the input's bytes in storage (None: the storage has none, the
    bytes come through ``blobs.verified_read``)."""
    return await grid.storage.download_url(blob_key(who.account_id, ref.digest), INPUT_URL_S)


async def store_output(
    grid: Grid, who: Attempt, digest: str, chunks: AsyncIterator[bytes], size: int | None
) -> int:
    """Store an output's streamed bytes, verified against ``digest``; refused for a stale
    attempt. Its size."""
    async with store.transaction(grid.sessions) as session:
        if not await repo.holds(session, who.execution_id, who.worker, who.attempt):
            raise errors.LeaseLost(f"attempt {who.attempt} of {who.execution_id} is over")
    stored = await blobs.upload_blob(grid, who.account_id, digest, chunks, size)
    assert stored is not None  # not resumable: whole or an error
    return stored
