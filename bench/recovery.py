"""bench/recovery: how fast work comes back after the grid dies.

A script is running when the server process supervising it is SIGKILLed; the server is started
again at once. Measured: from the restart command to the server answering, and to the retried
attempt running the script again (its first line of attempt 2 stored). Also the same when the
server stays down until the lease has expired. Usage: .venv/bin/python bench/recovery.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port

RGRID = Path(sys.executable).parent / "rgrid"
LEASE_S = 10.0
SCRIPT = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"


class Grid:
    def __init__(self, home: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
        self.env.update(RGRID_HOME=str(home), RGRID_LEASE_S=str(LEASE_S))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(RGRID), "server", "run", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def attempt_two_running(api: httpx.Client, execution_id: str) -> bool:
    lines = api.get(f"/api/v1/executions/{execution_id}/logs", params={"attempt": 2}).json()
    return any(line["text"] == "started\n" for line in lines["data"])


def one_round(tmp: Path, down_s: float) -> tuple[float, float]:
    grid = Grid(tmp / f"home-{down_s}", free_port())
    grid.start()
    key = (Path(grid.env["RGRID_HOME"]) / "admin.key").read_text().strip()
    project = tmp / "project"
    project.mkdir(exist_ok=True)
    (project / "sleepy.py").write_text(SCRIPT)
    cli_env = {**grid.env, "RGRID_API_URL": grid.url, "RGRID_API_KEY": key}
    execution_id = subprocess.run(
        [str(RGRID), "run", "--detach", "--no-cache", "sleepy.py"],
        cwd=project,
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with httpx.Client(base_url=grid.url, headers={"authorization": f"Bearer {key}"}) as api:
        while api.get(f"/api/v1/executions/{execution_id}/logs").json()["last_seq"] < 1:
            time.sleep(0.05)
    grid.kill()
    time.sleep(down_s)
    restarted = time.monotonic()
    ready = grid.start()
    with httpx.Client(base_url=grid.url, headers={"authorization": f"Bearer {key}"}) as api:
        while not attempt_two_running(api, execution_id):
            time.sleep(0.05)
        running_again = time.monotonic() - restarted
        api.post(f"/api/v1/executions/{execution_id}/cancel")
    grid.kill()
    return ready, running_again


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-recovery-"))
    try:
        print(
            f"recovery: lease {LEASE_S:g} s (renewed every {LEASE_S / 3:.1f} s), retry backoff 1 s"
        )
        print(f"{'scenario':<44} {'server ready s':>15} {'script running again s':>23}")
        ready, again = one_round(tmp, 0.0)
        print(f"{'SIGKILL, restarted at once':<44} {ready:>15.2f} {again:>23.2f}")
        ready, again = one_round(tmp, LEASE_S)
        print(f"{'SIGKILL, down for one lease period':<44} {ready:>15.2f} {again:>23.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
