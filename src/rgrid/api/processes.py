"""The server's processes on one listening socket (``rgrid server run --api-processes N``).

One event loop answers at most one core's worth of requests. The main process binds the port,
migrates the store and starts its dispatcher; once it is up it starts N-1 API-only processes
(``python -m rgrid.api.processes FD MAIN_PID LOG_LEVEL``) that inherit the bound socket, so the
kernel hands each new connection to whichever process accepts first, the way uvicorn's and
gunicorn's workers share one. A process that dies is started again; when the main process
stops, it stops them, and one whose main process is gone stops by itself.

The main process runs the scripts, so it is where an execution changes: it writes each changed
execution's id to the API processes' standard input, and their followers (``rgrid run``'s
live log, ``rgrid wait``) wake at once instead of at their next look at the store.
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


def uvicorn_server(app: Any, *, host: str, port: int, log_level: str) -> Any:
    """The uvicorn server every process of the grid runs (the same settings in each)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, ws="websockets", lifespan="on"
    )
    return uvicorn.Server(config)


def serve(settings: ServerSettings, *, log_level: str) -> None:
    """Run the server's main process (``rgrid server run``) until it is stopped."""
    from rgrid.api.app import create_app

    app = create_app(settings)
    server = uvicorn_server(app, host=settings.host, port=settings.port, log_level=log_level)
    # bound here, not by uvicorn, so that the API processes inherit the same socket
    app.state.listener = listener = server.config.bind_socket()
    server.run(sockets=[listener])


class ApiProcesses:
    """The main process's side: start the API-only processes, restart one that dies, stop all."""

    def __init__(self, settings: ServerSettings, listener: socket.socket) -> None:
        self._count = settings.api_processes - 1
        self._listener = listener
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
                str(self._listener.fileno()),
                str(os.getpid()),
                self._log_level,
                pass_fds=(self._listener.fileno(),),
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
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


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
    """An API-only process: ``FD MAIN_PID LOG_LEVEL`` (started by ``ApiProcesses``)."""
    fd, main_pid, log_level = int(argv[0]), int(argv[1]), argv[2]
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from rgrid.api.app import create_app

    threading.Thread(target=_stop_with, args=(main_pid,), daemon=True).start()
    listener = socket.socket(fileno=fd)
    settings = ServerSettings()
    app = create_app(settings, main_pid=main_pid)
    server = uvicorn_server(app, host=settings.host, port=settings.port, log_level=log_level)
    server.run(sockets=[listener])


if __name__ == "__main__":
    main(sys.argv[1:])
