"""The grid's HTTP protocol hands a request body on as it arrived (``rgrid.api.httpbody``): a
real uvicorn server, made as the grid makes its own, receives bodies sent over a raw socket in
pieces of every size, with pauses between them, by length and chunked, several requests on
one kept-alive connection; every byte arrives, in order, in messages of ``bytes``."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from blake3 import blake3
from tests.conftest import free_port, read_http_answer

from rgrid.api.httpbody import PiecewiseBodyProtocol, _Pieces
from rgrid.api.processes import uvicorn_server


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers each request with its body's BLAKE3, size and the types of its messages."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    hasher, size, kinds = blake3(), 0, set()
    while True:
        message = await receive()
        body = message.get("body", b"")
        kinds.add(type(body).__name__)
        hasher.update(body)
        size += len(body)
        if not message.get("more_body", False):
            break
    answer = json.dumps({"blake3": hasher.hexdigest(), "size": size, "kinds": sorted(kinds)})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer.encode()})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    port = free_port()
    uvicorn = uvicorn_server(echo_app, host="127.0.0.1", port=port, log_level="warning")
    assert uvicorn.config.http is PiecewiseBodyProtocol  # the grid's own protocol
    thread = threading.Thread(target=uvicorn.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield port
    uvicorn.should_exit = True
    thread.join(10)


def read_answer(sock: socket.socket) -> dict[str, Any]:
    status, body = read_http_answer(sock)
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def send_in_pieces(sock: socket.socket, data: bytes, sizes: list[int], pause_s: float) -> None:
    """``data`` in pieces of ``sizes`` (cycled), pausing between them so that the server
    receives them apart."""
    at, turn = 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        sock.sendall(data[at : at + size])
        at, turn = at + size, turn + 1
        time.sleep(pause_s)


def test_bodies_of_every_piece_size_arrive_whole_on_one_connection(server: int) -> None:
    payloads = [
        b"",
        b"x",
        os.urandom(100_000),
        os.urandom(3 * 1024 * 1024 + 17),  # read in big pieces, past the high-water mark
        b"a small one after a big one",
    ]
    with socket.create_connection(("127.0.0.1", server)) as sock:
        for payload in payloads:
            head = f"PUT /b HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n\r\n"
            sock.sendall(head.encode())
            send_in_pieces(sock, payload, [1, 7, 65_536, 300_000, 1_000_000], 0.001)
            answer = read_answer(sock)
            assert answer["size"] == len(payload)
            assert answer["blake3"] == blake3(payload).hexdigest()
            assert answer["kinds"] == ["bytes"]


def test_a_chunked_body_arrives_whole(server: int) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 5)
    framed = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (payload[i : i + 100_001] for i in range(0, len(payload), 100_001))
    )
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"PUT /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        send_in_pieces(sock, framed + b"0\r\n\r\n", [3, 50_000, 262_144], 0.001)
        answer = read_answer(sock)
    assert (answer["size"], answer["blake3"]) == (len(payload), blake3(payload).hexdigest())


def test_pieces_give_one_piece_itself_and_several_joined() -> None:
    one = os.urandom(1000)
    pieces = _Pieces()
    pieces += one
    assert bytes(pieces) is one  # no copy in the usual case
    assert len(pieces) == 1000
    pieces += b"abc"
    assert bytes(pieces) == one + b"abc"
    assert len(pieces) == 1003
    assert bytes(_Pieces()) == b""
