"""Acceptance: dependencies declared or inferred, built once with uv, reused (issue 3)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.acceptance.conftest import json_of, run_id, settled, status_of
from tests.conftest import RGRID_BIN, Cli, LiveServer


def setup_lines(cli: Cli, execution_id: str) -> list[str]:
    lines = json_of(cli("logs", execution_id, "--json"))
    return [line["text"] for line in lines if line["stream"] == "setup"]


def builds(server: LiveServer) -> int:
    text = server.metrics()
    match = re.search(r"^rgrid_env_builds_total ([0-9.]+)$", text, re.MULTILINE)
    assert match, text
    return int(float(match.group(1)))


def test_requirements_txt_is_installed_once_and_reused(account_cli: Cli, workdir: Path) -> None:
    (workdir / "requirements.txt").write_text("requests\n")
    (workdir / "get.py").write_text("import requests\nprint('requests', requests.__version__)\n")
    first = account_cli("run", "get.py", timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("requests 2.")
    assert "dependencies (requirements.txt): requests" in first.stderr
    first_id = run_id(first)
    assert any("requests==" in line for line in setup_lines(account_cli, first_id))
    second = account_cli("run", "--no-cache", "get.py")  # run it again, not its cached result
    assert second.returncode == 0 and second.stdout == first.stdout
    second_id = run_id(second)
    assert setup_lines(account_cli, second_id) == []  # no build: the environment is reused
    one, two = status_of(account_cli, first_id), status_of(account_cli, second_id)
    assert one["dependency_source"] == "requirements.txt" and one["requirements"] == ["requests"]
    assert one["packages"] == two["packages"] and any(
        p.startswith("requests==") for p in one["packages"]
    )
    human = account_cli("status", second_id)
    assert "requirements.txt: requests" in human.stdout and "requests==" in human.stdout


def test_pep723_header_and_inferred_imports(account_cli: Cli, workdir: Path) -> None:
    (workdir / "declared.py").write_text(
        "# /// script\n# dependencies = ['pyyaml']\n# ///\n"
        "import yaml\nprint(yaml.safe_load('a: 1'))\n"
    )
    declared = account_cli("run", "declared.py", timeout=300)
    assert declared.returncode == 0, declared.stderr
    assert declared.stdout == "{'a': 1}\n"
    assert status_of(account_cli, run_id(declared))["dependency_source"] == "PEP 723 header"
    (workdir / "inferred").mkdir()
    (workdir / "inferred" / "plain.py").write_text("import yaml\nprint(yaml.dump([1]), end='')\n")
    inferred = account_cli("run", "inferred/plain.py", timeout=300)
    assert inferred.returncode == 0, inferred.stderr
    assert inferred.stdout == "- 1\n"
    status = status_of(account_cli, run_id(inferred))
    assert status["dependency_source"] == "inferred from imports"
    assert status["requirements"] == ["PyYAML"]


def test_unknown_package_is_a_dependency_error(account_cli: Cli, workdir: Path) -> None:
    (workdir / "requirements.txt").write_text("nonexistent-package-xyz-123\n")
    (workdir / "s.py").write_text("print('never')\n")
    result = account_cli("run", "s.py", timeout=300)
    assert result.returncode == 1
    assert result.stdout == ""
    status = status_of(account_cli, run_id(result))
    assert status["state"] == "failed" and status["failure_class"] == "dependency_error"
    assert "nonexistent-package-xyz-123" in status["cause"]
    assert "hint:" in result.stderr and "nonexistent-package-xyz-123" in result.stderr


def test_ten_parallel_executions_of_a_new_spec_build_once(
    live_server: LiveServer, account_cli: Cli, workdir: Path
) -> None:
    (workdir / "requirements.txt").write_text("six\n")
    (workdir / "s.py").write_text("import six, sys\nprint(six.__name__, sys.argv[1])\n")
    settled(live_server)  # a build an earlier test left running would count as this test's
    before = builds(live_server)
    submitters = [
        subprocess.Popen(
            [str(RGRID_BIN), "run", "--detach", "s.py", str(i)],
            cwd=workdir,
            env=account_cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(10)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in submitters]
    assert all(i.startswith("exec_") for i in ids), ids
    for n, execution_id in enumerate(ids):
        waited = account_cli("wait", execution_id, "--remote-only", timeout=300)
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout == f"six {n}\n"
    # once per machine that ran them: the server's own worker, or each node of a cluster
    machines = {status_of(account_cli, i)["worker"] for i in ids}
    assert builds(live_server) - before == len(machines)
    packages = {tuple(status_of(account_cli, i)["packages"]) for i in ids}
    assert len(packages) == 1


def test_datascience_preset_and_unknown_runtime(account_cli: Cli, workdir: Path) -> None:
    (workdir / "frame.py").write_text(
        "# /// script\n# dependencies = []\n# ///\n"
        "import pandas as pd, sys\n"
        "print(pd.DataFrame({'a': [1, 2, 3]})['a'].sum(), sys.version_info[:2])\n"
    )
    result = account_cli("run", "--runtime", "python3.11:datascience", "frame.py", timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "6 (3, 11)\n"
    status = status_of(account_cli, run_id(result))
    assert {"numpy", "pandas", "scipy", "scikit-learn", "matplotlib"} <= {
        p.split("==")[0].lower() for p in status["packages"]
    }
    bad = account_cli("run", "--runtime", "python2.7", "frame.py")
    assert bad.returncode == 1
    assert "python2.7 is not available" in bad.stderr and "python3.11" in bad.stderr
    unknown = account_cli("run", "--runtime", "python3.11:gpu", "frame.py")
    assert unknown.returncode == 1 and "datascience" in unknown.stderr


def test_bad_requirements_are_refused_before_running(account_cli: Cli, workdir: Path) -> None:
    (workdir / "s.py").write_text("print(1)\n")
    cases = {
        "editable.txt": ("-e .\n", "editable"),
        "local.txt": ("./libs/mypkg\n", "local path"),
        "fileurl.txt": ("mypkg @ file:///opt/mypkg\n", "local path"),
        "index.txt": (
            "--index-url https://example.invalid/simple\nsix\n",
            "RGRID_ALLOWED_INDEX_HOSTS",
        ),
    }
    for name, (text, expected) in cases.items():
        (workdir / name).write_text(text)
        result = account_cli("run", "--requirements", name, "s.py")
        assert result.returncode == 1, (name, result.stderr)
        assert result.stderr.startswith("error:") and expected in result.stderr, (
            name,
            result.stderr,
        )
    (workdir / "huge.txt").write_text("six\n" + "# padding\n" * 120_000)
    huge = account_cli("run", "--requirements", "huge.txt", "s.py")
    assert huge.returncode == 1 and "over 1 MB" in huge.stderr
    listed = json.loads(account_cli("list", "--json").stdout)["data"]
    assert listed == []  # nothing was submitted


def test_doctor_and_workers_list_runtimes(account_cli: Cli) -> None:
    doctor = account_cli("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "python3.11" in doctor.stdout and "datascience" in doctor.stdout
    workers = json_of(account_cli("workers", "--json"))
    assert workers and "python3.11" in workers[0]["pythons"]
