"""/api/v1/executions/{id}/logs: pages for polling clients, a WebSocket stream for live ones."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from rgrid import bounds, errors, schemas
from rgrid.api import convert
from rgrid.api import errors as api_errors
from rgrid.api.deps import CurrentPrincipal, GridDep, get_principal, grid_of
from rgrid.services import logs as service
from rgrid.services.logs import LogPage

router = APIRouter(prefix="/api/v1/executions", tags=["logs"])


@router.get("/{execution_id}/logs", response_model=schemas.LogsPublic)
async def read_logs(
    execution_id: str,
    grid: GridDep,
    principal: CurrentPrincipal,
    after: Annotated[int, Query(ge=0, le=bounds.INT32_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LOG_PAGE)] = 1000,
    wait: Annotated[float, Query(ge=0, le=service.MAX_WAIT_S)] = 0.0,
    attempt: Annotated[int | None, Query(ge=1, le=bounds.INT32_MAX)] = None,
    outputs: Annotated[
        bool,
        Query(description="the page that ends the log carries the ended execution and its outputs"),
    ] = False,
) -> Response:
    page = await service.read_logs(
        grid,
        principal,
        execution_id,
        after=after,
        limit=limit,
        wait_s=wait,
        attempt=attempt,
        with_outputs=outputs,
    )
    return Response(_page_json(page, final=outputs and page.done), media_type="application/json")


@router.websocket("/{execution_id}/logs/stream")
async def stream_logs(websocket: WebSocket, execution_id: str) -> None:
    """Relay ``services.logs.open_stream`` as JSON messages: pages of lines, the last with
    ``done``. Errors before the stream starts are answered as HTTP errors (SPEC §13 body)."""
    grid = grid_of(websocket)
    try:
        after = _after(websocket.query_params.get("after", "0"))
        principal = await get_principal(websocket, grid)
        pages = await service.open_stream(grid, principal, execution_id, after=after)
    except errors.RgridError as exc:
        await websocket.send_denial_response(JSONResponse(exc.to_body(), exc.status))
        return
    await websocket.accept()
    try:
        async for page in pages:
            await websocket.send_text(_page_json(page, final=page.done))
        await websocket.close()
    except WebSocketDisconnect:
        return
    except errors.RgridError as exc:  # e.g. the key was revoked meanwhile
        await websocket.close(api_errors.close_code(exc), _reason(exc.message))


def _page_json(page: LogPage, final: bool = False) -> str:
    """``LogsPublic`` as JSON, built directly: pages carry thousands of lines (the lines of a
    segment share one timestamp object, formatted once). ``final``: a stream's last page, with
    the execution and its outputs."""
    data = []
    last_ts: datetime | None = None
    stamp = ""
    for seq, attempt, stream, ts, text in page.lines:
        if ts is not last_ts:
            last_ts, stamp = ts, ts.isoformat()
        data.append({"seq": seq, "attempt": attempt, "stream": stream, "ts": stamp, "text": text})
    body: dict[str, object] = {
        "data": data,
        "last_seq": page.last_seq,
        "state": page.execution.state.value,
        "exit_code": page.execution.exit_code,
        "done": page.done,
    }
    if final:
        body["execution"] = schemas.dump(convert.execution(page.execution))
        outputs = page.outputs
        body["outputs"] = (
            None if outputs is None else schemas.dump([convert.artifact(a) for a in outputs])
        )
    return json.dumps(body)


def _after(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= bounds.INT32_MAX):
        raise errors.InvalidRequest(
            f"after must be an integer from 0 to {bounds.INT32_MAX}", details={"after": raw[:20]}
        )
    return int(raw)


def _reason(message: str) -> str:
    """A close frame's reason: at most 123 bytes of UTF-8 (RFC 6455 §5.5)."""
    return message.encode()[:120].decode(errors="ignore")
