"""A malicious sdist for tests of the build sandbox: its in-tree build backend (``backend-path``)
tries to read the grid's files and variables and to write where it should not, records what
happened, and still builds a wheel whose module holds the record (``SEEN``, JSON). It writes only
under the grid home it is given, so a test of the weaker fallback sandbox harms nothing else."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

PROBE = "rgrid_build_probe"
VERSION = "0.0.1"

#: the in-tree build backend: it tries everything, records what happened, and still builds a
#: wheel whose module holds the record (so the script can print it)
BACKEND = """
import base64, errno, hashlib, json, os, socket, zipfile

GRID_HOME = {home!r}
CONNECT_TO = {connect_to!r}
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


def connect(host, port):
    socket.create_connection((host, port), timeout=3).close()
    return "connected"


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
        "uid": os.getuid(),
        "connections": [attempt(lambda: connect(host, port)) for host, port in CONNECT_TO],
        "other_envs": [
            attempt(lambda: write(join(env, "pyvenv.cfg"))) for env in OTHER_ENVS
        ],
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


def make_sdist(
    directory: Path,
    grid_home: Path,
    other_envs: list[Path],
    connect_to: list[tuple[str, int]] | None = None,
) -> Path:
    """The malicious sdist, written into ``directory`` (the grid's find-links directory); its
    backend also tries to connect to each of ``connect_to`` (the grid, a database)."""
    root = f"{PROBE}-{VERSION}"
    backend = BACKEND.format(
        home=str(grid_home),
        other_envs=[str(p) for p in other_envs],
        connect_to=list(connect_to or []),
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
