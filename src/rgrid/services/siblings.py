"""The processes of one server started with ``--api-processes N``: the main one dispatches and
runs scripts, the other N-1 only answer API requests, all on one listening socket.

What a route reports of the server as a whole (``/metrics``' counters, the autoscaler's status)
lives in whichever process holds it: each process rewrites a small report of its own figures
every ``REPORT_EVERY_S`` in a folder of the main process's (``RGRID_HOME/run/<main pid>/``),
and a route adds its siblings' reports to its own live figures. A sibling's part is at most a
report period old; the reports of a process that is gone are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rgrid import domain, proc, tasks

logger = logging.getLogger(__name__)

REPORT_EVERY_S = 1.0
RUN_DIRECTORY = "run"


@dataclasses.dataclass(frozen=True)
class Report:
    """One process's figures (its pid is its file's name)."""

    #: blob body bytes on the wire and decoded (``services.Transfers``' four counters)
    received_wire: int = 0
    received: int = 0
    sent_wire: int = 0
    sent: int = 0
    #: the main process's executor: executions it started and environments built
    started: int = 0
    env_builds: int = 0
    autoscaler: domain.AutoscalerStatus | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=_iso)

    @classmethod
    def from_json(cls, text: str) -> Report:
        fields = json.loads(text)
        if fields.get("autoscaler") is not None:
            status = fields["autoscaler"]
            for name in ("last_error_at", "backoff_until"):
                if status.get(name) is not None:
                    status[name] = datetime.fromisoformat(status[name])
            fields["autoscaler"] = domain.AutoscalerStatus(**status)
        return cls(**fields)


#: the figures summed over the processes (all of a report's but the autoscaler's status)
COUNTERS = tuple(f.name for f in dataclasses.fields(Report) if f.name != "autoscaler")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def folder(home: Path, main_pid: int) -> Path:
    return home / RUN_DIRECTORY / str(main_pid)


class Siblings:
    """This process's place among the server's processes: it publishes its report and reads
    the others' (a server of one process has no siblings: it reports its own figures)."""

    def __init__(
        self, home: Path, main_pid: int, report: Callable[[], Report], *, shared: bool
    ) -> None:
        self._folder = folder(home, main_pid)
        self._main = main_pid == os.getpid()
        self._report = report
        self._shared = shared
        self._task: asyncio.Task[None] | None = None

    def whole(self) -> Report:
        """The server's figures: this process's, live, plus its siblings' last reports."""
        own = self._report()
        if not self._shared:
            return own
        totals = {name: getattr(own, name) for name in COUNTERS}
        autoscaler = own.autoscaler  # one process, the main one, runs it
        for other in self.others():
            for name in COUNTERS:
                totals[name] += getattr(other, name)
            autoscaler = autoscaler or other.autoscaler
        return Report(autoscaler=autoscaler, **totals)

    @property
    def path(self) -> Path:
        return self._folder / f"{os.getpid()}.json"

    def publish(self) -> None:
        """Write this process's report (atomically: a reader never sees half of one)."""
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.path.with_suffix(".part")
        partial.write_text(self._report().to_json())
        partial.replace(self.path)

    def start(self) -> None:
        if not self._shared:
            return
        self.publish()
        self._task = asyncio.create_task(self._publishing(), name="sibling-report")

    async def _publishing(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            try:
                self.publish()
            except OSError:  # a full disk: the figures are late, the requests still answered
                logger.exception("could not write the process report", extra={"action": "report"})

    async def close(self) -> None:
        await tasks.cancel_and_wait(self._task)
        if not self._shared:
            return
        if self._main:  # the folder is the main process's: it goes with it
            shutil.rmtree(self._folder, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)

    def others(self) -> list[Report]:
        """The reports of the other live processes of this server."""
        reports = []
        for path in self._folder.glob("*.json"):
            pid = int(path.stem) if path.stem.isdigit() else 0
            if pid in (0, os.getpid()) or not proc.alive(pid):
                continue
            with contextlib.suppress(OSError, ValueError, TypeError):
                reports.append(Report.from_json(path.read_text()))
        return reports
