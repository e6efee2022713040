"""Cost (SPEC §11) in integer micros, never floats (``rgrid.money`` has the provisional cost).

The final split of a closed billing period: the period's price shared by the executions that
ran in it, in proportion to their run time inside it, as integers that sum exactly to the price
(largest-remainder method; ties go to the smaller execution id, so the split is the same every
time it is computed). Also the cost report and run-time estimates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from rgrid import domain, errors, store
from rgrid.money import US_PER_HOUR
from rgrid.services import Grid, accounts, workers
from rgrid.store import billing as repo
from rgrid.store import executions as execution_repo
from rgrid.store import workers as worker_repo


def split_period(price_micros: int, run_us: Mapping[str, int]) -> dict[str, int]:
    """Share ``price_micros`` over the executions in ``run_us`` (id → microseconds of run time
    inside the period) in proportion to their run time; the shares sum exactly to the price.
    With no run time at all the period was idle: every share is 0 (its price is idle cost)."""
    if price_micros < 0 or any(t < 0 for t in run_us.values()):
        raise ValueError("price and run times must be >= 0")
    total = sum(run_us.values())
    if total == 0:
        return dict.fromkeys(run_us, 0)
    shares = {key: price_micros * t // total for key, t in run_us.items()}
    left = price_micros - sum(shares.values())
    # the largest fractional parts get the micros left over; ties by id
    order = sorted(run_us, key=lambda key: (-(price_micros * run_us[key] % total), key))
    for key in order[:left]:
        shares[key] += 1
    return shares


async def close_periods(grid: Grid, worker: str, worker_started: datetime, now: datetime) -> int:
    """Close every billing period of ``worker`` that ended by ``now`` (periods run back to
    back from ``worker_started``): split each one's price over the executions that ran in it,
    and make final the costs of executions whose every run lies in closed periods."""
    closed = 0
    async with store.transaction(grid.sessions) as session:
        record = await worker_repo.get(session, worker)
        period_s = grid.settings.billing_period_s if record is None else record.billing_period_s
        hourly, _ = workers.pricing(record, grid.settings)
        period = timedelta(seconds=period_s)
        price = hourly * (period // timedelta(microseconds=1)) // US_PER_HOUR
        # a recorded worker's periods run from its recorded start (a Ray node seen again
        # after a restart keeps it)
        first = worker_started if record is None else record.started_at
        start = await repo.last_closed_end(session, worker) or first
        # a node that ended is billed up to the end of the period it ended in, and no further
        ended = None if record is None else record.ended_at
        while start + period <= now and (ended is None or start < ended):
            end = start + period
            run_us: dict[str, int] = {}
            for execution_id, run_start, run_end in await repo.spans(session, worker, start, end):
                inside = min(run_end or end, end) - max(run_start, start)
                if inside > timedelta(0):
                    run_us[execution_id] = run_us.get(execution_id, 0) + inside // timedelta(
                        microseconds=1
                    )
            shares = split_period(price, run_us)
            await repo.close_period(
                session, worker, start, end, price, {k: (run_us[k], shares[k]) for k in run_us}
            )
            await repo.finalize(session, sorted(run_us), end)
            start, closed = end, closed + 1
    return closed


async def periods_report(grid: Grid, principal: domain.Principal) -> list[dict[str, Any]]:
    """Every closed billing period with its split (admin only: periods span accounts)."""
    accounts.require_admin(principal)
    async with store.transaction(grid.sessions) as session:
        closed = await repo.periods(session)
        shares = await repo.shares_of(session)
    by_period: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for share in shares:
        by_period.setdefault((share.worker, share.period_start), []).append(
            {"execution_id": share.execution_id, "run_us": share.run_us, "micros": share.micros}
        )
    return [
        {
            "worker": p.worker,
            "start": p.start,
            "end": p.end,
            "price_micros": p.price_micros,
            "idle_micros": p.idle_micros,
            "shares": by_period.get((p.worker, p.start), []),
        }
        for p in closed
    ]


async def cost_report(
    grid: Grid,
    principal: domain.Principal,
    *,
    since: datetime | None,
    until: datetime | None,
    by: str,
) -> list[dict[str, Any]]:
    """The account's executions created in [since, until) grouped by day, batch or a metadata
    key: executions, compute time and cost (final or provisional) per group."""
    if since is not None and until is not None and since >= until:
        raise errors.InvalidRequest("--since must be before --until")
    if by not in ("day", "batch") and not (by.startswith("metadata:") and len(by) > 9):
        raise errors.InvalidRequest(
            f"cannot group by {by!r}", hint="use day, batch or metadata:KEY"
        )
    async with store.transaction(grid.sessions) as session:
        rows = await execution_repo.for_cost(session, principal.account.id, since, until)
    groups: dict[str, dict[str, Any]] = {}
    for execution in rows:
        if by == "day":
            key = execution.created_at.date().isoformat()
        elif by == "batch":
            key = execution.batch_id or "-"
        else:
            key = execution.metadata.get(by.split(":", 1)[1], "-")
        group = groups.setdefault(
            key, {"group": key, "executions": 0, "compute_us": 0, "cost_micros": 0}
        )
        group["executions"] += 1
        if execution.started_at and execution.finished_at and not execution.cached_from:
            group["compute_us"] += (execution.finished_at - execution.started_at) // timedelta(
                microseconds=1
            )
        group["cost_micros"] += execution.cost_micros or 0
    return [groups[key] for key in sorted(groups)]


async def idle_report(
    grid: Grid, principal: domain.Principal, since: datetime | None, until: datetime | None
) -> dict[str, int] | None:
    """The grid's idle cost — paid periods in which nothing ran, charged to no account — in
    [since, until): for an admin key only (None for anyone else)."""
    if not principal.account.is_admin:
        return None
    async with store.transaction(grid.sessions) as session:
        periods, micros = await repo.idle_between(session, since, until)
    return {"periods": periods, "micros": micros}


DEFAULT_ESTIMATE_US = 10_000_000  # with no history at all: 10 s an item, said as such
ESTIMATE_HISTORY = 200


async def estimate(
    grid: Grid, principal: domain.Principal, script: str, script_digest: str | None
) -> dict[str, Any]:
    """Median and p90 run time of this account's earlier succeeded runs of the script — by
    content when there are any, else by file name, else a stated default — and the price."""
    async with store.transaction(grid.sessions) as session:
        rows = await execution_repo.succeeded_runs_of(
            session, principal.account.id, script, ESTIMATE_HISTORY
        )
        active = await worker_repo.listed(session)
    # priced as the cheapest slot of the workers running now
    cheapest = min(
        (w for w in active if w.slots > 0),
        key=lambda w: w.hourly_price_micros / w.slots,
        default=None,
    )
    hourly, slots = workers.pricing(cheapest, grid.settings)
    same_content = [r for r in rows if script_digest and r.script_digest == script_digest]
    chosen, basis = (same_content, "content") if same_content else (rows, "name")
    durations = sorted(r.run_us for r in chosen)
    if not durations:
        basis, durations = "default", [DEFAULT_ESTIMATE_US]
    rank90 = max(0, -(-len(durations) * 9 // 10) - 1)  # nearest rank
    middle = len(durations) // 2
    median = (
        durations[middle]
        if len(durations) % 2
        else (durations[middle - 1] + durations[middle]) // 2
    )
    return {
        "basis": basis,
        "runs": len(chosen) if basis != "default" else 0,
        "median_us": median,
        "p90_us": durations[rank90],
        "hourly_price_micros": hourly,
        "slots": slots,
    }
