"""A cap on request bodies, enforced before any route reads one (SPEC §14).

A pure ASGI middleware: a declared ``Content-Length`` over the cap is refused before a byte of
the body is read, and a body without one (chunked) is counted as it arrives and refused as soon
as it passes the cap, so the server never holds more than the cap of one request. Blob uploads
are exempt: they stream to storage in chunks and are bounded there (SPEC §5).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rgrid import errors
from rgrid.api import errors as api_errors

#: ``PUT /api/v1/blobs/{digest}`` and a node's ``PUT /api/v1/attempt/outputs/{digest}``:
#: streamed to storage, never buffered
BLOB_UPLOAD = re.compile(r"/api/v1/(blobs|attempt/outputs)/[^/]+")


def is_streamed(method: str, path: str) -> bool:
    return method == "PUT" and BLOB_UPLOAD.fullmatch(path) is not None


class BodyLimit:
    """Answer 413 ``PAYLOAD_TOO_LARGE`` naming the limit for bodies over ``max_bytes``."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        exempt: Callable[[str, str], bool] = is_streamed,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        # Read the body here (at most the cap), then hand it on as one message: routes that
        # take a JSON body read it whole anyway.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)  # a disconnect
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        error = errors.PayloadTooLarge(
            f"the request body is over the limit of {limit:,} bytes",
            hint="files go through blob uploads; the grid's limit is RGRID_MAX_BODY_BYTES",
            details={"limit": "MAX_BODY_BYTES", "max_bytes": limit},
        )
        response = api_errors.response(error)
        # the rest of the body is not read: close the connection rather than reuse it
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` that gives ``first`` once, then the real messages (a later disconnect)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
