"""Submit, inspect, list and cancel executions; read their logs and outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import bounds, digests, domain, errors, schemas, store
from rgrid.domain import ArtifactKind, ExecutionState
from rgrid.money import slot_cost
from rgrid.paths import safe_input_path, safe_relpath
from rgrid.services import (
    Grid,
    blobs,
    cache,
    places,
    retention,
    reuse,
    runtimes,
    trees,
    utcnow,
    workers,
)
from rgrid.storage import blob_key
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store.executions import ListNarrowing as ListNarrowing

MAX_ARGS = 10_000
MAX_FILES = 100_000
MAX_DIRS = 100_000
MAX_TIMEOUT_S = 7 * 24 * 3600
MIN_MEMORY_BYTES = 16 * 1024**2
MAX_MEMORY_BYTES = 1024**4
MIN_DISK_BYTES = 1024**2
MAX_DISK_BYTES = 100 * 1024**4
MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_RETRIES = 10
#: the digest of no bytes: an empty stdin, which needs no blob
EMPTY_DIGESTS = frozenset(digests.of_bytes(b"", algorithm) for algorithm in digests.ALGORITHMS)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise errors.InvalidRequest(message)


def _validate_limits(spec: schemas.ExecutionCreate) -> None:
    _check(len(spec.args) <= MAX_ARGS, f"at most {MAX_ARGS} arguments")
    _check(len(spec.files) <= MAX_FILES, f"at most {MAX_FILES} files")
    _check(len(spec.dirs) <= MAX_DIRS, f"at most {MAX_DIRS} directories")
    _check(0 < spec.timeout_s <= MAX_TIMEOUT_S, f"timeout must be in (0, {MAX_TIMEOUT_S}] seconds")
    _check(
        MIN_MEMORY_BYTES <= spec.memory_bytes <= MAX_MEMORY_BYTES,
        "memory must be between 16 MiB and 1 TiB",
    )
    _check(
        MIN_DISK_BYTES <= spec.disk_bytes <= MAX_DISK_BYTES,
        "disk must be between 1 MiB and 100 TiB",
    )
    _check(
        all(digests.is_digest(f.digest) and f.size >= 0 for f in spec.files),
        "invalid file hash or size",
    )
    if spec.stdin is not None:
        _check(
            digests.is_digest(spec.stdin.digest) and spec.stdin.size >= 0,
            "invalid stdin hash or size",
        )
        _check(
            spec.stdin.size > 0 or spec.stdin.digest in EMPTY_DIGESTS,
            "an empty stdin has the hash of no bytes",
        )
    bounds.check_metadata(spec.metadata)
    bounds.check_env(spec.env)
    key = spec.idempotency_key or ""
    _check(
        len(key) <= MAX_IDEMPOTENCY_KEY_CHARS and not bounds.has_control(key),
        f"an idempotency key is at most {MAX_IDEMPOTENCY_KEY_CHARS} characters, no control ones",
    )
    _check(0 <= spec.max_retries <= MAX_RETRIES, f"max retries must be 0-{MAX_RETRIES}")
    # PostgreSQL text cannot hold NUL: refused here, for every backend alike
    texts = [spec.runtime or "", spec.dependency_source, *spec.requirements]
    _check(not any("\x00" in text for text in texts), "runtime and requirements cannot hold NUL")


def _validate(spec: schemas.ExecutionCreate) -> None:
    _validate_limits(spec)
    surroundings_of(spec)
    paths = [str(safe_input_path(f.path)) for f in spec.files]
    if len(set(paths)) != len(paths):
        raise errors.InvalidRequest("the same path is given twice in files")
    for folder in spec.dirs:
        safe_relpath(folder)
    if str(safe_input_path(spec.script)) not in paths:
        raise errors.InvalidRequest("the script must be one of the uploaded files")
    places.check(spec, paths)
    if any("\x00" in a for a in spec.args):
        raise errors.InvalidRequest("arguments cannot contain NUL bytes")


async def submit(
    grid: Grid, principal: domain.Principal, spec: schemas.ExecutionCreate
) -> domain.Execution:
    """Queue an execution of already-uploaded files. Idempotent per ``idempotency_key``.

    Raises ``InvalidRequest`` for unsafe paths, bad env names, or files whose blobs are missing.
    """
    _validate(spec)
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
                return earlier
        tree, files, stdin = await _inputs(grid, session, account_id, spec)
        new = dataclasses.replace(
            new_execution(grid, account_id, spec, runtime.python, requirements, tree),
            id=domain.new_id("exec"),
            args=tuple(spec.args),
            stdin_digest=stdin.digest if stdin is not None else None,
            stdin_size=stdin.size if stdin is not None else None,
        )
        key = cache.keyer_for(
            grid,
            script=new.script,
            env=spec.env,
            requirements=requirements,
            preset=spec.runtime,
            python=runtime.python,
            network=spec.network,
            stdin=stdin,
            surroundings=new.surroundings,
        )(spec.args, files, tree)  # the tree by its digest: reuse compares trees file by file
        new = dataclasses.replace(
            new, cache_key=key.digest, cache_parts=key.parts, cache_base=key.base
        )
        new, outputs = await _answer_from_cache(
            grid, session, new, key, spec.cache, networked=spec.cache_always
        )
        execution = await repo.insert(session, new, spec.metadata)
        await blob_repo.add_artifacts(session, new.id, ArtifactKind.INPUT, files, new.created_at)
        if new.reused is not None:
            await blob_repo.add_artifacts(
                session, new.id, ArtifactKind.OUTPUT, outputs, new.created_at
            )
            return execution
    grid.wake_dispatcher()
    return execution


async def _inputs(
    grid: Grid, session: AsyncSession, account_id: str, spec: schemas.ExecutionCreate
) -> tuple[domain.Tree | None, list[domain.FileRef], domain.FileRef | None]:
    """The submission's tree, named files and stdin, every content uploaded already."""
    tree, named = await trees.of_submission(
        grid, session, account_id, spec.tree, spec.files, spec.dirs
    )
    _check_apart(named, tree)
    stdin = _stdin_ref(spec.stdin)
    needed = [(f.path, f.digest) for f in named]
    if stdin is not None and stdin.size:  # an empty stdin needs no blob
        needed.append((stdin.path, stdin.digest))
    present = await blob_repo.present_blobs(session, account_id, [sha for _, sha in needed])
    absent = sorted({path for path, sha in needed if sha not in present})
    if absent:
        # with their digests: the client uploads just those and submits again, so that a run
        # whose contents are all here needs no question first (POST /blobs/missing)
        raise errors.BlobsUnknown(
            f"file contents not uploaded: {', '.join(absent[:5])}",
            hint="upload the blobs with PUT /api/v1/blobs/{digest} first",
            details={"missing": sorted({sha for _, sha in needed if sha not in present})},
        )
    files = [domain.FileRef(str(safe_input_path(f.path)), f.digest, f.size) for f in named]
    return tree, files, stdin


def surroundings_of(
    spec: schemas.ExecutionCreate | schemas.BatchCreate,
) -> dict[str, Any] | None:
    """The submission's time zone, locale and terminal as stored (checked); None when it
    names none."""
    given = spec.surroundings
    if given is None or (given.time_zone is None and not given.locale and not given.terminal):
        return None
    terminal = (
        given.terminal
        if given.terminal and (given.terminal.stdout or given.terminal.stderr)
        else None
    )
    others = {"TERM": terminal.term, "COLORTERM": terminal.colorterm} if terminal else {}
    bounds.check_surroundings(given.time_zone, given.locale, others)
    stored: dict[str, Any] = {
        "time_zone": given.time_zone,
        "locale": dict(sorted(given.locale.items())),
    }
    if terminal is not None:
        stored["terminal"] = schemas.dump(terminal)  # built or not
    return stored


def new_execution(
    grid: Grid,
    account_id: str,
    spec: schemas.ExecutionCreate | schemas.BatchCreate,
    python: str | None,
    requirements: list[str],
    tree: domain.Tree | None,
) -> domain.NewExecution:
    """What a run and every item of a batch share of a submission: the new execution before
    its own id, arguments and the rest are set (``dataclasses.replace``)."""
    return domain.NewExecution(
        id="",
        account_id=account_id,
        script=str(safe_input_path(spec.script)),
        args=(),
        env_ciphertext=grid.secrets.seal(spec.env),
        env_names=tuple(sorted(spec.env)),
        timeout_s=spec.timeout_s,
        memory_bytes=spec.memory_bytes,
        disk_bytes=spec.disk_bytes,
        network=spec.network,
        requirements=tuple(requirements),
        dependency_source=spec.dependency_source[:64] if requirements else "none",
        runtime=spec.runtime,
        python_version=python,
        max_retries=spec.max_retries,
        created_at=utcnow(),
        cwd=spec.cwd,
        argv0=spec.argv0,
        mounts=places.mounts(spec),
        idempotency_key=spec.idempotency_key,
        tree_digest=tree.digest if tree is not None else None,
        surroundings=surroundings_of(spec),
    )


async def _answer_from_cache(
    grid: Grid,
    session: AsyncSession,
    new: domain.NewExecution,
    key: cache.CacheKey,
    use_cache: bool,
    *,
    networked: bool = False,
) -> tuple[domain.NewExecution, list[domain.FileRef]]:
    """The execution answered by an earlier identical run, with that run's outputs; else as
    it was, with a note saying why the cache did not answer."""
    if not use_cache:
        return dataclasses.replace(new, cache_note="bypassed (--no-cache)"), []
    found = await reuse.lookup(grid, session, new.account_id, [key], networked=networked)
    verdict = found[key.digest]
    if verdict.hit is None:
        note = await cache.miss_note(grid, session, new.account_id, new.script, key, verdict.why)
        return dataclasses.replace(new, cache_note=note), []
    source, outputs = verdict.hit
    answered = new.answered_by(cache.reused(source))
    return answered, [domain.FileRef(a.path, a.digest, a.size) for a in outputs]


def _check_apart(named: list[schemas.FileIn], tree: domain.Tree | None) -> None:
    """A path is either one of the run's named files or part of its tree, not both."""
    if tree is not None and (both := [f.path for f in named if f.path in tree.by_path]):
        raise errors.InvalidRequest(f"{both[0]!r} is both a named file and in the project tree")


def _stdin_ref(stdin: schemas.StdinIn | None) -> domain.FileRef | None:
    if stdin is None:
        return None
    return domain.FileRef(domain.STDIN_PATH, stdin.digest, stdin.size)


async def retry(
    grid: Grid,
    principal: domain.Principal,
    id_or_prefix: str,
    *,
    force: bool,
    in_batch: bool = False,
    replacements: dict[str, domain.FileRef] | None = None,
) -> domain.Execution:
    """A new execution with the same script, inputs and settings, ``retry_of`` the original.
    With ``in_batch`` it takes the original's place in its batch (the original is superseded).
    ``replacements`` gives new contents for some of its input files (by path; already uploaded).

    Raises ``Conflict`` for one still queued or running, or one that succeeded, unless ``force``.
    """
    async with store.transaction(grid.sessions) as session:
        original = await repo.resolve(session, principal.account.id, id_or_prefix)
        if not force and original.state is ExecutionState.SUCCEEDED:
            raise errors.Conflict(
                f"{original.id} succeeded", hint="pass --force to run it again anyway"
            )
        if not force and not original.state.terminal:
            raise errors.Conflict(
                f"{original.id} is still {original.state.value}",
                hint=f"wait for it, `rgrid cancel {original.id}`, or pass --force",
            )
        source = original
        now = utcnow()
        copied = {column: getattr(source, column) for column in RETRY_COPIED}
        mounts = None
        if source.mount_roots or source.named_outside:
            mounts = {"roots": list(source.mount_roots), "named": list(source.named_outside)}
        made = domain.NewExecution(
            id=domain.new_id("exec"),
            created_at=now,
            retry_of=original.id,
            mounts=mounts,
            **copied,
        )
        new = replacements or {}
        if source.cache_key is not None and source.cache_parts is not None:
            # a retry always runs, but its result may serve later identical runs
            secret = grid.secrets.derive(cache.KEY_PURPOSE)
            key = cache.rekeyed(secret, source.cache_parts, {p: f.digest for p, f in new.items()})
            made = dataclasses.replace(
                made,
                cache_key=key.digest,
                cache_parts=key.parts,
                cache_base=key.base,
                cache_note="bypassed (a retry always runs)",
            )
        if in_batch:
            made = dataclasses.replace(
                made,
                batch_id=source.batch_id,
                batch_index=source.batch_index,
                batch_input=source.batch_input,
            )
            await repo.supersede_one(session, source.id)
        execution = await repo.insert(session, made, original.metadata)
        inputs = await blob_repo.list_files(session, original.id, ArtifactKind.INPUT)
        files = [new.get(ref.path) or ref for ref in inputs]
        if new:
            present = await blob_repo.present_blobs(
                session, principal.account.id, [f.digest for f in new.values()]
            )
            if missing := {f.digest for f in new.values()} - present:
                raise errors.InvalidRequest(f"{len(missing)} file contents not uploaded")
        await blob_repo.add_artifacts(session, made.id, ArtifactKind.INPUT, files, now)
    grid.wake_dispatcher()
    return execution


#: what a retry keeps of the original execution
RETRY_COPIED = (
    "account_id",
    "script",
    "args",
    "env_ciphertext",
    "env_names",
    "timeout_s",
    "memory_bytes",
    "disk_bytes",
    "cwd",
    "argv0",
    "tree_digest",
    "network",
    "requirements",
    "dependency_source",
    "runtime",
    "python_version",
    "max_retries",
    "stdin_digest",
    "stdin_size",
    # its time zone, locale and terminal: part of the key it is stored under (cache_parts)
    "surroundings",
)


async def get(grid: Grid, principal: domain.Principal, id_or_prefix: str) -> domain.Execution:
    async with store.reading(grid.sessions) as session:
        execution = await repo.resolve(session, principal.account.id, id_or_prefix)
    return (await with_running_cost(grid, [execution]))[0]


async def with_running_cost(
    grid: Grid, executions: list[domain.Execution]
) -> list[domain.Execution]:
    """Running executions with their cost so far: what earlier attempts cost plus this one's
    run time at its worker's price (provisional, SPEC §11)."""
    running = [e for e in executions if e.state is ExecutionState.RUNNING and e.started_at]
    if not running:
        return executions
    by_id = await workers.of(grid, sorted({str(e.worker) for e in running}))
    now = utcnow()
    priced = []
    for execution in executions:
        if execution.state is ExecutionState.RUNNING and execution.started_at is not None:
            run_us = max(0, (now - execution.started_at) // timedelta(microseconds=1))
            price, slots = workers.pricing(by_id.get(str(execution.worker)), grid.settings)
            cost = (execution.cost_micros or 0) + slot_cost(run_us, price, slots)
            execution = dataclasses.replace(execution, cost_micros=cost)
        priced.append(execution)
    return priced


async def list_executions(
    grid: Grid,
    principal: domain.Principal,
    *,
    states: list[ExecutionState],
    metadata: dict[str, str],
    since: datetime | None,
    cursor: tuple[datetime, str] | None,
    limit: int,
    batch: str | None = None,
    narrow: ListNarrowing | None = None,
) -> list[domain.Execution]:
    async with store.reading(grid.sessions) as session:
        batch_id = None
        if batch is not None:
            from rgrid.store import batches as batch_repo

            batch_id = (await batch_repo.resolve(session, principal.account.id, batch)).id
        page = await repo.list_page(
            session,
            principal.account.id,
            states=states,
            metadata=metadata,
            since=since,
            cursor=cursor,
            limit=limit,
            batch_id=batch_id,
            narrow=narrow,
        )
    return await with_running_cost(grid, page)


async def cancel(grid: Grid, principal: domain.Principal, id_or_prefix: str) -> domain.Execution:
    """Cancel a queued execution at once, or ask a running one to stop (its group is killed).

    Raises ``Conflict`` for an execution that already ended.
    """
    async with store.transaction(grid.sessions) as session:
        execution = await repo.resolve(session, principal.account.id, id_or_prefix)
        # a claim may move it between the read and the write: then the write matches nothing
        # and the state is read again
        while not execution.state.terminal:
            if execution.state is ExecutionState.RUNNING:
                moved = await repo.request_cancel(session, execution.id)
            else:
                values = {"finished_at": utcnow(), "cause": "cancelled"}
                cancelled = await repo.transition(
                    session,
                    execution.id,
                    ExecutionState.CANCELLED,
                    expected=domain.WAITING_STATES,
                    values=values,
                )
                moved = cancelled is not None
            fresh = await repo.get(session, execution.id)
            assert fresh is not None
            execution = fresh
            if moved:
                break
        else:
            raise errors.Conflict(
                f"{execution.id} already {execution.state.value}",
                details={"state": execution.state.value},
            )
    grid.cancel_local(execution.id)
    # a waiting one is cancelled now; a running one ends later, with its outcome
    ended = execution.batch_id if execution.state.terminal else None
    grid.notifier.notify(execution.id, ended_in_batch=ended)
    return execution


async def list_artifacts(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, kind: ArtifactKind | None
) -> tuple[domain.Execution, list[domain.Artifact]]:
    async with store.transaction(grid.sessions) as session:
        execution = await repo.resolve(session, principal.account.id, id_or_prefix)
        artifacts = await blob_repo.list_artifacts(session, execution.id, kind)
    return execution, retention.with_expiry(grid, artifacts)


#: outputs at least this big are served straight from storage when it can (S3 presigned URLs)
DIRECT_DOWNLOAD_BYTES = 8 * 1024 * 1024
DIRECT_DOWNLOAD_EXPIRES_S = 3600


async def find_output(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, path: str
) -> domain.Artifact:
    """One output file, still kept (``NotFound``, ``ArtifactExpired``)."""
    async with store.reading(grid.sessions) as session:
        execution = await repo.resolve(session, principal.account.id, id_or_prefix)
        # one row by its key: an execution may have thousands of outputs, each downloaded
        found = await blob_repo.find_artifact(session, execution.id, ArtifactKind.OUTPUT, path)
    if found is None:
        raise errors.NotFound(f"no output {path!r}", hint="`rgrid outputs ID` lists them")
    [artifact] = retention.with_expiry(grid, [found])
    retention.ensure_kept(grid, artifact)
    return artifact


async def output_source(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, path: str
) -> tuple[domain.Artifact, str | None]:
    """An output file, and a URL serving it directly from storage when it is big and the
    storage can (S3 presigned URLs); None: stream it through the grid."""
    artifact = await find_output(grid, principal, id_or_prefix, path)
    await blobs.check_blob(
        grid, principal.account.id, artifact.digest, artifact.size, f"output {artifact.path!r}"
    )
    if artifact.size < DIRECT_DOWNLOAD_BYTES:
        return artifact, None
    key = blob_key(principal.account.id, artifact.digest)
    return artifact, await grid.storage.download_url(key, DIRECT_DOWNLOAD_EXPIRES_S)


def output_stream(
    grid: Grid, principal: domain.Principal, artifact: domain.Artifact
) -> AsyncIterator[bytes]:
    what = f"output {artifact.path!r}"
    return blobs.verified_read(grid, principal.account.id, artifact.digest, artifact.size, what)


async def open_output(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, path: str
) -> tuple[domain.Artifact, AsyncIterator[bytes]]:
    """The stored bytes of one output file."""
    artifact = await find_output(grid, principal, id_or_prefix, path)
    return artifact, output_stream(grid, principal, artifact)
