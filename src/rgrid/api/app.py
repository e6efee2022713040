"""The FastAPI application factory: ``uvicorn --factory rgrid.api.app:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from rgrid import __version__, executor, sandbox, storage, store, tasks
from rgrid.api import console, processes
from rgrid.api import errors as api_errors
from rgrid.api.bodylimit import BodyLimit
from rgrid.api.routes import (
    accounts,
    attempts,
    batches,
    billing,
    blobs,
    executions,
    health,
    logs,
    trees,
    workers,
)
from rgrid.runner import RunnerConfig
from rgrid.runner.configure import runner_config
from rgrid.services import Grid, autoscaling, retention
from rgrid.services import attempts as attempt_credentials
from rgrid.services.accounts import bootstrap_admin
from rgrid.services.dispatcher import Dispatcher
from rgrid.services.events import Notifier
from rgrid.services.housekeeping import Housekeeping
from rgrid.services.secrets import SecretBox
from rgrid.services.siblings import Report, Siblings
from rgrid.settings import ServerSettings
from rgrid.store import signals

logger = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin.key"


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def read_or_create_admin_key(home: Path) -> str:
    """The bootstrap admin key kept in ``home`` with mode 0600 (created on first start)."""
    path = home / ADMIN_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("rg_" + secrets.token_urlsafe(30) + "\n")
    return path.read_text().strip()


async def _open_grid(settings: ServerSettings, engine: AsyncEngine) -> tuple[Grid, RunnerConfig]:
    """The parts every process of the server has: the store, the storage, keys and secrets,
    and the runner configuration (the Python versions a submit may ask for)."""
    blob_storage = storage.from_url(settings.resolved_storage_url)
    await blob_storage.health()
    grid = Grid(
        settings=settings,
        sessions=store.session_factory(engine),
        storage=blob_storage,
        notifier=Notifier(),
        secrets=(
            SecretBox(settings.secret_key.encode())
            if settings.secret_key
            else SecretBox.from_file(settings.home / "secret.key")
        ),
    )
    config = await asyncio.to_thread(runner_config, settings)
    grid.pythons = tuple(config.interpreters)
    grid.default_python = config.default_python
    return grid, config


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The main process: it migrates the store, dispatches and runs scripts, and keeps house;
    with ``--api-processes`` above 1 it then starts the processes that answer the API."""
    settings: ServerSettings = app.state.settings
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.home, 0o700)
    engine = store.make_engine(settings.resolved_database_url)
    await store.upgrade(engine)
    grid, config = await _open_grid(settings, engine)
    await bootstrap_admin(grid, settings.admin_key or read_or_create_admin_key(settings.home))
    grid.blobs_age_out = await grid.storage.expire_unwritten(retention.storage_expiry_days(grid))
    box = sandbox.detect()
    if box.name != "bwrap":
        logger.warning("sandbox is weaker: %s", box.strength, extra={"action": "weak_sandbox"})
    runs_on = executor.from_url(
        settings.executor,
        config,
        slots=settings.slots,
        control_url=settings.resolved_control_url,
        credential=functools.partial(attempt_credentials.issue, grid),
        price=(settings.hourly_price_micros, settings.billing_period_s),
    )
    scaler = autoscaling.prepare(grid, runs_on)
    if scaler is not None:  # its configuration is checked before the cluster is joined
        await scaler.open()
    await runs_on.open()
    dispatcher = Dispatcher(grid, runs_on, signals.from_engine(engine))
    if scaler is not None:
        scaler.start()
    dispatcher.start()
    housekeeping = Housekeeping(
        grid, lambda: dispatcher.billed_workers() + (scaler.billed() if scaler else [])
    )
    housekeeping.start()

    def report() -> Report:
        return _report(
            grid, started=runs_on.started, env_builds=config.env_cache.builds + runs_on.env_builds
        )

    # several: this process answers no request, its API processes do (`processes.serve`)
    api_processes = None
    if settings.api_processes > 1:
        api_processes = processes.ApiProcesses(settings)
    grid.siblings = Siblings(settings.home, os.getpid(), report, shared=bool(api_processes))
    grid.siblings.start()
    if api_processes is not None:
        grid.notifier.forward = api_processes.forward
        await api_processes.start()
    app.state.grid = grid
    _tune_garbage_collector()
    try:
        yield
    finally:
        if api_processes is not None:
            await api_processes.close()
        await grid.siblings.close()
        await housekeeping.close()
        if scaler is not None:
            await scaler.close()
        await dispatcher.close()
        await engine.dispose()


@contextlib.asynccontextmanager
async def _api_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """An API-only process: the main one has migrated the store and runs everything else; a
    submit or a cancel here reaches the dispatchers through the database's work signal."""
    settings: ServerSettings = app.state.settings
    engine = store.make_engine(settings.resolved_database_url)
    grid, _config = await _open_grid(settings, engine)
    signal = signals.from_engine(engine)
    signal.start(lambda: None)
    grid.wake_dispatcher = signal.publish

    def cancel_elsewhere(_execution_id: str) -> bool:
        signal.publish()  # the holder looks at its executions' cancel requests when woken
        return False

    grid.cancel_local = cancel_elsewhere
    grid.siblings = Siblings(settings.home, app.state.main_pid, lambda: _report(grid), shared=True)
    grid.siblings.start()
    following = asyncio.create_task(processes.follow_main(grid.notifier.notify))
    app.state.grid = grid
    _tune_garbage_collector()
    try:
        yield
    finally:
        await tasks.cancel_and_wait(following)
        await grid.siblings.close()
        await signal.close()
        await engine.dispose()


#: allocations between two young-generation collections (CPython's default: 700)
GC_YOUNG_THRESHOLD = 20_000
GC_OLDER_THRESHOLD = 20


def _tune_garbage_collector() -> None:
    """Once started: what the start made (modules, the app and its routes, the ORM's mappings)
    lives as long as the process, so it is frozen out of the collector's view, and a request's
    few thousand short-lived objects no longer set off a collection each. Status reads under
    load measured 1,400 → 2,000 a second on two API processes (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD)


def _report(grid: Grid, *, started: int = 0, env_builds: int = 0) -> Report:
    transfers = grid.transfers
    return Report(
        received_wire=transfers.received_wire,
        received=transfers.received,
        sent_wire=transfers.sent_wire,
        sent=transfers.sent,
        started=started,
        env_builds=env_builds,
        autoscaler=grid.autoscaler,
    )


def create_app(settings: ServerSettings | None = None, *, main_pid: int | None = None) -> FastAPI:
    """Build the API; the grid's parts are created in the lifespan, never at import. With
    ``main_pid`` it is an API-only process of that main process's server."""
    app = FastAPI(
        title="rgrid",
        version=__version__,
        lifespan=_lifespan if main_pid is None else _api_lifespan,
        generate_unique_id_function=_operation_id,
        responses=api_errors.RESPONSES,
    )
    app.state.settings = settings = settings or ServerSettings()
    app.state.main_pid = main_pid
    api_errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # before the console's pages, whose /console/{kind}/{id} would match a static path
    app.mount("/console/static", console.static_files(), name="console-static")
    for router in (
        health.router,
        accounts.router,
        blobs.router,
        trees.router,
        executions.router,
        batches.router,
        logs.router,
        workers.router,
        billing.router,
        attempts.router,
        console.api,
        console.sessions,
        console.pages,
    ):
        app.include_router(router)
    return app
