"""A run is submitted first; the grid's refusal names the contents it lacks, and only those are
uploaded before it is submitted again. A grid that holds them all answers the one request; one
of an earlier version, which refuses without the list, is asked for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from rgrid import digests, errors
from rgrid.client import Client
from rgrid.client.bundle import Bundle, LocalFile
from rgrid.client.runs import UploadReport, submit_with_tree


class Grid:
    """Records the calls; ``holds``: the contents it has; ``listing``: whether its refusal
    lists the lacking ones (an earlier grid's does not)."""

    def __init__(self, holds: set[str], listing: bool = True) -> None:
        self.holds = set(holds)
        self.listing = listing
        self.asked: list[str] = []

    def submit(self, named: list[str]) -> str:
        self.asked.append("submit")
        lacking = sorted(d for d in named if d not in self.holds)
        if not lacking:
            return "exec_1"
        if self.listing:
            raise errors.BlobsUnknown("file contents not uploaded: x", details={"missing": lacking})
        raise errors.InvalidRequest("file contents not uploaded: x")

    def missing_blobs(self, hashes: list[str]) -> list[str]:
        self.asked.append("missing")
        return [h for h in hashes if h not in self.holds]

    def upload_blob(self, digest: str, path: Path, size: int) -> None:
        self.asked.append(f"upload {path.name}")
        self.holds.add(digest)


def _files(tmp_path: Path) -> list[LocalFile]:
    made = []
    for name, body in (("job.py", b"print(1)\n"), ("in.csv", b"a\n")):
        (tmp_path / name).write_bytes(body)
        made.append(LocalFile(name, tmp_path / name, digests.of_bytes(body), len(body)))
    return made


def _submit(grid: Grid, files: list[LocalFile]) -> tuple[Any, UploadReport]:
    bundle = Bundle(script="job.py", args=[], files=files)
    named = [f.digest for f in files]
    return submit_with_tree(
        cast(Client, grid), bundle, lambda: grid.submit(named), UploadReport(0, 0, 0), files
    )


def test_a_grid_holding_every_content_answers_the_one_request(tmp_path: Path) -> None:
    files = _files(tmp_path)
    grid = Grid({f.digest for f in files})
    answer, report = _submit(grid, files)
    assert answer == "exec_1"
    assert grid.asked == ["submit"]
    assert report == UploadReport(0, 0, 2)


@pytest.mark.parametrize("listing", [True, False], ids=["listed", "earlier-grid"])
def test_only_the_lacking_content_is_uploaded(tmp_path: Path, listing: bool) -> None:
    files = _files(tmp_path)
    grid = Grid({files[0].digest}, listing=listing)
    answer, report = _submit(grid, files)
    assert answer == "exec_1"
    asked = ["submit", "upload in.csv", "submit"]
    assert grid.asked == (asked if listing else [*asked[:1], "missing", *asked[1:]])
    assert report == UploadReport(1, 2, 1)


class LosingGrid(Grid):
    """Loses every content it is sent (as if retention took it at once)."""

    def upload_blob(self, digest: str, path: Path, size: int) -> None:
        self.asked.append(f"upload {path.name}")


class RefusingGrid(Grid):
    """Refuses the submission for another reason."""

    def submit(self, named: list[str]) -> str:
        self.asked.append("submit")
        raise errors.InvalidRequest("bad timeout")


def test_a_content_lost_again_is_the_grids_error(tmp_path: Path) -> None:
    files = _files(tmp_path)
    grid = LosingGrid(set())
    with pytest.raises(errors.BlobsUnknown):
        _submit(grid, files)
    assert grid.asked == ["submit", "upload job.py", "upload in.csv", "submit"]


def test_another_refusal_is_not_taken_for_a_lacking_content(tmp_path: Path) -> None:
    files = _files(tmp_path)
    grid = RefusingGrid(set())
    with pytest.raises(errors.InvalidRequest, match="bad timeout"):
        _submit(grid, files)
    assert grid.asked == ["submit"]
