"""/health (no auth) and /metrics (Prometheus; an admin key or RGRID_METRICS_TOKEN)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from sqlalchemy import func, select

from rgrid import __version__, errors, schemas, store
from rgrid.api.deps import GridDep, MetricsAccess
from rgrid.sandbox import detect
from rgrid.store.models import ExecutionRow

router = APIRouter(tags=["health"])
PROMETHEUS_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get("/health", responses={503: {"model": schemas.Health}})
async def health(grid: GridDep, response: Response) -> schemas.Health:
    store_status = storage_status = "ok"
    try:
        async with store.transaction(grid.sessions) as session:
            await session.execute(select(1))
    except errors.RgridError as exc:
        store_status = f"error: {exc.message}"
    try:
        await grid.storage.health()
    except errors.RgridError as exc:
        storage_status = f"error: {exc.message}"
    healthy = store_status == storage_status == "ok"
    response.status_code = 200 if healthy else 503
    return schemas.Health(
        status="ok" if healthy else "degraded",
        store=store_status,
        storage=storage_status,
        sandbox=detect().strength,
        version=__version__,
    )


@router.get("/metrics", dependencies=[MetricsAccess], responses={200: PROMETHEUS_TEXT})
async def metrics(grid: GridDep, request: Request) -> Response:
    registry = CollectorRegistry()
    gauge = Gauge("rgrid_executions", "Executions by state", ["state"], registry=registry)
    builds = Counter("rgrid_env_builds", "Environments built by this server", registry=registry)
    builds.inc(request.app.state.env_cache.builds)
    started = Counter(
        "rgrid_executions_started",
        "Executions this server's executor started (a cache hit starts none)",
        registry=registry,
    )
    started.inc(request.app.state.dispatcher.executor.started)
    transfers = grid.transfers
    for name, value, text in (
        (
            "rgrid_blob_wire_bytes_received",
            transfers.received_wire,
            "Blob body bytes received on the wire",
        ),
        ("rgrid_blob_bytes_received", transfers.received, "Blob bytes received, decompressed"),
        ("rgrid_output_wire_bytes_sent", transfers.sent_wire, "Output bytes sent on the wire"),
        ("rgrid_output_bytes_sent", transfers.sent, "Output bytes sent, before compression"),
    ):
        Counter(name, text, registry=registry).inc(value)
    async with store.transaction(grid.sessions) as session:
        rows = await session.execute(
            select(ExecutionRow.state, func.count()).group_by(ExecutionRow.state)
        )
        for state, count in rows:
            gauge.labels(state=state).set(count)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
