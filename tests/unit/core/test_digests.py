"""Content addresses: BLAKE3 for new content, sha256 still checked for older content; and the
tree digest, one name per listing whatever order it is given in, never the same for two
listings (paths may hold any byte but NUL and ``/`` separators)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from blake3 import blake3

from rgrid import digests
from rgrid.digests import of_tree

DIGEST = "blake3:" + "a" * 64


def test_new_content_is_addressed_with_blake3_and_says_so() -> None:
    assert digests.of_bytes(b"abc") == "blake3:" + blake3(b"abc").hexdigest()
    assert digests.of_bytes(b"abc", "sha256") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_a_file_is_hashed_in_pieces_and_checked_with_the_algorithm_its_address_names(
    tmp_path: Path,
) -> None:
    data = bytes(range(256)) * 9000  # over two pieces of 1 MiB
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert digests.of_file(path) == digests.of_bytes(data)
    old = "sha256:" + hashlib.sha256(data).hexdigest()
    assert digests.file_matches(path, old)
    assert digests.file_matches(path, digests.of_bytes(data))
    assert not digests.file_matches(path, digests.of_bytes(data + b"!"))
    hasher = digests.Hasher.like(old)
    hasher.update(data)
    assert hasher.result() == old


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("blake3:" + "0" * 64, True),
        ("sha256:" + "f" * 64, True),
        ("0" * 64, False),  # no algorithm
        ("md5:" + "0" * 64, False),
        ("blake3:" + "0" * 63, False),
        ("blake3:" + "A" * 64, False),  # upper case
        ("blake3:" + "0" * 64 + "\n", False),
        (None, False),
    ],
)
def test_only_a_known_algorithm_and_64_lowercase_hex_digits_make_an_address(
    value: object, valid: bool
) -> None:
    assert digests.is_digest(value) is valid


def test_the_order_of_files_and_directories_does_not_matter() -> None:
    files = [("b.txt", DIGEST, 1), ("a/x.txt", DIGEST, 2)]
    assert of_tree(files, ["d", "c"]) == of_tree(list(reversed(files)), ["c", "d", "c"])
    assert digests.algorithm_of(of_tree(files, [])) == "blake3"


def test_listings_that_differ_anywhere_have_other_names() -> None:
    names = {
        of_tree([], []),
        of_tree([("a", DIGEST, 1)], []),
        of_tree([("a", DIGEST, 2)], []),  # the size
        of_tree([("a", "blake3:" + "b" * 64, 1)], []),  # the content
        of_tree([("a", "sha256:" + "a" * 64, 1)], []),  # the algorithm
        of_tree([], ["a"]),  # a directory, not a file
        of_tree([("a\x00" + DIGEST, DIGEST, 1)], []),  # (never a real path: NUL)
        of_tree([("line\nbreak", DIGEST, 1)], []),
        of_tree([("line", DIGEST, 1), ("break", DIGEST, 1)], []),
        of_tree([("ünï cödé", DIGEST, 1)], []),
    }
    assert len(names) == 10
