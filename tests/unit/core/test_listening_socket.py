"""The server's listening socket (``rgrid.api.processes.bind``): connections accepted on it
have Nagle's algorithm off, and a shared one lets the server's processes all listen."""

from __future__ import annotations

import asyncio
import socket

import pytest

from rgrid.api.processes import bind


async def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted_socket = writer.get_extra_info("socket")
        seen.set_result(accepted_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()


@pytest.mark.parametrize("shared", [False, True])
async def test_accepted_connections_send_at_once(shared: bool) -> None:
    """A kept-alive connection with Nagle's algorithm on waited 40 ms for each answer's
    second write (the client's delayed ACK): asyncio turns it off only on a socket whose
    protocol number says TCP."""
    assert await _nodelay_of_an_accepted_connection(bind("127.0.0.1", 0, shared=shared))


def test_the_processes_of_a_server_bind_one_port_and_others_cannot() -> None:
    first = bind("127.0.0.1", 0, shared=True)
    port = first.getsockname()[1]
    with first, bind("127.0.0.1", port, shared=True) as second:
        first.listen()
        second.listen()
        with pytest.raises(OSError, match="in use"):
            bind("127.0.0.1", port, shared=False)


def test_a_host_name_binds_ipv4_and_an_address_with_colons_ipv6() -> None:
    """As uvicorn binds: ``localhost`` is 127.0.0.1 even where it resolves to ::1 first (a
    server there would not answer clients of 127.0.0.1)."""
    with bind("localhost", 0, shared=False) as v4, bind("::1", 0, shared=False) as v6:
        assert v4.getsockname()[0] == "127.0.0.1"
        assert v6.family == socket.AF_INET6
