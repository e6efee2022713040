"""The result cache never serves a stale answer: a run that used the network is not reused
unless the user says its network access is deterministic (SPEC §12).

A real HTTP server on the host's loopback stands for the outside world; the grid is told to let
sandboxes reach it (RGRID_SANDBOX_HOST_LOOPBACK: slirp's gateway 10.0.2.2 is the host's
127.0.0.1), and the script fetches from it as a script fetches a dataset or asks an API."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.conftest import json_of, new_account, run_id, status_of
from tests.conftest import Cli, LiveServer, make_server

FETCH = """\
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
"""
FETCH_IN_A_SUBPROCESS = """\
import subprocess, sys
subprocess.run(["curl", "-s", sys.argv[1]], check=True)
print()
"""
OFFLINE = "print('the same every time')\n"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A folder served over HTTP on 127.0.0.1 (its port), changed by the tests."""
    folder = tmp_path_factory.mktemp("site")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = make_server(tmp_path_factory.mktemp("network-cache"), RGRID_SANDBOX_HOST_LOOPBACK="1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def user(grid: LiveServer, tmp_path: Path) -> Cli:
    admin = Cli(cwd=tmp_path, env=grid.cli_env())
    _, key = new_account(admin)
    project = tmp_path / "project"
    project.mkdir()
    return Cli(cwd=project, env=grid.cli_env(key))


def publish(site: tuple[Path, int], name: str, text: str) -> str:
    folder, port = site
    (folder / name).write_text(text)
    return f"http://10.0.2.2:{port}/{name}"  # the host's 127.0.0.1, seen from a sandbox


def test_a_run_that_fetched_is_run_again_and_prints_what_the_server_has_now(
    user: Cli, site: tuple[Path, int]
) -> None:
    url = publish(site, "latest.txt", "v1")
    (user.cwd / "fetch.py").write_text(FETCH)
    first = user("run", "fetch.py", url)
    assert (first.returncode, first.stdout) == (0, "v1\n"), first.stderr
    assert status_of(user, run_id(first))["network_used"] is True
    shown = user("status", run_id(first))
    assert "not reusable (it used the network)" in shown.stdout

    publish(site, "latest.txt", "v2")
    second = user("run", "fetch.py", url)
    assert (second.returncode, second.stdout) == (0, "v2\n"), second.stderr  # as python would
    assert "cached:" not in second.stderr
    assert f"running it again: {run_id(first)} used the network" in second.stderr
    assert status_of(user, run_id(second))["cached_from"] is None


def test_cache_always_reuses_it_from_the_config_or_the_command_line(
    user: Cli, site: tuple[Path, int]
) -> None:
    url = publish(site, "pinned.txt", "v1")
    (user.cwd / "fetch.py").write_text(FETCH)
    (user.cwd / ".rgrid").mkdir()
    (user.cwd / ".rgrid" / "config.toml").write_text('cache = "always"\n')
    first = user("run", "fetch.py", url)
    assert first.stdout == "v1\n", first.stderr

    publish(site, "pinned.txt", "v2")  # the pinned dataset "never changes": the user said so
    reused = user("run", "fetch.py", url)
    assert (reused.returncode, reused.stdout) == (0, "v1\n"), reused.stderr
    assert f"succeeded as {run_id(first)}" in reused.stderr and "used the network" in reused.stderr
    shown = user("status", run_id(reused))
    assert f"hit from {run_id(first)} (it used the network" in shown.stdout

    forced = user("run", "--no-cache", "fetch.py", url)  # --no-cache still runs it
    assert forced.stdout == "v2\n", forced.stderr
    (user.cwd / ".rgrid" / "config.toml").unlink()
    by_flag = user("run", "--cache", "always", "fetch.py", url)
    assert by_flag.stdout == "v2\n" and status_of(user, run_id(by_flag))["cached_from"]
    by_default = user("run", "fetch.py", url)
    assert "running it again" in by_default.stderr


def test_a_subprocess_that_fetches_counts_too(user: Cli, site: tuple[Path, int]) -> None:
    url = publish(site, "sub.txt", "from curl")
    (user.cwd / "sub.py").write_text(FETCH_IN_A_SUBPROCESS)
    first = user("run", "sub.py", url)
    assert first.stdout == "from curl\n", first.stderr
    again = user("run", "sub.py", url)
    assert again.stdout == "from curl\n"
    assert status_of(user, run_id(again))["cached_from"] is None
    assert status_of(user, run_id(first))["network_used"] is True


def test_network_on_but_unused_is_reused_as_before(user: Cli) -> None:
    (user.cwd / "offline.py").write_text(OFFLINE)
    first = user("run", "offline.py")
    assert status_of(user, run_id(first))["network_used"] is False
    second = user("run", "offline.py")
    assert second.stdout == "the same every time\n"
    assert status_of(user, run_id(second))["cached_from"] == run_id(first)
    off = user("run", "--no-network", "offline.py")  # its own key (network is part of it)
    assert status_of(user, run_id(off))["network_used"] is False


def test_a_batch_reruns_the_items_that_fetched_and_reuses_the_others(
    user: Cli, site: tuple[Path, int]
) -> None:
    url = publish(site, "item.txt", "v1")
    (user.cwd / "items.py").write_text(
        "import sys, urllib.request\n"
        "name = open(sys.argv[1]).read().strip()\n"
        "if name == 'online':\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=10).read().decode())\n"
        "else:\n"
        "    print('offline')\n"
    )
    (user.cwd / "in").mkdir()
    (user.cwd / "in" / "a.txt").write_text("online")
    (user.cwd / "in" / "b.txt").write_text("offline")
    first = user("run", "--batch", "in/*.txt", "items.py")
    assert first.returncode == 0, first.stderr
    publish(site, "item.txt", "v2")
    second = user("run", "--batch", "in/*.txt", "--json", "items.py")
    assert second.returncode == 0, second.stderr
    batch_id = json.loads(second.stdout.splitlines()[-1])["batch"]
    items = {
        e["batch_input"]: e for e in json_of(user("list", "--batch", batch_id, "--json"))["data"]
    }
    assert items["in/b.txt"]["cached_from"] is not None  # reused
    assert items["in/a.txt"]["cached_from"] is None  # ran again
    assert "used the network" in (items["in/a.txt"]["cache"] or "")


@pytest.mark.parametrize(
    ("config", "flag", "said"),
    [
        ('cache = "sometimes"\n', None, 'cache must be true, false, "auto", "always" or "off"'),
        ("cache = 3\n", None, 'cache must be true, false, "auto", "always" or "off"'),
        (None, "sometimes", "'auto', 'always', 'off'"),
    ],
    ids=["bad-config-word", "bad-config-type", "bad-flag"],
)
def test_a_bad_cache_setting_is_refused_naming_the_choices_and_submits_nothing(
    user: Cli, config: str | None, flag: str | None, said: str
) -> None:
    (user.cwd / "offline.py").write_text(OFFLINE)
    if config is not None:
        (user.cwd / ".rgrid").mkdir()
        (user.cwd / ".rgrid" / "config.toml").write_text(config)
    result = user("run", *(["--cache", flag] if flag else []), "offline.py")
    assert result.returncode != 0, result.stderr
    assert said in result.stderr
    assert json_of(user("list", "--json"))["data"] == []


def test_installing_dependencies_is_not_the_scripts_network_use(user: Cli) -> None:
    """The environment is built from the package index before the script runs, in a sandbox
    of its own: a script that itself opens nothing stays reusable."""
    (user.cwd / "requirements.txt").write_text("six\n")
    (user.cwd / "uses_six.py").write_text("import six\nprint('six', six.__version__)\n")
    first = user("run", "uses_six.py", timeout=300)
    assert first.returncode == 0 and first.stdout.startswith("six 1."), first.stderr
    status = status_of(user, run_id(first))
    assert any(p.startswith("six==") for p in status["packages"])
    assert status["network_used"] is False
    second = user("run", "uses_six.py")
    assert status_of(user, run_id(second))["cached_from"] == run_id(first)
