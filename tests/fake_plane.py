"""A control plane in memory, for tests of the runner and of executors without a grid: inputs
served from a dict, outputs and log segments kept in lists, each checked as the grid checks it
(an input's bytes against its hash, log sequence numbers consecutive)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rgrid import digests, domain, errors


class FakeControlPlane:
    """``runner.ControlPlane`` for one execution."""

    def __init__(self, blobs: dict[str, bytes] | None = None) -> None:
        #: contents by digest, as the grid's storage would hold them
        self.blobs = dict(blobs or {})
        self.outputs: dict[str, bytes] = {}
        self.segments: list[domain.LogSegment] = []
        self.fetched: list[str] = []

    @staticmethod
    def ref(path: str, data: bytes) -> domain.FileRef:
        return domain.FileRef(path, digests.of_bytes(data), len(data))

    def add(self, path: str, data: bytes) -> domain.FileRef:
        """Hold ``data`` as a blob; its reference under ``path``."""
        ref = self.ref(path, data)
        self.blobs[ref.digest] = data
        return ref

    async def fetch_input(self, ref: domain.FileRef, dest: Path) -> None:
        data = self.blobs.get(ref.digest)
        if data is None:
            raise errors.BlobCorrupt(f"input {ref.path!r} is lost")
        dest.write_bytes(data)
        self.fetched.append(ref.path)

    async def copy_inputs(self, placed: Sequence[tuple[domain.FileRef, Path]]) -> list[bool]:
        return [False] * len(placed)  # nothing vouched for: each is fetched

    async def store_outputs(self, files: Sequence[tuple[str, Path]]) -> list[domain.FileRef]:
        refs = []
        for rel, path in files:
            data = path.read_bytes()
            self.outputs[rel] = data
            refs.append(self.ref(rel, data))
        return refs

    async def append_logs(self, segments: list[domain.LogSegment]) -> None:
        expected = self.segments[-1].last_seq + 1 if self.segments else segments[0].first_seq
        for segment in segments:
            assert segment.first_seq == expected, f"line {segment.first_seq} after {expected - 1}"
            expected = segment.last_seq + 1
        self.segments.extend(segments)

    def lines(self) -> list[tuple[str, str]]:
        """(stream, text) of every line shipped, in order."""
        found = []
        for segment in self.segments:
            for text in domain.segment_lines(segment.text):
                found.append((segment.stream.value, text))
        return found
