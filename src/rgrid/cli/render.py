"""Everything the CLI shows a person (and the ``--json`` form): the only place that formats."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from rgrid.enums import ExecutionState
from rgrid.money import format_micros
from rgrid.text import printable

if TYPE_CHECKING:
    from rgrid import schemas
    from rgrid.client.bundle import TreeReport


def clean(text: str) -> str:
    """Text a tenant or the grid controls (names, metadata, paths, messages), safe to show:
    control characters escaped (``\\n``, ``\\x1b``), so it can neither forge lines nor drive
    the terminal. Every human-readable line goes through it; ``--json`` output never does."""
    return printable(text)


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def binary_size(n: int) -> str:
    """Sizes people set in binary units (``--memory 512MiB``)."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} B"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def echo(text: str, *, err: bool = False) -> None:
    """One line on stdout (or stderr), flushed: what ``click.echo`` does with text, without
    importing click (the quick path's commands never do)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def emit_json(value: Any) -> None:
    """A wire model (or a list of them) as indented JSON on stdout."""
    from rgrid.schemas import dump

    echo(json.dumps(dump(value), indent=2))


#: transfers smaller than this show no progress line
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


def upload_report(uploaded: int, uploaded_bytes: int, already: int) -> str:
    """ "uploaded 1 file (2.1 MB), 3 already on the grid"."""
    files = f"{uploaded} file{'' if uploaded == 1 else 's'}"
    sent = f"uploaded {files} ({size(uploaded_bytes)})" if uploaded else "uploaded nothing"
    return f"{sent}, {already} already on the grid"


def tree_debug(digest: str | None, sent: bool) -> None:
    """With RGRID_DEBUG, whether the project tree had to be sent or the grid held it."""
    if digest is not None and os.environ.get("RGRID_DEBUG"):
        info(f"project tree {digest[:19]}: {'sent' if sent else 'already on the grid'}")


def tree_notices(report: TreeReport) -> list[str]:
    """What the project tree walk has to say: big files left behind over the budget (one
    line), unreadable files, and with RGRID_DEBUG the hash cache's figures."""
    lines = []
    if report.left_behind and report.budget is not None:
        budget = report.budget
        lines.append(
            f"{report.left_behind} file{'' if report.left_behind == 1 else 's'} over "
            f"{binary_size(budget.big_file_bytes)} ({size(report.left_behind_bytes)}) stay behind: "
            f"the project is over {binary_size(budget.max_bytes)} or {budget.max_files:,} files; "
            "name them as arguments or --include them to send them "
            "(or raise tree_budget in .rgrid/config.toml / RGRID_TREE_BUDGET)"
        )
    if report.unreadable:
        lines.append(f"{report.unreadable} unreadable file(s) of the project tree not sent")
    if os.environ.get("RGRID_DEBUG"):
        lines.append(f"hashed {report.hashed} file(s), {report.hash_hits} from the hash cache")
    return lines


class TransferBar:
    """A one-line progress display on a terminal for big transfers: name, done/total, rate."""

    def __init__(self, stream: IO[str], min_bytes: int = PROGRESS_MIN_BYTES) -> None:
        self._stream = stream
        self._min_bytes = min_bytes
        self._started: dict[str, float] = {}
        self._first = 0
        self._shown = 0.0

    def __call__(self, verb: str, name: str, done: int, total: int) -> None:
        if total < self._min_bytes:
            return
        now = time.monotonic()
        if name not in self._started:
            self._started[name] = now
            self._first = done  # a resumed upload starts past 0: the rate counts what moves now
            return
        finished = done >= total
        if not finished and now - self._shown < 0.1:
            return
        self._shown = now
        rate = (done - self._first) / max(now - self._started[name], 1e-3)
        shown = f"{verb} {clean(name)}  {size(done)} / {size(total)}  {size(int(rate))}/s"
        self._stream.write("\r" + shown + "\033[K" + ("\n" if finished else ""))
        self._stream.flush()
        if finished:
            self._started.pop(name, None)


def info(message: str) -> None:
    """One rgrid line on stderr (never mixed into the script's stdout), control characters
    escaped: messages carry names, paths and the grid's own words."""
    echo(f"rgrid: {clean(message)}", err=True)


def line(text: str) -> None:
    """One human-readable line on stdout (a table row, a field), control characters escaped."""
    echo(clean(text))


def not_downloaded(path: str, why: str) -> None:
    """The warning for an output this file system cannot hold (the others still came)."""
    info(f"warning: output {path} not downloaded: {why}")


def state_label(e: schemas.ExecutionPublic) -> str:
    if e.failure_class:
        return f"{e.state.value} ({e.failure_class.value})"
    if e.cached_from:
        return f"{e.state.value} (cached)"
    return e.state.value


def command_line(e: schemas.ExecutionPublic) -> str:
    """The script and its arguments as a shell would take them (``'two words'`` stays one)."""
    import shlex  # not on rgrid --help's path

    return shlex.join([e.script, *e.args])


def execution(e: schemas.ExecutionPublic) -> None:
    rows = [
        ("id", e.id),
        ("state", state_label(e)),
        ("script", command_line(e)),
        ("exit code", "-" if e.exit_code is None else str(e.exit_code)),
        ("cause", e.cause or "-"),
        ("hint", e.hint or "-"),
        ("created", when(e.created_at)),
        ("started", when(e.started_at)),
        ("finished", when(e.finished_at)),
        ("duration", duration(e.duration_s)),
        ("worker", e.worker or "-"),
        (
            "attempt",
            f"{e.attempt}/{e.max_retries + 1}"
            + (f" after {e.retry_reason}" if e.retry_reason else ""),
        ),
        ("retry of", e.retry_of or "-"),
        ("cache", cache_label(e)),
        ("cost", cost_label(e)),
        (
            "limits",
            f"timeout {duration(e.timeout_s)}, memory {binary_size(e.memory_bytes)}, "
            f"disk {binary_size(e.disk_bytes)}, "
            f"network {'on' if e.network else 'off'}",
        ),
        ("env", ", ".join(e.env_names) or "-"),
        ("stdin", "-" if e.stdin_size is None else f"piped, {size(e.stdin_size)}"),
        (
            "runtime",
            f"python {e.python_version}" + (f" ({e.runtime})" if e.runtime else "")
            if e.python_version
            else "-",
        ),
        (
            "deps",
            f"{e.dependency_source}: {', '.join(e.requirements)}"
            if e.requirements
            else "none (standard library only)",
        ),
        ("packages", ", ".join(e.packages) or "-"),
        ("metadata", ", ".join(f"{k}={v}" for k, v in sorted(e.metadata.items())) or "-"),
    ]
    for label, value in rows:
        if value != "-" or label in ("id", "state", "exit code"):
            line(f"{label:<10} {value}")


money = format_micros  # ``€0.000123``: integer micros as euros, exactly


def amount(micros: int, *, ran: bool) -> str:
    """A cost; something that ran but too briefly to cost a whole micro says so rather than 0."""
    return "< €0.000001" if micros == 0 and ran else money(micros)


def cost_amount(e: schemas.ExecutionPublic) -> str:
    """The execution's cost (``amount``); a cache hit ran nothing and costs nothing."""
    if e.cost_micros is None:
        return "-"
    return amount(e.cost_micros, ran=e.cached_from is None and (e.duration_s or 0) > 0)


def cost_label(e: schemas.ExecutionPublic) -> str:
    if e.cost_micros is None:
        return "-"
    return f"{cost_amount(e)} ({'final' if e.cost_final else 'provisional'})"


def cache_label(e: schemas.ExecutionPublic) -> str:
    """``hit from exec_…``; whether a later identical run may reuse this one; or the grid's
    note on why it missed."""
    if e.cached_from:
        suffix = " (it used the network; reused as --cache always asks)" if e.network_used else ""
        return f"hit from {e.cached_from}{suffix}"
    if e.state is ExecutionState.SUCCEEDED and e.network:
        if e.network_used:
            return "not reusable (it used the network)"
        if e.network_used is None:
            return "not reusable (whether it used the network was not observed)"
    return e.cache or "-"


def execution_table(items: Sequence[schemas.ExecutionPublic]) -> None:
    if not items:
        echo("no executions", err=True)
        return
    line(f"{'ID':<22} {'STATE':<26} {'EXIT':>4} {'DURATION':>9}  {'CREATED':<19}  SCRIPT")
    for e in items:
        code = "-" if e.exit_code is None else str(e.exit_code)
        line(
            f"{e.id:<22} {state_label(e):<26} {code:>4} {duration(e.duration_s):>9}  "
            f"{when(e.created_at):<19}  {command_line(e)[:60]}"
        )


MARKS = {"stdout": "out| ", "stderr": "err| ", "system": "rgrid| ", "setup": "setup| "}


def log_lines(
    lines: Sequence[schemas.LogLinePublic], *, marked: bool, timestamps: bool = False
) -> None:
    """Log lines. Live (unmarked): stdout lines to stdout, everything else to stderr, rgrid's
    own lines prefixed. History (marked): every line to stdout with its stream mark, in order.
    Written as a batch and flushed once: a chatty script's 200,000 lines must not cost as many
    flushes."""
    touched = set()
    for line in lines:
        name = line.stream.value
        prefix = line.ts.astimezone().strftime("%H:%M:%S.%f")[:-3] + " " if timestamps else ""
        if marked:
            prefix += MARKS[name]
        elif name in ("system", "setup"):
            prefix += "rgrid: " if name == "system" else "rgrid setup: "
        text = line.text
        if name in ("system", "setup"):  # rgrid's own lines (the script's are its business)
            text = "\n".join(clean(part) for part in text.rstrip("\n").split("\n"))
        if (marked or name in ("system", "setup")) and not text.endswith("\n"):
            text += "\n"
        stream = sys.stdout if marked or name == "stdout" else sys.stderr
        stream.write(prefix + text)
        touched.add(stream)
    for stream in touched:
        stream.flush()


def batch(page: schemas.BatchItemsPublic) -> None:
    b = page.batch
    counts = ", ".join(f"{n} {state}" for state, n in sorted(b.counts.items()))
    line(f"{'id':<10} {b.id}")
    line(f"{'script':<10} {b.script}")
    line(f"{'items':<10} {b.total} ({counts}){' - done' if b.done else ''}")
    line(f"{'parallel':<10} {b.parallel}")
    for item in page.data:
        kind = f" ({item.failure_class.value})" if item.failure_class else ""
        line(f"  {item.state.value + kind:<28} {item.input}  {item.id}")


def artifact_table(items: Sequence[schemas.ArtifactPublic]) -> None:
    if not items:
        echo("no outputs", err=True)
        return
    line(f"{'SIZE':>10}  {'DIGEST':<19}  {'EXPIRES':<19}  PATH")
    for a in items:
        line(f"{size(a.size):>10}  {a.digest[:19]}  {when(a.expires_at):<19}  {a.path}")


def worker_table(items: Sequence[schemas.WorkerPublic]) -> None:
    line(
        f"{'WORKER':<24} {'STATE':<12} {'SLOTS':>7}  {'PRICE/H':>10}  {'PERIOD ENDS':<8}  "
        f"{'PROVIDER ID':<16} {'KIND':<8} {'NODE':<16} {'SANDBOX':<12} RUNTIMES"
    )
    for w in items:
        # the sandbox's name ("bubblewrap: what it isolates ..."), or why a node gets no work
        # (or, for one that ended, why)
        note = w.sandbox if w.sandbox.startswith("gets no work") or w.ended_at else ""
        sandbox = "" if note else w.sandbox.partition(":")[0]
        ends = w.period_end.astimezone().strftime("%H:%M:%S") if w.period_end else "-"
        text = (
            f"{w.name:<24} {w.state:<12} {w.busy:>3}/{w.slots:<3}  "
            f"{money(w.hourly_price_micros):>10}  {ends:<8}  "
            f"{(w.provider_id or '-')[:16]:<16} {(w.kind or '-')[:8]:<8} "
            f"{(w.node or '-')[:16]:<16} {sandbox or '-':<12} " + ", ".join(w.pythons)
        )
        if w.ended_at:
            note = f"{note or w.state} at {when(w.ended_at)}"
        line(text + (f"  ({note})" if note else ""))


def autoscaler(scaler: schemas.AutoscalerPublic) -> None:
    """The autoscaler's state under the worker table: its last decision, and the provider's
    last error while creating backs off or for a while after."""
    if not scaler.enabled:
        return
    line(
        f"autoscaler: {scaler.provider}, {scaler.kind}, "
        f"{scaler.min_nodes}-{scaler.max_nodes} nodes: {scaler.status}"
    )
    if scaler.last_error:
        line(f"  provider error at {when(scaler.last_error_at)}: {clean(scaler.last_error)}")
    if scaler.backoff_until:
        line(f"  creating nodes is backing off until {when(scaler.backoff_until)}")
