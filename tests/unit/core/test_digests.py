"""The tree digest: one name per listing, whatever order it is given in, never the same for two
listings (paths may hold any byte but NUL and ``/`` separators)."""

from __future__ import annotations

from rgrid.digests import tree_digest

SHA = "a" * 64


def test_the_order_of_files_and_directories_does_not_matter() -> None:
    files = [("b.txt", SHA, 1), ("a/x.txt", SHA, 2)]
    assert tree_digest(files, ["d", "c"]) == tree_digest(list(reversed(files)), ["c", "d", "c"])


def test_listings_that_differ_anywhere_have_other_names() -> None:
    names = {
        tree_digest([], []),
        tree_digest([("a", SHA, 1)], []),
        tree_digest([("a", SHA, 2)], []),  # the size
        tree_digest([("a", "b" * 64, 1)], []),  # the content
        tree_digest([], ["a"]),  # a directory, not a file
        tree_digest([("a\x00" + SHA, SHA, 1)], []),  # (never a real path: NUL)
        tree_digest([("line\nbreak", SHA, 1)], []),
        tree_digest([("line", SHA, 1), ("break", SHA, 1)], []),
        tree_digest([("ünï cödé", SHA, 1)], []),
    }
    assert len(names) == 9
