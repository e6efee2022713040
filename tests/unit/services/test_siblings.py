"""The figures of a server's processes as a whole (``services.siblings``), from real report
files in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from rgrid import domain
from rgrid.services.siblings import Report, Siblings, folder

STATUS = domain.AutoscalerStatus(
    provider="local",
    kind="cpu1",
    min_nodes=0,
    max_nodes=3,
    status="1 node, 0 of 1 slots free, 4 queued",
    last_error="quota",
    last_error_at=datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC),
)


def test_a_report_reads_back_as_written() -> None:
    report = Report(received=5, sent=3, started=2, autoscaler=STATUS)
    assert Report.from_json(report.to_json()) == report
    assert Report.from_json(Report().to_json()).autoscaler is None


def test_the_whole_adds_live_siblings_and_leaves_out_the_dead(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        run = folder(tmp_path, 1)
        run.mkdir(parents=True)
        main = Report(received=100, started=4, autoscaler=STATUS)
        (run / f"{sleeper.pid}.json").write_text(main.to_json())
        gone = Report(received=1_000_000)
        (run / f"{dead.pid}.json").write_text(gone.to_json())
        (run / "junk.json").write_text("{")

        own = Report(received=10, sent=7)
        siblings = Siblings(tmp_path, 1, lambda: own, shared=True)
        siblings.publish()  # its own file is not counted twice
        whole = siblings.whole()
        assert (whole.received, whole.sent, whole.started) == (110, 7, 4)
        assert whole.autoscaler == STATUS

        alone = Siblings(tmp_path, 1, lambda: own, shared=False)
        assert alone.whole() == own
    finally:
        sleeper.kill()
        sleeper.wait()
