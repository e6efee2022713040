"""Acceptance: what a hostile tenant probed (issue 13) is refused with a 4xx naming the limit,
and the other accounts keep being served.

Every request goes over HTTP to a real server; assertions are on status, error ``code`` and
what another account sees."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.conftest import new_account, run_id
from tests.conftest import Cli, LiveServer, make_server, read_http_answer

from rgrid import bounds, digests

MiB = 1024**2


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return dict(error)


def _upload(server: LiveServer, key: str, content: bytes) -> str:
    sha = digests.of_bytes(content)
    response = httpx.put(f"{server.url}/api/v1/blobs/{sha}", content=content, headers=_auth(key))
    assert response.status_code == 201, response.text
    return sha


def _submit_body(server: LiveServer, key: str, **fields: Any) -> dict[str, Any]:
    """A valid submit of an uploaded one-line script, with ``fields`` added or replaced."""
    script = b"print('hi')\n"
    sha = _upload(server, key, script)
    body = {"script": "s.py", "files": [{"path": "s.py", "digest": sha, "size": len(script)}]}
    return {**body, **fields}


@pytest.fixture
def key(live_server: LiveServer, cli: Cli) -> str:
    """The API key of a fresh account."""
    return new_account(cli)[1]


def _served_meanwhile(server: LiveServer, key: str, action: Any) -> tuple[Any, float]:
    """Run ``action`` while another account polls ``/api/v1/me``: its result, and the
    slowest answer the other account got meanwhile."""
    slowest = 0.0
    done = threading.Event()

    def poll() -> None:
        nonlocal slowest
        with httpx.Client(base_url=server.url, headers=_auth(key), timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                assert client.get("/api/v1/me").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = action()
    finally:
        done.set()
        poller.join()
    return result, slowest


# 7. Bounds on request size and metadata -------------------------------------------------------


def _raw_request(port: int, head: str, chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Send ``head`` then ``chunks`` until the server answers: its status, its body, and how
    many body bytes were sent before the answer came."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.settimeout(30)
                sock.sendall(chunk)
                sent += len(chunk)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(30)
        status, body = read_http_answer(sock, answer)
    return status, body, sent


def test_a_declared_oversized_body_is_refused_before_it_is_read(
    live_server: LiveServer, key: str
) -> None:
    head = (
        "POST /api/v1/executions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 400000000\r\n\r\n"
    )
    status, body, sent = _raw_request(live_server.port, head, [b"{" * 65536] * 64)

    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert f"{bounds.MAX_BODY_BYTES:,} bytes" in error["message"]
    assert sent < bounds.MAX_BODY_BYTES  # answered without waiting for the body


def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    live_server: LiveServer, key: str
) -> None:
    head = (
        "POST /api/v1/blobs/missing HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (MiB, b" " * MiB)
    status, body, sent = _raw_request(live_server.port, head, [chunk] * 64)

    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # the server stopped reading soon after the limit (the socket buffers hold a little more)
    assert sent < bounds.MAX_BODY_BYTES + 16 * MiB


def test_blob_uploads_are_not_bound_by_the_body_limit(live_server: LiveServer, key: str) -> None:
    content = b"x" * (bounds.MAX_BODY_BYTES + MiB)
    sha = digests.of_bytes(content)
    response = httpx.put(
        f"{live_server.url}/api/v1/blobs/{sha}", content=content, headers=_auth(key), timeout=60
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"digest": sha, "size": len(content)}


def test_too_much_metadata_is_refused_quickly_and_others_are_served(
    live_server: LiveServer, key: str, cli: Cli
) -> None:
    other_key = new_account(cli)[1]
    body = _submit_body(live_server, key, metadata={f"k{i}": "v" * 8 for i in range(200_000)})

    def submit() -> httpx.Response:
        return httpx.post(
            f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key), timeout=60
        )

    response, slowest = _served_meanwhile(live_server, other_key, submit)

    error = _error(response, 422, "VALIDATION_ERROR")
    assert f"at most {bounds.MAX_METADATA_ENTRIES} metadata entries" in error["message"]
    assert slowest < 2.0, slowest


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"k" * (bounds.MAX_METADATA_KEY_CHARS + 1): "v"}, "MAX_METADATA_KEY_CHARS"),
        ({"k": "v" * (bounds.MAX_METADATA_VALUE_CHARS + 1)}, "MAX_METADATA_VALUE_CHARS"),
        ({"k\x1b[31m": "v"}, "MAX_METADATA_KEY_CHARS"),
        ({"k": "a\x00b"}, "MAX_METADATA_VALUE_CHARS"),
    ],
)
def test_metadata_keys_and_values_are_bounded(
    live_server: LiveServer, key: str, metadata: dict[str, str], named: str
) -> None:
    body = _submit_body(live_server, key, metadata=metadata)
    response = httpx.post(f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key))
    assert _error(response, 422, "VALIDATION_ERROR")["details"]["limit"] == named


def test_metadata_at_the_limits_is_accepted(live_server: LiveServer, key: str) -> None:
    metadata = {
        f"{i:0{bounds.MAX_METADATA_KEY_CHARS}d}": "v" * bounds.MAX_METADATA_VALUE_CHARS
        for i in range(bounds.MAX_METADATA_ENTRIES)
    }
    body = _submit_body(live_server, key, metadata=metadata)
    response = httpx.post(f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key))
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == metadata


def test_metadata_filters_on_a_listing_are_bounded(live_server: LiveServer, key: str) -> None:
    url = f"{live_server.url}/api/v1/executions"
    for count in (bounds.MAX_METADATA_FILTERS + 1, 2000):
        params = [("metadata", f"k{i}=v") for i in range(count)]
        response = httpx.get(url, params=params, headers=_auth(key))
        error = _error(response, 422, "VALIDATION_ERROR")
        assert error["details"]["limit"] == "MAX_METADATA_FILTERS"
    params = [("metadata", f"k{i}=v") for i in range(bounds.MAX_METADATA_FILTERS)]
    assert httpx.get(url, params=params, headers=_auth(key)).status_code == 200


# 10. 4xx, never 5xx, for out-of-range input -------------------------------------------------


def test_a_time_without_a_timezone_is_refused_and_the_cli_sends_one(
    live_server: LiveServer, key: str, workdir: Path
) -> None:
    response = httpx.get(
        f"{live_server.url}/api/v1/executions", params={"since": "2020-01-01"}, headers=_auth(key)
    )
    assert "timezone" in _error(response, 422, "VALIDATION_ERROR")["message"]
    user = Cli(cwd=workdir, env=live_server.cli_env(key))
    result = user("list", "--since", "2020-01-01", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 0


@pytest.mark.parametrize(
    "params",
    [{"after": str(2**64)}, {"attempt": str(2**70)}, {"after": "9" * 5000}],
)
def test_huge_log_positions_are_refused(
    live_server: LiveServer, key: str, params: dict[str, str]
) -> None:
    body = _submit_body(live_server, key)
    created = httpx.post(f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key))
    assert created.status_code == 201, created.text
    url = f"{live_server.url}/api/v1/executions/{created.json()['id']}/logs"
    _error(httpx.get(url, params=params, headers=_auth(key)), 422, "VALIDATION_ERROR")
    stream = f"{url}/stream".replace("http://", "ws://")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    if "after" in params:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{stream}?after={params['after']}", additional_headers=_auth(key))
        assert refused.value.response.status_code == 422


def test_a_file_size_over_int64_is_refused(live_server: LiveServer, key: str) -> None:
    body = _submit_body(live_server, key)
    body["files"][0]["size"] = 2**70
    response = httpx.post(f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key))
    assert "less than or equal to" in _error(response, 422, "VALIDATION_ERROR")["message"]


@pytest.mark.parametrize("amount", ["1e30", "1e999999", "9" * 5000, "-1", "NaN", "0.0000001"])
def test_absurd_spending_limits_are_refused_and_the_connection_is_kept(
    live_server: LiveServer, key: str, amount: str
) -> None:
    with httpx.Client(base_url=live_server.url, headers=_auth(key)) as client:
        response = client.put("/api/v1/cost/limit", json={"amount": amount})
        _error(response, 422, "VALIDATION_ERROR")
        assert response.headers.get("connection") != "close"
        assert client.get("/api/v1/me").status_code == 200


def test_the_cli_refuses_an_absurd_spending_limit(
    live_server: LiveServer, key: str, workdir: Path
) -> None:
    user = Cli(cwd=workdir, env=live_server.cli_env(key))
    result = user("cost", "limit", "set", "1e30")
    assert result.returncode == 1
    assert result.stderr.startswith("error: a spending limit is at most"), result.stderr


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b'{"script": "\xff\xfe"}', "application/json"), (b"[" * 100_000, "application/json")],
)
def test_a_body_that_cannot_be_decoded_is_a_validation_error(
    live_server: LiveServer, key: str, content: bytes, content_type: str
) -> None:
    response = httpx.post(
        f"{live_server.url}/api/v1/executions",
        content=content,
        headers={**_auth(key), "Content-Type": content_type},
    )
    _error(response, 422, "VALIDATION_ERROR")


def test_huge_blob_offsets_are_refused(live_server: LiveServer, key: str) -> None:
    sha = "blake3:" + "0" * 64
    for headers in ({"x-rgrid-offset": str(2**70)}, {"x-rgrid-offset": "-1"}):
        response = httpx.put(
            f"{live_server.url}/api/v1/blobs/{sha}", content=b"x", headers={**_auth(key), **headers}
        )
        _error(response, 422, "VALIDATION_ERROR")


# 11. --env values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"A": "x\x00y"}, "ENV_NO_NUL"),
        ({"A\x00B": "x"}, "ENV_NAME"),
        ({"A=B": "x"}, "ENV_NAME"),
        ({"A": "x" * (10 * MiB)}, "MAX_ENV_VALUE_BYTES"),
        ({"A": "x" * (bounds.MAX_ENV_VALUE_BYTES + 1)}, "MAX_ENV_VALUE_BYTES"),
        ({f"V{i}": "x" * 30_000 for i in range(10)}, "MAX_ENV_TOTAL_BYTES"),
    ],
)
def test_bad_env_is_refused_at_submit(
    live_server: LiveServer, key: str, env: dict[str, str], named: str
) -> None:
    body = _submit_body(live_server, key, env=env)
    response = httpx.post(
        f"{live_server.url}/api/v1/executions", json=body, headers=_auth(key), timeout=60
    )
    assert _error(response, 422, "VALIDATION_ERROR")["details"]["limit"] == named
    listed = httpx.get(f"{live_server.url}/api/v1/executions", headers=_auth(key)).json()
    assert listed["count"] == 0


def test_the_cli_refuses_a_too_long_env_value_before_uploading(
    live_server: LiveServer, key: str, workdir: Path
) -> None:
    script = "print('never runs')\n"
    (workdir / "s.py").write_text(script)
    user = Cli(
        cwd=workdir, env=live_server.cli_env(key, BIG="x" * (bounds.MAX_ENV_VALUE_BYTES + 1))
    )

    result = user("run", "--env", "BIG", "s.py")

    assert result.returncode == 1
    assert "MAX_ENV_VALUE_BYTES" not in result.stderr  # the message is for people
    assert result.stderr.startswith("error: the value of BIG is"), result.stderr
    missing = httpx.post(
        f"{live_server.url}/api/v1/blobs/missing",
        json={"digests": [digests.of_bytes(script.encode())]},
        headers=_auth(key),
    )
    assert missing.json()["missing"] != []  # nothing was uploaded


# 13. Names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil\x00", "red\x1b[31mtext", "del\x7f", "c1\x9b2J"])
def test_control_characters_in_account_and_key_names_are_refused(
    live_server: LiveServer, key: str, name: str
) -> None:
    admin = _auth(live_server.admin_key)
    account = httpx.post(f"{live_server.url}/api/v1/accounts", json={"name": name}, headers=admin)
    assert _error(account, 422, "VALIDATION_ERROR")["details"]["limit"] == "NO_CONTROL_CHARACTERS"
    created = httpx.post(f"{live_server.url}/api/v1/keys", json={"name": name}, headers=_auth(key))
    _error(created, 422, "VALIDATION_ERROR")
    fine = httpx.post(f"{live_server.url}/api/v1/keys", json={"name": "ok é"}, headers=_auth(key))
    assert fine.status_code == 201, fine.text


# 9. Revoking a key ends its live streams -----------------------------------------------------


def test_revoking_a_key_closes_its_open_log_stream(
    live_server: LiveServer, key: str, workdir: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    (workdir / "tick.py").write_text(
        "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)\n"
    )
    user = Cli(cwd=workdir, env=live_server.cli_env(key))
    result = user("run", "--detach", "tick.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)
    second = httpx.post(f"{live_server.url}/api/v1/keys", json={"name": "ci"}, headers=_auth(key))
    assert second.status_code == 201, second.text
    follower_key, key_id = second.json()["key"], second.json()["info"]["id"]
    url = f"ws://127.0.0.1:{live_server.port}/api/v1/executions/{execution_id}/logs/stream"
    try:
        with connect(url, additional_headers=_auth(follower_key), open_timeout=10) as stream:
            assert json.loads(stream.recv(timeout=30))["data"]  # lines are flowing
            revoked = httpx.post(
                f"{live_server.url}/api/v1/keys/{key_id}/revoke", headers=_auth(key)
            )
            assert revoked.status_code == 200, revoked.text
            at = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    stream.recv(timeout=10)
            assert time.monotonic() - at < 3.0
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008  # policy violation
        assert "revoked" in closed.value.rcvd.reason
        again = httpx.get(f"{live_server.url}/api/v1/me", headers=_auth(follower_key))
        _error(again, 401, "UNAUTHORIZED")
    finally:
        httpx.post(f"{live_server.url}/api/v1/executions/{execution_id}/cancel", headers=_auth(key))


# 15. /metrics --------------------------------------------------------------------------------


def test_metrics_need_an_admin_key(live_server: LiveServer, key: str) -> None:
    url = f"{live_server.url}/metrics"
    _error(httpx.get(url), 401, "UNAUTHORIZED")
    _error(httpx.get(url, headers=_auth(key)), 403, "FORBIDDEN")
    response = httpx.get(url, headers=_auth(live_server.admin_key))
    assert response.status_code == 200
    assert "rgrid_executions" in response.text


def test_metrics_answer_a_separate_token(tmp_path: Path) -> None:
    server = make_server(tmp_path, RGRID_METRICS_TOKEN="scrape-me-" + "x" * 30)
    server.start()
    try:
        url = f"{server.url}/metrics"
        assert httpx.get(url, headers=_auth("scrape-me-" + "x" * 30)).status_code == 200
        _error(httpx.get(url, headers=_auth("scrape-me-wrong")), 401, "UNAUTHORIZED")
        assert httpx.get(url, headers=_auth(server.admin_key)).status_code == 200
    finally:
        server.stop()
