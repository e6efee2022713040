"""Acceptance: big files travel compressed when it pays, and broken bodies store nothing (issue 8).

The wire sizes come from the server's own counters (/metrics), the bytes from the files."""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
from pathlib import Path

import httpx
import pytest
import zstandard
from tests.acceptance.conftest import run_on_a_terminal
from tests.conftest import Cli, LiveServer

from rgrid import digests

MB = 1000 * 1000
COPY = """\
import os, shutil, sys
os.makedirs("out", exist_ok=True)
shutil.copyfile(sys.argv[1], os.path.join("out", "copy" + os.path.splitext(sys.argv[1])[1]))
"""


def counters(server: LiveServer) -> dict[str, int]:
    text = server.metrics()
    return {
        name: int(float(value))
        for name, value in re.findall(r"^(rgrid_\w+_bytes_\w+_total) ([0-9.e+]+)$", text, re.M)
    }


def delta(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after[f"rgrid_{name}_total"] - before[f"rgrid_{name}_total"]


def make_csv(path: Path, size: int) -> None:
    """``size`` bytes of CSV rows: ~4 MB of distinct rows, repeated (further apart than zstd's
    window, so it compresses like real data, ~2.9x, and takes a second to make, not twenty)."""
    rng = random.Random(7)
    rows = (
        f"{rng.randrange(10**6)},{rng.random():.6f},sensor-{rng.randrange(50)},ok\n"
        for _ in range(min(size // 25 + 1, 150_000))
    )
    block = "".join(rows).encode()
    with path.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: size - written]
            handle.write(piece)
            written += len(piece)


def test_a_big_csv_travels_compressed_and_a_zip_does_not(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    # as to a grid on another machine: the tests' grid is on loopback, where `auto` sends raw
    account_cli = Cli(account_cli.cwd, {**account_cli.env, "RGRID_COMPRESSION": "always"})
    (workdir / "copy.py").write_text(COPY)
    csv, archive = workdir / "data.csv", workdir / "data.zip"
    make_csv(csv, 200 * MB)
    archive.write_bytes(os.urandom(200 * MB))  # random bytes: incompressible, like a real .zip
    for source in (csv, archive):
        size = source.stat().st_size
        before = counters(live_server)
        result = account_cli("run", "copy.py", source.name, timeout=300)
        assert result.returncode == 0, result.stderr
        after = counters(live_server)
        copy = workdir / "out" / f"copy{source.suffix}"
        assert hashlib.sha256(copy.read_bytes()).digest() == (
            hashlib.sha256(source.read_bytes()).digest()
        )
        received, wire_in = (
            delta(before, after, "blob_bytes_received"),
            delta(before, after, "blob_wire_bytes_received"),
        )
        sent, wire_out = (
            delta(before, after, "output_bytes_sent"),
            delta(before, after, "output_wire_bytes_sent"),
        )
        assert received >= size and sent == size
        if source is csv:
            assert wire_in < received / 2, (wire_in, received)  # compressed on the way in
            assert wire_out < sent / 2, (wire_out, sent)  # and on the way out
        else:
            assert wire_in == received and wire_out == sent  # sent as it is
        copy.unlink()


def test_a_grid_on_this_machine_gets_raw_bytes_and_a_bad_setting_is_refused(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    (workdir / "copy.py").write_text(COPY)
    csv = workdir / "data.csv"
    for n, policy in enumerate(("", "never")):  # the default (auto) on loopback, and never
        make_csv(csv, 5 * MB + n * 1000)  # new content: uploaded again
        env = {**account_cli.env, "RGRID_COMPRESSION": policy}
        before = counters(live_server)
        result = Cli(workdir, env)("run", "--no-cache", "copy.py", "data.csv")
        assert result.returncode == 0, result.stderr
        after = counters(live_server)
        assert (workdir / "out" / "copy.csv").read_bytes() == csv.read_bytes()
        received = delta(before, after, "blob_bytes_received")
        assert received >= csv.stat().st_size
        assert delta(before, after, "blob_wire_bytes_received") == received  # sent as it is
        sent = delta(before, after, "output_bytes_sent")
        assert sent == csv.stat().st_size
        assert delta(before, after, "output_wire_bytes_sent") == sent
        (workdir / "out" / "copy.csv").unlink()
    before = counters(live_server)
    bad = Cli(workdir, {**account_cli.env, "RGRID_COMPRESSION": "sometimes"})
    result = bad("run", "--no-cache", "copy.py", "data.csv")
    assert result.returncode != 0
    assert "RGRID_COMPRESSION must be one of auto, always, never, not 'sometimes'" in result.stderr
    assert counters(live_server) == before  # nothing sent
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())


def _put(server: LiveServer, sha: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.put(
        f"{server.url}/api/v1/blobs/{sha}",
        content=body,
        headers={"Authorization": f"Bearer {server.admin_key}", **headers},
        timeout=30,
    )


def _raw_put(server: LiveServer, sha: str, body: bytes, *, announced: int) -> bytes:
    """PUT ``body`` with a Content-Length of ``announced``, then close our side; the
    server's first answer (empty if it gave none)."""
    head = (
        f"PUT /api/v1/blobs/{sha} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.admin_key}\r\n"
        f"Content-Length: {announced}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _missing(server: LiveServer, sha: str) -> bool:
    answer = httpx.post(
        f"{server.url}/api/v1/blobs/missing",
        json={"digests": [sha]},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    return answer.json()["missing"] == [sha]


def test_broken_bodies_are_rejected_and_store_nothing(live_server: LiveServer) -> None:
    data = os.urandom(64 * 1024) + b"a,b,c\n" * 400_000
    sha = digests.of_bytes(data)
    packed = zstandard.ZstdCompressor().compress(data)
    zstd = {"content-encoding": "zstd", "x-rgrid-size": str(len(data))}

    truncated = _put(live_server, sha, packed[: len(packed) // 2], **zstd)
    assert truncated.status_code == 422, truncated.text
    assert "truncated" in truncated.json()["error"]["message"]
    garbled = bytearray(packed)
    garbled[len(garbled) // 2 : len(garbled) // 2 + 64] = os.urandom(64)
    corrupt = _put(live_server, sha, bytes(garbled), **zstd)
    assert corrupt.status_code == 422, corrupt.text
    unknown = _put(live_server, sha, packed, **{"content-encoding": "br"})
    assert unknown.status_code == 422 and "Content-Encoding" in unknown.text
    wrong = _put(live_server, digests.of_bytes(b"other"), packed, **zstd)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "INTEGRITY_ERROR"
    assert _missing(live_server, sha)

    # Content-Length lies: fewer bytes than announced (then the connection closes) ...
    assert _raw_put(live_server, sha, data[: len(data) // 3], announced=len(data)) == b""
    # ... and fewer announced than sent: the body read is not the content named
    answer = _raw_put(live_server, sha, data, announced=len(data) - 10)
    assert answer.startswith(b"HTTP/1.1 422"), answer[:200]
    assert _missing(live_server, sha)

    stored = _put(live_server, sha, packed, **zstd)  # the right body, compressed, goes in
    assert stored.status_code == 201 and stored.json()["size"] == len(data)
    assert not _missing(live_server, sha)


def test_big_transfers_show_progress_on_a_terminal_only(account_cli: Cli, workdir: Path) -> None:
    (workdir / "copy.py").write_text(COPY)
    (workdir / "big.zip").write_bytes(os.urandom(40 * MB))
    returncode, _, text = run_on_a_terminal(account_cli, "run", "copy.py", "big.zip")
    assert returncode == 0, text
    line = r"{} {}  ([\d.]+ [kMG]?B) / 40\.0 MB  ([\d.]+) ([kMG]?B)/s\x1b\[K"
    up = re.findall(line.format("uploading", r"big\.zip"), text)
    down = re.findall(line.format("downloading", r"copy\.zip"), text)
    assert up and up[-1][0] == "40.0 MB", text  # it ends complete ...
    assert down and down[-1][0] == "40.0 MB", text
    assert text.count("uploading big.zip  40.0 MB / 40.0 MB") == 1  # ... once
    for _, rate, unit in up + down:  # plausible rates on loopback: not TB/s
        assert unit in ("B", "kB", "MB", "GB") and float(rate) > 0, text

    (workdir / "out" / "copy.zip").unlink()
    piped = account_cli("run", "--no-cache", "copy.py", "big.zip")  # stderr is a pipe
    assert piped.returncode == 0 and "uploading" not in piped.stderr
    assert "downloading" not in piped.stderr


@pytest.mark.parametrize(
    ("hashed_bytes", "sent_bytes"),
    [
        # rewritten (a database in use): the grid refuses bytes that do not match
        (b"first line\n", b"FIRST LINE\nsecond line\n"),
        # shortened: the CLI stops the request itself and closes its connection
        (b"a line\n" * 1000, b"a line\n"),
    ],
    ids=["rewritten", "shortened"],
)
def test_a_file_changed_while_it_is_sent_is_named_and_nothing_is_stored(
    live_server: LiveServer, workdir: Path, hashed_bytes: bytes, sent_bytes: bytes
) -> None:
    """Hashed, then changed before it was sent: the user is told which file, not a blob's key.
    (Only appended to, the bytes that were hashed are sent: they still match.)"""
    from rgrid import errors
    from rgrid.client import Client
    from rgrid.client.bundle import LocalFile
    from rgrid.client.runs import upload_files

    changing = workdir / "changing.log"
    changing.write_bytes(hashed_bytes)
    sha = digests.of_bytes(hashed_bytes)
    hashed = LocalFile("changing.log", changing, sha, len(hashed_bytes))
    changing.write_bytes(sent_bytes)  # after the CLI hashed it
    client = Client(live_server.url, live_server.admin_key)
    try:
        with pytest.raises(errors.UsageError) as refused:
            upload_files(client, [hashed])
        assert str(refused.value) == f"{changing} changed while rgrid was sending it"
        assert refused.value.hint is not None and ".rgridignore" in refused.value.hint
        # nothing stored, and the connection was not left half sent: the next request works
        assert client.missing_blobs([hashed.digest]) == [hashed.digest]
    finally:
        client.close()
