"""Finding the earlier run that answers a new one (SPEC §12): one with the very same key, or,
when the earlier run's file opens were observed, one whose key differs only in files it never
read. The key itself is ``services.cache``'s."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.services import Grid, blobs, retention
from rgrid.services.cache import CANDIDATES, FILE_PARTS, CacheKey, comparable
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo

Found = tuple[domain.Execution, list[domain.Artifact]]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The run to reuse and its outputs, or None; ``why`` says why the nearest earlier run
    with the same key or base could not serve (None: there was none)."""

    hit: Found | None
    why: str | None = None


def mismatch(
    now: Mapping[str, Any],
    then: Mapping[str, Any],
    reads: Mapping[str, Sequence[str]],
    outputs: Mapping[str, str],
    source: str,
) -> str | None:
    """Why the observed run ``source`` (key parts ``then``, what it did to its files, its
    outputs as path → digest) cannot serve a run with key parts ``now`` of the same base;
    None: it can.

    A file it read must hold the same bytes. One it opened only for writing must hold the same
    bytes or those it wrote there (its output came back). One it never opened may hold anything
    but must still be there, and no file may be new but its own outputs: a script may test
    whether a path exists without opening it, which the kernel does not report.
    """
    mine = _files(now)
    theirs = _files(then)
    modules = {*now.get("modules", {}), *then.get("modules", {})}
    read = set(reads.get("read", ()))
    written = set(reads.get("written", ()))
    if any(path.endswith(".pyc") for path in (*mine, *theirs)):
        # with its bytecode at hand, Python may run a module without opening its source
        read |= {path for path in theirs if path.endswith(".py")}
    for path in sorted({path for path, _ in mine.items() ^ theirs.items()}):
        label = "local module" if path in modules else "input"
        sha, before = mine.get(path), theirs.get(path)
        if before is None:
            if outputs.get(path) != sha:
                return f"{label} {path} was added (since {source})"
        elif sha is None:
            return f"{label} {path} was removed (since {source})"
        elif path in read:
            return f"{label} {path} changed (read by {source})"
        elif path in written and outputs.get(path) != sha:
            return f"{label} {path} changed (opened for writing by {source})"
    return None


def _files(parts: Mapping[str, Any]) -> dict[str, str]:
    return {path: sha for part in FILE_PARTS for path, sha in parts.get(part, {}).items()}


async def lookup(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    keys: Sequence[CacheKey],
    *,
    networked: bool = False,
) -> dict[str, Verdict]:
    """For each key (by digest), this account's newest succeeded run that can serve it and
    whose outputs are all still kept. Checks the run with the same key, then at most
    ``CANDIDATES`` observed runs with the same base, newest first. A run that used the network
    (or may have: not observed) serves only when ``networked`` (``--cache always``): what it
    fetched may have changed since."""
    exact = await repo.cached_results(session, account_id, sorted({k.digest for k in keys}))
    similar = await repo.observed_runs(
        session, account_id, sorted({k.base for k in keys}), CANDIDATES
    )
    ids = {row.id for row in exact.values()} | {r.id for rows in similar.values() for r in rows}
    outputs = await blob_repo.outputs_of(session, sorted(ids))
    verdicts = {}
    for key in keys:
        same = exact.get(key.digest)
        others = [row for row in similar.get(key.base, []) if same is None or row.id != same.id]
        blocked = (same is not None and not networked and network_note(same)) or None
        if not networked:
            same = None if blocked else same
            others = [row for row in others if network_note(row) is None]
        verdict = await _verdict(grid, session, account_id, key, same, others, outputs)
        if verdict.hit is None and blocked:
            # it would have been a hit: say why it runs again
            verdict = Verdict(None, blocked)
        verdicts[key.digest] = verdict
    return verdicts


def network_note(row: domain.Execution) -> str | None:
    """Why ``row``, an identical earlier run, is not reused for using the network; None: it
    did not (network off, or observed to open no connection)."""
    if not row.network or row.network_used is False:
        return None
    source = row.cached_from or row.id
    if row.network_used:
        return (
            f"{source} used the network, so its result is not reused "
            '(`--cache always` or cache = "always" in .rgrid/config.toml reuses such runs)'
        )
    return (
        f"{source} may have used the network (not observed where it ran), so its result is "
        "not reused (`--cache always` reuses it)"
    )


async def _verdict(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    key: CacheKey,
    same: domain.Execution | None,
    others: list[domain.Execution],
    outputs: Mapping[str, list[domain.Artifact]],
) -> Verdict:
    why = None
    for row in [same] if same is not None else []:
        kept = outputs.get(row.id, [])
        if await _usable(grid, account_id, kept):
            return Verdict((row, kept))
        why = f"the outputs of {row.id} are no longer kept (expired or deleted)"
    for row in others:
        kept = outputs.get(row.id, [])
        assert row.cache_parts is not None and row.reads is not None
        produced = {a.path: a.digest for a in kept}
        both = await comparable(grid, session, account_id, key.parts, row.cache_parts)
        if both is None:
            why = why or f"the project tree of {row.id} is no longer kept"
            continue
        reason = mismatch(*both, row.reads, produced, row.id)
        if reason is None and await _usable(grid, account_id, kept):
            return Verdict((row, kept))
        why = why or reason or f"the outputs of {row.id} are no longer kept (expired or deleted)"
    return Verdict(None, why)


async def _usable(grid: Grid, account_id: str, kept: list[domain.Artifact]) -> bool:
    """Whether all these outputs are still kept, undamaged."""
    if any(retention.expired(grid, a) for a in kept):
        return False
    # a blob damaged since (local storage re-hashes a changed file) is as good as gone
    for artifact in kept:
        if not await blobs.holds(grid, account_id, artifact.digest):
            return False
    return True
