"""What the CLI says when the grid refuses an upload's bytes: the file changed since it was
hashed (named), or it did not (the bytes were damaged on the way: the grid's own error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgrid import digests, errors
from rgrid.client.bundle import LocalFile
from rgrid.client.runs import upload_files


class RefusingGrid:
    """Answers like a grid that received bytes not matching their hash."""

    def missing_blobs(self, hashes: list[str]) -> list[str]:
        return hashes

    def upload_blob(self, digest: str, path: Path, size: int) -> None:
        raise errors.IntegrityError(f"blob: expected digest {digest}, received something else")


def hashed(path: Path, content: bytes) -> LocalFile:
    path.write_bytes(content)
    return LocalFile(path.name, path, digests.of_bytes(content), len(content))


def test_an_unchanged_file_keeps_the_grids_error(tmp_path: Path) -> None:
    entry = hashed(tmp_path / "data.csv", b"a,b\n1,2\n")
    with pytest.raises(errors.IntegrityError):
        upload_files(RefusingGrid(), [entry])  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [b"a,b\n9,9\n", b"a,b\n", b"a,b\n1,2\n3,4\n"])
def test_a_changed_file_is_named(tmp_path: Path, now: bytes) -> None:
    entry = hashed(tmp_path / "data.csv", b"a,b\n1,2\n")
    (tmp_path / "data.csv").write_bytes(now)
    with pytest.raises(errors.UsageError, match=r"data\.csv changed while rgrid was sending it"):
        upload_files(RefusingGrid(), [entry])  # type: ignore[arg-type]


def test_a_file_deleted_since_is_named(tmp_path: Path) -> None:
    entry = hashed(tmp_path / "data.csv", b"a,b\n1,2\n")
    (tmp_path / "data.csv").unlink()
    with pytest.raises(errors.UsageError, match="changed while rgrid was sending it"):
        upload_files(RefusingGrid(), [entry])  # type: ignore[arg-type]
