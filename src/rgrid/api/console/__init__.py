"""The web console (SPEC §15): a page shell and its static assets, served by the grid itself.

The pages are plain HTML, CSS and JavaScript shipped in this package (no CDN, no Node
toolchain); they use the same ``/api/v1`` as the CLI, signed in by an HttpOnly session cookie
instead of a bearer key (``rgrid.api.deps``)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from rgrid import domain, errors, schemas
from rgrid.api import convert
from rgrid.api.deps import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_COOKIES,
    CurrentPrincipal,
    GridDep,
    check_same_origin,
    get_principal,
    is_secure,
    session_cookie,
)
from rgrid.services import batches as batch_service
from rgrid.services import consoles, utcnow
from rgrid.services import executions as execution_service

STATIC = resources.files(__name__) / "static"

#: no script, style or connection but this server's own; never framed
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

pages = APIRouter(prefix="/console", include_in_schema=False)
#: signing in and out: JSON, in the OpenAPI document like the rest of the API
sessions = APIRouter(prefix="/console", tags=["console"])
api = APIRouter(prefix="/api/v1/console", tags=["console"])


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(STATIC))


@functools.cache
def _shell_html() -> str:
    return (STATIC / "index.html").read_text()


def _shell(status: int = 200) -> HTMLResponse:
    """The one page every console path is served (its script draws the page the path names)."""
    return HTMLResponse(_shell_html(), status_code=status, headers=SECURITY_HEADERS)


def _set_session(request: Request, response: Response, session: consoles.ConsoleSession) -> None:
    secure = is_secure(request)
    response.set_cookie(
        SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
        session.token,
        max_age=int(consoles.SESSION_TTL.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def _session_public(principal: domain.Principal, csrf: str) -> schemas.ConsoleSessionPublic:
    return schemas.ConsoleSessionPublic(account=convert.account(principal.account), csrf=csrf)


@api.post("/links", status_code=201)
async def make_link(grid: GridDep, principal: CurrentPrincipal) -> schemas.ConsoleLinkPublic:
    """A one-time link that signs a browser in to the console as this key (valid 2 minutes)."""
    expires = utcnow() + consoles.LINK_TTL
    token = await consoles.make_link(grid, principal)
    return schemas.ConsoleLinkPublic(path=f"/console/signin?token={token}", expires_at=expires)


@sessions.post("/session", status_code=201)
async def sign_in(
    body: schemas.ConsoleSignIn, request: Request, response: Response, grid: GridDep
) -> schemas.ConsoleSessionPublic:
    """Exchange an API key for a console session (an HttpOnly cookie) and its CSRF token."""
    check_same_origin(request)
    session = await consoles.sign_in_with_key(grid, body.key)
    _set_session(request, response, session)
    return _session_public(session.principal, session.csrf)


@sessions.get("/session")
async def current_session(request: Request, grid: GridDep) -> schemas.ConsoleSessionPublic:
    """Who the console's session cookie signs in as, and its CSRF token (401: none)."""
    token = session_cookie(request)
    if token is None:
        raise errors.Unauthorized("not signed in to the console", hint="sign in with an API key")
    return _session_public(*await consoles.resume(grid, token))


@sessions.post("/signout", status_code=204)
async def sign_out(grid: GridDep, principal: CurrentPrincipal) -> Response:
    """End the console session (it needs the session's CSRF token)."""
    if principal.session is None:  # signed in by a bearer key: there is no session to end
        raise errors.InvalidRequest("no console session to sign out of")
    await consoles.sign_out(grid, principal.session)
    response = Response(status_code=204)
    for name in SESSION_COOKIES:
        response.delete_cookie(name, path="/", secure=name == SECURE_SESSION_COOKIE)
    return response


@pages.get("/signin")
async def sign_in_by_link(
    request: Request, grid: GridDep, token: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    """Where `rgrid console` sends the browser: the link is used up, the session begins.
    A link followed from another site's page is refused (it could sign a visitor in to the
    sender's account): browsers say where a navigation came from in ``Sec-Fetch-Site``."""
    if request.headers.get("sec-fetch-site", "none") not in ("none", "same-origin"):
        return _shell(403)
    try:
        session = await consoles.sign_in_with_link(grid, token)
    except errors.Unauthorized:
        return _shell(401)  # the page says so and offers signing in with a key
    response = RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)
    _set_session(request, response, session)
    return response


async def _visible(request: Request, grid: GridDep, kind: str, object_id: str) -> bool:
    """Whether the signed-in account may see the object (not signed in: the shell decides)."""
    try:
        principal = await get_principal(request, grid)
    except errors.Unauthorized:
        return True
    try:
        if kind == "executions":
            await execution_service.get(grid, principal, object_id)
        else:
            await batch_service.get_batch(grid, principal, object_id)
    except errors.NotFound:
        return False
    except errors.RgridError:  # e.g. an ambiguous prefix: the page shows what the API says
        return True
    return True


@pages.get("/{kind:str}/{object_id:str}")
async def object_page(kind: str, object_id: str, request: Request, grid: GridDep) -> Response:
    """An execution's or batch's page: 404 for what this account cannot see."""
    if kind not in ("executions", "batches"):
        return _shell(404)
    return _shell(200 if await _visible(request, grid, kind, object_id) else 404)


@pages.get("")
@pages.get("/")
@pages.get("/{page:str}")
async def page(page: str = "") -> Response:
    known = ("", "executions", "cost", "workers", "signin")
    return _shell(200 if page in known else 404)
