"""Batches: one script over many inputs, submitted in one request, parallelism enforced here."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, schemas, store
from rgrid.domain import ArtifactKind, ExecutionState
from rgrid.paths import safe_input_path
from rgrid.services import (
    Grid,
    blobs,
    cache,
    events,
    places,
    retention,
    reuse,
    runtimes,
    trees,
    utcnow,
)
from rgrid.services.executions import _validate, cancel, new_execution, retry, surroundings_of
from rgrid.store import batches as repo
from rgrid.store import blobs as blob_repo

MAX_BATCH_ITEMS = 10_000
#: the longest a follower's poll may wait for its batch to end, seconds
MAX_WAIT_S = 30.0
#: an output up to this size may come inside the items' page (``inline_outputs``)
INLINE_MAX_BYTES = 64 * 1024
#: at most this many bytes and outputs inline in one page: a follower re-attached to a batch
#: of 10,000 items gets the rest by downloading them, as before
INLINE_PAGE_BYTES = 1024 * 1024
INLINE_PAGE_FILES = 256
#: outputs read from storage at once for one page
INLINE_READS_AT_ONCE = 8
MAX_PARALLEL = 1_000
MAX_INPUT_CHARS = 4096


def _validate_batch(spec: schemas.BatchCreate, max_items: int) -> None:
    surroundings_of(spec)
    if not spec.items:
        raise errors.InvalidRequest("a batch needs at least one item")
    if len(spec.items) > max_items:
        raise errors.InvalidRequest(
            f"{len(spec.items)} items is over this grid's maximum of {max_items} per batch",
            hint="split the inputs into several batches (RGRID_MAX_BATCH_ITEMS on the grid)",
        )
    if not 1 <= spec.parallel <= MAX_PARALLEL:
        raise errors.InvalidRequest(f"parallel must be between 1 and {MAX_PARALLEL}")
    first = spec.items[0]
    _validate(
        schemas.ExecutionCreate(
            script=spec.script,
            args=first.args,
            files=[*spec.files, *first.files],
            env=spec.env,
            metadata=spec.metadata,
            timeout_s=spec.timeout_s,
            memory_bytes=spec.memory_bytes,
            disk_bytes=spec.disk_bytes,
            max_retries=spec.max_retries,
            cwd=spec.cwd,
            argv0=spec.argv0,
            mount_roots=spec.mount_roots,
            named_outside=spec.named_outside,
            dirs=spec.dirs,
        )
    )
    for item in spec.items:
        if len(item.input) > MAX_INPUT_CHARS or "\x00" in item.input:
            raise errors.InvalidRequest(
                f"a batch input is named in at most {MAX_INPUT_CHARS} characters, without NUL"
            )
        for ref in item.files:
            path = safe_input_path(ref.path)
            if path.is_absolute():
                places.check(spec, [str(path)])
        if any("\x00" in a for a in item.args) or len(item.args) > 10_000:
            raise errors.InvalidRequest(f"invalid arguments for item {item.input!r}")


async def submit_batch(
    grid: Grid, principal: domain.Principal, spec: schemas.BatchCreate
) -> domain.Batch:
    """Queue every item at once (idempotent per ``idempotency_key``); nothing runs if invalid."""
    _validate_batch(spec, grid.settings.max_batch_items)
    runtime, requirements = runtimes.resolve_requirements(
        spec.requirements,
        spec.runtime,
        grid.pythons,
        grid.default_python,
        grid.settings.allowed_index_hosts,
    )
    account_id = principal.account.id
    async with store.transaction(grid.sessions) as session:
        if spec.idempotency_key:
            earlier = await repo.by_idempotency_key(session, account_id, spec.idempotency_key)
            if earlier is not None:
                return await repo.to_batch(session, earlier)
        tree, named = await trees.of_submission(
            grid, session, account_id, spec.tree, spec.files, spec.dirs
        )
        hashes = {f.digest for f in named} | {f.digest for i in spec.items for f in i.files}
        present = await blob_repo.present_blobs(session, account_id, sorted(hashes))
        if missing := hashes - present:
            raise errors.InvalidRequest(
                f"{len(missing)} file contents not uploaded",
                hint="upload the blobs with PUT /api/v1/blobs/{digest} first",
            )
        now = utcnow()
        batch = repo.BatchRow(
            id=domain.new_id("batch"),
            account_id=account_id,
            script=spec.script,
            parallel=spec.parallel,
            total=len(spec.items),
            idempotency_key=spec.idempotency_key,
            created_at=now,
        )
        session.add(batch)
        await session.flush()
        common = dataclasses.replace(
            new_execution(grid, account_id, spec, runtime.python, requirements, tree),
            created_at=now,
            idempotency_key=None,  # the batch's, not its items'
            batch_id=batch.id,
        )
        keyer = cache.keyer_for(
            grid,
            script=common.script,
            env=spec.env,
            requirements=requirements,
            preset=spec.runtime,
            python=runtime.python,
            network=spec.network,
            surroundings=common.surroundings,
        )
        items, artifacts, metadata = _items(spec, named, tree, common, keyer)
        items = await _reuse_results(
            grid, session, spec.cache, items, artifacts, networked=spec.cache_always
        )
        await repo.insert_items(session, [item.columns() for item in items], artifacts, metadata)
        result = await repo.to_batch(session, batch)
    if any(item.reused is None for item in items):
        grid.wake_dispatcher()
    return result


async def _reuse_results(
    grid: Grid,
    session: AsyncSession,
    use_cache: bool,
    items: list[domain.NewExecution],
    artifacts: list[dict[str, Any]],
    *,
    networked: bool = False,
) -> list[domain.NewExecution]:
    """The items, those an identical earlier succeeded run already answered made finished
    results of it (their outputs added to ``artifacts``)."""
    if not use_cache:
        return [dataclasses.replace(item, cache_note="bypassed (--no-cache)") for item in items]
    account_id = items[0].account_id
    keys = [
        cache.CacheKey(i.cache_key or "", i.cache_parts or {}, i.cache_base or "") for i in items
    ]
    verdicts = await reuse.lookup(grid, session, account_id, keys, networked=networked)
    answered = []
    for item in items:
        verdict = verdicts[item.cache_key or ""]
        hit = verdict.hit
        if hit is None:
            note = "miss" if verdict.why is None else f"miss: {verdict.why}"
            answered.append(dataclasses.replace(item, cache_note=note))
            continue
        source, outputs = hit
        answered.append(item.answered_by(cache.reused(source)))
        artifacts += [
            {
                "execution_id": item.id,
                "kind": ArtifactKind.OUTPUT.value,
                "path": a.path,
                "digest": a.digest,
                "size": a.size,
                "created_at": item.created_at,
            }
            for a in outputs
        ]
    return answered


def _items(
    spec: schemas.BatchCreate,
    named: list[schemas.FileIn],
    tree: domain.Tree | None,
    common: domain.NewExecution,
    keyer: cache.Keyer,
) -> tuple[list[domain.NewExecution], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each item's execution, input artifacts (its own files and the named ones all share; the
    tree's are the tree's) and metadata."""
    shared = [(str(safe_input_path(f.path)), f.digest, f.size) for f in named]
    in_tree = tree.by_path if tree is not None else {}
    items, artifacts, metadata = [], [], []
    for index, item in enumerate(spec.items):
        execution_id = domain.new_id("exec")
        own = [(str(safe_input_path(f.path)), f.digest, f.size) for f in item.files]
        paths = {f[0] for f in own}
        if clash := next((path for path in paths if path in in_tree), None):
            raise errors.InvalidRequest(f"{clash!r} is both an item's file and in the tree")
        files = [*own, *(s for s in shared if s[0] not in paths)]
        key = keyer(item.args, [domain.FileRef(*f) for f in files], tree)
        items.append(
            dataclasses.replace(
                common,
                id=execution_id,
                args=tuple(item.args),
                batch_index=index,
                batch_input=item.input,
                cache_key=key.digest,
                cache_parts=key.parts,
                cache_base=key.base,
            )
        )
        for path, sha, size in files:
            artifacts.append(
                {
                    "execution_id": execution_id,
                    "kind": ArtifactKind.INPUT.value,
                    "path": path,
                    "digest": sha,
                    "size": size,
                    "created_at": common.created_at,
                }
            )
        metadata += [
            {"execution_id": execution_id, "key": k, "value": v} for k, v in spec.metadata.items()
        ]
    return items, artifacts, metadata


async def get_batch(
    grid: Grid, principal: domain.Principal, id_or_prefix: str
) -> tuple[domain.Batch, list[domain.Execution]]:
    async with store.transaction(grid.sessions) as session:
        row = await repo.resolve(session, principal.account.id, id_or_prefix)
        return await repo.to_batch(session, row), await repo.current_items(session, row.id)


#: how far back a follower's next ``changed_after`` reaches behind the moment it asked: a row is
#: stamped before its transaction commits, so a change stamped just before a read may only
#: become visible after it (and servers' clocks may differ a little)
CHANGES_LAG = timedelta(seconds=5)


async def batch_changes(
    grid: Grid,
    principal: domain.Principal,
    id_or_prefix: str,
    changed_after: datetime | None,
    *,
    wait_s: float = 0.0,
) -> tuple[domain.Batch, list[domain.Execution], datetime]:
    """The batch, its items that changed after ``changed_after`` (all without it), and the
    ``changed_after`` to ask with next time. An item may come back more than once.

    ``wait_s`` > 0: unless the batch has ended, the answer waits up to ``wait_s`` (at most
    ``MAX_WAIT_S``) for it to end, and then brings every change since ``changed_after``. A
    follower thus polls at its own pace yet learns of the end at once. Whether it ended is
    looked at again when as many items ended as were left (each end is notified on
    ``events.batch_key``), and at least every ``events.MAX_WAIT_S`` (an item ended by
    another server's runner)."""
    if wait_s > 0:
        id_or_prefix = await _wait_for_end(grid, principal, id_or_prefix, wait_s)
    asked_at = utcnow()
    async with store.transaction(grid.sessions) as session:
        row = await repo.resolve(session, principal.account.id, id_or_prefix)
        batch = await repo.to_batch(session, row)
        items = await repo.current_items(session, row.id, changed_after)
    return batch, items, asked_at - CHANGES_LAG


async def _wait_for_end(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, wait_s: float
) -> str:
    """Return once the batch ended or ``wait_s`` passed (the answer is read after); its id."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_s, MAX_WAIT_S)
    batch = await _batch(grid, principal, id_or_prefix)
    with grid.notifier.listening(events.batch_key(batch.id)) as ended:
        # an item that ended between the read above and the listening is not counted: the
        # batch is read again after ``events.MAX_WAIT_S`` at the latest
        left, counted, read_at = batch.left, 0, loop.time()
        while left > 0 and (remaining := deadline - loop.time()) > 0:
            await ended.wait(remaining)
            now = loop.time()
            if now < deadline and (
                ended.received - counted >= left or now - read_at >= events.MAX_WAIT_S
            ):
                batch = await _batch(grid, principal, batch.id)
                left, counted, read_at = batch.left, ended.received, loop.time()
    return batch.id


async def _batch(grid: Grid, principal: domain.Principal, id_or_prefix: str) -> domain.Batch:
    async with store.reading(grid.sessions) as session:
        return await repo.to_batch(
            session, await repo.resolve(session, principal.account.id, id_or_prefix)
        )


async def finished_outputs(
    grid: Grid, items: list[domain.Execution]
) -> dict[str, list[domain.Artifact]]:
    """The output artifacts of the items that ended, in one query."""
    ended = [item.id for item in items if item.state.terminal]
    async with store.transaction(grid.sessions) as session:
        return await blob_repo.outputs_of(session, ended)


async def inline_outputs(
    grid: Grid,
    principal: domain.Principal,
    items: list[domain.Execution],
    outputs: dict[str, list[domain.Artifact]],
    up_to: int,
    changed_after: datetime | None,
) -> dict[str, bytes]:
    """The bytes of the outputs of at most ``up_to`` bytes each (and ``INLINE_MAX_BYTES``),
    by digest, for the items' page to carry them: a follower then saves an item's small
    outputs without a download request each (on a remote grid, a round trip an output). Each
    one is read as a download reads it (verified against its address: damaged content is
    forgotten and left out, and its download says so); expired ones and those past the page's
    bounds are left out too, and downloaded as before.

    A page of changes after ``changed_after`` brings again the items that ended in the
    ``CHANGES_LAG`` before it (the previous page's, most of them): their outputs came with that
    page and are not read again. One the previous page missed after all (its commit came late)
    comes without, and is downloaded."""
    limit = min(up_to, INLINE_MAX_BYTES)
    asked_before = None if changed_after is None else changed_after + CHANGES_LAG
    new = [
        item.id
        for item in items
        if asked_before is None or item.finished_at is None or item.finished_at > asked_before
    ]
    wanted: dict[str, domain.Artifact] = {}
    total = 0
    for artifact in (a for item_id in new for a in outputs.get(item_id, ())):
        if artifact.digest in wanted or artifact.size > limit or retention.expired(grid, artifact):
            continue
        if len(wanted) == INLINE_PAGE_FILES or total + artifact.size > INLINE_PAGE_BYTES:
            break
        wanted[artifact.digest] = artifact
        total += artifact.size
    room = asyncio.Semaphore(INLINE_READS_AT_ONCE)

    async def read(artifact: domain.Artifact) -> bytes | None:
        what = f"output {artifact.path!r}"
        async with room:
            try:
                stream = blobs.verified_read(
                    grid, principal.account.id, artifact.digest, artifact.size, what
                )
                return b"".join([chunk async for chunk in stream])
            except (errors.BlobCorrupt, errors.StorageError, errors.NotFound):
                return None  # its download request reports it

    read_all = await asyncio.gather(*(read(a) for a in wanted.values()))
    return {
        digest: content
        for digest, content in zip(wanted, read_all, strict=True)
        if content is not None
    }


async def cancel_batch(grid: Grid, principal: domain.Principal, id_or_prefix: str) -> domain.Batch:
    """Cancel every queued or running item (finished ones are left as they are)."""
    batch, items = await get_batch(grid, principal, id_or_prefix)
    for item in items:
        if not item.state.terminal:
            try:
                await cancel(grid, principal, item.id)
            except errors.Conflict:
                pass  # it finished meanwhile
    return (await get_batch(grid, principal, batch.id))[0]


async def retry_batch(
    grid: Grid,
    principal: domain.Principal,
    id_or_prefix: str,
    *,
    failed_only: bool,
    inputs: dict[str, schemas.FileIn] | None = None,
) -> list[domain.Execution]:
    """Run the failed (and, without ``failed_only``, cancelled) items again inside the batch:
    each new execution takes the old one's place (``retry_of``; the old one is superseded).
    ``inputs`` (by the item's input as the user named it) carries fixed input files."""
    _, items = await get_batch(grid, principal, id_or_prefix)
    wanted = {ExecutionState.FAILED} | (set() if failed_only else {ExecutionState.CANCELLED})
    made = []
    for item in items:
        if item.state not in wanted:
            continue
        fixed = (inputs or {}).get(item.batch_input or "")
        swap = {fixed.path: domain.FileRef(fixed.path, fixed.digest, fixed.size)} if fixed else None
        made.append(
            await retry(grid, principal, item.id, force=False, in_batch=True, replacements=swap)
        )
    return made
