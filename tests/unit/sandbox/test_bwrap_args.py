"""The bwrap command line and how bwrap's exit status is read (no bwrap is run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rgrid import errors
from rgrid.sandbox import SandboxResult, SandboxSpec, bwrap


def spec(tmp_path: Path, **changes: object) -> SandboxSpec:
    fields: dict[str, object] = {
        "argv": ["/opt/py/bin/python", "process.py", "data/x.csv"],
        "workdir": tmp_path / "work",
        "env": {"SECRET_TOKEN": "s3cr3t", "PATH": "/usr/bin"},
        "ro_binds": ((Path("/opt/py"), Path("/opt/py")),),
    }
    fields.update(changes)
    return SandboxSpec(**fields)  # type: ignore[arg-type]


def result(returncode: int | None, signal: int | None = None, **changes: bool) -> SandboxResult:
    return SandboxResult(
        returncode=returncode,
        signal=signal,
        timed_out=changes.get("timed_out", False),
        cancelled=changes.get("cancelled", False),
        duration_s=0.1,
        max_rss_bytes=None,
    )


def test_script_argv_comes_last_after_double_dash(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path))
    assert args[-4:] == ["--", "/opt/py/bin/python", "process.py", "data/x.csv"]


def test_namespaces_and_no_new_session(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path))
    for option in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert option in args
    assert "--new-session" not in args
    assert args[args.index("--cap-drop") + 1] == "ALL"


def test_an_unprivileged_user_gets_no_capability_back(tmp_path: Path) -> None:
    plan = bwrap.Plan(run_as=65534)
    args = bwrap.command_args(spec(tmp_path), plan)
    drop = args[args.index("--") + 1 :]
    assert drop[0] == "setpriv"
    for option in (
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ):
        assert option in drop
    assert drop[-3:] == ["/opt/py/bin/python", "process.py", "data/x.csv"]


def test_network_modes(tmp_path: Path) -> None:
    """No network: bwrap's own empty namespace. Isolated: the namespace the grid enters before
    bwrap (not bwrap's), with slirp's resolver. Host: the host's namespace as it is."""
    off = bwrap.command_args(spec(tmp_path), bwrap.Plan(network=None))
    isolated = bwrap.command_args(spec(tmp_path), bwrap.Plan(network=bwrap.NetworkMode.ISOLATED))
    host = bwrap.command_args(spec(tmp_path), bwrap.Plan(network=bwrap.NetworkMode.HOST))
    assert "--unshare-net" in off
    assert "--unshare-net" not in isolated and "--unshare-net" not in host
    resolv = os.path.realpath("/etc/resolv.conf")
    assert resolv in isolated and resolv not in host


def test_tmp_is_writable_by_anyone(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path))
    tmpfs = args.index("/tmp") - 1
    assert args[tmpfs - 2 : tmpfs + 2] == ["--perms", "01777", "--tmpfs", "/tmp"]


def test_files_others_may_not_read_are_masked(tmp_path: Path) -> None:
    masked = dict(bwrap.masked_paths())
    for path in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"):
        if os.path.isfile(path):
            assert masked[path] is False
    args = " ".join(bwrap.command_args(spec(tmp_path)))
    for path, is_dir in masked.items():
        assert (f"--tmpfs {path}" if is_dir else f"--ro-bind /dev/null {path}") in args


def test_mounts_come_after_the_private_tmp(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path))
    workdir = str(tmp_path / "work")
    tmpfs = args.index("--tmpfs")
    assert args[tmpfs + 1] == "/tmp"
    bind = args.index("--bind")
    assert args[bind : bind + 3] == ["--bind", workdir, workdir]
    assert tmpfs < args.index("--ro-bind", tmpfs) < bind
    assert args[args.index("--chdir") + 1] == workdir


def test_ro_binds_are_read_only(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path, ro_binds=((Path("/h/venv"), Path("/s/venv")),)))
    index = args.index("/h/venv")
    assert args[index - 1 : index + 2] == ["--ro-bind", "/h/venv", "/s/venv"]


def test_environment_is_not_on_the_command_line(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path))
    assert not any("s3cr3t" in arg or "SECRET_TOKEN" in arg for arg in args)


def test_status_fd_is_passed(tmp_path: Path) -> None:
    args = bwrap.command_args(spec(tmp_path), bwrap.Plan(status_fd=7, info_fd=8, block_fd=9))
    assert args[args.index("--json-status-fd") + 1] == "7"
    assert args[args.index("--info-fd") + 1] == "8"
    assert args[args.index("--block-fd") + 1] == "9"


def test_system_symlinks_are_recreated_and_dirs_bound() -> None:
    args = bwrap.isolation_args(bwrap.NetworkMode.HOST)
    for path in ("/usr", "/etc"):
        assert f"--ro-bind-try {path} {path}" in " ".join(args)
    if Path("/bin").is_symlink():
        assert "--symlink" in args


def test_signalled_script_is_reported_as_a_signal() -> None:
    normalised = bwrap._normalise(result(137), [{"child-pid": 2}, {"exit-code": 137}])
    assert (normalised.returncode, normalised.signal, normalised.exit_code) == (None, 9, 137)


def test_plain_exit_status_is_kept() -> None:
    for code in (0, 1, 3, 128, 255):
        normalised = bwrap._normalise(result(code), [{"exit-code": code}])
        assert (normalised.returncode, normalised.signal) == (code, None)


def test_bwrap_itself_killed_is_kept_as_signal() -> None:
    killed = result(None, 15, timed_out=True)
    assert bwrap._normalise(killed, [{"child-pid": 2}]) == killed


def test_bwrap_setup_failure_raises() -> None:
    with pytest.raises(errors.SandboxError, match="bubblewrap could not start"):
        bwrap._normalise(result(1), [{"child-pid": 2}])


def test_exit_code_convention() -> None:
    assert result(3).exit_code == 3
    assert result(None, 9).exit_code == 137
    assert result(None, 15, timed_out=True).exit_code == 124
    assert result(0, timed_out=True).exit_code == 124
