"""/health (no auth) and /metrics (Prometheus; an admin key or RGRID_METRICS_TOKEN)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from rgrid import __version__, schemas
from rgrid.api.deps import GridDep, MetricsAccess
from rgrid.services import health as health_service
from rgrid.services import workers

router = APIRouter(tags=["health"])
PROMETHEUS_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get("/health", responses={503: {"model": schemas.Health}})
async def health(grid: GridDep, response: Response) -> schemas.Health:
    store_status, storage_status = await health_service.check(grid)
    healthy = store_status == storage_status == "ok"
    response.status_code = 200 if healthy else 503
    return schemas.Health(
        status="ok" if healthy else "degraded",
        store=store_status,
        storage=storage_status,
        sandbox=health_service.sandbox_strength(),
        version=__version__,
    )


@router.get("/metrics", dependencies=[MetricsAccess], responses={200: PROMETHEUS_TEXT})
async def metrics(grid: GridDep) -> Response:
    registry = CollectorRegistry()
    gauge = Gauge("rgrid_executions", "Executions by state", ["state"], registry=registry)
    # the server's processes as a whole (--api-processes), not only the one answering
    assert grid.siblings is not None
    server = grid.siblings.whole()
    builds = Counter(
        "rgrid_env_builds", "Environments built by this server or its nodes", registry=registry
    )
    builds.inc(server.env_builds)
    started = Counter(
        "rgrid_executions_started",
        "Executions this server's executor started (a cache hit starts none)",
        registry=registry,
    )
    started.inc(server.started)
    for name, value, text in (
        (
            "rgrid_blob_wire_bytes_received",
            server.received_wire,
            "Blob body bytes received on the wire",
        ),
        ("rgrid_blob_bytes_received", server.received, "Blob bytes received, decompressed"),
        ("rgrid_output_wire_bytes_sent", server.sent_wire, "Output bytes sent on the wire"),
        ("rgrid_output_bytes_sent", server.sent, "Output bytes sent, before compression"),
    ):
        Counter(name, text, registry=registry).inc(value)
    for state, count in (await health_service.state_counts(grid)).items():
        gauge.labels(state=state).set(count)
    slots = Gauge(
        "rgrid_worker_slots", "Slots of each active worker", ["worker"], registry=registry
    )
    busy = Gauge(
        "rgrid_worker_busy", "Slots in use of each active worker", ["worker"], registry=registry
    )
    for worker, running in await workers.listing(grid):
        if worker.ended_at is not None:  # an autoscaled node that was terminated
            continue
        slots.labels(worker=worker.id).set(worker.slots)
        busy.labels(worker=worker.id).set(running)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
