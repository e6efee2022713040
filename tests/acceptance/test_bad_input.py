"""Acceptance: bad input gives one clear error and leaves nothing half-written (issue 2, item 6)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tests.acceptance.conftest import json_of, run_id
from tests.conftest import Cli, CliResult, LiveServer

from rgrid import digests


def _error_lines(result: CliResult) -> list[str]:
    """The stderr of a failed command: ``error: …`` first, then at most a ``hint: …``."""
    lines = result.stderr.splitlines()
    assert lines, "no error message"
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines


def _execution_count(cli: Cli) -> int:
    return int(json_of(cli("list", "--json", "--limit", "1000"))["count"])


def _missing(live_server: LiveServer, key: str, hashes: list[str]) -> list[str]:
    response = httpx.post(
        f"{live_server.url}/api/v1/blobs/missing",
        json={"digests": hashes},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["missing"])


def test_missing_script_is_named_and_nothing_is_submitted(account_cli: Cli) -> None:
    result = account_cli("run", "nope.py", "arg")

    assert result.returncode in (1, 2)
    lines = _error_lines(result)
    assert "nope.py" in lines[0] and "not found" in lines[0]
    assert any(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert result.stdout == ""
    assert _execution_count(account_cli) == 0


def test_argument_naming_a_fifo_is_refused_before_anything_is_sent(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    script = "print('never runs')\n"
    (workdir / "reader.py").write_text(script)
    os.mkfifo(workdir / "pipe")

    result = account_cli("run", "reader.py", "pipe", timeout=30)

    assert result.returncode == 1
    lines = _error_lines(result)
    assert "pipe" in lines[0] and "not a regular file" in lines[0]
    assert any(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert result.stdout == ""
    assert _execution_count(account_cli) == 0
    sha = digests.of_bytes(script.encode())
    assert _missing(live_server, account_cli.env["RGRID_API_KEY"], [sha]) == [sha]


def test_argument_naming_an_unreadable_file_is_refused(account_cli: Cli, workdir: Path) -> None:
    # A regular file that fails on read even for root (the tests may run as root, where
    # chmod 000 would not stop anything): this process's own memory from offset 0.
    # (named through a link in the project: /proc itself may not be named, see test_dropin_paths)
    (workdir / "reader.py").write_text("print('never runs')\n")
    (workdir / "mem").symlink_to("/proc/self/mem")

    result = account_cli("run", "reader.py", "mem")

    assert result.returncode == 1
    lines = _error_lines(result)
    assert lines[0].startswith("error: cannot read "), result.stderr
    assert lines[0].endswith("/mem: Input/output error"), result.stderr
    assert any(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert _execution_count(account_cli) == 0


def test_blob_whose_bytes_do_not_match_its_hash_is_refused(live_server: LiveServer) -> None:
    claimed = digests.of_bytes(b"the bytes that were promised")
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}

    response = httpx.put(
        f"{live_server.url}/api/v1/blobs/{claimed}",
        content=b"other bytes entirely",
        headers={**headers, "content-type": "application/octet-stream"},
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INTEGRITY_ERROR"
    assert error["message"]
    assert _missing(live_server, live_server.admin_key, [claimed]) == [claimed]
    stored = [p for p in (live_server.home / "blobs").rglob("*") if claimed in p.name]
    assert stored == [], "a corrupt upload became visible in storage"
    partial = list((live_server.home / "blobs").rglob("*.part"))
    assert partial == [], "a partial upload was left behind"


def test_unsafe_output_names_are_refused_and_nothing_is_written(
    cli: Cli, workdir: Path, live_server: LiveServer, tmp_path: Path
) -> None:
    (workdir / "write.py").write_text("open('safe.txt', 'w').write('safe\\n')\n")
    result = cli("run", "--remote-only", "write.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)
    [safe] = json_of(cli("outputs", execution_id, "--json"))
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    with sqlite3.connect(live_server.home / "rgrid.db") as db:
        db.executemany(
            "INSERT INTO artifacts (execution_id, kind, path, digest, size, created_at, expires_at)"
            " VALUES (?, 'output', ?, ?, ?, ?, NULL)",
            [
                (execution_id, path, safe["digest"], safe["size"], now)
                for path in ("../escaped.txt", str(tmp_path / "absolute.txt"))
            ],
        )
    db.close()
    dest = workdir / "D"

    download = cli("download", execution_id, "--output-dir", str(dest))

    assert download.returncode == 1
    lines = _error_lines(download)
    assert "unsafe path" in lines[0]
    assert not dest.exists() or not any(dest.iterdir()), "something was written"
    assert not (workdir / "escaped.txt").exists()
    assert not (tmp_path / "absolute.txt").exists()

    # `rgrid wait` downloads too, and refuses the same way
    waited = cli("wait", execution_id, "--output-dir", str(dest))
    assert waited.returncode == 1
    assert "unsafe path" in waited.stderr
    assert not dest.exists() or not any(dest.iterdir())


def test_wrong_api_key_names_rgrid_init(live_server: LiveServer, workdir: Path) -> None:
    (workdir / "hello.py").write_text("print('hello')\n")
    bad = Cli(cwd=workdir, env=live_server.cli_env("rg_" + os.urandom(30).hex()[:40]))

    for args in (("list",), ("run", "hello.py"), ("status", "exec_x")):
        result = bad(*args)
        assert result.returncode == 1, args
        lines = _error_lines(result)
        assert "rgrid init" in result.stderr, result.stderr
        assert "key" in lines[0]
        assert result.stdout == ""


def test_another_accounts_execution_is_not_found(cli: Cli, workdir: Path) -> None:
    created = json_of(cli("accounts", "create", "B", "--json"))
    as_b = Cli(cwd=workdir, env={**cli.env, "RGRID_API_KEY": created["key"]})
    (workdir / "mine.py").write_text("open('out.txt', 'w').write('x')\nprint('mine')\n")
    b_run = as_b("run", "--remote-only", "mine.py")
    assert b_run.returncode == 0, b_run.stderr
    b_id = run_id(b_run)
    admin_run = cli("run", "--remote-only", "mine.py")
    assert admin_run.returncode == 0, admin_run.stderr
    admin_id = run_id(admin_run)

    for who, other in ((cli, b_id), (as_b, admin_id)):
        for args in (
            ("status", other),
            ("logs", other),
            ("outputs", other),
            ("download", other),
            ("cancel", other),
            ("status", other[:12]),
        ):
            result = who(*args)
            assert result.returncode == 1, (args, result.stderr)
            assert "no execution" in _error_lines(result)[0], result.stderr
    assert [e["id"] for e in json_of(as_b("list", "--json"))["data"]] == [b_id]
    assert not (workdir / "out.txt").exists()


def test_unknown_and_ambiguous_id_prefixes(account_cli: Cli, workdir: Path) -> None:
    (workdir / "one.py").write_text("print(1)\n")
    first = run_id(account_cli("run", "one.py"))
    second = run_id(account_cli("run", "one.py"))

    unknown = account_cli("status", "exec_zzzzzzzz")
    assert unknown.returncode == 1
    lines = _error_lines(unknown)
    assert "no execution 'exec_zzzzzzzz'" in lines[0]
    assert any("rgrid list" in line for line in lines[1:])

    for command in ("status", "logs", "outputs"):
        ambiguous = account_cli(command, "exec_")
        assert ambiguous.returncode == 1
        lines = _error_lines(ambiguous)
        assert "matches several" in lines[0], ambiguous.stderr
        assert any(line.startswith("hint: ") for line in lines[1:])

    # a prefix long enough to be unique works
    differ = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    for execution_id in (first, second):
        prefix = execution_id[: max(differ + 1, 8)]
        assert prefix != execution_id
        assert json_of(account_cli("status", prefix, "--json"))["id"] == execution_id


def test_a_submission_naming_contents_the_grid_lacks_lists_them_and_creates_nothing(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    # the CLI submits first and uploads only what the refusal lists (a re-run: one request)
    headers = {"Authorization": f"Bearer {account_cli.env['RGRID_API_KEY']}"}
    script, data = b"import sys; print(open(sys.argv[1]).read())\n", b"a,b\n1,2\n"
    uploaded = digests.of_bytes(script)
    lacking = digests.of_bytes(data)
    put = httpx.put(f"{live_server.url}/api/v1/blobs/{uploaded}", content=script, headers=headers)
    assert put.status_code in (200, 201), put.text
    spec = {
        "script": "job.py",
        "args": ["data.csv"],
        "files": [
            {"path": "job.py", "digest": uploaded, "size": len(script)},
            {"path": "data.csv", "digest": lacking, "size": len(data)},
        ],
        "idempotency_key": "2f0c8a8e-0000-4000-8000-000000000001",
    }
    url = f"{live_server.url}/api/v1/executions"

    refused = httpx.post(url, json=spec, headers=headers)

    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "BLOBS_UNKNOWN"
    assert error["details"] == {"missing": [lacking]}
    assert "data.csv" in error["message"]
    assert _execution_count(account_cli) == 0
    # once the listed content is there, the same submission (same key) is taken
    put = httpx.put(f"{live_server.url}/api/v1/blobs/{lacking}", content=data, headers=headers)
    assert put.status_code in (200, 201), put.text
    taken = httpx.post(url, json=spec, headers=headers)
    assert taken.status_code == 201, taken.text
    assert _execution_count(account_cli) == 1


def test_a_run_uploads_what_the_grid_lacks_and_a_rerun_nothing(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "echo.py").write_text("import sys\nprint(open(sys.argv[1]).read(), end='')\n")
    (workdir / "in.txt").write_text("first\n")
    first = account_cli("run", "--no-cache", "echo.py", "in.txt")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "first\n"
    assert "uploaded 2 files" in first.stderr, first.stderr
    again = account_cli("run", "--no-cache", "echo.py", "in.txt")
    assert again.returncode == 0, again.stderr
    assert "uploaded nothing, 2 already on the grid" in again.stderr, again.stderr
    (workdir / "in.txt").write_text("second\n")  # only the changed content goes up
    changed = account_cli("run", "--no-cache", "echo.py", "in.txt")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout == "second\n"
    assert "uploaded 1 file (7 B), 1 already on the grid" in changed.stderr, changed.stderr
