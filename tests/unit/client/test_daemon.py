"""The local daemon's environment (issue 14, item 8): what it keeps of its starter's."""

from __future__ import annotations

from pathlib import Path

from rgrid.client.daemon import daemon_environment
from rgrid.envs.build import PASSED_SETTINGS


def test_the_shells_python_and_package_manager_state_stays_behind() -> None:
    shell = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/u",
        "LANG": "de_DE.UTF-8",
        "LC_TIME": "C",
        "TZ": "Europe/Berlin",
        "TMPDIR": "/var/tmp",
        "RGRID_SLOTS": "3",
        "RGRID_HOME": "/elsewhere",
        "https_proxy": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
        "VIRTUAL_ENV": "/home/u/project/.venv",
        "PYTHONPATH": "/home/u/lib",
        "PYTHONHOME": "/opt/py",
        "PYTHONDONTWRITEBYTECODE": "1",
        "UV_PROJECT_ENVIRONMENT": "/home/u/env",
        "UV_CACHE_DIR": "/home/u/.uvcache",
        "CONDA_PREFIX": "/opt/conda",
        "CONDA_DEFAULT_ENV": "base",
        "OLDPWD": "/home/u/gone",
        "PWD": "/home/u/gone",
    }

    env = daemon_environment(shell, Path("/grid/home"))

    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/u",
        "LANG": "de_DE.UTF-8",
        "LC_TIME": "C",
        "TZ": "Europe/Berlin",
        "TMPDIR": "/var/tmp",
        "RGRID_SLOTS": "3",
        "RGRID_HOME": "/grid/home",  # the home it was started for, whatever the shell says
        "https_proxy": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
    }


def test_what_an_environment_build_takes_from_the_grid_is_kept() -> None:
    shell = dict.fromkeys(PASSED_SETTINGS, "x")

    assert set(daemon_environment(shell, Path("/h"))) == {*PASSED_SETTINGS, "RGRID_HOME"}
