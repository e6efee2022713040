"""Acceptance: what a hostile tenant probed in issue 13 (findings 8, 12, 13, 14, 16), run end to
end with the real CLI against a real grid."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import run_on_a_terminal
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
