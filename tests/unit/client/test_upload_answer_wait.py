"""A grid answers an upload only once the blob is in its storage (to S3, a second transfer of
the same bytes): the CLI waits for a big upload's answer in proportion to its size, and for a
small one's no longer than for any request. A real HTTP server on loopback that takes its time
to answer, as a grid storing to a slow S3 does."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rgrid.client as client_module
from rgrid import digests, errors
from rgrid.client import Client

ANSWER_AFTER_S = 1.5


class SlowToStore(http.server.BaseHTTPRequestHandler):
    """Reads the whole body, then takes ``ANSWER_AFTER_S`` to "store" it before answering."""

    def do_PUT(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        time.sleep(ANSWER_AFTER_S)
        body = json.dumps({"digest": self.path.rsplit("/", 1)[1], "size": length}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grid() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowToStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same rule at a scale a test can wait for: 0.5 s for any answer, plus a second for
    # every 4 KiB a grid stores
    monkeypatch.setattr(client_module, "DEFAULT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(client_module, "STORE_BYTES_PER_S", 4096)
    monkeypatch.setattr(client_module, "RESUMABLE_BYTES", 1 << 30)  # one plain PUT each
    monkeypatch.setattr(client_module, "RETRIES", 1)  # the first answer decides


def _upload(base_url: str, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    client = Client(base_url, "rg_test", compression_policy="never")
    try:
        client.upload_blob(digests.of_bytes(data), path, len(data))
    finally:
        client.close()


@pytest.mark.usefixtures("short_waits")
def test_a_big_uploads_answer_is_waited_for_while_the_grid_stores_it(
    grid: str, tmp_path: Path
) -> None:
    _upload(grid, tmp_path / "big.bin", b"x" * 8192)  # waits up to 0.5 + 2 s: answered at 1.5


@pytest.mark.usefixtures("short_waits")
def test_a_small_uploads_answer_is_not_waited_for_longer_than_any_request(
    grid: str, tmp_path: Path
) -> None:
    with pytest.raises(errors.ConnectionFailed, match="timed out"):
        _upload(grid, tmp_path / "small.bin", b"x" * 100)  # waits up to 0.5 + 0.02 s
