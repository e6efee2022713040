"""Annotated dependencies for route handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from starlette.requests import HTTPConnection

from rgrid import digests, domain, errors
from rgrid.services import Grid, consoles
from rgrid.services import accounts as account_service


def grid_of(connection: HTTPConnection) -> Grid:
    grid = connection.app.state.grid
    assert isinstance(grid, Grid)
    return grid


async def get_grid(connection: HTTPConnection) -> Grid:
    # async although it awaits nothing: FastAPI runs a plain def dependency in a worker
    # thread, a thread hop on every request
    return grid_of(connection)


GridDep = Annotated[Grid, Depends(get_grid)]
#: a content address in a URL path (``blake3:<hex>``, or ``sha256:<hex>`` for older content)
DigestPath = Annotated[str, Path(pattern=f"^{digests.PATTERN}$")]


def _bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


#: the console's session cookie; over HTTPS the ``__Host-`` form (Secure, this host only)
SECURE_SESSION_COOKIE = "__Host-rgrid_session"
SESSION_COOKIE = "rgrid_session"
SESSION_COOKIES = (SECURE_SESSION_COOKIE, SESSION_COOKIE)
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_secure(connection: HTTPConnection) -> bool:
    """Whether the request came over HTTPS (a TLS proxy's ``X-Forwarded-Proto`` counts)."""
    return connection.url.scheme in ("https", "wss")


def session_cookie(connection: HTTPConnection) -> str | None:
    """The session cookie's token. Over HTTPS only the ``__Host-`` cookie counts: a plain one
    may have been planted by a sibling domain or over plain HTTP."""
    names = (SECURE_SESSION_COOKIE,) if is_secure(connection) else SESSION_COOKIES
    return next((connection.cookies[n] for n in names if n in connection.cookies), None)


def check_same_origin(connection: HTTPConnection) -> None:
    """A browser names the page that sent a request in ``Origin``: a console request (cookie
    auth) from another site is refused, as is a WebSocket opened by another site's page."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    host = connection.headers.get("host", "")
    if origin.partition("://")[2] != host:
        raise errors.Forbidden("a console request from another site is refused")


async def get_principal(connection: HTTPConnection, grid: GridDep) -> domain.Principal:
    """A bearer API key (the CLI), else the console's session cookie: then a request that
    changes something must come from this site and carry the session's CSRF token."""
    bearer = _bearer(connection)
    cookie = session_cookie(connection) if bearer is None else None
    if cookie is None:
        return await account_service.authenticate(grid, bearer)
    principal, csrf = await consoles.resume(grid, cookie)
    websocket = connection.scope["type"] == "websocket"
    if websocket or connection.scope["method"] not in _SAFE_METHODS:
        check_same_origin(connection)
        if not websocket:
            consoles.check_csrf(csrf, connection.headers.get(CSRF_HEADER))
    return principal


async def check_metrics_access(connection: HTTPConnection, grid: GridDep) -> None:
    await account_service.authorize_metrics(grid, _bearer(connection))


CurrentPrincipal = Annotated[domain.Principal, Depends(get_principal)]
MetricsAccess = Depends(check_metrics_access)
