"""Acceptance: what a hostile tenant probed in issue 13 (findings 8, 12, 13, 14, 16), run end to
end with the real CLI against a real grid."""

from __future__ import annotations

import os
from pathlib import Path

from tests.acceptance.conftest import run_id, run_on_a_terminal, status_of
from tests.conftest import Cli

QUIET_THEN_PRINT = (
    "import time\nprint('before', flush=True)\ntime.sleep(8)\nprint('after', flush=True)\n"
)


def test_a_quiet_script_followed_for_8s_shows_no_false_connection_loss(
    account_cli: Cli, workdir: Path
) -> None:
    """Finding 16: a follow longer than the server's keep-alive printed "connection lost"."""
    (workdir / "quiet.py").write_text(QUIET_THEN_PRINT)
    code, stdout, screen = run_on_a_terminal(account_cli, "run", "quiet.py")
    assert code == 0, screen
    assert stdout.decode().splitlines() == ["before", "after"]
    assert "connection lost" not in screen
    assert "retrying" not in screen
    assert "log stream lost" not in screen
    assert "succeeded" in screen


BAD_UTF8_OUTPUT = (
    "import sys\n"
    "open(b'bad\\xff\\xfe.txt', 'wb').write(b'lost')\n"
    "open('good.txt', 'wb').write(b'kept')\n"
    "sys.exit(3)\n"
)


def test_an_output_name_that_is_not_utf8_is_refused_with_a_warning_and_the_rest_kept(
    account_cli: Cli, workdir: Path
) -> None:
    """Finding 8: such a name crashed the artifact insert: the execution hung until its lease
    expired, was retried, ended worker_lost and lost every output."""
    (workdir / "bad_name.py").write_text(BAD_UTF8_OUTPUT)
    result = account_cli("run", "bad_name.py", timeout=60)
    assert result.returncode == 3, result.stderr  # the script's own exit code
    assert (workdir / "good.txt").read_bytes() == b"kept"
    assert sorted(os.listdir(workdir)) == ["bad_name.py", "good.txt"]
    assert "rgrid: warning: output bad\\xff\\xfe.txt not kept: its name is not valid UTF-8" in (
        result.stderr
    )
    status = status_of(account_cli, run_id(result))
    assert (status["state"], status["failure_class"], status["attempt"]) == (
        "failed",
        "script_error",
        1,
    )
    logs = account_cli("logs", run_id(result))
    assert "rgrid| warning: output bad\\xff\\xfe.txt not kept" in logs.stdout
