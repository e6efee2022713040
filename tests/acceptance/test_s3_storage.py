"""Acceptance: a grid whose blobs live in an S3-compatible bucket (the cluster profile's storage),
against a real S3 server (moto's server mode) on loopback (issue 8)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import run_id
from tests.conftest import Cli, blob_name, make_server
from tests.s3server import S3Server, start_s3_server

from rgrid import digests

SCRIPT = """\
import os, sys
data = open(sys.argv[1], "rb").read()
os.makedirs("out", exist_ok=True)
open("out/reversed.bin", "wb").write(data[::-1])
print("read", len(data), "bytes")
"""


@pytest.fixture
def s3_server() -> Iterator[S3Server]:
    yield from start_s3_server()


def test_an_execution_runs_end_to_end_with_its_blobs_in_s3(
    tmp_path: Path, s3_server: S3Server
) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="grid")
    server = make_server(tmp_path, RGRID_STORAGE_URL="s3://grid/team-a/blobs", **s3_server.env())
    server.start()
    try:
        workdir = tmp_path / "project"
        workdir.mkdir()
        (workdir / "job.py").write_text(SCRIPT)
        data = bytes(range(256)) * 40_000  # ≈ 10 MiB: stored in several parts
        (workdir / "input.bin").write_bytes(data)
        cli = Cli(cwd=workdir, env=server.cli_env())

        result = cli("run", "job.py", "input.bin")

        assert result.returncode == 0, result.stderr
        assert result.stdout == f"read {len(data)} bytes\n"
        assert (workdir / "out" / "reversed.bin").read_bytes() == data[::-1]
        listed = client.list_objects_v2(Bucket="grid", Prefix="team-a/blobs/")["Contents"]
        names = {o["Key"].rsplit("/", 1)[-1] for o in listed}
        for content in (data, data[::-1], SCRIPT.encode()):
            assert blob_name(digests.of_bytes(content)) in names  # inputs and outputs in S3
        assert not (server.home / "blobs").exists()  # nothing kept on the grid's disk
        # the 10 MiB output came straight from the bucket (a presigned URL), not via the grid
        metrics = server.metrics()
        assert re.search(r"^rgrid_output_bytes_sent_total 0\.0$", metrics, re.M), metrics
        redirect = httpx.get(
            f"{server.url}/api/v1/executions/{run_id(result)}/outputs/out/reversed.bin",
            headers={"Authorization": f"Bearer {server.admin_key}"},
        )
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith(s3_server.endpoint + "/grid/team-a/")
        status = cli("status", run_id(result))
        assert "succeeded" in status.stdout
        # the bucket deletes what the janitor misses: a day past the 30-day period, this prefix
        (rule,) = client.get_bucket_lifecycle_configuration(Bucket="grid")["Rules"]
        assert rule["Filter"] == {"Prefix": "team-a/blobs/"} and rule["Status"] == "Enabled"
        assert rule["Expiration"] == {"Days": 31}
    finally:
        server.stop()


def test_a_missing_bucket_stops_the_grid_at_start_with_a_clear_message(
    tmp_path: Path, s3_server: S3Server
) -> None:
    server = make_server(tmp_path, RGRID_STORAGE_URL="s3://no-such-bucket", **s3_server.env())
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    log = (server.home / "server.log").read_text()
    assert "storage could not reach the bucket: NoSuchBucket" in log
