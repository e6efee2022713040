"""The Ray executor under the executor contract: its nodes reach fake control planes over HTTP.

The contract hands each execution a ``FakeControlPlane``; a Ray node cannot call into this
process, so a real HTTP server here serves those planes by the attempt routes the node uses
(``/api/v1/attempt/...``), the credential naming the execution.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.conftest import free_port
from tests.fake_plane import FakeControlPlane

from rgrid import domain
from rgrid.executor import DoneCallback
from rgrid.executor.ray import RayExecutor
from rgrid.runner import ControlPlane


class PlaneServer:
    """Fake planes by execution id, over HTTP on a loopback port."""

    def __init__(self) -> None:
        self.planes: dict[str, FakeControlPlane] = {}
        self.stored: dict[str, bytes] = {}
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/api/v1/attempt/env", self._env),
                Route("/api/v1/attempt/inputs/{sha}", self._content),
                Route("/api/v1/attempt/logs", self._logs, methods=["POST"]),
                Route("/api/v1/attempt/outputs/{sha}", self._output, methods=["PUT"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _plane(self, request: Request) -> FakeControlPlane:
        return self.planes[request.headers["authorization"].partition(" ")[2]]

    async def _env(self, request: Request) -> Response:
        self._plane(request)
        return JSONResponse({"env": {}})

    async def _content(self, request: Request) -> Response:
        return Response(self._plane(request).blobs[request.path_params["sha"]])

    async def _logs(self, request: Request) -> Response:
        body = await request.json()
        segments = [
            domain.LogSegment(
                s["first_seq"],
                s["attempt"],
                domain.Stream(s["stream"]),
                datetime.fromisoformat(s["ts"]),
                s["text"],
                s["line_count"],
            )
            for s in body["segments"]
        ]
        await self._plane(request).append_logs(segments)
        return Response(status_code=204)

    async def _output(self, request: Request) -> Response:
        self._plane(request)
        data = await request.body()
        self.stored[request.path_params["sha"]] = data
        return JSONResponse({"digest": request.path_params["sha"], "size": len(data)})

    def __enter__(self) -> PlaneServer:
        self._thread.start()
        while not self._server.started:
            threading.Event().wait(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


class ContractRayExecutor(RayExecutor):
    """A ``RayExecutor`` as the contract drives it: ``start`` places the execution itself (the
    dispatcher does that before its claim) and its plane is served to the node."""

    def __init__(self, address: str, planes: PlaneServer) -> None:
        super().__init__(
            address, control_url=planes.url, credential=lambda execution_id, *_: execution_id
        )
        self._planes = planes
        self._opened = False

    def start(self, spec: domain.ExecutionSpec, plane: ControlPlane, on_done: DoneCallback) -> None:
        assert isinstance(plane, FakeControlPlane)
        self._planes.planes[spec.execution_id] = plane
        placements = self.place()
        assert placements, "no free slot on the cluster"
        spec = dataclasses.replace(spec, worker=placements[0].worker)

        async def done(spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
            for ref in outcome.outputs:  # the node sends bytes by hash; the plane keeps names
                plane.outputs[ref.path] = self._planes.stored[ref.digest]
            await on_done(spec, outcome)

        super().start(spec, plane, done)

    async def ready(self, slots: int) -> ContractRayExecutor:
        """Joined, and its nodes probed."""
        await self.open()
        async with asyncio.timeout(60):
            while self.free_slots() < slots:
                await asyncio.sleep(0.1)
        return self
