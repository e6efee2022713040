"""rgrid's stdin on the client: what counts as piped, what a batch refuses, spooling."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rgrid import digests, errors
from rgrid.client import stdin


class Pipe:
    """Both ends of a pipe; ``close`` each end once, whoever closed the other."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        self._open = {self.read, self.write}

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    made = Pipe()
    yield made
    made.close_all()


def test_a_pipe_a_file_and_dev_null_are_piped_a_closed_fd_is_not(
    pipe: Pipe, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with path.open("rb") as file, open(os.devnull, "rb") as null:
        assert stdin.is_piped(pipe.read) and stdin.is_piped(file.fileno())
        assert stdin.is_piped(null.fileno())
    closed = os.dup(pipe.read)
    os.close(closed)
    assert not stdin.is_piped(closed)


def test_a_batch_refuses_a_pipe_or_a_file_but_not_dev_null(pipe: Pipe, tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="--batch cannot forward stdin"):
        stdin.refuse_for_batch(pipe.read)
    path = tmp_path / "f"
    path.write_bytes(b"")
    with path.open("rb") as file, pytest.raises(errors.UsageError):
        stdin.refuse_for_batch(file.fileno())
    with open(os.devnull, "rb") as null:
        stdin.refuse_for_batch(null.fileno())


def test_spooling_hashes_every_byte_and_removes_the_file(pipe: Pipe) -> None:
    data = os.urandom(3 * stdin.CHUNK + 17)

    def writer() -> None:  # outpaces the pipe's buffer: the spooler must keep reading
        os.write(pipe.write, data[: stdin.CHUNK])
        os.write(pipe.write, data[stdin.CHUNK :])
        pipe.close(pipe.write)

    thread = threading.Thread(target=writer)
    thread.start()
    quiet: list[bool] = []
    with stdin.spooled(pipe.read, on_quiet=lambda: quiet.append(True)) as spooled:
        assert (spooled.size, spooled.digest) == (len(data), digests.of_bytes(data))
        assert spooled.source.read_bytes() == data
        assert spooled.rel == stdin.STDIN_NAME
    thread.join()
    assert not spooled.source.exists()
    assert quiet == []  # the data came at once: no notice


def test_a_silent_pipe_gets_one_notice_a_closed_one_none(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stdin, "QUIET_NOTICE_S", 0.05)

    def late() -> None:
        os.write(pipe.write, b"late")
        pipe.close(pipe.write)

    timer = threading.Timer(0.5, late)
    timer.start()
    told: list[bool] = []
    with stdin.spooled(pipe.read, on_quiet=lambda: told.append(True)) as spooled:
        assert spooled.source.read_bytes() == b"late"
    timer.join()
    assert told == [True]
    other = Pipe()
    other.close(other.write)  # end-of-file is there at once: nothing to tell
    with stdin.spooled(other.read, on_quiet=lambda: told.append(True)) as spooled:
        assert spooled.size == 0
    other.close_all()
    assert told == [True]


def test_an_empty_stdin_is_spooled_to_no_file(
    pipe: Pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`< /dev/null` or a closed pipe: the empty content, and no temporary file made for it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    pipe.close(pipe.write)
    with stdin.spooled(pipe.read) as spooled:
        assert (spooled.size, spooled.digest) == (0, digests.of_bytes(b""))
        assert spooled.source.read_bytes() == b""
        assert list(tmp_path.iterdir()) == []
    with open(os.devnull, "rb") as null, stdin.spooled(null.fileno()) as spooled:
        assert (spooled.size, spooled.digest) == (0, digests.of_bytes(b""))
    assert Path(os.devnull).exists()  # never removed
