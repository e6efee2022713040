"""A minimal WebSocket client (RFC 6455) on the standard library, for following logs.

Only what following needs: the opening handshake (with headers), receiving text frames
(fragmented or not), answering pings, and closing. A full library would cost the CLI
≈ 130 ms of imports on every ``rgrid run``.
"""

from __future__ import annotations

import binascii
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from rgrid import errors
from rgrid.client.http import connect as connect_socket

if TYPE_CHECKING:
    from hashlib import sha1
else:
    try:  # the interpreter's own SHA-1: hashlib loads OpenSSL (4 ms on every `rgrid run`)
        from _sha1 import sha1
    except ImportError:  # an interpreter built without it
        from hashlib import sha1

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE_BYTES = 64 * 1024**2


class StreamClosed(ConnectionError):
    """The connection dropped (or the server went away) before the stream ended."""


class WebSocket:
    def __init__(self, sock: socket.socket, reader: BinaryIO) -> None:
        self._sock = sock
        self._file = reader  # the handshake's reader: it may already hold the first frames

    def close(self) -> None:
        try:
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
        except OSError:
            pass
        self._file.close()
        self._sock.close()

    def messages(self) -> Iterator[Any]:
        """Decoded JSON text messages until the server closes the connection normally.

        Raises ``StreamClosed`` if the connection drops without a close frame.
        """
        while True:
            message = self._receive()
            if message is None:
                return
            yield json.loads(message)

    def _receive(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame()
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                return None
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                parts.append(payload)
                if fin:
                    return b"".join(parts)

    def _read(self, n: int) -> bytes:
        try:
            data = self._file.read(n)
        except OSError as exc:
            raise StreamClosed(str(exc) or type(exc).__name__) from exc
        if len(data) < n:
            raise StreamClosed("the connection was closed mid-stream")
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        if length > MAX_MESSAGE_BYTES:
            raise StreamClosed("message too large")
        mask = self._read(4) if second & 0x80 else b""
        payload = self._read(length) if length else b""
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _send(self, opcode: int, payload: bytes) -> None:
        """Client frames must be masked (RFC 6455 §5.3)."""
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)


def connect(
    base_url: str,
    path: str,
    *,
    params: Mapping[str, Any],
    headers: Mapping[str, str],
    timeout: float,
) -> WebSocket:
    """Open a WebSocket to ``base_url`` + ``path``.

    Raises ``StreamClosed`` when the server cannot be reached (worth retrying), or the
    ``RgridError`` the server answered with instead of accepting (not worth retrying).
    """
    parts = urlsplit(base_url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or "127.0.0.1"
    try:
        sock = connect_socket(host, port, timeout)
        if secure:
            import ssl  # only for a wss:// grid: 3 ms of imports every other run is spared

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except OSError as exc:
        raise StreamClosed(str(exc) or type(exc).__name__) from exc
    key = _base64(os.urandom(16))
    target = f"{parts.path.rstrip('/')}{path}?{urlencode(params)}"
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, response_headers, reader = _read_response_head(sock)
    except OSError as exc:
        sock.close()
        raise StreamClosed(str(exc) or type(exc).__name__) from exc
    if status in (502, 503, 504):
        sock.close()
        raise StreamClosed(f"the grid answered HTTP {status}")
    if status != 101:
        body = _read_body(reader, response_headers)
        sock.close()
        raise _http_error(status, body)
    accept = _base64(sha1(key.encode() + GUID).digest())
    if response_headers.get("sec-websocket-accept") != accept:
        sock.close()
        raise StreamClosed("the server's WebSocket handshake is invalid")
    sock.settimeout(None)
    return WebSocket(sock, reader)


def _read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], BinaryIO]:
    reader = sock.makefile("rb")
    status_line = reader.readline(65536).decode("latin-1")
    if not status_line:
        raise StreamClosed("the server closed the connection during the handshake")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while line := reader.readline(65536).decode("latin-1").strip():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader


def _read_body(reader: BinaryIO, headers: Mapping[str, str]) -> bytes:
    length = int(headers.get("content-length", "0") or 0)
    try:
        return bytes(reader.read(length)) if length else b""
    except OSError:
        return b""


def _http_error(status: int, body: bytes) -> errors.RgridError:
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    return errors.from_body(status, decoded)


def _base64(data: bytes) -> str:
    """``base64.b64encode`` without importing base64 (and struct) for two short strings."""
    return binascii.b2a_base64(data, newline=False).decode()
