"""A small HTTP/1.1 transport on sockets: keep-alive, streamed bodies both ways, timeouts.

The CLI starts on every command, so it carries no HTTP stack of its own weight: the standard
library's ``http.client`` alone took 14 ms to import (9 of them ``email.parser``, which it uses
to parse headers), a tenth of a cached ``rgrid run``. What the grid and its storage speak is
small: a request with a JSON body, a file (its length given) or a stream (sent chunked); an
answer framed by ``Content-Length``, by chunks, or by the connection's end. ``ssl`` is imported
only for an ``https://`` grid.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Iterator, Mapping
from typing import IO, Any, BinaryIO, cast
from urllib.parse import urlencode, urlsplit

from rgrid import errors

CHUNK = 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0
#: the longest status line or header line an answer may have, and the most header lines
MAX_LINE = 65536
MAX_HEADERS = 100


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class TransportError(Exception):
    """The connection failed before a complete response arrived."""


class ProtocolError(Exception):
    """The other end's answer is not HTTP/1.1 as this transport reads it."""


class Incoming:
    """An answer whose body is read as it arrives (``read(n)``) or whole (``read()``)."""

    def __init__(self, reader: IO[bytes], method: str) -> None:
        self._reader = reader
        while True:  # an interim 1xx answer (100 Continue) precedes the real one
            version, self.status = _status_line(_line(reader))
            self._headers = _headers(reader)
            if self.status >= 200 or self.status == 101:
                break
        connection = self.getheader("connection", "").lower()
        self.will_close = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        self._chunked = "chunked" in self.getheader("transfer-encoding", "").lower()
        self._chunk_left = 0
        length = self.getheader("content-length")
        self._left: int | None = None  # bytes of the body still to come (None: until the end)
        if method == "HEAD" or self.status in (204, 304) or self.status < 200:
            self._left = 0
        elif length is not None and not self._chunked:  # chunks say where a body ends
            if not length.strip().isdigit():
                raise ProtocolError(f"an invalid Content-Length: {length!r}")
            self._left = int(length)
        elif not self._chunked:
            self.will_close = True  # the body ends with the connection
        self._done = self._left == 0

    def getheader(self, name: str, default: str | None = None) -> Any:
        return self._headers.get(name.lower(), default)

    def isclosed(self) -> bool:
        return self._done

    def read(self, amount: int | None = None) -> bytes:
        """Up to ``amount`` bytes of the body (all of it without), b"" at its end; a body that
        breaks off before its length or its last chunk raises ``ProtocolError``."""
        if self._done:
            return b""
        if amount is None or amount < 0:
            pieces = []
            while piece := self.read(CHUNK):
                pieces.append(piece)
            return b"".join(pieces)
        if self._chunked:
            return self._read_chunked(amount)
        wanted = amount if self._left is None else min(amount, self._left)
        data = self._reader.read(wanted) if wanted else b""
        if self._left is not None:
            self._left -= len(data)
            if not data and self._left:
                self._done = True
                raise ProtocolError(f"the answer broke off with {self._left} bytes to come")
        if not data or self._left == 0:
            self._done = True
        return data

    def _read_chunked(self, amount: int) -> bytes:
        if self._chunk_left == 0:
            size_line = _line(self._reader).split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"an invalid chunk size: {size_line[:20]!r}") from None
            if self._chunk_left == 0:
                _headers(self._reader)  # trailers, up to the empty line
                self._done = True
                return b""
        data = self._reader.read(min(amount, self._chunk_left))
        if not data:
            self._done = True
            raise ProtocolError("the answer broke off within a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._reader.read(2) != b"\r\n":
            raise ProtocolError("a chunk does not end with CRLF")
        return data


def _line(reader: IO[bytes]) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise ProtocolError("the connection closed before an answer")
    if len(line) > MAX_LINE:
        raise ProtocolError("an answer's line is too long")
    return line


def _status_line(line: bytes) -> tuple[str, int]:
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.1 answer: {line[:40]!r}")
    return version, int(code)


def _headers(reader: IO[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"an invalid header line: {line[:40]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise ProtocolError("an answer with too many headers")


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host``. An ASCII name goes to the resolver as bytes: given a str,
    it first loads the IDNA codec (and unicodedata), a millisecond of every command's start."""
    name: Any = host.encode("ascii") if host.isascii() else host  # getaddrinfo takes bytes too
    return socket.create_connection((name, port), timeout=timeout)


class _Connection:
    """One open socket to the grid, and the reader of its answers."""

    def __init__(self, host: str, port: int, https: bool, timeout: float) -> None:
        self.sock = connect(host, port, timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if https:
                import ssl

                self.sock = ssl.create_default_context().wrap_socket(
                    self.sock, server_hostname=host
                )
        except BaseException:
            self.sock.close()
            raise
        self.reader = cast(BinaryIO, self.sock.makefile("rb", buffering=CHUNK))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, head: bytes, body: bytes | IO[bytes] | None, chunked: bool) -> None:
        if isinstance(body, bytes):
            self.sock.sendall(head + body)
            return
        self.sock.sendall(head)
        if body is None:
            return
        while piece := body.read(CHUNK):
            if chunked:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.sock.sendall(piece)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")


class Transport:
    """One keep-alive connection to ``base_url`` (http or https), re-opened when it drops."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        try:
            port = parts.port  # None when not given
        except ValueError:  # not a number from 0 to 65535
            port = 0
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise errors.UsageError(f"invalid grid URL {base_url!r}", hint="e.g. http://host:8765")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        default_port = 443 if self._https else 80
        self._port = port or default_port
        name = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = name if self._port == default_port else f"{name}:{self._port}"
        self._prefix = parts.path.rstrip("/")
        self._conn: _Connection | None = None
        self.headers: dict[str, str] = {"user-agent": "rgrid-cli"}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> _Connection:
        if self._conn is not None and _dropped(self._conn.sock):
            # The server closed this idle keep-alive connection (uvicorn does after 5 s, e.g.
            # while a log follow held the WebSocket): reconnect now rather than fail the request
            # on it and retry with a false "connection lost".
            self.close()
        if self._conn is None:
            self._conn = _Connection(self._host, self._port, self._https, timeout)
        self._conn.sock.settimeout(timeout)
        return self._conn

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return f"{self._prefix}{path}{query}"

    def _head(
        self, method: str, target: str, headers: dict[str, str], body: bytes | IO[bytes] | None
    ) -> tuple[bytes, bool]:
        """The request line and headers, and whether the body goes in chunks."""
        lines = [f"{method} {target} HTTP/1.1", f"host: {self._host_header}"]
        headers.setdefault("accept-encoding", "identity")
        chunked = False
        if isinstance(body, bytes):
            headers["content-length"] = str(len(body))
        elif body is not None and "content-length" not in headers:
            headers["transfer-encoding"] = "chunked"  # a stream whose length is not known
            chunked = True
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), chunked

    @contextlib.contextmanager
    def open(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Iterator[Incoming]:
        """Send a request and yield the response unread (for streaming downloads)."""
        all_headers = {k.lower(): v for k, v in {**self.headers, **(headers or {})}.items()}
        payload: bytes | IO[bytes] | None = body
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            all_headers["content-type"] = "application/json"
        elif body is None and method in ("POST", "PUT"):
            payload = b""
        try:
            conn = self._connection(timeout)
            head, chunked = self._head(method, self._target(path, params), all_headers, payload)
            conn.send(head, payload, chunked)
            response = Incoming(conn.reader, method)
        except (OSError, ProtocolError) as exc:
            self.close()  # a stale keep-alive connection or a dead server: start afresh next time
            raise TransportError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self.close()  # the body's reader failed: the request went out half sent
            raise
        try:
            yield response
            if not response.isclosed():
                response.read()  # leave the connection reusable
        except (TimeoutError, OSError, ProtocolError) as exc:
            self.close()
            raise TransportError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self.close()  # the response may be half read: the connection cannot be reused
            raise
        finally:
            if response.will_close:
                self.close()

    def request(self, method: str, path: str, **kw: Any) -> Response:
        with self.open(method, path, **kw) as response:
            return Response(response.status, response.read())


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle connection was closed by the other end: a socket with nothing to read
    stays unreadable; one that became readable without a request in flight is at its end (or
    holds bytes no request asked for), so it cannot carry the next request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
