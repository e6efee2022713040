"""storage.from_url scheme dispatch, and the key helpers in storage/__init__.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgrid import errors
from rgrid.storage import blob_key, from_url, validate_digest, validate_key
from rgrid.storage.local import LocalStorage
from rgrid.storage.memory import InMemoryStorage

HEX = "ab" + "0" * 62
SHA = "blake3:" + HEX


def test_file_url_gives_local_storage(tmp_path: Path) -> None:
    storage = from_url(f"file://{tmp_path}/blobs")
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / "blobs"


def test_file_url_with_localhost_and_percent_escapes() -> None:
    storage = from_url("file://localhost/var/lib/rgrid%20data")
    assert isinstance(storage, LocalStorage)
    assert storage.root == Path("/var/lib/rgrid data")


def test_memory_url_gives_a_fresh_in_memory_storage() -> None:
    first, second = from_url("memory://"), from_url("memory://")
    assert isinstance(first, InMemoryStorage)
    assert first is not second


@pytest.mark.parametrize(
    "url",
    ["file://relative/path", "file:relative", "file:///a?x=1", "file:///a#frag", "file:///a%00b"],
)
def test_bad_file_urls(url: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="file:///absolute/path"):
        from_url(url)


def test_s3_url_names_bucket_and_prefix() -> None:
    from rgrid.storage.s3 import S3Storage

    storage = from_url("s3://my-bucket/grid/blobs/")
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "grid/blobs")
    bare = from_url("s3://my-bucket")
    assert isinstance(bare, S3Storage) and bare.prefix == ""


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://b/p?x=1", "s3://b/../etc"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="s3://bucket"):
        from_url(url)


@pytest.mark.parametrize("url", ["http://example.com/x", "/var/lib/rgrid", "", "gs://bucket"])
def test_unknown_schemes_name_the_accepted_ones(url: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        from_url(url)
    assert "file:///" in info.value.message
    assert "memory://" in info.value.message


def test_blob_key_layout() -> None:
    assert blob_key("acct_1", SHA) == f"blobs/acct_1/ab/{HEX}.b3"
    # where blobs were stored before BLAKE3: their sha256 addresses keep their keys
    assert blob_key("acct_1", f"sha256:{HEX}") == f"blobs/acct_1/ab/{HEX}"


@pytest.mark.parametrize(
    "bad",
    ["", "ab", HEX, f"md5:{HEX}", SHA.upper(), SHA + "0", SHA[:-1] + "g", f" {SHA[1:]}"],
)
def test_blob_key_refuses_malformed_digest(bad: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        blob_key("acct", bad)
    assert info.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize("account", ["", "..", "a/b", "a b", ".hidden"])
def test_blob_key_refuses_unsafe_account_ids(account: str) -> None:
    with pytest.raises(errors.UnsafePath):
        blob_key(account, SHA)


@pytest.mark.parametrize("key", ["a", "a/b/c", "x.tar.gz", "a-b_c.d/e", "a/.b", "a/b..c", HEX])
def test_safe_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "/a", "a/", "a//b", "..", "a/..", "a/./b", ".tmp/x", "a\\b", "a\x00b", "x" * 201]
)
def test_unsafe_keys(key: str) -> None:
    with pytest.raises(errors.UnsafePath) as info:
        validate_key(key)
    assert info.value.details == {"key": key}


def test_overlong_key() -> None:
    with pytest.raises(errors.UnsafePath, match="longer"):
        validate_key("/".join(["abcdefghi"] * 103))


def test_validate_digest() -> None:
    assert validate_digest(SHA) == SHA
    with pytest.raises(errors.InvalidRequest):
        validate_digest("xyz")
