"""The sandboxed build's plan, with a fake sandbox: what each step runs, sees and gets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rgrid import errors, sandbox
from rgrid.envs import build, cache
from rgrid.envs.pythons import Interpreter

INTERPRETER = Interpreter((3, 11, 7), Path("/opt/py/bin/python3.11"), Path("/opt/py"))


class RecordingSandbox:
    """Records each spec; the venv step makes the environment directory, install prints uv's
    summary line."""

    strength = "fake"

    def __init__(self, name: str, install_code: int = 0) -> None:
        self.name = name
        self.specs: list[sandbox.SandboxSpec] = []
        self._install_code = install_code

    async def run(
        self,
        spec: sandbox.SandboxSpec,
        on_output: sandbox.OutputCallback,
        cancel: asyncio.Event | None = None,
    ) -> sandbox.SandboxResult:
        self.specs.append(spec)
        code = 0
        if "venv" in spec.argv:
            (Path(spec.argv[-1]) / "bin").mkdir(parents=True)
        elif "install" in spec.argv:
            await on_output("stderr", [b"Resolved 1 package\n + six==1.17.0\n"])
            code = self._install_code
        return sandbox.SandboxResult(code, None, False, False, 0.1, None)


async def quiet(_line: str) -> None:
    return None


@pytest.fixture
def grid_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(build, "find_uv", lambda: "/srv/grid/.venv/bin/uv")
    return {
        "RGRID_ADMIN_KEY": "rg_secret",
        "RGRID_HOME": "/srv/grid",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "HOME": "/root",
        "PATH": "/srv/grid/.venv/bin:/usr/bin",
        "PYTHONPATH": "/srv/grid/src",
        "UV_INDEX_URL": "https://pkgs.example.com/simple",
        "UV_CACHE_DIR": "/root/.cache/uv",
        "https_proxy": "http://proxy.example.com:3128",
    }


def test_only_index_trust_and_proxy_settings_pass(grid_environ: dict[str, str]) -> None:
    config = build.BuildConfig.from_environ(grid_environ, None)
    assert dict(config.passed_env) == {
        "UV_INDEX_URL": "https://pkgs.example.com/simple",
        "https_proxy": "http://proxy.example.com:3128",
    }


@pytest.mark.parametrize("name", ["bwrap", "process"])
async def test_each_step_is_sandboxed_with_a_scrubbed_environment(
    tmp_path: Path,
    grid_environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    box = RecordingSandbox(name)
    monkeypatch.setattr(sandbox, "detect", lambda: box)
    wheels = tmp_path / "wheels"
    config = build.BuildConfig.from_environ(grid_environ, wheels)
    scratch = tmp_path / ".build-1"
    scratch.mkdir()
    packages = await build.build_environment(scratch, ["six"], INTERPRETER, config, quiet)
    assert packages == ["six==1.17.0"]
    venv, install, compile_ = box.specs
    for spec in box.specs:
        assert spec.workdir == scratch
        assert not any(key.startswith("RGRID_") for key in spec.env)
        assert set(spec.env) == {
            "PATH", "HOME", "TMPDIR", "LANG", "NO_COLOR", "UV_CACHE_DIR", "UV_NO_CONFIG",
            "UV_PYTHON_DOWNLOADS", "UV_INDEX_URL", "https_proxy",
        }  # fmt: skip
        # uv's cache, HOME and TMPDIR are this build's own
        assert spec.env["UV_CACHE_DIR"] == str(scratch / "cache")
        assert spec.env["HOME"] == str(scratch / "home")
        assert spec.env["TMPDIR"] == str(scratch / "tmp")
        assert spec.env["UV_NO_CONFIG"] == "1" and spec.env["UV_PYTHON_DOWNLOADS"] == "never"
        assert spec.ro_binds == (
            (Path("/srv/grid/.venv/bin/uv"), build.UV_INSIDE),
            (Path("/opt/py"), Path("/opt/py")),
            (wheels, build.FIND_LINKS_INSIDE),
        )
    assert [venv.network, install.network, compile_.network] == [False, True, False]
    uv = str(build.UV_INSIDE) if name == "bwrap" else "/srv/grid/.venv/bin/uv"
    links = str(build.FIND_LINKS_INSIDE) if name == "bwrap" else str(wheels)
    assert venv.argv[:2] == [uv, "venv"] and "--relocatable" in venv.argv
    assert install.argv == [
        uv, "pip", "install", "--python", str(scratch / "env" / "bin" / "python"),
        "-r", str(scratch / "requirements.txt"), "--find-links", links,
    ]  # fmt: skip
    assert compile_.argv[0] == str(scratch / "env" / "bin" / "python")


async def test_a_failed_install_names_the_package(
    tmp_path: Path, grid_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "detect", lambda: RecordingSandbox("bwrap", install_code=1))
    with pytest.raises(errors.DependencyError, match="six"):
        await build.build_environment(tmp_path, ["six"], INTERPRETER, build.BuildConfig(), quiet)


def test_a_symlink_in_place_of_the_environment_is_refused(tmp_path: Path) -> None:
    (tmp_path / "grid-home").mkdir()
    (tmp_path / "env").symlink_to(tmp_path / "grid-home")
    with pytest.raises(errors.RgridError, match="other than an environment"):
        build.check_built(tmp_path / "env")


def test_the_manifest_is_never_written_through_what_the_build_left(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text("key")
    env = tmp_path / "env"
    env.mkdir()
    (env / cache.MANIFEST).symlink_to(secret)
    with pytest.raises(errors.RgridError, match="refusing"):
        cache._write_new(env / cache.MANIFEST, "{}")
    assert secret.read_text() == "key"


def test_read_only_tree_spares_symlink_targets_and_can_still_be_removed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    env = tmp_path / "env"
    (env / "lib" / "pkg").mkdir(parents=True)
    (env / "lib" / "pkg" / "mod.py").write_text("")
    (env / "lib" / "link").symlink_to(outside)
    cache._make_read_only(env)
    for path in (env, env / "lib", env / "lib" / "pkg", env / "lib" / "pkg" / "mod.py"):
        assert os.lstat(path).st_mode & 0o222 == 0, path
    assert outside.stat().st_mode & 0o200  # the symlink was not followed
    cache._remove_tree(env)
    assert not env.exists() and outside.exists()
