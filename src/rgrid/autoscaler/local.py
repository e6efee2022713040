"""The ``local`` provider: Ray worker nodes as processes on this host (tests, single-host setups).

Each node is one ``rgrid.autoscaler.localnode`` process in a session of its own, joining the cluster
with the node's ``rgrid-node-<name>`` resource and an RGRID_HOME of its own. Its record is a
small JSON file under ``root/<name>/`` (so a restarted server finds its nodes again); a node
whose process is gone is no longer listed. Kinds are ``cpuN`` (N CPUs of this host), at the
configured price per CPU and billing period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rgrid import errors, proc
from rgrid.autoscaler import ProviderNode, node_resource
from rgrid.autoscaler.policy import NodeKind
from rgrid.runner import mounts

logger = logging.getLogger(__name__)

#: how long a node's processes get to stop after SIGTERM before they are killed
STOP_GRACE_S = 5.0
RECORD = "node.json"
#: the logs of deleted nodes
LOGS = ".logs"
#: how long a starting node may take to join; what ``localnode`` prints once it has
JOIN_WAIT_S = 60.0
JOINED = b"joined"


class LocalProvider:
    name = "local"
    default_kind = "cpu1"

    def __init__(
        self, root: Path, *, join_address: str, cpu_price_micros: int, billing_period_s: float
    ) -> None:
        self._root = root
        self._join = join_address
        self._cpu_price = cpu_price_micros
        self._period = billing_period_s
        #: the processes this server started (polled, so none lingers as a zombie)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    async def kinds(self) -> dict[str, NodeKind]:
        cpus = os.cpu_count() or 1
        return {
            f"cpu{n}": NodeKind(f"cpu{n}", n, n * self._cpu_price, self._period)
            for n in range(1, cpus + 1)
        }

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        return await asyncio.to_thread(self._create, kind, name)

    def _create(self, kind: NodeKind, name: str) -> ProviderNode:
        folder = self._root / name
        try:
            (folder / "home").mkdir(parents=True)
            log = (folder / "ray.log").open("wb")
        except OSError as exc:
            raise errors.ProviderError(f"cannot make local node {name}: {exc}") from exc
        command = [
            sys.executable,  # the server's own interpreter: it has Ray (the worker extra)
            "-m",
            "rgrid.autoscaler.localnode",
            self._join,
            str(kind.slots),
            node_resource(name),
        ]
        env = {**os.environ, "RGRID_HOME": str(folder / "home"), "RAY_USAGE_STATS_ENABLED": "0"}
        try:
            with log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
        except OSError as exc:
            raise errors.ProviderError(f"cannot start local node {name}: {exc}") from exc
        self._children[name] = process
        node = ProviderNode(
            provider_id=name,
            name=name,
            kind=kind.name,
            hourly_price_micros=kind.hourly_price_micros,
            billing_period_s=kind.billing_period_s,
            created_at=datetime.now(UTC),
        )
        record = {
            "pid": process.pid,
            "kind": kind.name,
            "hourly_price_micros": kind.hourly_price_micros,
            "billing_period_s": kind.billing_period_s,
            "created_at": node.created_at.isoformat(),
        }
        (folder / RECORD).write_text(json.dumps(record))
        self._wait_joined(name, process)
        logger.info("local node started", extra={"action": "node_created", "node": name})
        return node

    def _wait_joined(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """Wait until the node is in the cluster: nodes of one host join one at a time (Ray
        nodes starting at once on a small machine time out registering with the head)."""
        log = self._root / name / "ray.log"
        deadline = time.monotonic() + JOIN_WAIT_S
        while time.monotonic() < deadline:
            if JOINED in log.read_bytes():
                return
            if process.poll() is not None:
                last = log.read_text(errors="replace").strip().splitlines()[-1:]
                self._delete(name)
                raise errors.ProviderError(
                    f"local node {name} failed to start: {last[0] if last else 'no output'}"
                )
            time.sleep(0.1)
        self._delete(name)
        raise errors.ProviderError(f"local node {name} did not join within {JOIN_WAIT_S:.0f} s")

    async def nodes(self) -> list[ProviderNode]:
        return await asyncio.to_thread(self._nodes)

    def _nodes(self) -> list[ProviderNode]:
        for process in self._children.values():
            process.poll()  # reaps it when it ended
        found = []
        for record_path in sorted(self._root.glob(f"*/{RECORD}")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(record_path.read_text())
                if proc.alive(int(record["pid"])):
                    found.append(
                        ProviderNode(
                            provider_id=record_path.parent.name,
                            name=record_path.parent.name,
                            kind=str(record["kind"]),
                            hourly_price_micros=int(record["hourly_price_micros"]),
                            billing_period_s=float(record["billing_period_s"]),
                            created_at=datetime.fromisoformat(record["created_at"]),
                        )
                    )
        return found

    async def delete(self, node: ProviderNode) -> None:
        await asyncio.to_thread(self._delete, node.name)

    def _delete(self, name: str) -> None:
        folder = self._root / name
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads((folder / RECORD).read_text())["pid"])
            stop_tree(pid)
        process = self._children.pop(name, None)
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_GRACE_S)
        # a node killed mid-run leaves its executions' mounts: its disk goes with it
        mounts.unmount_all_under(folder)
        with contextlib.suppress(OSError):  # its log stays for a look at why it went
            (self._root / LOGS).mkdir(exist_ok=True)
            (folder / "ray.log").rename(self._root / LOGS / f"{name}.log")
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("local node stopped", extra={"action": "node_deleted", "node": name})


def stop_tree(pid: int) -> None:
    """Stop a process and everything it started: SIGTERM (Ray's processes leave the cluster
    cleanly), then SIGKILL for what is left after ``STOP_GRACE_S``. Ray's own processes may
    start sessions of their own, so the tree is found through /proc, not the process group."""
    doomed = [pid, *descendants(pid)]
    for each in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(proc.alive(each) for each in doomed):
        time.sleep(0.1)
    for each in [*doomed, *(d for p in doomed for d in descendants(p))]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in map(int, children.read().split()):
                    found += [child, *descendants(child)]
    return found
