"""Failure classes, causes and hints from a sandbox result and the tail of stderr."""

from __future__ import annotations

from rgrid.domain import ExecutionState, FailureClass
from rgrid.runner.classify import classify
from rgrid.sandbox import SandboxResult


def result(code: int | None = 0, sig: int | None = None, timed_out: bool = False) -> SandboxResult:
    return SandboxResult(
        returncode=code,
        signal=sig,
        timed_out=timed_out,
        cancelled=False,
        duration_s=1.0,
        max_rss_bytes=None,
    )


def run(res: SandboxResult, *stderr: str):  # type: ignore[no-untyped-def]
    return classify(res, list(stderr), timeout_s=2, memory_bytes=512 * 1024**2)


def test_success() -> None:
    assert run(result(0)).state is ExecutionState.SUCCEEDED


def test_traceback_last_line_is_the_cause() -> None:
    out = run(
        result(1),
        "Traceback (most recent call last):\n",
        '  File "s.py", line 3\n',
        "ValueError: bad row 7\n",
    )
    assert out.failure_class is FailureClass.SCRIPT_ERROR and out.exit_code == 1
    assert out.cause == "ValueError: bad row 7"


def test_missing_module_hint_names_the_module() -> None:
    out = run(result(1), "ModuleNotFoundError: No module named 'pandas'\n")
    assert out.hint is not None and "pandas" in out.hint and "requirements.txt" in out.hint


def test_syntax_error_hint_has_file_and_line() -> None:
    out = run(
        result(1), '  File "/w/s.py", line 4\n', "    def f(:\n", "SyntaxError: invalid syntax\n"
    )
    assert out.hint == "fix the syntax at /w/s.py:4"


def test_memory_error_is_out_of_memory_with_hint() -> None:
    out = run(result(1), "MemoryError\n")
    assert out.failure_class is FailureClass.OUT_OF_MEMORY and "--memory" in (out.hint or "")


def test_timeout_is_124_with_hint() -> None:
    out = run(result(None, 9, timed_out=True))
    assert (out.failure_class, out.exit_code) == (FailureClass.TIMEOUT, 124)
    assert "--timeout" in (out.hint or "")


def test_signal_names_the_signal() -> None:
    out = run(result(None, 9))
    assert out.exit_code == 137 and out.cause == "the script was killed by SIGKILL"


def test_plain_exit_code_without_stderr() -> None:
    assert run(result(3)).cause == "the script exited with code 3"
