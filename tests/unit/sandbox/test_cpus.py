"""CPU sets: spread over the CPUs across every process of the host, dead holders forgotten."""

from __future__ import annotations

import os
from pathlib import Path

from rgrid.sandbox.cpus import CpuSets, cpu_list, online_file


def test_two_processes_sandboxes_spread_over_the_cpus(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    registry.mkdir(mode=0o700)
    server, ray_worker = CpuSets({0, 1, 2}, registry), CpuSets({0, 1, 2}, registry)
    first, one = server.take(1)
    second, two = ray_worker.take(1)  # another process: it sees the first holder's file
    third, _ = server.take(2)
    assert (first, second) == ((0,), (1,))
    assert third == (0, 2)  # CPU 2 is free; 0 and 1 are held once each
    server.give_back(first, one)
    ray_worker.give_back(second, two)
    assert sorted(p.name for p in (registry / "0").iterdir()) != []  # the third still holds 0


def test_a_dead_processes_holds_do_not_count(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    (registry / "0").mkdir(parents=True)
    (registry / "0" / "999999999-abc").touch()  # no such process
    taken, _ = CpuSets({0, 1}, registry).take(1)
    assert taken == (0,)
    assert not (registry / "0" / "999999999-abc").exists()


def test_without_a_registry_it_counts_in_this_process() -> None:
    sets = CpuSets({0, 1})
    a, _ = sets.take(1)
    b, _ = sets.take(1)
    assert (a, b) == ((0,), (1,))


def test_the_online_file_lists_only_the_chosen_cpus() -> None:
    assert cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    path = online_file((3,))
    assert path.read_text() == "3\n" and oct(path.stat().st_mode & 0o777) == "0o644"
    path.unlink()
    assert online_file((3,)).read_text() == "3\n"  # made again when something removed it
    assert os.stat(path.parent).st_uid == os.geteuid()
