"""Acceptance: environment builds are sandboxed like scripts, and direct references are refused
(SPEC §14, issue 13 item 1).

The malicious package (``tests.build_probe``) is served to the grid through ``RGRID_FIND_LINKS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, new_account, run_id, status_of
from tests.acceptance.test_dependencies import builds
from tests.build_probe import PROBE, VERSION, make_sdist
from tests.conftest import Cli, LiveServer, make_server, require_tool

from rgrid import digests
from rgrid.envs.build import PASSED_SETTINGS

ADMIN_KEY = "rg_acceptance-admin-key-that-a-build-must-not-see"


def of_tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its content (symlinks by their target)."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_symlink():
                found[str(path.relative_to(root))] = f"-> {os.readlink(path)}"
            else:
                digest = digests.of_bytes(path.read_bytes())
                found[str(path.relative_to(root))] = digest
    return found


#: what every build is given with a fixed value of its own (the grid's may equal it: `make test`
#: exports UV_PYTHON_DOWNLOADS=never)
BUILDS_OWN = {"PATH", "LANG", "NO_COLOR", "UV_NO_CONFIG", "UV_PYTHON_DOWNLOADS"}


def env_dirs(server: LiveServer) -> set[str]:
    return {p.name for p in (server.home / "envs").iterdir() if p.name != "locks"}


@pytest.fixture
def find_links_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A grid of its own, with a find-links directory and an admin key in its environment."""
    require_tool("bwrap")
    wheels = tmp_path / "find-links"
    wheels.mkdir()
    server = make_server(tmp_path, RGRID_FIND_LINKS=str(wheels), RGRID_ADMIN_KEY=ADMIN_KEY)
    server.start()
    yield server
    server.stop()


def test_a_malicious_build_backend_sees_nothing_of_the_grid(
    find_links_server: LiveServer, workdir: Path
) -> None:
    server = find_links_server
    cli = Cli(cwd=workdir, env=server.cli_env(ADMIN_KEY))
    # another execution's environment, which the build will try to write into
    (workdir / "plain.py").write_text("# /// script\n# dependencies = []\n# ///\nprint('plain')\n")
    assert cli("run", "plain.py").returncode == 0
    other_envs = [server.home / "envs" / name for name in env_dirs(server)]
    assert len(other_envs) == 1
    other_before = of_tree(other_envs[0])
    secret_before = (server.home / "secret.key").read_bytes()
    loopback = [("127.0.0.1", server.port), ("127.0.0.1", 5432)]  # the grid, PostgreSQL
    make_sdist(Path(server.env["RGRID_FIND_LINKS"]), server.home, other_envs, loopback)

    (workdir / "probe.py").write_text(
        f"# /// script\n# dependencies = ['rgrid-build-probe=={VERSION}']\n# ///\n"
        f"import {PROBE}\nprint({PROBE}.SEEN)\n"
    )
    result = cli("run", "probe.py", timeout=300)

    # the build succeeds (the backend swallows its failures) and reports what it saw
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    status = status_of(cli, run_id(result))
    assert status["packages"] == [f"rgrid-build-probe=={VERSION}"]
    # none of the grid's files: its home holds only the path down to the build directory
    assert seen["secret_key"] == seen["admin_key"] == seen["database"] == "denied: ENOENT"
    assert seen["home_listing"] == ["envs"]
    assert len(seen["envs_listing"]) == 1 and seen["envs_listing"][0].startswith(".build-")
    # nothing written outside the build directory: the build runs as an unprivileged user (the
    # directories above its own are not its to write: EACCES), the system is read-only (EROFS)
    # and /tmp a private tmpfs; the host itself is checked below
    assert seen["marker"] == seen["envs_marker"]
    assert seen["marker"] in ("denied: EACCES", "denied: EROFS"), seen["marker"]
    assert seen["other_envs"] == ["denied: ENOENT"]
    # an unprivileged user, and network on is the internet only: the host's services refuse
    assert seen["uid"] != 0
    assert seen["connections"] == ["denied: ECONNREFUSED"] * 2, seen["connections"]
    # none of the grid's variables: only what the build is given, with values of its own
    environ = seen["environ"]
    assert not [name for name in environ if name.startswith("RGRID_")]
    assert ADMIN_KEY not in json.dumps(seen)
    leaked = {
        name
        for name, value in environ.items()
        if server.env.get(name) == value and name not in PASSED_SETTINGS | BUILDS_OWN
    }
    assert leaked == set()
    assert environ["HOME"] != server.env["HOME"] and ".build-" in environ["HOME"]
    # and on the host, afterwards: nothing was changed where the build was not allowed to write
    assert not list(server.home.rglob("pwned*"))
    assert of_tree(other_envs[0]) == other_before
    assert (server.home / "secret.key").read_bytes() == secret_before
    assert len(env_dirs(server)) == 2  # the other environment and the new one, no leftovers


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A grid of its own: on the shared one, another test's build may end mid-test and change
    the environments this test compares."""
    server = make_server(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_direct_reference_to_a_work_directory_is_refused_at_submit(
    quiet_server: LiveServer, workdir: Path
) -> None:
    server = quiet_server
    _, key = new_account(Cli(cwd=workdir, env=server.cli_env()))
    cli = Cli(cwd=workdir, env=server.cli_env(key))
    evil = server.home / "work" / "exec_0123456789abcdef" / "evil"
    (workdir / "s.py").write_text("print('never')\n")
    envs_before, builds_before = env_dirs(server), builds(server)
    spellings = [
        f"evil @ file://{evil}",
        f"evil@FILE://{evil}",
        f"evil\t@\tfile:{evil}",
        f"evil @ file://localhost{evil}",
        str(evil),
        f"file://{evil}",
    ]
    for n, line in enumerate(spellings):
        (workdir / f"r{n}.txt").write_text(f"six\n{line}\n")
        result = cli("run", "--requirements", f"r{n}.txt", "s.py")
        assert result.returncode == 1, (line, result.stderr)
        assert result.stderr.startswith("error: requirement") and "local path" in result.stderr
    # the grid refuses it too, for a client that does not check
    response = httpx.post(
        f"{server.url}/api/v1/executions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "script": "s.py",
            "files": [{"path": "s.py", "digest": "blake3:" + "0" * 64, "size": 15}],
            "requirements": [f"evil @ file://{evil}"],
        },
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "local path" in response.json()["error"]["message"]
    # nothing was submitted and nothing built
    assert json_of(cli("list", "--json"))["data"] == []
    assert env_dirs(server) == envs_before and builds(server) == builds_before
