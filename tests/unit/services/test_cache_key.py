"""The result cache's key: what makes two runs the same, and naming the part that differs."""

from __future__ import annotations

from typing import Any

from rgrid.domain import FileRef
from rgrid.services.cache import cache_key, explain_miss, rekeyed

SECRET = b"k" * 32


def key_files() -> list[FileRef]:
    return [
        FileRef("main.py", "blake3:" + "a" * 64, 10),
        FileRef("helper.py", "blake3:" + "b" * 64, 10),
        FileRef("data/x.csv", "blake3:" + "c" * 64, 10),
    ]


def key(**changes: Any) -> Any:
    base: dict[str, Any] = {
        "script": "main.py",
        "args": ["data/x.csv", "--fast"],
        "files": key_files(),
        "env": {"TOKEN": "s3cret"},
        "requirements": ["pyyaml", "requests"],
        "runtime": "/3.11",
        "network": True,
    }
    base.update(changes)
    return cache_key(SECRET, **base)


def test_the_same_run_has_the_same_key_and_order_does_not_matter() -> None:
    assert key().digest == key().digest
    assert key(files=list(reversed(key_files()))).digest == key().digest
    assert key(requirements=["requests", "pyyaml"]).digest == key().digest


def test_every_part_changes_the_key_and_is_named() -> None:
    files = [
        FileRef("main.py", "blake3:" + "a" * 64, 10),
        FileRef("helper.py", "blake3:" + "b" * 64, 10),
    ]
    cases = {
        "the script changed": key(
            files=[FileRef("main.py", "blake3:" + "d" * 64, 10), *key_files()[1:]]
        ),
        "a local module changed: helper.py": key(
            files=[key_files()[0], FileRef("helper.py", "blake3:" + "d" * 64, 10), key_files()[2]]
        ),
        "a local module was added: util.py": key(
            files=[*key_files(), FileRef("util.py", "blake3:" + "e" * 64, 1)]
        ),
        "an input changed: data/x.csv": key(
            files=[*files, FileRef("data/x.csv", "blake3:" + "d" * 64, 10)]
        ),
        "an input was removed: data/x.csv": key(files=files),
        "the arguments changed": key(args=["data/x.csv", "--slow"]),
        "an environment variable changed: TOKEN": key(env={"TOKEN": "other"}),
        "an environment variable was added: DEBUG": key(env={"TOKEN": "s3cret", "DEBUG": "1"}),
        "the dependencies changed": key(requirements=["pyyaml"]),
        "the runtime changed": key(runtime="/3.12"),
        "the network setting changed": key(network=False),
        "stdin changed": key(stdin="blake3:" + "f" * 64),
    }
    for reason, changed in cases.items():
        assert changed.digest != key().digest, reason
        assert explain_miss(changed.parts, key().parts) == reason
    assert explain_miss(key().parts, key().parts) is None


def test_env_values_are_never_stored_in_the_clear_and_need_the_secret() -> None:
    parts = str(key().parts)
    assert "s3cret" not in parts
    other_grid = cache_key(
        b"x" * 32,
        script="main.py",
        args=["data/x.csv", "--fast"],
        files=key_files(),
        env={"TOKEN": "s3cret"},
        requirements=["pyyaml", "requests"],
        runtime="/3.11",
        network=True,
    )
    assert other_grid.digest != key().digest


def test_a_py_file_named_by_an_argument_is_an_input() -> None:
    parts = key(args=["helper.py"]).parts
    assert "helper.py" in parts["inputs"] and "helper.py" not in parts["modules"]


def test_rekeyed_with_new_input_contents_equals_a_fresh_key() -> None:
    fresh = key(files=[*key_files()[:2], FileRef("data/x.csv", "blake3:" + "f" * 64, 10)])
    assert rekeyed(SECRET, key().parts, {"data/x.csv": "blake3:" + "f" * 64}) == fresh
    assert rekeyed(SECRET, key().parts, {}).digest == key().digest


def test_stdin_is_a_part_only_when_given() -> None:
    """Keys of runs without a piped stdin are as before it existed (earlier results still
    hit); two different stdins differ, and so does one against none."""
    assert "stdin" not in key().parts
    assert key(stdin=None).digest == key().digest
    assert key(stdin="blake3:" + "1" * 64).digest == key(stdin="blake3:" + "1" * 64).digest
    assert key(stdin="blake3:" + "1" * 64).digest != key(stdin="blake3:" + "2" * 64).digest
    assert (
        explain_miss(key(stdin="blake3:" + "2" * 64).parts, key(stdin="blake3:" + "1" * 64).parts)
        == "stdin changed"
    )
    assert explain_miss(key().parts, key(stdin="blake3:" + "1" * 64).parts) == "stdin changed"


def test_a_run_hashed_with_another_algorithm_is_explained_as_such() -> None:
    old = [FileRef(f.path, "sha256:" + f.digest.partition(":")[2], f.size) for f in key_files()]
    assert key(files=old).digest != key().digest
    assert (
        explain_miss(key().parts, key(files=old).parts)
        == "that run's files were hashed with sha256, these with blake3"
    )
