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


async def get_principal(connection: HTTPConnection, grid: GridDep) -> domain.Principal:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else None
    return await account_service.authenticate(grid, key)


CurrentPrincipal = Annotated[domain.Principal, Depends(get_principal)]
