"""Where a project's hash cache lives: named by the BLAKE3 of the project's path; the file an
earlier version named by its SHA-256 is taken over, not lost."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rgrid import digests
from rgrid.client.hashcache import default_location


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".rgrid" / "hashes"
    folder.mkdir(parents=True)
    return folder


def test_the_cache_is_named_by_the_blake3_of_the_project_path(home: Path) -> None:
    project = Path("/some/project")
    expected = digests.hex_of(digests.of_bytes(os.fsencode(project)))[:24]
    location = default_location(project)
    assert location == home / f"{expected}.blake3.marshal"
    assert list(home.iterdir()) == []  # nothing made until the cache is saved


def test_an_earlier_sha256_named_cache_is_taken_over(home: Path) -> None:
    project = Path("/some/project")
    earlier = home / f"{hashlib.sha256(os.fsencode(project)).hexdigest()[:24]}.blake3.marshal"
    earlier.write_bytes(b"entries")
    location = default_location(project)
    assert location.read_bytes() == b"entries"
    assert not earlier.exists()
    other = default_location(Path("/another/project"))  # another project's: untouched
    assert not other.exists() and location.read_bytes() == b"entries"
