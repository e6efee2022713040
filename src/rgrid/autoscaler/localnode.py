"""One Ray worker node as a process, for the ``local`` provider:
``python -m rgrid.autoscaler.localnode ADDRESS CPUS RESOURCE``.

``ray start`` cannot join a head that listens on loopback only: it rewrites 127.0.0.1 to the
machine's outward address. This starts the node the way Ray's own ``cluster_utils`` does
(``ray._private.node.Node``), on the head's loopback address when the head is on loopback,
and runs until SIGTERM (then it stops its Ray processes) or SIGKILL (then Ray's reaper does).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the node's object store: only small task arguments and outcomes travel through it
OBJECT_STORE_BYTES = 256 * 1024**2


def main(argv: list[str] | None = None) -> int:
    address, cpus, resource = (argv if argv is not None else sys.argv[1:])[:3]
    host = address.rpartition(":")[0].strip("[]")
    if host in LOOPBACK:
        # Ray's single-host mode: every server of the node listens on loopback only
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=address,
        num_cpus=int(cpus),
        num_gpus=0,
        resources={resource: 1},
        object_store_memory=OBJECT_STORE_BYTES,
        min_worker_port=0,
        max_worker_port=0,
        node_manager_port=0,
        include_log_monitor=False,  # type: ignore[arg-type]  # (Ray annotates it wrongly)
        node_ip_address="127.0.0.1" if host in LOOPBACK else None,
    )
    params.dashboard_agent_listen_port = None
    node: Any = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"node {resource} joined {address}", flush=True)  # noqa: T201 - the node's own log
    stop.wait()
    node.kill_all_processes(check_alive=False, allow_graceful=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
