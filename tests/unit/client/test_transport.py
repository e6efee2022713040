"""The CLI's HTTP/1.1 transport (``rgrid.client.http``) against a real loopback server that
answers with exactly the bytes each test gives it: every framing an answer may have, answers
that break off or are not HTTP, keep-alive, and request bodies of each kind."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from rgrid.client.http import Transport, TransportError

Answer = Callable[[bytes], bytes | None]  # the request's bytes -> the raw answer (None: close)


class RawServer:
    """Accepts connections; for each request read, sends ``answer(request)`` as it is (and
    closes the connection after an answer without a length or chunks)."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                raw = self.answer(request)
                if raw is None:
                    return
                conn.sendall(raw)
                framed = raw.lower()
                if self.close_after or (
                    b"content-length" not in framed and b"chunked" not in framed
                ):
                    return  # an answer that ends with the connection


def _read_request(reader: io.BufferedReader) -> bytes | None:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return None
        head += line
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        return head + reader.read(length)
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int(reader.readline().strip(), 16)
            chunk = reader.read(size + 2)[:size]
            body += b"<%d>" % size + chunk
            if size == 0:
                return head + body
    return head


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answer, close_after: bool = False) -> RawServer:
        servers.append(RawServer(answer, close_after))
        return servers[-1]

    yield start
    for server in servers:
        server.sock.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body) + b"".join(extra)
    return head + b"\r\n" + body


def test_answers_framed_by_length_by_chunks_and_by_the_end(
    serve: Callable[..., RawServer],
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n"
    answers = iter([ok(b'{"a": 1}'), chunked, b"HTTP/1.0 200 OK\r\n\r\nuntil the end"])
    server = serve(lambda _request: next(answers))
    transport = Transport(server.url)
    assert transport.request("GET", "/one").json() == {"a": 1}
    with transport.open("GET", "/two") as response:
        assert response.getheader("TRANSFER-ENCODING") == "chunked"
        assert response.read(3) == b"hel" and response.read(100) == b"lo"
        assert response.read() == b" world"
    assert server.connections == 1  # kept alive across both
    assert transport.request("GET", "/three").body == b"until the end"
    assert server.requests[0].startswith(b"GET /one HTTP/1.1\r\nhost: 127.0.0.1:")


def test_a_broken_or_foreign_answer_is_a_transport_error(
    serve: Callable[..., RawServer],
) -> None:
    for raw in (
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",  # then the connection closes
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"",  # closed without a word
    ):
        server = serve(lambda _request, raw=raw: raw or None, close_after=True)
        with pytest.raises(TransportError):
            Transport(server.url).request("GET", "/")


def test_a_dropped_keep_alive_connection_is_opened_again(
    serve: Callable[..., RawServer],
) -> None:
    answers = iter([ok(b"1", b"connection: close\r\n"), ok(b"2")])
    server = serve(lambda _request: next(answers))
    transport = Transport(server.url)
    assert transport.request("GET", "/").body == b"1"
    assert transport.request("GET", "/").body == b"2"
    assert server.connections == 2


def test_request_bodies_json_file_and_stream(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda _request: ok(b""))
    transport = Transport(server.url)
    transport.request("POST", "/json", json_body={"x": [1]})
    transport.request("PUT", "/file", body=io.BytesIO(b"abcdef"), headers={"Content-Length": "6"})
    transport.request("PUT", "/stream", body=io.BytesIO(b"abcdef"))
    transport.request("POST", "/empty")
    json_request, file_request, stream_request, empty = server.requests
    assert (
        json_request.endswith(b'\r\n\r\n{"x": [1]}')
        and b"content-type: application/json" in json_request
    )
    assert file_request.endswith(b"\r\n\r\nabcdef")
    assert b"transfer-encoding: chunked" in stream_request
    assert stream_request.endswith(b"<6>abcdef<0>")
    assert b"content-length: 0" in empty


#: in a fresh interpreter: connect by name and by address, then whether the IDNA codec loaded
CONNECT_FRESH = """
import socket, sys
from rgrid.client.http import connect
server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]
for host in ("127.0.0.1", "localhost"):
    with connect(host, port, 2.0) as sock:
        print(host, sock.getpeername()[0])
print("idna", "encodings.idna" in sys.modules)
"""


def test_connect_by_name_or_address_without_the_idna_codec() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", CONNECT_FRESH], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "127.0.0.1 127.0.0.1",
        "localhost 127.0.0.1",
        "idna False",
    ]


def test_connect_to_a_name_that_does_not_resolve_is_an_os_error() -> None:
    from rgrid.client.http import connect

    with pytest.raises(OSError):
        connect("no-such-host.invalid", 80, 2.0)


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:8765",
        "ftp://127.0.0.1:8765",
        "http://",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://127.0.0.1:-1",
        "http://127.0.0.1:port",
    ],
)
def test_a_grid_url_that_cannot_be_reached_as_written_is_a_usage_error(url: str) -> None:
    from rgrid import errors

    with pytest.raises(errors.UsageError, match="invalid grid URL"):
        Transport(url)


@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://[::1]:8765/", "[::1]:8765"),
        ("https://grid.example:443", "grid.example"),
    ],
)
def test_a_grid_url_names_its_host_and_port(url: str, host_header: str) -> None:
    assert Transport(url)._host_header == host_header
