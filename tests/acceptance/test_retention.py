"""Acceptance: outputs expire after the retention period (issue 8) — a grid keeping files for
3 seconds: the janitor removes the blobs, downloads answer ARTIFACT_EXPIRED naming the date,
the result cache no longer serves the run, and its log and record stay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, run_id, status_of, wait_for
from tests.conftest import Cli, LiveServer, blob_name, make_server

from rgrid import digests

RETENTION_S = 3.0
SCRIPT = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/r.bin', 'wb').write(os.urandom(32))\nprint('made it')\n"


@pytest.fixture
def short_retention(tmp_path: Path) -> Iterator[LiveServer]:
    server = make_server(tmp_path, RGRID_RETENTION_DAYS=str(RETENTION_S / 86400))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_expired_outputs_are_removed_refused_and_not_reused(
    short_retention: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "make.py").write_text(SCRIPT)
    cli = Cli(cwd=workdir, env=short_retention.cli_env())
    first = cli("run", "--remote-only", "make.py")
    assert first.returncode == 0, first.stderr
    execution_id = run_id(first)
    (output,) = json_of(cli("outputs", execution_id, "--json"))
    blobs = short_retention.home / "blobs"
    assert [p for p in blobs.rglob(blob_name(output["digest"])) if p.is_file()]

    # the janitor runs every second here; give it the period plus a few rounds
    wait_for(
        lambda: not [p for p in blobs.rglob(blob_name(output["digest"])) if p.is_file()] or None,
        timeout=RETENTION_S + 10,
        interval=0.2,
    )

    refused = cli("download", execution_id)
    assert refused.returncode == 1
    assert "out/r.bin expired on " in refused.stderr and "keeps files for" in refused.stderr
    assert not (workdir / "out").exists()
    response = httpx.get(
        f"{short_retention.url}/api/v1/executions/{execution_id}/outputs/out/r.bin",
        headers={"Authorization": f"Bearer {short_retention.admin_key}"},
    )
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "ARTIFACT_EXPIRED"
    assert response.json()["error"]["details"]["expired_at"] == output["expires_at"]

    # the record and the log are kept
    assert status_of(cli, execution_id)["state"] == "succeeded"
    assert cli("logs", execution_id).stdout == "out| made it\n"

    again = cli("run", "make.py")
    assert again.returncode == 0 and "rgrid: cached" not in again.stderr
    assert status_of(cli, run_id(again))["cached_from"] is None
    produced = (workdir / "out" / "r.bin").read_bytes()
    assert digests.of_bytes(produced) != output["digest"]  # really ran again
