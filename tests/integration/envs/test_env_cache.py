"""The environment cache with real uv: build once, reuse without uv, LRU eviction of unused envs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.build_probe import PROBE, VERSION, make_sdist

from rgrid import errors
from rgrid.envs import pythons
from rgrid.envs.build import BuildConfig
from rgrid.envs.cache import EnvCache, env_key


def cache_at(root: Path) -> EnvCache:
    """A cache whose builds get this host's TLS trust and proxy settings, as the grid's do."""
    return EnvCache(root, build_config=BuildConfig.from_environ(os.environ, None))


@pytest.fixture(scope="module")
def interpreter() -> pythons.Interpreter:
    own = pythons.python_version()
    return next(i for i in pythons.discover() if i.minor == own)


async def collect(lines: list[str], line: str) -> None:
    lines.append(line)


async def test_built_once_then_reused_without_uv(
    tmp_path: Path, interpreter: pythons.Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = cache_at(tmp_path)
    lines: list[str] = []
    async with cache.environment(
        ["six==1.16.0"], interpreter, lambda line: collect(lines, line)
    ) as env:
        assert env.built_now and "six==1.16.0" in env.packages
        assert (env.root / "bin" / "python").exists()
    assert any("six==1.16.0" in line for line in lines)
    # A second use must not run uv at all: make uv unfindable and reuse.
    monkeypatch.setattr("rgrid.envs.build.find_uv", lambda: "/nonexistent/uv")
    again: list[str] = []
    async with cache.environment(
        ["six==1.16.0"], interpreter, lambda line: collect(again, line)
    ) as env:
        assert not env.built_now and again == []
    assert cache.builds == 1


async def test_concurrent_requests_for_a_new_spec_build_once(
    tmp_path: Path, interpreter: pythons.Interpreter
) -> None:
    cache = cache_at(tmp_path)

    async def use() -> tuple[str, ...]:
        async with cache.environment(["six"], interpreter, lambda _l: asyncio.sleep(0)) as env:
            return env.packages

    results = await asyncio.gather(*(use() for _ in range(10)))
    assert cache.builds == 1 and len(set(results)) == 1


async def test_a_changed_line_is_a_new_env_and_eviction_spares_envs_in_use(
    tmp_path: Path, interpreter: pythons.Interpreter
) -> None:
    cache = cache_at(tmp_path)
    quiet = lambda _line: asyncio.sleep(0)  # noqa: E731
    async with cache.environment(["six==1.16.0"], interpreter, quiet):
        pass
    old = tmp_path / env_key(["six==1.16.0"], interpreter)
    cache.budget_bytes = 1  # everything is over budget from now on
    async with cache.environment(["six==1.17.0"], interpreter, quiet) as new:
        assert new.built_now and new.root != old
        # while "new" is held, only the unused "old" can go
        assert cache.evict() == [old.name] and not old.exists()
        assert new.root.exists()
    # released after a build: the cache evicts what is over budget, now "new" too
    assert not new.root.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(("locks", "."))] == []


async def test_failing_install_leaves_nothing(
    tmp_path: Path, interpreter: pythons.Interpreter
) -> None:
    cache = cache_at(tmp_path)
    with pytest.raises(errors.DependencyError) as caught:
        async with cache.environment(
            ["nonexistent-package-xyz-123"], interpreter, lambda _l: asyncio.sleep(0)
        ):
            pass
    assert "nonexistent-package-xyz-123" in caught.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["locks"]


@pytest.mark.parametrize("box", ["bwrap", "process"])
async def test_a_build_backend_gets_a_scrubbed_environment_in_either_sandbox(
    tmp_path: Path, interpreter: pythons.Interpreter, monkeypatch: pytest.MonkeyPatch, box: str
) -> None:
    monkeypatch.setenv("RGRID_SANDBOX", box)
    monkeypatch.setenv("RGRID_ADMIN_KEY", "rg_must-not-reach-builds")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-reach-builds")
    grid_home = tmp_path / "grid"
    (grid_home / "envs").mkdir(parents=True)
    (grid_home / "secret.key").write_text("key")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_sdist(wheels, grid_home, [])
    cache = EnvCache(grid_home / "envs", build_config=BuildConfig.from_environ(os.environ, wheels))
    async with cache.environment(
        [f"rgrid-build-probe=={VERSION}"], interpreter, lambda _l: asyncio.sleep(0)
    ) as env:
        done = subprocess.run(
            [str(env.python), "-c", f"import {PROBE}; print({PROBE}.SEEN)"],
            capture_output=True,
            text=True,
            check=True,
        )
    seen = json.loads(done.stdout)
    assert not [name for name in seen["environ"] if name.startswith(("RGRID_", "AWS_"))]
    if box == "bwrap":
        assert seen["secret_key"] == "denied: ENOENT" and seen["home_listing"] == ["envs"]
    else:  # the documented weakness of the fallback: the build sees the grid's files
        assert seen["secret_key"] == "key"
