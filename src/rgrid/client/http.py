"""A small HTTP/1.1 transport on the standard library: keep-alive, streamed bodies, timeouts.

The CLI starts on every command, so it avoids heavyweight HTTP stacks: ``http.client`` imports in
a few milliseconds and streams file bodies and downloads in chunks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from rgrid import errors

CHUNK = 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class TransportError(Exception):
    """The connection failed before a complete response arrived."""


class Transport:
    """One keep-alive connection to ``base_url`` (http or https), re-opened when it drops."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.UsageError(f"invalid grid URL {base_url!r}", hint="e.g. http://host:8765")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self.headers: dict[str, str] = {"user-agent": "rgrid-cli"}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is not None and self._conn.sock is not None and _dropped(self._conn.sock):
            # The server closed this idle keep-alive connection (uvicorn does after 5 s, e.g.
            # while a log follow held the WebSocket): reconnect now rather than fail the request
            # on it and retry with a false "connection lost".
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout, blocksize=CHUNK)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return f"{self._prefix}{path}{query}"

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
    ) -> Iterator[http.client.HTTPResponse]:
        """Send a request and yield the response unread (for streaming downloads)."""
        all_headers = {**self.headers, **(headers or {})}
        payload: bytes | IO[bytes] | None = body
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            all_headers["content-type"] = "application/json"
        elif body is None and method in ("POST", "PUT"):
            payload = b""
        try:
            conn = self._connection(timeout)
            conn.request(method, self._target(path, params), body=payload, headers=all_headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()  # a stale keep-alive connection or a dead server: start afresh next time
            raise TransportError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self.close()  # the body's reader failed: the request went out half sent
            raise
        try:
            yield response
            if not response.isclosed():
                response.read()  # leave the connection reusable
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
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
