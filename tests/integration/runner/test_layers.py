"""The tree layers on a real disk: published for the sandbox's user, shared by key, and evicted
least recently used first, never while an execution holds one."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rgrid import digests
from rgrid.runner import layers, mounts

OWNER = 65534


def build(store: layers.Layers, name: str) -> layers.Layer:
    key = digests.of_tree([(f"{name}/file.txt", "blake3:" + "0" * 64, 1)], ())
    with store.hold(key) as held:
        assert held is None
        scratch = store.scratch()
        (scratch / name).mkdir()
        (scratch / name / "file.txt").write_text(name)
        layer = store.publish(scratch, key)
    time.sleep(0.01)  # distinct use times
    return layer


def test_a_published_layer_belongs_to_the_sandbox_user(tmp_path: Path) -> None:
    store = layers.Layers(tmp_path / ".layers", OWNER)
    layer = build(store, "a")
    info = (layer.path / "a" / "file.txt").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (OWNER, OWNER, 0o644)
    assert (layer.path / "a").stat().st_uid == OWNER
    with store.hold(layer.key) as held:
        assert held == layer
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".build-")] == []


def test_a_layer_built_twice_at_once_is_kept_once(tmp_path: Path) -> None:
    store = layers.Layers(tmp_path / ".layers", OWNER)
    first, second = store.scratch(), store.scratch()
    for scratch, text in ((first, "one"), (second, "two")):
        (scratch / "f").write_text(text)
    kept = store.publish(first, "k" * 64)
    again = store.publish(second, "k" * 64)
    assert kept == again
    assert (kept.path / "f").read_text() == "one"
    assert not second.exists()


def test_eviction_keeps_the_most_recent_and_every_held_layer(tmp_path: Path) -> None:
    store = layers.Layers(tmp_path / ".layers", OWNER, keep=1)
    oldest, middle, newest = (build(store, name) for name in ("a", "b", "c"))
    with store.hold(oldest.key) as held:
        assert held is not None
        store.evict()
        assert oldest.path.is_dir()  # in use: an execution's overlay is on it
    assert not middle.path.exists()
    assert not (store.root / f"{middle.path.name}.lock").exists()
    assert newest.path.is_dir()
    store.evict()  # no longer held, and not among the most recent one
    assert not oldest.path.exists()
    name = newest.path.name
    assert sorted(p.name for p in store.root.iterdir()) == [name, f"{name}.lock"]
    # an overlay's options separate directories with ":": no layer's path may hold one
    assert ":" in newest.key and ":" not in name


def test_a_used_layer_counts_as_recent(tmp_path: Path) -> None:
    store = layers.Layers(tmp_path / ".layers", OWNER, keep=1)
    first, second = build(store, "a"), build(store, "b")
    time.sleep(0.01)
    store.touch(first)
    store.evict()
    assert first.path.is_dir() and not second.path.exists()


def test_an_overlay_mount_leaves_the_layer_unchanged(tmp_path: Path) -> None:
    store = layers.Layers(tmp_path / ".layers", OWNER)
    layer = build(store, "a")
    overlay = mounts.Overlay(layer.path, tmp_path / "up", tmp_path / "ovl", tmp_path / "merged")
    for path in (overlay.upper, overlay.scratch, overlay.merged):
        path.mkdir()
    overlay.mount()
    try:
        (overlay.merged / "a" / "file.txt").write_text("changed")
        (overlay.merged / "new.txt").write_text("new")
        assert os.path.ismount(overlay.merged)
    finally:
        overlay.unmount()
    assert not os.path.ismount(overlay.merged)
    assert (layer.path / "a" / "file.txt").read_text() == "a"
    assert (overlay.upper / "a" / "file.txt").read_text() == "changed"
    assert (overlay.upper / "new.txt").read_text() == "new"
    mounts.unmount(overlay.merged)  # nothing mounted there any more: no error
