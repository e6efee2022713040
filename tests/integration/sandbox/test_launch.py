"""Sandbox launchers on the real cgroup v1 hierarchies of these machines: a process started from
a launcher's thread is born in the execution's group; the group's kill spares the grid whose
thread is in it; once finished, the thread is out and the group gone."""

from __future__ import annotations

import os
import subprocess
import threading

from rgrid.sandbox import cgroups, launch


def members(group: cgroups.ExecutionGroup, listing: str) -> set[int]:
    return {int(n) for d in group.directories for n in (d / listing).read_text().split()}


def test_a_process_started_from_a_launcher_is_born_in_its_group() -> None:
    launcher = launch.Launcher.prepare()
    group = launcher.group
    assert group is not None, "these machines have cgroup v1: a thread can join a group"
    thread_id = launcher.executor.submit(threading.get_native_id).result()
    assert thread_id in members(group, "tasks")
    assert threading.get_native_id() not in members(group, "tasks")  # only that thread
    child = launcher.executor.submit(lambda: subprocess.Popen(["sleep", "30"])).result()
    try:
        assert child.pid in members(group, "cgroup.procs")
        group.kill()  # as when the execution ends: its processes die, the grid does not
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()
    launcher.finish()
    assert cgroups.wait_removed(timeout_s=10)
    assert [d for d in group.directories if d.exists()] == []
    assert os.getpid() > 0  # still here


async def test_taking_a_launcher_prepares_the_next_in_the_background() -> None:
    first = await launch.take()
    second = await launch.take()
    try:
        assert first.group is not None and second.group is not None
        assert first.group.directories != second.group.directories
    finally:
        first.finish()
        second.finish()
    assert cgroups.wait_removed(timeout_s=10)
