"""The one place errors become HTTP responses (SPEC §13 envelope)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rgrid import errors, schemas

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}


#: declared on every operation: any 4xx answer has the SPEC §13 envelope
RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": schemas.ErrorBody, "description": "The request was refused (see error.code)"}
}

#: WebSocket close codes (RFC 6455 §7.4.1) for errors after the handshake
POLICY_VIOLATION, INTERNAL_ERROR = 1008, 1011


def response(exc: errors.RgridError) -> JSONResponse:
    """The SPEC §13 envelope of ``exc`` with its status (also used by the ASGI middleware)."""
    if exc.status >= 500:
        logger.error("request failed: %s", exc, extra={"action": "request_failed"})
    return JSONResponse(exc.to_body(), status_code=exc.status)


def close_code(exc: errors.RgridError) -> int:
    """How an open WebSocket ends on ``exc``: a client error is a policy violation."""
    return POLICY_VIOLATION if exc.status < 500 else INTERNAL_ERROR


async def _rgrid_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.RgridError)
    return response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    message = f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}"
    error = errors.InvalidRequest(message, details={"errors": problems})
    return JSONResponse(error.to_body(), status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not decode (not UTF-8, nested too deeply):
        # the same VALIDATION_ERROR (422) as any other invalid body
        return response(errors.InvalidRequest(f"the request body is not valid: {exc.detail}"))
    default = "INTERNAL" if exc.status_code >= 500 else "VALIDATION_ERROR"
    code = _HTTP_CODES.get(exc.status_code, default)
    body = {"error": {"code": code, "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc, extra={"action": "internal_error"})
    return JSONResponse(errors.RgridError("internal error").to_body(), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.RgridError, _rgrid_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
