"""Acceptance: `rgrid init` writes a working profile, `rgrid doctor` reports (issue 2, item 7)."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
from tests.acceptance.conftest import json_of, new_account, run_id
from tests.conftest import RGRID_BIN, Cli, CliResult, LiveServer, make_server, require_tool


def _init(env: dict[str, str], cwd: Path, key: str, *args: str) -> CliResult:
    """``rgrid init`` with the key typed on stdin; a new session so no terminal can be prompted."""
    done = subprocess.run(
        [str(RGRID_BIN), "init", *args],
        cwd=cwd,
        env=env,
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def _profile_env(live_server: LiveServer, home: Path) -> dict[str, str]:
    """The environment of a user with no RGRID_API_URL/RGRID_API_KEY and a fresh HOME."""
    home.mkdir(parents=True, exist_ok=True)
    env = live_server.cli_env(HOME=str(home))
    del env["RGRID_API_URL"], env["RGRID_API_KEY"]
    return env


def test_init_saves_a_private_profile_that_later_commands_use(
    live_server: LiveServer, cli: Cli, workdir: Path, tmp_path: Path
) -> None:
    account_id, key = new_account(cli, "init-user")
    home = tmp_path / "home"
    env = _profile_env(live_server, home)

    result = _init(env, workdir, key, "--api-url", live_server.url)

    assert result.returncode == 0, result.stderr
    assert key not in result.stdout + result.stderr
    assert account_id in result.stderr
    credentials = home / ".rgrid" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) & 0o077 == 0
    parser = configparser.ConfigParser()
    parser.read(credentials)
    assert dict(parser["default"]) == {"api_url": live_server.url, "api_key": key}

    as_user = Cli(cwd=workdir, env=env)
    (workdir / "hello.py").write_text("print('hello via the profile')\n")
    ran = as_user("run", "hello.py")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello via the profile\n"
    assert "started the local grid" not in ran.stderr
    listed = json_of(as_user("list", "--json"))
    assert [e["id"] for e in listed["data"]] == [run_id(ran)]  # the new account's history only


def test_init_with_a_bad_key_writes_nothing(
    live_server: LiveServer, workdir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = _profile_env(live_server, home)

    for bad in ("rg_" + os.urandom(30).hex()[:40], "not-a-key"):
        result = _init(env, workdir, bad, "--api-url", live_server.url)

        assert result.returncode == 1, result.stderr
        assert "error: " in result.stderr and "Traceback" not in result.stderr
        assert "rgrid init" in result.stderr
        assert not (home / ".rgrid" / "credentials").exists()


def test_doctor_reports_sandbox_python_and_grid(cli: Cli, live_server: LiveServer) -> None:
    require_tool("bwrap")

    result = Cli(cli.cwd, {**cli.env, "PATH": "/usr/bin:/bin"})("doctor")  # no uv on PATH

    assert result.returncode == 0, result.stdout + result.stderr
    checks = {line[7:].split()[0]: line for line in result.stdout.splitlines() if line[:1] == "["}
    assert checks["sandbox"].startswith("[ok  ]") and "bubblewrap" in checks["sandbox"]
    assert checks["python"].startswith("[ok  ]") and "3." in checks["python"]
    assert checks["grid"].startswith("[ok  ]") and live_server.url in checks["grid"]
    assert "compression off (the grid is on this machine)" in checks["transfers"]
    # the uv the grid uses (shipped with the server extra), even when none is on PATH
    assert checks["uv"].startswith("[ok  ]") and "/uv" in checks["uv"]
    assert not any(line.startswith("[FAIL]") for line in result.stdout.splitlines())
    forced = Cli(cli.cwd, {**cli.env, "RGRID_COMPRESSION": "always"})("doctor")
    assert "zstd compression on (RGRID_COMPRESSION=always)" in forced.stdout


def test_a_key_revoked_through_one_server_is_refused_by_the_other_within_seconds(
    tmp_path: Path, postgres_url: str
) -> None:
    """A grid process believes a key it authenticated for KEY_CACHE_S (a client's hundreds of
    requests a second are not each a database transaction); the process a key is revoked
    through forgets it at once, every other one within KEY_CACHE_S (docs/decisions.md)."""
    from rgrid.services.keycache import KEY_CACHE_S

    shared = {"RGRID_DATABASE_URL": postgres_url, "RGRID_SECRET_KEY": "x" * 43 + "="}
    servers = [make_server(tmp_path / name, **shared) for name in ("a", "b")]
    servers[0].start()
    admin = servers[0].admin_key
    servers[1].env["RGRID_ADMIN_KEY"] = admin  # the second server joins the first one's grid
    servers[1].start()
    try:
        made = httpx.post(
            f"{servers[0].url}/api/v1/keys",
            json={"name": "soon revoked"},
            headers={"authorization": f"Bearer {admin}"},
        ).json()
        mine = {"authorization": f"Bearer {made['key']}"}
        for server in servers:  # each process now holds it as authenticated
            assert httpx.get(f"{server.url}/api/v1/me", headers=mine).status_code == 200
        revoked = httpx.post(
            f"{servers[0].url}/api/v1/keys/{made['info']['id']}/revoke", headers=mine
        )
        assert revoked.status_code == 200, revoked.text
        assert httpx.get(f"{servers[0].url}/api/v1/me", headers=mine).status_code == 401
        deadline = time.monotonic() + KEY_CACHE_S + 3
        while httpx.get(f"{servers[1].url}/api/v1/me", headers=mine).status_code != 401:
            assert time.monotonic() < deadline, "the other server still accepts a revoked key"
            time.sleep(0.1)
    finally:
        for server in servers:
            server.stop()
