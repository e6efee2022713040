"""Domain objects → wire models."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from rgrid import domain, schemas
from rgrid.services import limits


def execution(e: domain.Execution) -> schemas.ExecutionPublic:
    return schemas.ExecutionPublic(
        id=e.id,
        state=e.state,
        script=e.script,
        args=list(e.args),
        env_names=list(e.env_names),
        metadata=e.metadata,
        timeout_s=e.timeout_s,
        memory_bytes=e.memory_bytes,
        disk_bytes=e.disk_bytes,
        cwd=e.cwd,
        named_outside=list(e.named_outside),
        network=e.network,
        exit_code=e.exit_code,
        failure_class=e.failure_class,
        cause=e.cause,
        hint=e.hint,
        attempt=e.attempt,
        worker=e.worker,
        created_at=e.created_at,
        queued_at=e.queued_at,
        started_at=e.started_at,
        finished_at=e.finished_at,
        duration_s=e.duration_s,
        last_seq=e.last_seq,
        requirements=list(e.requirements),
        dependency_source=e.dependency_source,
        runtime=e.runtime,
        python_version=e.python_version,
        packages=list(e.packages),
        max_retries=e.max_retries,
        retry_of=e.retry_of,
        retry_reason=e.retry_reason,
        batch_id=e.batch_id,
        batch_index=e.batch_index,
        batch_input=e.batch_input,
        cached_from=e.cached_from,
        cache=e.cache_note,
        network_used=e.network_used,
        cost_micros=e.cost_micros,
        cost_final=e.cost_final,
        stdin_size=e.stdin_size,
        output_dirs=list(e.output_dirs),
    )


def batch(b: domain.Batch) -> schemas.BatchPublic:
    return schemas.BatchPublic(
        id=b.id,
        script=b.script,
        parallel=b.parallel,
        total=b.total,
        created_at=b.created_at,
        counts=b.counts,
        done=b.done,
        cost_micros=b.cost_micros,
    )


def batch_item(
    e: domain.Execution,
    outputs: list[domain.Artifact] | None = None,
    contents: Mapping[str, bytes] | None = None,
) -> schemas.BatchItemPublic:
    """``contents``: outputs' bytes by digest, to send inline."""
    return schemas.BatchItemPublic(
        id=e.id,
        index=e.batch_index or 0,
        input=e.batch_input or "",
        state=e.state,
        exit_code=e.exit_code,
        failure_class=e.failure_class,
        cause=e.cause,
        attempt=e.attempt,
        started_at=e.started_at,
        finished_at=e.finished_at,
        outputs=[artifact(a, (contents or {}).get(a.digest)) for a in outputs or []],
        cached_from=e.cached_from,
        output_dirs=list(e.output_dirs),
    )


def log_line(line: domain.LogLine) -> schemas.LogLinePublic:
    return schemas.LogLinePublic(
        seq=line.seq, attempt=line.attempt, stream=line.stream, ts=line.ts, text=line.text
    )


def artifact(a: domain.Artifact, content: bytes | None = None) -> schemas.ArtifactPublic:
    return schemas.ArtifactPublic(
        path=a.path,
        kind=a.kind,
        digest=a.digest,
        size=a.size,
        created_at=a.created_at,
        expires_at=a.expires_at,
        content=None if content is None else base64.b64encode(content).decode("ascii"),
    )


def account(a: domain.Account) -> schemas.AccountPublic:
    return schemas.AccountPublic(id=a.id, name=a.name, is_admin=a.is_admin, created_at=a.created_at)


def key(k: domain.ApiKey) -> schemas.KeyPublic:
    return schemas.KeyPublic(
        id=k.id,
        account_id=k.account_id,
        name=k.name,
        prefix=k.prefix,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked_at=k.revoked_at,
    )


def spending_limit(current: limits.Limit) -> schemas.SpendingLimitPublic:
    return schemas.SpendingLimitPublic(
        limit_micros=current.limit_micros,
        period=current.period,
        spent_micros=current.spent_micros,
        period_start=current.period_start,
    )


def cost_report(
    by: str, groups: list[dict[str, Any]], idle: dict[str, int] | None
) -> schemas.CostReport:
    """``rgrid cost``'s report: the groups, their total, and the grid's idle cost (admins)."""
    typed = [schemas.CostGroup(**group) for group in groups]
    return schemas.CostReport(
        by=by,
        groups=typed,
        total=schemas.CostTotal(
            executions=sum(g.executions for g in typed),
            compute_us=sum(g.compute_us for g in typed),
            cost_micros=sum(g.cost_micros for g in typed),
        ),
        idle=schemas.IdleCost(**idle) if idle is not None else None,
    )


def billing_period(period: dict[str, Any]) -> schemas.BillingPeriodPublic:
    shares = [schemas.CostShare(**share) for share in period["shares"]]
    return schemas.BillingPeriodPublic(**{**period, "shares": shares})
