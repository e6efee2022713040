"""Whether an earlier observed run can serve a new one: files it read must be the same, files
it never opened may differ, and only its own outputs may have appeared."""

from __future__ import annotations

from typing import Any

from rgrid.services.reuse import mismatch

A, B, C, D = "blake3:" + "a" * 64, "blake3:" + "b" * 64, "blake3:" + "c" * 64, "blake3:" + "d" * 64


def parts(**inputs: str) -> dict[str, Any]:
    files = {path.replace("__", "/").replace("_", "."): sha for path, sha in inputs.items()}
    modules = {p: s for p, s in files.items() if p.endswith(".py")}
    return {"modules": modules, "inputs": {p: s for p, s in files.items() if p not in modules}}


THEN = parts(data__b_csv=A, README=B, out_csv=C, helper_py=D)
READS = {"read": ["data/b.csv", "helper.py"], "written": ["out.csv"]}
OUTPUTS = {"out.csv": D, "report.txt": A}


def why(now: dict[str, Any], reads: dict[str, list[str]] = READS) -> str | None:
    return mismatch(now, THEN, reads, OUTPUTS, "exec_1")


def test_the_same_files_and_unread_edits_are_served() -> None:
    assert why(THEN) is None
    assert why(parts(data__b_csv=A, README=C, out_csv=C, helper_py=D)) is None


def test_its_own_outputs_coming_back_are_served() -> None:
    assert why(parts(data__b_csv=A, README=B, out_csv=D, helper_py=D, report_txt=A)) is None


def test_a_changed_read_file_is_named() -> None:
    changed = parts(data__b_csv=B, README=B, out_csv=C, helper_py=D)
    assert why(changed) == "input data/b.csv changed (read by exec_1)"
    module = parts(data__b_csv=A, README=B, out_csv=C, helper_py=A)
    assert why(module) == "local module helper.py changed (read by exec_1)"


def test_a_written_file_must_hold_what_it_held_or_what_the_run_wrote() -> None:
    other = parts(data__b_csv=A, README=B, out_csv=A, helper_py=D)
    assert why(other) == "input out.csv changed (opened for writing by exec_1)"


def test_files_added_or_removed_are_a_miss_even_if_never_opened() -> None:
    added = parts(data__b_csv=A, README=B, out_csv=C, helper_py=D, flag=A)
    assert why(added) == "input flag was added (since exec_1)"
    wrong_output = parts(data__b_csv=A, README=B, out_csv=C, helper_py=D, report_txt=B)
    assert why(wrong_output) == "input report.txt was added (since exec_1)"
    removed = parts(data__b_csv=A, out_csv=C, helper_py=D)
    assert why(removed) == "input README was removed (since exec_1)"


def test_with_bytecode_around_every_module_counts_as_read() -> None:
    then = {**THEN, "inputs": {**THEN["inputs"], "x.pyc": A}}
    now = {"modules": {"helper.py": D, "other.py": A}, "inputs": then["inputs"]}
    then["modules"] = {"helper.py": D, "other.py": B}
    reads = {"read": ["x.pyc"], "written": []}
    assert mismatch(now, then, reads, {}, "exec_1") == (
        "local module other.py changed (read by exec_1)"
    )
    without = {"modules": now["modules"], "inputs": THEN["inputs"]}
    assert mismatch(without, {**then, "inputs": THEN["inputs"]}, reads, {}, "exec_1") is None
