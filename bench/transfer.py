"""bench/transfer: moving a big file through rgrid, against `cp` and against curl PUT/GET to a
plain static server on loopback, in one run; throughput and peak RSS.

Two files of the same size: random bytes named ``.zip`` (incompressible: sent as they are) and a
CSV (compressible: rgrid sends it raw to this loopback grid, as by default, and again
zstd-compressed, as to a remote grid, with ``RGRID_COMPRESSION=always``; curl sends it raw).
rgrid's upload is the CLI's own code (``Client.upload_blob``: hashing done before, as the CLI does, is not timed); its
download is ``Client.download`` of an output the grid holds. One BLAKE3 pass over the file is
timed too: the grid verifies every upload, and the CLI every download, so that is a floor under
rgrid's time that curl (which verifies nothing) does not pay; so is a copy made durable with
fsync (``cp + fsync``) under an upload, since the grid holds nothing it could lose. Both run in a child process whose
peak RSS is read from /proc; the server's peak RSS is its VmHWM.

Usage: .venv/bin/python bench/transfer.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rgrid import digests

RGRID = Path(sys.executable).parent / "rgrid"
CHUNK = 1024 * 1024

#: run in a child: upload or download with the CLI's client, print seconds and peak RSS
CHILD = """
import json, os, sys, time
from pathlib import Path
from rgrid.cli.context import connect
from rgrid import schemas
client = connect()
mode, a, b, c = sys.argv[1:5]
start = time.perf_counter()
if mode == "up":
    client.upload_blob(a, Path(b), int(c))
else:
    artifact = next(x for x in client.artifacts(a, kind="output").data if x.path == b)
    client.download(a, artifact, Path(c))
seconds = time.perf_counter() - start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "rss_mib": int(peak) / 1024}))
"""

DURABLE_COPY = """\
import os, shutil, sys
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dest:
    shutil.copyfileobj(src, dest, 1024 * 1024)
    dest.flush()
    os.fsync(dest.fileno())
"""

COPY = """\
import shutil, sys
shutil.copyfile(sys.argv[1], "copy_" + sys.argv[1])
"""


class PutGetHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static server that also accepts PUT, streamed to disk."""

    def do_PUT(self) -> None:
        remaining = int(self.headers["Content-Length"])
        with open(self.translate_path(self.path), "wb") as handle:
            while remaining:
                chunk = self.rfile.read(min(CHUNK, remaining))
                if not chunk:
                    break
                handle.write(chunk)
                remaining -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def make_files(root: Path, size: int) -> tuple[Path, Path]:
    archive, table = root / "data.zip", root / "data.csv"
    with archive.open("wb") as handle:
        for _ in range(size // CHUNK):
            handle.write(os.urandom(CHUNK))
    rng = random.Random(3)
    with table.open("w") as handle:
        block = "".join(
            f"{rng.randrange(10**6)},{rng.random():.6f},sensor-{rng.randrange(50)},ok\n"
            for _ in range(1_200_000)
        )  # ~32 MiB of distinct rows, repeated: beyond zstd's window, so it compresses as real data
        written = 0
        while written < size:
            handle.write(block)
            written += len(block)
    return archive, table


def settled() -> None:
    """Write back what earlier steps left dirty (gigabytes of page cache), so that each step is
    timed on its own transfer, not on the kernel flushing the step before it."""
    os.sync()


def timed(argv: list[str], **kw: object) -> float:
    settled()
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def child(env: dict[str, str], cwd: Path, *args: str) -> dict[str, float]:
    settled()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(
    path: Path,
    digest: str,
    execution: str,
    tmp: Path,
    base: str,
    env: dict[str, str],
    zstd: dict[str, str],
) -> list[tuple[str, str, float, float | None]]:
    """One round of every way of moving ``path``: (file, how, seconds, peak RSS MiB)."""
    name, project = path.name, tmp / "project"
    served, fetched = tmp / "served", tmp / "fetched"
    rows: list[tuple[str, str, float, float | None]] = []
    rows.append((name, "cp", timed(["cp", str(path), str(tmp / "cp.out")]), None))
    (tmp / "cp.out").unlink()
    # the floor under any durable upload: the grid must have the bytes on disk (fsync) before
    # it says it holds them; curl PUT's server never waits for the disk
    durable = timed([sys.executable, "-c", DURABLE_COPY, str(path), str(tmp / "cp.out")])
    rows.append((name, "cp + fsync", durable, None))
    (tmp / "cp.out").unlink()
    put = timed(["curl", "-sf", "-H", "Expect:", "-T", str(path), f"{base}/{name}"])
    get = timed(["curl", "-sf", "-o", str(tmp / "curl.out"), f"{base}/{name}"])
    rows += [(name, "curl PUT", put, None), (name, "curl GET", get, None)]
    (tmp / "curl.out").unlink()
    (served / name).unlink()
    settled()
    started = time.perf_counter()
    digests.of_file(path)  # the floor under any verified transfer: one BLAKE3 pass
    rows.append((name, "blake3 only", time.perf_counter() - started, None))
    size = str(path.stat().st_size)
    ways = [("", env)] + ([(" zstd", zstd)] if name.endswith(".csv") else [])
    for suffix, how_env in ways:  # zstd: as to a remote grid (to this loopback one: raw)
        up = child(how_env, project, "up", digest, str(path), size)
        rows.append((name, "rgrid upload" + suffix, up["seconds"], up["rss_mib"]))
    for suffix, how_env in ways:
        down = child(how_env, project, "down", execution, f"copy_{name}", str(fetched))
        rows.append((name, "rgrid download" + suffix, down["seconds"], down["rss_mib"]))
        assert digests.of_file(fetched / f"copy_{name}") == digest
        (fetched / f"copy_{name}").unlink()
    return rows


def medians(
    rows: list[tuple[str, str, float, float | None]],
) -> list[tuple[str, str, float, float | None]]:
    """One row per (file, how): the median time over the rounds, the highest peak RSS."""
    times: dict[tuple[str, str], list[float]] = {}
    peaks: dict[tuple[str, str], float | None] = {}
    for name, how, seconds, rss in rows:
        times.setdefault((name, how), []).append(seconds)
        if rss is not None:
            peaks[(name, how)] = max(rss, peaks.get((name, how)) or 0.0)
        else:
            peaks.setdefault((name, how), None)
    return [(n, h, statistics.median(t), peaks[(n, h)]) for (n, h), t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size (default 1024 MiB)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; each row is their median (default 3)"
    )
    options = parser.parse_args()
    size = options.mib * CHUNK
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-transfer-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"))
    zstd = {**env, "RGRID_COMPRESSION": "always"}  # the default sends raw to a loopback grid
    project, served, fetched = tmp / "project", tmp / "served", tmp / "fetched"
    for folder in (project, served, fetched):
        folder.mkdir()
    (project / "duplicate.py").write_text(COPY)
    files = make_files(project, size)
    rows: list[tuple[str, str, float, float | None]] = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: PutGetHandler(*a, directory=str(served)),  # type: ignore[misc]
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        pid = json.loads((tmp / "home" / "server.json").read_text())["pid"]
        for path in files:
            name = path.name
            digest = digests.of_file(path)
            ran = subprocess.run(  # the grid holds a copy of the file as an output
                [str(RGRID), "run", "--remote-only", "--no-cache", "duplicate.py", name],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            execution = "exec_" + ran.stderr.split("exec_", 1)[1].split()[0]
            for _ in range(options.repeat):
                rows += measure(path, digest, execution, tmp, base, env, zstd)
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        server_peak = int(next(s for s in status if s.startswith("VmHWM")).split()[1]) / 1024
    finally:
        server.shutdown()
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    rows = medians(rows)
    print(
        f"transfer: {options.mib} MiB files over loopback, {os.cpu_count()} cores, "
        f"median of {options.repeat} rounds"
    )
    print(f"{'file':<10} {'how':<20} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13}")
    for name, how, seconds, rss in rows:
        shown = f"{rss:.0f}" if rss is not None else ""
        print(f"{name:<10} {how:<20} {seconds:>8.2f} {options.mib / seconds:>8.0f} {shown:>13}")
    by = {(n, h): s for n, h, s, _ in rows}
    for name in ("data.zip", "data.csv"):
        print(
            f"{name}: rgrid upload {by[(name, 'curl PUT')] / by[(name, 'rgrid upload')]:.0%} of "
            f"curl PUT, download {by[(name, 'curl GET')] / by[(name, 'rgrid download')]:.0%} of "
            "curl GET (goals: upload >= 50%, download >= 70%)"
        )
    for name in ("data.zip", "data.csv"):
        print(
            f"{name}: rgrid upload {by[(name, 'cp + fsync')] / by[(name, 'rgrid upload')]:.0%} of "
            "the durable floor (cp + fsync: the bytes on this disk, as the grid must have them)"
        )
    for name in ("data.zip", "data.csv"):
        print(
            f"{name}: hashing alone (which the grid must do before it accepts an upload, and the "
            f"CLI before it accepts a download) runs at "
            f"{by[(name, 'curl PUT')] / by[(name, 'blake3 only')]:.0%} of curl PUT's speed"
        )
    print(
        f"data.csv compressed (as to a remote grid): upload "
        f"{by[('data.csv', 'curl PUT')] / by[('data.csv', 'rgrid upload zstd')]:.0%} of curl PUT, "
        f"download {by[('data.csv', 'curl GET')] / by[('data.csv', 'rgrid download zstd')]:.0%}"
        " of curl GET"
    )
    peak_cli = max(r for _, h, _, r in rows if r is not None)
    print(f"peak RSS: CLI {peak_cli:.0f} MiB, server {server_peak:.0f} MiB (goal <= 150 MiB each)")


if __name__ == "__main__":
    main()
