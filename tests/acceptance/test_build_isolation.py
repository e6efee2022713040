"""Acceptance: environment builds are sandboxed like scripts, and direct references are refused
(SPEC §14, issue 13 item 1).

The malicious package is an sdist made here, served to the grid through ``RGRID_FIND_LINKS``:
its build backend (in-tree, ``backend-path``) runs whatever it likes while uv builds the wheel.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, run_id, status_of
from tests.acceptance.test_dependencies import builds
from tests.conftest import Cli, LiveServer, make_server, require_tool

from rgrid.envs.build import PASSED_SETTINGS

ADMIN_KEY = "rg_acceptance-admin-key-that-a-build-must-not-see"
PROBE = "rgrid_build_probe"
VERSION = "0.0.1"

#: the in-tree build backend: it tries everything, records what happened, and still builds a
#: wheel whose module holds the record (so the script can print it)
BACKEND = """
import base64, errno, hashlib, json, os, zipfile

GRID_HOME = {home!r}
OTHER_ENVS = {other_envs!r}
NAME, VERSION = {name!r}, {version!r}


def attempt(action):
    try:
        return action()
    except OSError as exc:
        return "denied: " + errno.errorcode.get(exc.errno, str(exc.errno))


def write(path):
    with open(path, "a") as handle:
        handle.write("written by a build backend\\n")
    return "written"


def observe():
    join = os.path.join
    return {{
        "secret_key": attempt(lambda: open(join(GRID_HOME, "secret.key")).read()),
        "admin_key": attempt(lambda: open(join(GRID_HOME, "admin.key")).read()),
        "database": attempt(lambda: len(open(join(GRID_HOME, "rgrid.db"), "rb").read())),
        "home_listing": attempt(lambda: sorted(os.listdir(GRID_HOME))),
        "envs_listing": attempt(lambda: sorted(os.listdir(join(GRID_HOME, "envs")))),
        "environ": dict(os.environ),
        "marker": attempt(lambda: write(join(GRID_HOME, "pwned-by-build"))),
        "envs_marker": attempt(lambda: write(join(GRID_HOME, "envs", "pwned-by-build"))),
        "other_envs": [
            attempt(lambda: write(join(env, "pyvenv.cfg"))) for env in OTHER_ENVS
        ],
        "user_uv_cache": attempt(lambda: write(os.path.expanduser("~root/.cache/uv/pwned"))),
    }}


def _record(files):
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        lines.append("%s,sha256=%s,%d" % (path, digest.decode(), len(data)))
    return "\\n".join(lines + ["%s-%s.dist-info/RECORD,," % (NAME, VERSION)]) + "\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "%s-%s.dist-info" % (NAME, VERSION)
    files = {{
        NAME + "/__init__.py": ("SEEN = %r\\n" % json.dumps(observe())).encode(),
        info + "/METADATA": (
            "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
        ).encode(),
        info + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: probe\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n",
    }}
    files[info + "/RECORD"] = _record(files).encode()
    wheel = "%s-%s-py3-none-any.whl" % (NAME, VERSION)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
"""

PYPROJECT = """
[build-system]
requires = []
build-backend = "probe_backend"
backend-path = ["."]
"""


def make_sdist(directory: Path, grid_home: Path, other_envs: list[Path]) -> Path:
    """The malicious sdist, written into ``directory`` (the grid's find-links directory)."""
    root = f"{PROBE}-{VERSION}"
    backend = BACKEND.format(
        home=str(grid_home),
        other_envs=[str(p) for p in other_envs],
        name=PROBE,
        version=VERSION,
    )
    members = {
        "pyproject.toml": PYPROJECT,
        "probe_backend.py": backend,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: {VERSION}\n",
    }
    path = directory / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its content (symlinks by their target)."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_symlink():
                found[str(path.relative_to(root))] = f"-> {os.readlink(path)}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path.relative_to(root))] = digest
    return found


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
    other_before = tree_digest(other_envs[0])
    secret_before = (server.home / "secret.key").read_bytes()
    make_sdist(Path(server.env["RGRID_FIND_LINKS"]), server.home, other_envs)

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
    # nothing written outside the build directory: the system is read-only and /tmp a private
    # tmpfs (a grid home under /tmp, like this test's, is then only a throwaway copy of its path)
    private = "written" if server.home.is_relative_to("/tmp") else "denied: EROFS"
    assert seen["marker"] == seen["envs_marker"] == private
    assert seen["other_envs"] == ["denied: ENOENT"]
    assert seen["user_uv_cache"].startswith("denied: ")
    # none of the grid's variables: only what the build is given, with values of its own
    environ = seen["environ"]
    assert not [name for name in environ if name.startswith("RGRID_")]
    assert ADMIN_KEY not in json.dumps(seen)
    leaked = {
        name
        for name, value in environ.items()
        if server.env.get(name) == value and name not in PASSED_SETTINGS | {"LANG"}
    }
    assert leaked == set()
    assert environ["HOME"] != server.env["HOME"] and ".build-" in environ["HOME"]
    # and on the host, afterwards: nothing was changed where the build was not allowed to write
    assert not list(server.home.rglob("pwned*"))
    assert tree_digest(other_envs[0]) == other_before
    assert (server.home / "secret.key").read_bytes() == secret_before
    assert len(env_dirs(server)) == 2  # the other environment and the new one, no leftovers


def test_a_direct_reference_to_a_work_directory_is_refused_at_submit(
    live_server: LiveServer, account_cli: Cli, workdir: Path
) -> None:
    evil = live_server.home / "work" / "exec_0123456789abcdef" / "evil"
    (workdir / "s.py").write_text("print('never')\n")
    envs_before, builds_before = env_dirs(live_server), builds(live_server)
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
        result = account_cli("run", "s.py", "--requirements", f"r{n}.txt")
        assert result.returncode == 1, (line, result.stderr)
        assert result.stderr.startswith("error: requirement") and "local path" in result.stderr
    # the grid refuses it too, for a client that does not check
    key = account_cli.env["RGRID_API_KEY"]
    response = httpx.post(
        f"{live_server.url}/api/v1/executions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "script": "s.py",
            "files": [{"path": "s.py", "sha256": "0" * 64, "size": 15}],
            "requirements": [f"evil @ file://{evil}"],
        },
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "local path" in response.json()["error"]["message"]
    # nothing was submitted and nothing built
    assert json_of(account_cli("list", "--json"))["data"] == []
    assert env_dirs(live_server) == envs_before and builds(live_server) == builds_before
