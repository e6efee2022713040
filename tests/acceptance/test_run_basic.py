"""Acceptance: `rgrid run` end to end against a live grid (issue 2, items 1, 3, 4)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli

PROCESS = """\
import json, os, sys
from helpers import shout
from pkg.sub import twice
rows = open(sys.argv[1]).read().splitlines()
print("hello", shout(rows[0]), twice(2), os.environ.get("MODE"))
print("to stderr", file=sys.stderr)
os.makedirs("out", exist_ok=True)
with open("out/result.json", "w") as f:
    json.dump({"rows": len(rows)}, f)
"""


def _project(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "input.csv").write_text("a,b\n1,2\n3,4\n")
    (root / "helpers.py").write_text("def shout(s):\n    return s.upper()\n")
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "__init__.py").write_text("from .core import twice\n")
    (root / "pkg" / "sub" / "core.py").write_text("def twice(x):\n    return 2 * x\n")
    (root / "process.py").write_text(PROCESS)


def test_hello_world_with_input_in_subfolder(cli: Cli, workdir: Path) -> None:
    _project(workdir)
    result = cli(
        "run", "--env", "MODE=fast", "--metadata", "project=x", "process.py", "data/input.csv"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello A,B 4 fast\n"
    assert "to stderr\n" in result.stderr
    assert json.loads((workdir / "out" / "result.json").read_text()) == {"rows": 3}
    # inputs that did not change are not downloaded back over themselves
    assert (workdir / "data" / "input.csv").read_text() == "a,b\n1,2\n3,4\n"


def test_stdout_redirect_holds_only_the_scripts_stdout(cli: Cli, workdir: Path) -> None:
    _project(workdir)
    result = cli("run", "process.py", "data/input.csv")
    assert result.returncode == 0
    assert result.stdout == "hello A,B 4 None\n"
    assert "rgrid:" in result.stderr and "rgrid:" not in result.stdout


def test_script_cannot_import_rgrids_own_packages(cli: Cli, workdir: Path) -> None:
    # A PEP 723 header declaring no dependencies: nothing is inferred or installed, so only
    # rgrid's own environment could provide these modules.
    (workdir / "probe.py").write_text(
        "# /// script\n# dependencies = []\n# ///\n"
        "import importlib.util as u\n"
        "print([m for m in ('fastapi', 'sqlalchemy', 'rgrid', 'httpx', 'pydantic') if u.find_spec(m)])\n"
        "import fastapi\n"
    )
    result = cli("run", "probe.py")
    assert result.stdout == "[]\n"
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'fastapi'" in result.stderr
