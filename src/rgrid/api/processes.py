"""The server as several processes (``rgrid server run --api-processes N``, N > 1).

One event loop answers at most one core's worth of requests. With N > 1 the main process
migrates the store, dispatches and runs scripts, keeps house and runs the autoscaler, and
answers no request itself: it starts N API processes (``python -m rgrid.api.processes
MAIN_PID LOG_LEVEL``) that each listen on the server's port with ``SO_REUSEPORT``, so the
kernel spreads new connections evenly over them (one shared socket let whichever process woke
first take a whole burst of connections). The main process holds the port bound, not
listening, from its start: a port taken by another program stops it at once, and no one else
can take it meanwhile. A process that dies is started again; when the main process stops, it
stops them, and one whose main process is gone stops by itself.

The main process is where an execution changes (its scripts run there): it writes each
changed execution's id to the API processes' standard input, and their followers (``rgrid
run``'s live log, ``rgrid wait``) wake at once instead of at their next look at the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rgrid import tasks
from rgrid.settings import ServerSettings

logger = logging.getLogger(__name__)

#: how long a process is given to finish its requests when the server stops
STOP_GRACE_S = 10.0
#: a process that died this soon after its start is restarted after a growing pause
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 30.0
#: changed executions' ids waiting for an API process to read them, at most
FORWARD_BUFFER_BYTES = 64 * 1024
#: how often an API-only process checks that its main process is still there
PARENT_CHECK_S = 0.5


def log_to_stderr(level: str) -> None:
    """Every process of the server logs to its standard error, in one format."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def uvicorn_server(app: Any, *, host: str, port: int, log_level: str) -> Any:
    """The uvicorn server every process of the grid runs (the same settings in each): its
    protocol reads request bodies in big pieces, and the process's allocator keeps those on
    warm pages (``rgrid.api.httpbody``, ``rgrid.api.allocator``)."""
    import uvicorn

    from rgrid.api import allocator
    from rgrid.api.httpbody import PiecewiseBodyProtocol

    allocator.tune()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=PiecewiseBodyProtocol,
        ws="websockets-sansio",
        lifespan="on",
    )
    return uvicorn.Server(config)


def bind(host: str, port: int, *, shared: bool) -> socket.socket:
    """A socket bound to the server's address, IPv6 when the host has a colon (as uvicorn
    binds: ``localhost`` is 127.0.0.1); ``shared``: with ``SO_REUSEPORT``, as all the processes
    of a server of several bind it (the kernel refuses a process of another user). Made with
    the TCP protocol number, which asyncio needs to see to turn Nagle's algorithm off on each
    connection: uvicorn's ``bind_socket`` leaves it 0, and a kept-alive connection then waited
    40 ms (the client's delayed ACK) for each answer's second write."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: ServerSettings, *, log_level: str) -> None:
    """Run the server's main process (``rgrid server run``) until it is stopped."""
    from rgrid.api.app import create_app

    app = create_app(settings)
    server = uvicorn_server(app, host=settings.host, port=settings.port, log_level=log_level)
    shared = settings.api_processes > 1
    try:
        # several processes: held here, not listened on (the API processes listen)
        sock = bind(settings.host, settings.port, shared=shared)
    except OSError as exc:
        logger.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        sys.exit(1)
    with sock:
        server.run(sockets=[] if shared else [sock])


class ApiProcesses:
    """The main process's side: start the API processes, restart one that dies, stop all."""

    def __init__(self, settings: ServerSettings) -> None:
        self._count = settings.api_processes
        self._log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._closing = False

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep(index), name=f"api-process-{index}")
            for index in range(self._count)
        ]

    async def _keep(self, index: int) -> None:
        pause = RESTART_MIN_S
        while not self._closing:
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rgrid.api.processes",
                str(os.getpid()),
                self._log_level,
                stdin=asyncio.subprocess.PIPE,
            )
            self._running[index] = process
            code = await process.wait()
            if self._closing:
                return
            logger.warning(
                "API process %d exited with %s; starting it again",
                process.pid,
                code,
                extra={"action": "api_process_exited"},
            )
            if time.monotonic() - began > HEALTHY_AFTER_S:
                pause = RESTART_MIN_S
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_MAX_S)

    def forward(self, execution_id: str) -> None:
        """Tell every API process that this execution changed."""
        line = execution_id.encode() + b"\n"
        for process in self._running.values():
            pipe = process.stdin
            # a process that does not read (stuck, or starting) is skipped, not waited for:
            # its followers still look at the store every half second
            if pipe is not None and not pipe.is_closing():
                if pipe.transport.get_write_buffer_size() < FORWARD_BUFFER_BYTES:
                    pipe.write(line)

    async def close(self) -> None:
        """Ask each process to finish its requests and stop; kill one that takes too long."""
        self._closing = True
        for process in self._running.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self._running.values():
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await tasks.cancel_and_wait(*self._tasks)


async def follow_main(notify: Callable[[str], None]) -> None:
    """In an API process: wake this process's followers of each execution that the main
    process says changed (one id a line on standard input)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        notify(line.decode().strip())


def _stop_with(main_pid: int) -> None:
    """Stop this process (as SIGTERM does: requests under way finish) once ``main_pid`` is gone:
    a main process that was killed cannot stop its API processes itself."""
    while os.getppid() == main_pid:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    """An API process: ``MAIN_PID LOG_LEVEL`` (started by ``ApiProcesses``)."""
    main_pid, log_level = int(argv[0]), argv[1]
    log_to_stderr(log_level)
    from rgrid.api.app import create_app

    threading.Thread(target=_stop_with, args=(main_pid,), daemon=True).start()
    settings = ServerSettings()
    app = create_app(settings, main_pid=main_pid)
    server = uvicorn_server(app, host=settings.host, port=settings.port, log_level=log_level)
    # bound now, listened on once the lifespan is up: no connection waits for a process that
    # is still starting
    server.run(sockets=[bind(settings.host, settings.port, shared=True)])


if __name__ == "__main__":
    main(sys.argv[1:])
