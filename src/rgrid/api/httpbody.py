"""uvicorn's HTTP protocol (httptools), receiving a request body in big pieces, handed on as
they arrived.

Receiving an upload runs on the event loop, the thread that answers every connection, so its
cost per byte is the whole grid's. uvicorn gathers a body's bytes into a ``bytearray`` and
copies them out again into ``bytes`` for each ASGI message: two copies of every byte; and
asyncio reads a socket 256 KiB at a time, so a gigabyte takes 4,096 turns of the loop. Here,
while a body arrives, the connection is read up to ``BODY_READ_BYTES`` at a time, and a
message's body is the piece just received itself (reading pauses past uvicorn's high-water
mark, so there is usually one) or the pieces joined. bench/receive measures the difference
(docs/performance.md).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: the most a connection's socket is read at once while a request body arrives (asyncio's
#: default, 256 KiB, for everything else: a small request then allocates no big buffer).
#: 4 MiB received a little faster still, but held ~10 MiB more per upload in flight
BODY_READ_BYTES = 1024 * 1024


class _Pieces:
    """A request body's pieces since the application's last ``receive``: ``+=`` keeps a piece,
    ``len`` counts the bytes, ``bytes()`` gives them (the one piece itself, without a copy)."""

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def __iadd__(self, piece: bytes) -> _Pieces:
        self._pieces.append(piece)
        self._size += len(piece)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        if len(self._pieces) == 1:
            return self._pieces[0]
        return b"".join(self._pieces)


class PiecewiseBodyProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose request bodies are read in big pieces and kept uncopied."""

    #: asyncio's read size for this connection, put back once a body has arrived; None: the
    #: event loop's transport has no ``max_size`` (not asyncio's selector loop), left alone
    _read_bytes: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_bytes = getattr(transport, "max_size", None)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle.body, _Pieces):  # a new cycle, or the app has taken the last
            cycle.body = _Pieces()  # type: ignore[assignment]
            if self._read_bytes is not None:
                self.transport.max_size = BODY_READ_BYTES  # type: ignore[attr-defined]
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._read_bytes is not None:
            self.transport.max_size = self._read_bytes  # type: ignore[attr-defined]
        super().on_message_complete()
