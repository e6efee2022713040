"""Annotated dependencies for route handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from rgrid import domain
from rgrid.services import Grid
from rgrid.services import accounts as account_service


def get_grid(connection: HTTPConnection) -> Grid:
    grid = connection.app.state.grid
    assert isinstance(grid, Grid)
    return grid


GridDep = Annotated[Grid, Depends(get_grid)]


def _bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def get_principal(connection: HTTPConnection, grid: GridDep) -> domain.Principal:
    return await account_service.authenticate(grid, _bearer(connection))


async def check_metrics_access(connection: HTTPConnection, grid: GridDep) -> None:
    await account_service.authorize_metrics(grid, _bearer(connection))


CurrentPrincipal = Annotated[domain.Principal, Depends(get_principal)]
MetricsAccess = Depends(check_metrics_access)
