"""Execution rows: insert, look up (by id or unique prefix), list, claim, lease, finish."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from rgrid import domain, errors
from rgrid.domain import ExecutionState
from rgrid.store import SQLITE_UTC_AFTER, starts_with
from rgrid.store.models import BatchRow, ExecutionMetadataRow, ExecutionRow

PREFIX_MATCH_LIMIT = 2  # enough to tell "unique" from "ambiguous"


def to_domain(row: Any, metadata: Mapping[str, str]) -> domain.Execution:
    """An ``ExecutionRow``, or a row of its table's columns, as the domain's execution."""
    return domain.Execution(
        id=row.id,
        account_id=row.account_id,
        state=ExecutionState(row.state),
        script=row.script,
        args=tuple(row.args),
        env_names=tuple(row.env_names),
        metadata=dict(metadata),
        timeout_s=row.timeout_s,
        memory_bytes=row.memory_bytes,
        disk_bytes=row.disk_bytes,
        cwd=row.cwd,
        named_outside=tuple((row.mounts or {}).get("named", ())),
        network=row.network,
        exit_code=row.exit_code,
        failure_class=domain.FailureClass(row.failure_class) if row.failure_class else None,
        cause=row.cause,
        hint=row.hint,
        attempt=row.attempt,
        worker=row.worker,
        created_at=row.created_at,
        queued_at=row.queued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_seq=row.last_seq,
        cancel_requested=row.cancel_requested,
        requirements=tuple(row.requirements or ()),
        dependency_source=row.dependency_source,
        runtime=row.runtime,
        python_version=row.python_version,
        packages=tuple(row.packages or ()),
        max_retries=row.max_retries,
        retry_of=row.retry_of,
        retry_reason=row.retry_reason,
        batch_id=row.batch_id,
        batch_index=row.batch_index,
        batch_input=row.batch_input,
        superseded=row.superseded,
        cached_from=row.cached_from,
        cache_note=row.cache_note,
        cost_micros=row.cost_micros,
        cost_final=row.cost_final,
        stdin_size=row.stdin_size,
        output_dirs=tuple(row.output_dirs or ()),
        env_ciphertext=row.env_ciphertext,
        argv0=row.argv0,
        mount_roots=tuple((row.mounts or {}).get("roots", ())),
        stdin_digest=row.stdin_digest,
        tree_digest=row.tree_digest,
        cache_key=row.cache_key,
        cache_parts=row.cache_parts,
        cache_base=row.cache_base,
        reads=row.reads,
        lease_expires_at=row.lease_expires_at,
        network_used=row.network_used,
        surroundings=row.surroundings,
    )


# Built once: every status read runs one of these, and building a statement (and its cache
# key, by which SQLAlchemy finds the compiled SQL) costs more than the query on a busy grid.
_METADATA_OF = select(
    ExecutionMetadataRow.execution_id, ExecutionMetadataRow.key, ExecutionMetadataRow.value
).where(ExecutionMetadataRow.execution_id.in_(bindparam("ids", expanding=True)))
#: one execution of an account with its metadata, a row per entry (one query, not two)
_ONE_OF_ACCOUNT = (
    select(ExecutionRow, ExecutionMetadataRow.key, ExecutionMetadataRow.value)
    .outerjoin(ExecutionMetadataRow, ExecutionMetadataRow.execution_id == ExecutionRow.id)
    .where(ExecutionRow.account_id == bindparam("account_id"), ExecutionRow.id == bindparam("id"))
)


async def _metadata(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {i: {} for i in ids}
    if ids:
        for execution_id, key, value in await session.execute(_METADATA_OF, {"ids": list(ids)}):
            out[execution_id][key] = value
    return out


async def add_metadata(session: AsyncSession, execution: domain.Execution) -> domain.Execution:
    """``execution`` (read without its metadata: ``get(…, with_metadata=False)``) with it."""
    metadata = (await _metadata(session, [execution.id]))[execution.id]
    return dataclasses.replace(execution, metadata=metadata)


async def _hydrate(session: AsyncSession, rows: Sequence[ExecutionRow]) -> list[domain.Execution]:
    meta = await _metadata(session, [row.id for row in rows])
    return [to_domain(row, meta[row.id]) for row in rows]


async def insert(
    session: AsyncSession, new: domain.NewExecution, metadata: Mapping[str, str]
) -> domain.Execution:
    row = ExecutionRow(**new.columns())
    session.add(row)
    await session.flush()  # no ORM relationship: the row must exist before its metadata
    session.add_all(
        ExecutionMetadataRow(execution_id=row.id, key=k, value=v) for k, v in metadata.items()
    )
    await session.flush()
    return to_domain(row, metadata)


async def by_idempotency_key(
    session: AsyncSession, account_id: str, key: str
) -> domain.Execution | None:
    row = await session.scalar(
        select(ExecutionRow).where(
            ExecutionRow.account_id == account_id, ExecutionRow.idempotency_key == key
        )
    )
    return (await _hydrate(session, [row]))[0] if row else None


async def resolve(session: AsyncSession, account_id: str, id_or_prefix: str) -> domain.Execution:
    """The execution with this id or unique id prefix, in this account.

    Raises ``NotFound`` (also for other accounts' ids) or ``AmbiguousId``.
    """
    found = (
        await session.execute(_ONE_OF_ACCOUNT, {"account_id": account_id, "id": id_or_prefix})
    ).all()
    if found:
        metadata = {key: value for _, key, value in found if key is not None}
        return to_domain(found[0][0], metadata)
    row = None
    if id_or_prefix:
        scoped = select(ExecutionRow).where(ExecutionRow.account_id == account_id)
        rows = (
            await session.scalars(
                scoped.where(starts_with(ExecutionRow.id, id_or_prefix))
                .order_by(ExecutionRow.id)
                .limit(PREFIX_MATCH_LIMIT)
            )
        ).all()
        if len(rows) > 1:
            raise errors.AmbiguousId(
                f"{id_or_prefix!r} matches several executions",
                hint="type more characters of the id",
                details={"matches": [r.id for r in rows]},
            )
        row = rows[0] if rows else None
    if row is None:
        raise errors.NotFound(
            f"no execution {id_or_prefix!r}", hint="`rgrid list` shows your executions"
        )
    return (await _hydrate(session, [row]))[0]


async def get_row(session: AsyncSession, execution_id: str) -> ExecutionRow | None:
    return await session.get(ExecutionRow, execution_id)


async def get(
    session: AsyncSession, execution_id: str, *, with_metadata: bool = True
) -> domain.Execution | None:
    """The execution; without its metadata (empty) when not needed: one query less."""
    row = await session.get(ExecutionRow, execution_id)
    if row is None:
        return None
    return (await _hydrate(session, [row]))[0] if with_metadata else to_domain(row, {})


@dataclasses.dataclass(frozen=True)
class ListNarrowing:
    """The list's further filters (the console's): created before ``until``, by script name,
    by id prefix."""

    until: datetime | None = None
    script: str | None = None
    id_prefix: str | None = None


def _list_query(
    account_id: str,
    states: Sequence[ExecutionState],
    metadata: Mapping[str, str],
    since: datetime | None,
    cursor: tuple[datetime, str] | None,
    batch_id: str | None = None,
    narrow: ListNarrowing | None = None,
) -> Select[ExecutionRow]:
    query = select(ExecutionRow).where(ExecutionRow.account_id == account_id)
    if batch_id is not None:
        query = query.where(ExecutionRow.batch_id == batch_id)
    if states:
        query = query.where(ExecutionRow.state.in_([s.value for s in states]))
    if since is not None:
        query = query.where(ExecutionRow.created_at >= since)
    if narrow is not None:
        if narrow.until is not None:
            query = query.where(ExecutionRow.created_at < narrow.until)
        if narrow.script is not None:
            query = query.where(ExecutionRow.script == narrow.script)
        if narrow.id_prefix:
            query = query.where(starts_with(ExecutionRow.id, narrow.id_prefix))
    for key, value in metadata.items():
        query = query.where(
            select(ExecutionMetadataRow.execution_id)
            .where(
                ExecutionMetadataRow.execution_id == ExecutionRow.id,
                ExecutionMetadataRow.key == key,
                ExecutionMetadataRow.value == value,
            )
            .exists()
        )
    if cursor is not None:
        created, last_id = cursor
        query = query.where(
            or_(
                ExecutionRow.created_at < created,
                and_(ExecutionRow.created_at == created, ExecutionRow.id < last_id),
            )
        )
    return query.order_by(ExecutionRow.created_at.desc(), ExecutionRow.id.desc())


async def list_page(
    session: AsyncSession,
    account_id: str,
    *,
    states: Sequence[ExecutionState] = (),
    metadata: Mapping[str, str] | None = None,
    since: datetime | None = None,
    cursor: tuple[datetime, str] | None = None,
    limit: int = 50,
    batch_id: str | None = None,
    narrow: ListNarrowing | None = None,
) -> list[domain.Execution]:
    """Newest first; pass the last item's (created_at, id) as ``cursor`` for the next page."""
    query = _list_query(account_id, states, metadata or {}, since, cursor, batch_id, narrow)
    query = query.limit(limit)
    return await _hydrate(session, list((await session.scalars(query)).all()))


@functools.lru_cache(maxsize=32)
def _claim_statement(postgres: bool, pythons: frozenset[str] | None, stamped: bool) -> Any:
    """``claim_next``'s UPDATE, built once per database kind and set of Pythons (building it,
    its correlated subqueries and its cache key cost milliseconds of the grid's one event loop
    per claim); the time, the worker and the lease's end are bound per call. ``stamped``
    (SQLite): the start and the lease's end are the time the UPDATE runs at, under the write
    lock (``store.SQLITE_UTC_AFTER``), not the time bound."""
    waiting = [state.value for state in domain.WAITING_STATES]
    running = aliased(ExecutionRow)
    running_in_batch = (
        select(func.count())
        .select_from(running)
        .where(
            running.batch_id == ExecutionRow.batch_id,
            running.state == ExecutionState.RUNNING.value,
        )
        .scalar_subquery()
    )
    parallel = select(BatchRow.parallel).where(BatchRow.id == ExecutionRow.batch_id)
    runnable = (
        or_(
            ExecutionRow.python_version.is_(None),
            *(ExecutionRow.python_version == minor for minor in sorted(pythons)),
            *(ExecutionRow.python_version.like(f"{minor}.%") for minor in sorted(pythons)),
        )
        if pythons is not None
        else true()
    )
    columns = ExecutionRow.__table__.c
    now = bindparam("claim_now", type_=columns.queued_at.type)
    utc_after = getattr(func, SQLITE_UTC_AFTER)
    pick = (
        select(ExecutionRow.id)
        .where(
            ExecutionRow.state.in_(waiting),
            ExecutionRow.queued_at <= now,
            or_(ExecutionRow.batch_id.is_(None), running_in_batch < parallel.scalar_subquery()),
            runnable,
        )
        .order_by(ExecutionRow.queued_at, ExecutionRow.batch_index, ExecutionRow.id)
        .limit(1)
    )
    if postgres:
        pick = pick.with_for_update(skip_locked=True, of=ExecutionRow)
    # SQLite's: on the table, its row returned as a plain row (no ORM object to build: nothing
    # reads one afterwards); PostgreSQL's claim may stamp its start on the ORM object after
    target = ExecutionRow if postgres else cast(Table, ExecutionRow.__table__)
    returned = (ExecutionRow,) if postgres else tuple(columns)
    return (
        update(target)
        .where(ExecutionRow.id == pick.scalar_subquery())
        .where(ExecutionRow.state.in_(waiting))
        .values(
            state=ExecutionState.RUNNING.value,
            worker=bindparam("claim_worker", type_=columns.worker.type),
            started_at=utc_after(0.0) if stamped else now,
            lease_expires_at=(
                utc_after(bindparam("claim_lease_s"))
                if stamped
                else bindparam("claim_lease_until", type_=columns.lease_expires_at.type)
            ),
            attempt=ExecutionRow.attempt + 1,
        )
        .returning(*returned)
        .execution_options(synchronize_session=False)
    )


async def claim_next(
    session: AsyncSession,
    *,
    worker: str,
    now: datetime,
    lease_s: float,
    clock: Callable[[], datetime] | None = None,
    pythons: frozenset[str] | None = None,
) -> domain.Execution | None:
    """Atomically move the oldest waiting execution to running for ``worker`` (one that
    asks for no particular Python, or for one of ``pythons`` when given: minor versions).

    One ``UPDATE … WHERE id = (SELECT … [FOR UPDATE SKIP LOCKED]) RETURNING`` statement, so two
    claimers can never get the same row (SQLite serialises writers; PostgreSQL skips locked rows).
    A batch item is only picked while fewer than the batch's ``parallel`` items run; on
    PostgreSQL that count is re-checked under a lock of the batch row, so concurrent claimers
    cannot overbook it.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    # On SQLite, with a clock, the UPDATE stamps its own time: the one it took effect at
    stamped = clock is not None and not postgres
    bound: dict[str, Any] = {"claim_now": now, "claim_worker": worker}
    if stamped:
        bound["claim_lease_s"] = lease_s
    else:
        bound["claim_lease_until"] = now + timedelta(seconds=lease_s)
    statement = _claim_statement(postgres, pythons, stamped)
    row: Any  # PostgreSQL's an ORM object, SQLite's a plain row (``_claim_statement``)
    if postgres:
        row = await _claim_within_batch_limit(session, statement, bound)
    else:  # SQLite serialises writers: its one UPDATE cannot overbook a batch
        row = (await session.execute(statement, bound)).first()
    if row is None:
        return None
    if clock is not None and not stamped:
        # The claim took effect when its UPDATE got the write lock, possibly after waiting for
        # the commit that freed the slot: its start is stamped from then, so a batch item's
        # started_at is never before the finished_at of the item whose slot it took.
        row.started_at = clock()
        row.lease_expires_at = row.started_at + timedelta(seconds=lease_s)
        await session.flush()
    return to_domain(row, {})


async def _claim_within_batch_limit(
    session: AsyncSession, statement: Any, bound: dict[str, Any]
) -> ExecutionRow | None:
    """PostgreSQL's claim: the UPDATE in a savepoint, undone when a concurrent claimer took
    the batch's last slot first (the count re-checked under a lock of the batch row)."""
    savepoint = await session.begin_nested()
    row: ExecutionRow | None = (await session.execute(statement, bound)).scalars().first()
    if row is not None and row.batch_id is not None:
        await session.execute(
            select(BatchRow.id).where(BatchRow.id == row.batch_id).with_for_update()
        )
        count = await session.scalar(
            select(func.count()).where(
                ExecutionRow.batch_id == row.batch_id,
                ExecutionRow.state == ExecutionState.RUNNING.value,
            )
        )
        limit = await session.scalar(select(BatchRow.parallel).where(BatchRow.id == row.batch_id))
        if (count or 0) > (limit or 0):
            await savepoint.rollback()
            return None
    await savepoint.commit()
    return row


async def renew_lease(
    session: AsyncSession, execution_id: str, worker: str, until: datetime
) -> bool | None:
    """Extend the lease; returns whether cancel was requested, or None if the lease is lost."""
    result = await session.execute(
        update(ExecutionRow)
        .where(
            ExecutionRow.id == execution_id,
            ExecutionRow.worker == worker,
            ExecutionRow.state == ExecutionState.RUNNING.value,
        )
        .values(lease_expires_at=until)
        .returning(ExecutionRow.cancel_requested)
    )
    value = result.scalar_one_or_none()
    return None if value is None else bool(value)


async def cancel_requested(session: AsyncSession, execution_ids: list[str]) -> list[str]:
    """Which of these executions a cancel was asked for."""
    ids = await session.scalars(
        select(ExecutionRow.id).where(
            ExecutionRow.id.in_(execution_ids), ExecutionRow.cancel_requested.is_(True)
        )
    )
    return list(ids)


async def expired_leases(session: AsyncSession, now: datetime) -> list[domain.Execution]:
    rows = await session.scalars(
        select(ExecutionRow).where(
            ExecutionRow.state == ExecutionState.RUNNING.value,
            ExecutionRow.lease_expires_at < now,
        )
    )
    return [to_domain(row, {}) for row in rows]


async def running_on(session: AsyncSession, worker_prefix: str) -> list[domain.Execution]:
    """Running executions whose worker id starts with ``worker_prefix``."""
    rows = await session.scalars(
        select(ExecutionRow).where(
            ExecutionRow.state == ExecutionState.RUNNING.value,
            starts_with(ExecutionRow.worker, worker_prefix),
        )
    )
    return [to_domain(row, {}) for row in rows]


async def transition(
    session: AsyncSession,
    execution_id: str,
    new: ExecutionState,
    *,
    expected: Sequence[ExecutionState],
    holder: tuple[str, int] | None = None,
    lease_expired_before: datetime | None = None,
    values: Mapping[str, Any] | None = None,
) -> domain.Execution | None:
    """Move an execution from one of the ``expected`` states to ``new`` (each move allowed by
    ``domain.TRANSITIONS``), setting ``values`` with it, in one statement guarded by those
    states and, for a running execution, by the (worker, attempt) ``holder`` that must hold it
    and optionally by its lease having expired before a time. Returns the updated row, or None
    when the guard matched nothing (someone else moved it first): then nothing changed.

    Claiming (``claim_next``) is the one other way a state changes."""
    for old in expected:
        if not domain.can_transition(old, new):
            raise ValueError(f"{old.value} → {new.value} is not an allowed transition")
    values = values or {}
    if not any(isinstance(value, ClauseElement) for value in values.values()):
        # the statement of this shape built once, every value bound (as ``claim_next``'s)
        statement = _transition_statement(
            new.value,
            tuple(state.value for state in expected),
            holder is not None,
            lease_expired_before is not None,
            tuple(values),
        )
        bound = {f"t_{key}": value for key, value in values.items()}
        bound["t_id"] = execution_id
        if holder is not None:
            bound["t_worker"], bound["t_attempt"] = holder
        if lease_expired_before is not None:
            bound["t_lease_before"] = lease_expired_before
        row = (await session.execute(statement, bound)).scalars().first()
        return to_domain(row, {}) if row is not None else None
    conditions = [
        ExecutionRow.id == execution_id,
        ExecutionRow.state.in_([state.value for state in expected]),
    ]
    if holder is not None:
        conditions += [ExecutionRow.worker == holder[0], ExecutionRow.attempt == holder[1]]
    if lease_expired_before is not None:
        conditions.append(ExecutionRow.lease_expires_at < lease_expired_before)
    statement = (
        update(ExecutionRow)
        .where(*conditions)
        .values(state=new.value, **values)
        .returning(ExecutionRow)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    row = (await session.execute(statement)).scalars().first()
    return to_domain(row, {}) if row is not None else None


@functools.lru_cache(maxsize=64)
def _transition_statement(
    new: str, expected: tuple[str, ...], held: bool, lease_guarded: bool, keys: tuple[str, ...]
) -> Any:
    """``transition``'s UPDATE for one shape of move (building it and its cache key anew cost
    a millisecond of the event loop per outcome); the execution, holder, lease time and values
    are bound as ``t_<name>``."""

    def bound(name: str, attribute: Any) -> Any:
        return bindparam(f"t_{name}", type_=attribute.type)

    conditions = [ExecutionRow.id == bound("id", ExecutionRow.id), ExecutionRow.state.in_(expected)]
    if held:
        conditions += [
            ExecutionRow.worker == bound("worker", ExecutionRow.worker),
            ExecutionRow.attempt == bound("attempt", ExecutionRow.attempt),
        ]
    if lease_guarded:
        conditions.append(
            ExecutionRow.lease_expires_at < bound("lease_before", ExecutionRow.lease_expires_at)
        )
    return (
        update(ExecutionRow)
        .where(*conditions)
        .values(state=new, **{key: bound(key, getattr(ExecutionRow, key)) for key in keys})
        .returning(ExecutionRow)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


def next_log_seq() -> Any:
    """A column value for ``transition``: one more log line than stored (a notice it adds)."""
    return ExecutionRow.last_seq + 1


async def supersede_one(session: AsyncSession, execution_id: str) -> None:
    """A retried batch item's old execution gives its place to the new one."""
    await session.execute(
        update(ExecutionRow).where(ExecutionRow.id == execution_id).values(superseded=True)
    )


async def request_cancel(session: AsyncSession, execution_id: str) -> bool:
    """Ask a running execution to stop (its worker sees it at the next lease renewal); whether
    it was running."""
    changed = await session.scalar(
        update(ExecutionRow)
        .where(
            ExecutionRow.id == execution_id,
            ExecutionRow.state == ExecutionState.RUNNING.value,
        )
        .values(cancel_requested=True)
        .returning(ExecutionRow.id)
    )
    return changed is not None


def _held_by(execution_id: str, worker: str, attempt: int) -> ColumnElement[bool]:
    return and_(
        ExecutionRow.id == execution_id,
        ExecutionRow.state == ExecutionState.RUNNING.value,
        ExecutionRow.worker == worker,
        ExecutionRow.attempt == attempt,
    )


async def holds(session: AsyncSession, execution_id: str, worker: str, attempt: int) -> bool:
    """Whether ``worker``'s ``attempt`` still holds the running execution."""
    found = await session.scalar(
        select(ExecutionRow.id).where(_held_by(execution_id, worker, attempt))
    )
    return found is not None


class Held(NamedTuple):
    """What a remote attempt's requests need of the execution it holds."""

    account_id: str
    env_ciphertext: str
    tree_digest: str | None
    stdin_digest: str | None
    stdin_size: int | None


async def held(session: AsyncSession, execution_id: str, worker: str, attempt: int) -> Held | None:
    """The execution if ``worker``'s ``attempt`` still holds it (one query), else None."""
    row = (
        await session.execute(
            select(
                ExecutionRow.account_id,
                ExecutionRow.env_ciphertext,
                ExecutionRow.tree_digest,
                ExecutionRow.stdin_digest,
                ExecutionRow.stdin_size,
            ).where(_held_by(execution_id, worker, attempt))
        )
    ).first()
    return Held(*row) if row is not None else None


async def advance_log(
    session: AsyncSession, execution_id: str, worker: str, attempt: int, seq: int
) -> bool:
    """Record ``seq`` as the last stored log line, in one statement guarded by the attempt that
    must hold the execution; False (nothing changed) for a stale attempt."""
    changed = await session.scalar(
        update(ExecutionRow)
        .where(_held_by(execution_id, worker, attempt))
        .values(last_seq=seq)
        .returning(ExecutionRow.id)
    )
    return changed is not None


async def cached_results(
    session: AsyncSession, account_id: str, keys: Sequence[str]
) -> dict[str, domain.Execution]:
    """The newest succeeded execution of this account for each cache key that has one."""
    found: dict[str, domain.Execution] = {}
    for start in range(0, len(keys), 500):
        rows = await session.scalars(
            select(ExecutionRow)
            .where(
                ExecutionRow.account_id == account_id,
                ExecutionRow.cache_key.in_(keys[start : start + 500]),
                ExecutionRow.state == ExecutionState.SUCCEEDED.value,
            )
            .order_by(ExecutionRow.created_at.desc())
        )
        for row in rows:
            assert row.cache_key is not None
            if row.cache_key not in found:
                found[row.cache_key] = to_domain(row, {})
    return found


async def observed_runs(
    session: AsyncSession, account_id: str, bases: Sequence[str], per_base: int
) -> dict[str, list[domain.Execution]]:
    """For each cache base, this account's newest ``per_base`` succeeded runs with it that
    really ran (not cache hits) and whose file reads were observed, newest first."""
    found: dict[str, list[domain.Execution]] = {}
    for start in range(0, len(bases), 500):
        rank = (
            func.row_number()
            .over(partition_by=ExecutionRow.cache_base, order_by=ExecutionRow.created_at.desc())
            .label("rank")
        )
        ranked = (
            select(ExecutionRow.id, rank)
            .where(
                ExecutionRow.account_id == account_id,
                ExecutionRow.cache_base.in_(bases[start : start + 500]),
                ExecutionRow.state == ExecutionState.SUCCEEDED.value,
                ExecutionRow.cached_from.is_(None),
                ExecutionRow.reads.is_not(None),
            )
            .subquery()
        )
        rows = await session.scalars(
            select(ExecutionRow)
            .join(ranked, ranked.c.id == ExecutionRow.id)
            .where(ranked.c.rank <= per_base)
            .order_by(ExecutionRow.created_at.desc())
        )
        for row in rows:
            assert row.cache_base is not None
            found.setdefault(row.cache_base, []).append(to_domain(row, {}))
    return found


async def latest_of_script(
    session: AsyncSession, account_id: str, script: str
) -> domain.Execution | None:
    """This account's most recent execution of a script of this name that has a cache key."""
    row = await session.scalar(
        select(ExecutionRow)
        .where(
            ExecutionRow.account_id == account_id,
            ExecutionRow.script == script,
            ExecutionRow.cache_parts.is_not(None),
        )
        .order_by(ExecutionRow.created_at.desc())
        .limit(1)
    )
    return to_domain(row, {}) if row is not None else None


async def for_cost(
    session: AsyncSession, account_id: str, since: datetime | None, until: datetime | None
) -> list[domain.Execution]:
    """The account's executions created in [since, until), for the cost report."""
    query = select(ExecutionRow).where(ExecutionRow.account_id == account_id)
    if since is not None:
        query = query.where(ExecutionRow.created_at >= since)
    if until is not None:
        query = query.where(ExecutionRow.created_at < until)
    rows = (await session.scalars(query.order_by(ExecutionRow.created_at))).all()
    return await _hydrate(session, rows)


class PastRun(NamedTuple):
    script_digest: str | None
    run_us: int


async def succeeded_runs_of(
    session: AsyncSession, account_id: str, script: str, limit: int
) -> list[PastRun]:
    """Run times of the account's latest succeeded, really run executions of ``script``."""
    rows = await session.execute(
        select(ExecutionRow.cache_parts, ExecutionRow.started_at, ExecutionRow.finished_at)
        .where(
            ExecutionRow.account_id == account_id,
            ExecutionRow.script == script,
            ExecutionRow.state == ExecutionState.SUCCEEDED.value,
            ExecutionRow.cached_from.is_(None),
        )
        .order_by(ExecutionRow.created_at.desc())
        .limit(limit)
    )
    found = []
    for parts, started, finished in rows:
        if started is None or finished is None:
            continue
        sha = (parts or {}).get("script")
        found.append(PastRun(sha, (finished - started) // timedelta(microseconds=1)))
    return found


async def ping(session: AsyncSession) -> None:
    """A round trip to the database (health checks)."""
    await session.execute(select(1))


async def state_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(ExecutionRow.state, func.count()).group_by(ExecutionRow.state)
    )
    return {str(state): int(count) for state, count in rows}


async def waiting_demand(session: AsyncSession) -> int:
    """How many waiting executions could start now if there were slots: every waiting one
    outside a batch, and per batch no more than its ``parallel`` less its running items."""
    waiting = [state.value for state in domain.WAITING_STATES]
    loose = await session.scalar(
        select(func.count()).where(ExecutionRow.state.in_(waiting), ExecutionRow.batch_id.is_(None))
    )
    per_batch = await session.execute(
        select(
            ExecutionRow.batch_id,
            func.sum(case((ExecutionRow.state.in_(waiting), 1), else_=0)),
            func.sum(case((ExecutionRow.state == ExecutionState.RUNNING.value, 1), else_=0)),
            BatchRow.parallel,
        )
        .join(BatchRow, BatchRow.id == ExecutionRow.batch_id)
        .where(ExecutionRow.state.in_([*waiting, ExecutionState.RUNNING.value]))
        .group_by(ExecutionRow.batch_id, BatchRow.parallel)
    )
    batched = sum(
        max(min(int(w or 0), int(parallel) - int(r or 0)), 0) for _, w, r, parallel in per_batch
    )
    return int(loose or 0) + batched


async def recent_run_seconds(session: AsyncSession, limit: int) -> list[float]:
    """Run times of the latest finished executions that really ran, oldest first."""
    rows = await session.execute(
        select(ExecutionRow.started_at, ExecutionRow.finished_at)
        .where(
            ExecutionRow.state.in_([ExecutionState.SUCCEEDED.value, ExecutionState.FAILED.value]),
            ExecutionRow.cached_from.is_(None),
            ExecutionRow.started_at.is_not(None),
            ExecutionRow.finished_at.is_not(None),
        )
        .order_by(ExecutionRow.finished_at.desc())
        .limit(limit)
    )
    return [
        (finished - started).total_seconds()
        for started, finished in reversed(list(rows))
        if started is not None and finished is not None
    ]
