"""bench/receive: what receiving a big request body costs the grid's HTTP server, apart from
what it then does with the bytes (hashing, writing, fsync: bench/transfer).

A 1 GiB body is sent with the CLI's own transport to four servers on loopback, each of which
reads the whole body and drops it: uvicorn with its own httptools protocol, uvicorn with the
grid's protocol (``rgrid.api.httpbody``: read in bigger pieces, handed on uncopied), the same
with the grid server's allocator thresholds (``rgrid.api.allocator``), and Python's
``http.server`` (the static server bench/transfer's curl PUT talks to). Rounds interleaved;
medians. Usage: .venv/bin/python bench/receive.py [--mib 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port

#: a server that reads and drops every request body: argv[1] port, argv[2] the kind
SERVER = """
import sys
port, kind = int(sys.argv[1]), sys.argv[2]
if kind == "http.server":
    import http.server

    class Drop(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self):
            left = int(self.headers["Content-Length"])
            while left:
                left -= len(self.rfile.read(min(1 << 20, left)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Drop).serve_forever()
else:
    import uvicorn
    from rgrid.api.httpbody import PiecewiseBodyProtocol

    async def drop(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    if kind == "grid+allocator":
        from rgrid.api import allocator

        assert allocator.tune()
    protocol = "httptools" if kind == "uvicorn" else PiecewiseBodyProtocol
    uvicorn.run(drop, host="127.0.0.1", port=port, log_level="warning", http=protocol,
                lifespan="off")
"""

KINDS = {
    "uvicorn, its httptools protocol": "uvicorn",
    "uvicorn, the grid's protocol": "grid",
    "  + the grid's allocator thresholds": "grid+allocator",
    "http.server (curl PUT's server)": "http.server",
}


def send(port: int, path: Path) -> float:
    from rgrid.client.http import Transport

    transport = Transport(f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with path.open("rb") as body:
        response = transport.request(
            "PUT", "/", body=body, headers={"content-length": str(path.stat().st_size)}
        )
    seconds = time.perf_counter() - started
    assert response.status == 200, response.status
    transport.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-"))
    path = tmp / "body.bin"
    with path.open("wb") as handle:
        for _ in range(args.mib):
            handle.write(os.urandom(1 << 20))
    ports, servers = {}, []
    for name, kind in KINDS.items():
        ports[name] = free_port()
        servers.append(subprocess.Popen([sys.executable, "-c", SERVER, str(ports[name]), kind]))
    try:
        time.sleep(2)  # the servers start
        seconds: dict[str, list[float]] = {name: [] for name in KINDS}
        for _ in range(args.rounds):
            for name in KINDS:
                seconds[name].append(send(ports[name], path))
    finally:
        for server in servers:
            server.kill()
        path.unlink()
        tmp.rmdir()
    print(f"receive: a {args.mib} MiB body read and dropped, {args.rounds} rounds, 2 cores")
    print(f"{'server':36} {'median s':>9} {'MiB/s':>7}")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name:36} {median:9.2f} {args.mib / median:7.0f}")
    own, plain = (
        medians["uvicorn, its httptools protocol"],
        medians["http.server (curl PUT's server)"],
    )
    for name in ("uvicorn, the grid's protocol", "  + the grid's allocator thresholds"):
        print(f"{name.strip()}: {own / medians[name]:.1f}x as fast as uvicorn's own, "
              f"{plain / medians[name]:.0%} of http.server's speed")  # fmt: skip


if __name__ == "__main__":
    main()
