"""The node side of the Ray executor: one Ray task runs one attempt with the same runner
pipeline as the local executor, talking to the control plane over HTTP with the attempt's own
credential (``services.attempts``).

Nothing secret travels in the task: its arguments are the execution's description without its
``--env`` values, the control plane's URL and the credential; the values are fetched over HTTP
once the task runs. Input bytes come straight from storage (an expiring URL the control plane
hands out) or, when the storage has no such URLs, streamed through the control plane; never
through Ray's object store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rgrid import digests, domain, errors
from rgrid.client.http import Transport, TransportError
from rgrid.domain import ExecutionState, FailureClass
from rgrid.runner import RunnerConfig
from rgrid.runner.configure import runner_config
from rgrid.runner.pipeline import run_execution
from rgrid.settings import WorkerSettings

logger = logging.getLogger(__name__)

#: how long a call keeps retrying while the control plane cannot be reached (a restart)
UNREACHABLE_S = 60.0
CHUNK = 1024 * 1024
T = TypeVar("T")


class HttpControlPlane:
    """``runner.ControlPlane`` over HTTP, for the one attempt ``credential`` names."""

    def __init__(self, base_url: str, credential: str) -> None:
        self._base_url = base_url
        self._headers = {"authorization": f"Attempt {credential}"}
        self._logs = Transport(base_url)  # log appends in order, on one connection
        self._logs.headers.update(self._headers)

    def _transport(self) -> Transport:
        transport = Transport(self._base_url)
        transport.headers.update(self._headers)
        return transport

    async def environment(self) -> dict[str, str]:
        body = await asyncio.to_thread(self._json, "GET", "/api/v1/attempt/env")
        return {str(k): str(v) for k, v in body["env"].items()}

    async def fetch_input(self, ref: domain.FileRef, dest: Path) -> None:
        await asyncio.to_thread(self._fetch, ref, dest)

    async def copy_inputs(self, placed: Sequence[tuple[domain.FileRef, Path]]) -> list[bool]:
        return [False] * len(placed)  # no store shared with the grid: each is fetched

    async def store_outputs(self, files: Sequence[tuple[str, Path]]) -> list[domain.FileRef]:
        refs = []
        for rel, path in files:  # one upload each: the grid verifies each against its digest
            sha, size = await asyncio.to_thread(self._put_output, path)
            refs.append(domain.FileRef(rel, sha, size))
        return refs

    async def append_logs(self, segments: list[domain.LogSegment]) -> None:
        body = {
            "segments": [
                {
                    "first_seq": s.first_seq,
                    "attempt": s.attempt,
                    "stream": s.stream.value,
                    "ts": s.ts.isoformat(),
                    "text": s.text,
                    "line_count": s.line_count,
                }
                for s in segments
            ]
        }
        await asyncio.to_thread(
            _retrying,
            lambda: _check(self._logs.request("POST", "/api/v1/attempt/logs", json_body=body)),
        )

    def _json(self, method: str, path: str) -> Any:
        transport = self._transport()
        try:
            return _retrying(lambda: _check(transport.request(method, path))).json()
        finally:
            transport.close()

    def _fetch(self, ref: domain.FileRef, dest: Path) -> None:
        """One request: the control plane streams the bytes, or redirects to the storage's
        own URL for them (S3), which is followed without the credential."""
        request = urllib.request.Request(f"{self._base_url}/api/v1/attempt/inputs/{ref.digest}")
        request.add_unredirected_header("Authorization", self._headers["authorization"])
        hashers: list[digests.Hasher] = []

        def fetch() -> None:
            hashers[:] = [digests.Hasher.like(ref.digest)]  # a retry starts the file over
            try:
                with (
                    urllib.request.urlopen(request, timeout=60) as response,
                    dest.open("wb") as out,
                ):
                    _copy(response.read, out, hashers[0])
            except urllib.error.HTTPError as exc:
                _check_status(exc.code, exc.read())
            except OSError as exc:  # the control plane restarting
                raise TransportError(str(exc)) from exc

        _retrying(fetch)
        if hashers[0].result() != ref.digest:
            dest.unlink(missing_ok=True)
            raise errors.IntegrityError(f"input {ref.path!r} arrived damaged")

    def _put_output(self, path: Path) -> tuple[str, int]:
        sha = digests.of_file(path)
        size = path.stat().st_size
        transport = self._transport()
        try:
            with path.open("rb") as body:
                headers = {"content-length": str(size), "content-type": "application/octet-stream"}

                def put() -> Any:
                    body.seek(0)
                    return _check(
                        transport.request(
                            "PUT",
                            f"/api/v1/attempt/outputs/{sha}",
                            body=body,
                            headers=headers,
                            timeout=600,
                        )
                    )

                _retrying(put)
        finally:
            transport.close()
        return sha, size


def _copy(read: Callable[[int], bytes], out: Any, hasher: digests.Hasher) -> None:
    while chunk := read(CHUNK):
        hasher.update(chunk)
        out.write(chunk)


def _check(response: Any) -> Any:
    if response.status >= 300:
        _check_status(response.status, response.body)
    return response


def _check_status(status: int, body: bytes) -> None:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    error = errors.from_body(status, parsed)
    if status == 401:  # the attempt is over: the same as losing the lease
        raise errors.LeaseLost(error.message)
    raise error


def _retrying(call: Callable[[], T]) -> T:
    """``call``, again after a connection failure (the control plane restarting) until
    ``UNREACHABLE_S`` passes; the grid's answers (errors included) are returned at once."""
    deadline = time.monotonic() + UNREACHABLE_S
    delay = 0.2
    while True:
        try:
            return call()
        except TransportError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@functools.cache
def node_config() -> RunnerConfig:
    """This node's runner configuration, from its own ``RGRID_*`` settings (read once per
    Ray worker process)."""
    return runner_config(WorkerSettings())


def run_attempt(spec: domain.ExecutionSpec, control_url: str, credential: str) -> domain.Outcome:
    """The Ray task's body: run ``spec`` (without its ``--env`` values) on this node."""
    return asyncio.run(_run(spec, control_url, credential))


async def _run(spec: domain.ExecutionSpec, control_url: str, credential: str) -> domain.Outcome:
    plane = HttpControlPlane(control_url, credential)
    try:
        config = await asyncio.to_thread(node_config)
        env = await plane.environment()
        return await run_execution(
            dataclasses.replace(spec, env=env), plane, config, asyncio.Event()
        )
    except Exception as exc:  # the runner's own failure: reported, as the local executor does
        logger.exception("runner failed", extra={"execution_id": spec.execution_id})
        return domain.Outcome(
            ExecutionState.FAILED,
            domain.EXIT_RGRID_FAILURE,
            FailureClass.INFRASTRUCTURE,
            cause=f"the worker failed: {type(exc).__name__}: {exc}",
        )


def probe() -> dict[str, Any]:
    """What this node offers: its Pythons, its sandbox, rgrid's version (a zero-CPU task)."""
    from rgrid import __version__, sandbox

    config = node_config()
    return {
        "pythons": sorted(config.interpreters),
        "default_python": config.default_python,
        "sandbox": sandbox.detect().strength,
        "bwrap": shutil.which("bwrap") is not None,
        "rgrid": __version__,
        "cpus": os.cpu_count() or 1,
    }
