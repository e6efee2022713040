"""Where a script's requirements come from, in SPEC §7 order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rgrid import errors
from rgrid.client.requirements import pep723_dependencies, plan

HEADER = (
    "# /// script\n# requires-python = '>=3.11'\n# dependencies = [\n#   'pyyaml>=6',\n# ]\n# ///\n"
)


def test_order_flag_then_header_then_file_then_inference(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(HEADER + "import requests\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "other.txt").write_text("attrs\n")
    assert plan(script, tmp_path / "other.txt", []).requirements == ["attrs"]
    assert plan(script, None, []).source == "PEP 723 header"
    script.write_text("import requests\n")
    assert plan(script, None, []).requirements == ["six"]
    (tmp_path / "requirements.txt").unlink()
    inferred = plan(script, None, [])
    assert (inferred.source, inferred.requirements) == ("inferred from imports", ["requests"])


def test_inference_skips_stdlib_local_optional_and_type_checking_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import os, json\nimport helpers\nfrom pkg import x\nimport cv2\n"
        "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
    )
    (tmp_path / "helpers.py").write_text("from bs4 import BeautifulSoup\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("x = 1\n")
    modules = [tmp_path / "helpers.py", tmp_path / "pkg" / "__init__.py"]
    assert plan(script, None, modules).requirements == ["beautifulsoup4", "opencv-python"]


def test_no_imports_means_no_dependencies(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    assert plan(script, None, []).source == "none"


def test_pep723_edge_cases() -> None:
    assert pep723_dependencies("print(1)\n") is None
    assert pep723_dependencies("# /// script\n# dependencies = []\n# ///\n") == []
    with pytest.raises(errors.UsageError, match="TOML"):
        pep723_dependencies("# /// script\n# dependencies = [\n# ///\n")
    with pytest.raises(errors.UsageError, match="several"):
        pep723_dependencies(HEADER + "x = 1\n" + HEADER)


def test_local_paths_are_refused_before_upload(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    (tmp_path / "requirements.txt").write_text("-e .\n")
    with pytest.raises(errors.InvalidRequest, match="editable"):
        plan(script, None, [])


#: plan the dependencies of the scripts given in a fresh interpreter: was the rules' module loaded?
FRESH_PLAN = """
import sys
from pathlib import Path
from rgrid.client.requirements import plan
for name in sys.argv[1:]:
    plan(Path(name), None, [])
print("rgrid.envs.requirements" in sys.modules)
"""


def test_the_rules_are_loaded_only_for_a_script_with_requirements(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("import json\nprint(json.dumps(1))\n")
    (tmp_path / "needs.py").write_text("import requests\n")

    def loaded(*names: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", FRESH_PLAN, *(str(tmp_path / n) for n in names)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    assert loaded("plain.py") == "False"  # nothing to check: its patterns are not compiled
    assert loaded("plain.py", "needs.py") == "True"
