"""The API under many users: wrk (HTTP load, from apt) against a real server holding 100,000
executions, on SQLite and on PostgreSQL. Four workloads, each at 10, 100 and 500 concurrent
connections for a few seconds:

- status: ``GET /executions/{id}`` of random executions;
- list: ``GET /executions?limit=50&metadata=shard=3``;
- logs: ``GET /executions/{id}/logs?after=K&limit=100`` of a real 2,000-line log;
- mixed: 80 % status, 10 % list, 5 % logs, 5 % submits (answered by the result cache).

Prints requests/s, p50 and p99 latency, errors (non-2xx answers, refused or dropped
connections) and answers slower than wrk's 2 s timeout per row, the server's memory before and after
(of all its processes), and PostgreSQL's plan for the list query. On PostgreSQL the server runs
once as one process and once with ``--api-processes 2`` (two processes answering the API, the
main one running scripts). The baseline the issue names: the replaced product's own load test,
26 requests/s at 100 concurrent clients.

    .venv/bin/python bench/api_load.py [--databases sqlite,postgres] [--seconds 5]
        [--workloads status,list,logs,mixed] [--connections 10,100,500] [--api-processes 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import new_account, postgres_database, start_server

from rgrid import digests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.seed import seed_executions  # noqa: E402

RGRID = Path(sys.executable).parent / "rgrid"
EXECUTIONS = 100_000
CONCURRENCY = (10, 100, 500)
WORKLOADS = ("status", "list", "logs", "mixed")
BASELINE_RPS = 26.0  # the replaced product, 100 concurrent clients

LUA = """
math.randomseed(os.time())
local key = "{key}"
local log_id = "{log_id}"
local submit_body = [[{submit}]]
wrk.headers["Authorization"] = "Bearer " .. key
local function status()
  return wrk.format("GET", string.format("/api/v1/executions/exec_seed%07d", math.random(0, {n} - 1)))
end
local function list() return wrk.format("GET", "/api/v1/executions?limit=50&metadata=shard%3D3") end
local function logs()
  return wrk.format("GET", string.format("/api/v1/executions/%s/logs?after=%d&limit=100", log_id, math.random(0, 1900)))
end
local function submit()
  -- headers given to wrk.format replace wrk.headers: the key goes in again
  local headers = {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}}
  return wrk.format("POST", "/api/v1/executions", headers, submit_body)
end
request = function()
  local kind = "{kind}"
  if kind == "status" then return status() end
  if kind == "list" then return list() end
  if kind == "logs" then return logs() end
  local r = math.random(100)
  if r <= 80 then return status() elseif r <= 90 then return list() elseif r <= 95 then return logs() end
  return submit()
end
"""


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid`` and its children (the API processes)."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in (pid, *map(int, children)):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def cli(url: str, key: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_API_URL=url, RGRID_API_KEY=key, HOME=str(cwd))
    return subprocess.run([str(RGRID), *args], cwd=cwd, env=env, capture_output=True, text=True)


def prepare(url: str, key: str, home: Path) -> tuple[str, str]:
    """A real execution with a 2,000-line log, and a submit body the cache answers."""
    project = home / "project"
    project.mkdir()
    (project / "chatty.py").write_text("for i in range(2000):\n    print('line', i)\n")
    ran = cli(url, key, project, "run", "chatty.py")
    log_id = re.findall(r"exec_[a-z0-9]+", ran.stderr)[-1]
    script = b"print('hello')\n"
    (project / "hello.py").write_bytes(script)
    hello = cli(url, key, project, "run", "hello.py")
    assert hello.returncode == 0, hello.stderr
    sha = digests.of_bytes(script)
    submit = {
        "script": "hello.py",
        "files": [{"path": "hello.py", "digest": sha, "size": len(script)}],
        "cwd": str(project),
    }
    # run once as submitted under load, so that every later submit is a cache hit: what is
    # measured is the API, not the script
    headers = {"authorization": f"Bearer {key}"}
    first = httpx.post(f"{url}/api/v1/executions", json=submit, headers=headers).json()
    for _ in range(300):
        state = httpx.get(f"{url}/api/v1/executions/{first['id']}", headers=headers).json()
        if state["state"] == "succeeded":
            break
        time.sleep(0.1)
    again = httpx.post(f"{url}/api/v1/executions", json=submit, headers=headers).json()
    assert again["cached_from"], again
    return log_id, json.dumps(submit)


def settle(url: str) -> None:
    """Wait until the server has worked off what the last run left queued (wrk stops sending,
    not the server answering): a quick /health twice in a row, or 60 s."""
    quick = 0
    deadline = time.monotonic() + 60
    while quick < 2 and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            httpx.get(f"{url}/health", timeout=10)
        except httpx.HTTPError:
            pass
        quick = quick + 1 if time.monotonic() - started < 0.05 else 0
        time.sleep(0.2)


def wrk(url: str, lua: Path, connections: int, seconds: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
    )
    out = done.stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "bad": float(non_2xx.group(1)) if non_2xx else 0.0,
        # connect, read and write errors: the server refused or dropped a request
        "socket": float(sum(int(g) for g in errors.groups()[:3])) if errors else 0.0,
        # answers slower than wrk's 2 s, which it stops waiting for
        "slow": float(errors.group(4)) if errors else 0.0,
    }


async def list_plan(database: str, account_id: str) -> str:
    """PostgreSQL's plan for the console's and CLI's list query with a metadata filter."""
    import asyncpg
    from sqlalchemy.dialects import postgresql

    from rgrid.store.executions import _list_query

    query = _list_query(account_id, [], {"shard": "3"}, None, None).limit(50)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("EXPLAIN " + sql)
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


def measure(
    kind_of_db: str,
    seconds: int,
    workloads: tuple[str, ...] = WORKLOADS,
    concurrency: tuple[int, ...] = CONCURRENCY,
    api_processes: int = 1,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        database = postgres_database("rgrid_bench_load") if kind_of_db == "postgres" else None
        process, url = start_server(home, database, RGRID_API_PROCESSES=str(api_processes))
        try:
            key, account = new_account(url, home, "load")
            seed_executions(database or f"sqlite:///{home / 'rgrid.db'}", account, EXECUTIONS)
            log_id, submit = prepare(url, key, home)
            rss_before = rss_mib(process.pid)
            print(
                f"\n{kind_of_db}, --api-processes {api_processes}: {EXECUTIONS:,} executions,"
                f" wrk -t2 -d{seconds}s per row"
            )
            print(
                f"{'workload':<8} {'conns':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'> 2 s':>6} {'vs 26/s':>9}"
            )
            for kind in workloads:
                lua = home / f"{kind}.lua"
                lua.write_text(
                    LUA.format(key=key, log_id=log_id, submit=submit, n=EXECUTIONS, kind=kind)
                )
                for connections in concurrency:
                    settle(url)
                    got = wrk(url, lua, connections, seconds)
                    errors = int(got["bad"] + got["socket"])
                    print(
                        f"{kind:<8} {connections:>6} {got['rps']:>9.0f} {got['p50']:>8.1f} "
                        f"{got['p99']:>8.1f} {errors:>7} {int(got['slow']):>6} "
                        f"{got['rps'] / BASELINE_RPS:>8.1f}x"
                    )
            print(
                f"server memory: {rss_before:.0f} MiB before, {rss_mib(process.pid):.0f} MiB after"
            )
            if database:
                print("the list query's plan (PostgreSQL):")
                print(asyncio.run(list_plan(database, account)))
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    parser = argparse.ArgumentParser()
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--connections", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument(
        "--api-processes", default="1,2", help="PostgreSQL only; SQLite runs one process"
    )
    args = parser.parse_args()
    workloads = tuple(args.workloads.split(","))
    databases = args.databases.split(",")
    for name, given, known in (
        ("workload", workloads, WORKLOADS),
        ("database", databases, ("sqlite", "postgres")),
    ):
        if unknown := [g for g in given if g not in known]:
            parser.error(f"unknown {name} {', '.join(unknown)}: choose from {', '.join(known)}")
    try:
        concurrency = tuple(int(c) for c in args.connections.split(","))
        api_processes = [int(n) for n in args.api_processes.split(",")]
    except ValueError as exc:
        parser.error(f"--connections and --api-processes take numbers separated by commas: {exc}")
    for kind in databases:
        counts = api_processes if kind == "postgres" else [1]
        for count in counts:
            measure(kind, args.seconds, workloads, concurrency, count)


if __name__ == "__main__":
    main()
