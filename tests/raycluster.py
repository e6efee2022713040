"""A real Ray cluster on this machine for tests: a head without CPUs and worker nodes of one CPU
each, every process bound to 127.0.0.1, each node with an RGRID_HOME of its own.

Started with Ray's own ``cluster_utils`` (what Ray's tests use); stopped by the process ids of
its own processes, never with ``ray stop`` (which kills every Ray process of the machine).
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps the node address on loopback: with it, Ray's
servers listen on 127.0.0.1 instead of every interface (checked by the tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rgrid.autoscaler.local import descendants
from rgrid.runner import mounts

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}


# Read by Ray when it is imported: set before any test module imports it.
os.environ.update(RAY_ENV)


@dataclasses.dataclass
class RayNode:
    handle: Any
    home: Path

    @property
    def node_id(self) -> str:
        return str(self.handle.node_id)

    def pids(self) -> list[int]:
        return [
            info.process.pid
            for infos in self.handle.all_processes.values()
            for info in infos
            if info.process is not None
        ]

    def kill(self) -> None:
        """The machine gone: SIGKILL its processes and everything they started (Ray's worker
        processes, the sandboxes) at once."""
        doomed = [pid for top in self.pids() for pid in (top, *descendants(top))]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclasses.dataclass
class RayCluster:
    cluster: Any
    root: Path
    nodes: list[RayNode]
    dead: list[RayNode] = dataclasses.field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self, name: str) -> RayNode:
        home = self.root / name
        home.mkdir()
        handle = self.cluster.add_node(num_cpus=1, env_vars={"RGRID_HOME": str(home), **RAY_ENV})
        node = RayNode(handle, home)
        self.nodes.append(node)
        return node

    def kill(self, node: RayNode) -> None:
        """A machine gone: its processes SIGKILLed, and no longer one of the cluster's."""
        node.kill()
        self.nodes.remove(node)
        self.dead.append(node)

    def all_pids(self) -> list[int]:
        head = self.cluster.head_node
        pids = [
            info.process.pid
            for infos in head.all_processes.values()
            for info in infos
            if info.process is not None
        ]
        return pids + [pid for node in self.nodes + self.dead for pid in node.pids()]


@contextlib.contextmanager
def start_ray_cluster(workers: int = 2) -> Iterator[RayCluster]:
    os.environ.update(RAY_ENV)
    # short: Ray's unix sockets live below it (108 bytes at most)
    root = Path(tempfile.mkdtemp(prefix="rgray-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(root)
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,  # the control plane's machine runs no scripts
            "include_dashboard": False,
            "node_ip_address": "127.0.0.1",
            "env_vars": RAY_ENV,
        },
    )
    made = RayCluster(cluster, root, [])
    try:
        for index in range(workers):
            made.add_node(f"node{index}")
        cluster.wait_for_nodes()
        yield made
    finally:
        # the agents and workers a raylet starts outlive it for a while: gather them first
        doomed = [pid for top in made.all_pids() for pid in (top, *descendants(top))]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # what the killed runners had mounted (overlays, scratch tmpfs) would outlive the test
        mounts.unmount_all_under(root)
        shutil.rmtree(root, ignore_errors=True)
