"""Acceptance: what a hostile tenant probed in issue 13 (findings 8, 12, 13, 14, 16), run end to
end with the real CLI against a real grid."""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import (
    blob_file,
    damage_keeping_mtime,
    run_id,
    run_on_a_terminal,
    status_of,
)
from tests.conftest import Cli, LiveServer

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


LONG_NAME = "n" * 251 + ".txt"  # 255 bytes: NAME_MAX, legal on the grid and here
ODD_NAMES = {"line\nbreak.txt": b"newline", "back\\slash.txt": b"backslash", LONG_NAME: b"long"}
ODD_OUTPUTS = (
    "import os\n"
    f"for name, data in {ODD_NAMES!r}.items():\n"
    "    open(name, 'wb').write(data)\n"
    "os.mkdir('blocked')\n"
    "open('blocked/inner.txt', 'wb').write(b'cannot land')\n"
    "open('good.txt', 'wb').write(b'good')\n"
)


def test_odd_but_legal_output_names_come_back_and_one_that_cannot_land_is_skipped(
    account_cli: Cli, workdir: Path
) -> None:
    """Finding 12: a newline in a name made its download 404 and the CLI abort every download,
    a backslash made the CLI refuse every output, a 255-byte name overflowed the temp name."""
    (workdir / "odd.py").write_text(ODD_OUTPUTS)
    (workdir / "blocked").write_text("a file where the output wants a directory")
    # the obstacle is only here, not sent with the project tree
    (workdir / ".rgridignore").write_text("blocked\n")
    result = account_cli("run", "odd.py", timeout=60)
    assert result.returncode == 0, result.stderr
    for name, data in ODD_NAMES.items():
        assert (workdir / name).read_bytes() == data, name
    assert (workdir / "good.txt").read_bytes() == b"good"
    assert "rgrid: warning: output blocked/inner.txt not downloaded: " in result.stderr
    assert (workdir / "blocked").read_text() == "a file where the output wants a directory"
    assert not [p for p in os.listdir(workdir) if p.endswith(".part")]

    again = account_cli("download", run_id(result), "--output-dir", "again")
    assert again.returncode == 0, again.stderr
    for name, data in [*ODD_NAMES.items(), ("blocked/inner.txt", b"cannot land")]:
        assert (workdir / "again" / name).read_bytes() == data, name
    assert "line\\nbreak.txt" in again.stderr  # the name shown escaped, on one line

    here = account_cli("download", run_id(result))  # into the directory where one is blocked
    assert here.returncode == 1  # `rgrid download` exists to download: a skipped file fails it
    assert "output blocked/inner.txt not downloaded" in here.stderr
    assert (workdir / "good.txt").read_bytes() == b"good"


EVIL = "evil\x1b]0;x\x07\r\nforged\trow"
EVIL_SHOWN = "evil\\x1b]0;x\\x07\\r\\nforged\\trow"


def _assert_inert(text: str) -> None:
    """Nothing a terminal would act on: no ESC, BEL, CR, TAB, C1 (only the line ends)."""
    assert not [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0], text


def test_control_characters_in_tenant_text_are_escaped_in_every_human_line(
    cli: Cli, account_cli: Cli, workdir: Path
) -> None:
    """Finding 13: a key named with an OSC sequence and CR/LF forged a row of the admin's
    `rgrid keys list`; `rgrid outputs` printed \\n, \\t, \\r raw. --json stays exact."""
    # a key name with control characters is refused by the grid (tests/acceptance/
    # test_api_hardening.py), so the admin's `rgrid keys list` cannot show a forged row
    made = account_cli("keys", "create", "--name", EVIL, "--json")
    assert made.returncode == 1 and "control characters" in made.stderr, made.stderr
    listed = cli("keys", "list")  # the admin's view of every key
    assert listed.returncode == 0, listed.stderr
    _assert_inert(listed.stdout)
    assert not [line for line in listed.stdout.splitlines() if line.startswith("forged")]
    assert EVIL not in [k["name"] for k in json.loads(cli("keys", "list", "--json").stdout)]

    (workdir / "evil.py").write_text(f"open({EVIL!r}, 'w').write('x')\n")
    ran = account_cli("run", "--metadata", f"label={EVIL}", "--remote-only", "evil.py")
    assert ran.returncode == 0, ran.stderr
    execution_id = run_id(ran)
    for args in (("outputs", execution_id), ("status", execution_id), ("list",)):
        shown = account_cli(*args)
        assert shown.returncode == 0, shown.stderr
        _assert_inert(shown.stdout + shown.stderr)
    assert account_cli("outputs", execution_id).stdout.rstrip("\n").endswith(EVIL_SHOWN)
    assert f"label={EVIL_SHOWN}" in account_cli("status", execution_id).stdout
    [output] = json.loads(account_cli("outputs", execution_id, "--json").stdout)
    assert output["path"] == EVIL

    # an error naming tenant text (here the CLI's own): escaped too
    missing = account_cli("download", execution_id, "--file", EVIL + "2")
    assert missing.returncode == 1
    _assert_inert(missing.stderr)
    assert EVIL_SHOWN + "2" in missing.stderr

    # and on a terminal, `rgrid download` draws the name escaped
    code, _, screen = run_on_a_terminal(account_cli, "download", execution_id)
    assert code == 0, screen
    assert EVIL_SHOWN in screen
    assert "\x1b]0;x" not in screen
    assert (workdir / EVIL).read_text() == "x"


def _output_script(workdir: Path) -> bytes:
    content = f"result {uuid.uuid4().hex}\n".encode()
    (workdir / "make.py").write_text(f"open('out.txt', 'wb').write({content!r})\n")
    return content


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_a_lost_output_blob_is_reported_as_such_and_a_rerun_heals_it(
    live_server: LiveServer, account_cli: Cli, workdir: Path, damage: str
) -> None:
    """Finding 14: a blob deleted or damaged on the grid's disk made the CLI say "arrived
    corrupted; try again", which cannot help. Deleted: the grid notices before serving it;
    corrupted in place with its mtime kept: the grid notices while streaming it."""
    content = _output_script(workdir)
    first = account_cli("run", "--remote-only", "make.py")
    assert first.returncode == 0, first.stderr
    blob = blob_file(live_server, content)
    if damage == "deleted":
        blob.unlink()
    else:
        damage_keeping_mtime(blob)

    fetched = account_cli("download", run_id(first), "--output-dir", "lost")
    assert fetched.returncode == 1
    assert "error: output 'out.txt' is lost or damaged on the grid" in fetched.stderr
    assert "hint: run the same `rgrid run` again" in fetched.stderr
    assert "arrived corrupted" not in fetched.stderr
    assert not (workdir / "lost" / "out.txt").exists()

    again = account_cli("run", "make.py")  # the same command: not served from the cache
    assert again.returncode == 0, again.stderr
    assert "cached" not in again.stderr
    assert (workdir / "out.txt").read_bytes() == content
    healed = account_cli("download", run_id(first), "--output-dir", "healed")
    assert healed.returncode == 0, healed.stderr  # the first run's output is whole again
    assert (workdir / "healed" / "out.txt").read_bytes() == content


def test_a_damaged_output_is_left_out_of_a_batch_page_and_its_download_says_so(
    live_server: LiveServer, account_cli: Cli, workdir: Path
) -> None:
    """A batch's page with small outputs inline (``?inline=N``) reads each as a download
    does: one damaged on the grid's disk comes without its bytes (the page itself is whole),
    and fetching it says it is lost or damaged, as without the page."""
    marker = uuid.uuid4().hex
    (workdir / "make.py").write_text(
        "import sys\nopen('out.txt', 'w').write(open(sys.argv[1]).read().upper())\n"
    )
    for name in ("a", "b"):
        (workdir / f"{name}.in").write_text(f"{name} {marker}\n")
    ran = account_cli("run", "--batch", "*.in", "--remote-only", "make.py")
    assert ran.returncode == 0, ran.stderr
    batch_id = ran.stderr.split(":", 2)[1].strip()
    damage_keeping_mtime(blob_file(live_server, f"A {marker.upper()}\n".encode()))

    page = httpx.get(
        f"{live_server.url}/api/v1/batches/{batch_id}/items",
        params={"inline": "1024"},
        headers={"Authorization": f"Bearer {account_cli.env['RGRID_API_KEY']}"},
    )
    assert page.status_code == 200, page.text
    items = {i["input"]: i for i in page.json()["data"]}
    [damaged] = items["a.in"]["outputs"]
    [whole] = items["b.in"]["outputs"]
    assert damaged["content"] is None
    assert base64.b64decode(whole["content"]) == f"B {marker.upper()}\n".encode()
    fetched = account_cli("download", items["a.in"]["id"], "--output-dir", "lost")
    assert fetched.returncode == 1
    assert "error: output 'out.txt' is lost or damaged on the grid" in fetched.stderr
    assert not (workdir / "lost" / "out.txt").exists()


def test_a_damaged_input_blob_fails_the_run_clearly_and_the_next_run_uploads_it_again(
    live_server: LiveServer, account_cli: Cli, workdir: Path
) -> None:
    """Finding 14, the worker's side: `/blobs/missing` consulted only the database, so a
    lost input could never be healed by running again."""
    data = f"input {uuid.uuid4().hex}\n".encode()
    (workdir / "data.txt").write_bytes(data)
    (workdir / "copy.py").write_text(
        "import sys\nopen('copy.txt', 'wb').write(open(sys.argv[1], 'rb').read())\n"
    )
    first = account_cli("run", "--no-cache", "copy.py", "data.txt")
    assert first.returncode == 0, first.stderr
    blob = blob_file(live_server, data)
    blob.write_bytes(b"X" + data[1:])  # damaged on the grid's disk

    second = account_cli("run", "--no-cache", "copy.py", "data.txt")
    assert second.returncode == 1
    # the run's earlier output copy.txt (in the project tree now) holds the same bytes
    assert re.search(r"input '(data|copy)\.txt' is lost or damaged on the grid", second.stderr)
    assert "input_error" in status_of(account_cli, run_id(second))["failure_class"]

    third = account_cli("run", "--no-cache", "--output-dir", "third", "copy.py", "data.txt")
    assert third.returncode == 0, third.stderr
    assert "uploaded 1 file" in third.stderr  # the lost input went up again
    # copy.txt travelled with the tree and was rewritten with the same bytes: not an output
    assert (workdir / "copy.txt").read_bytes() == data
