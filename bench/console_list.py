"""The executions list the console pages through, on a grid holding 5,000 and 100,000
executions, on SQLite and PostgreSQL: the first page, a page 100 pages deep (by cursor), and
the console's filters. Prints milliseconds per request (median of 20) and the ratio of the
100,000 grid to the 5,000 one (1.0: the list does not slow down as history grows).

    .venv/bin/python bench/console_list.py [--sizes 5000,100000] [--databases sqlite,postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import new_account, postgres_database, start_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.seed import seed_executions  # noqa: E402

RGRID = Path(sys.executable).parent / "rgrid"
SAMPLES = 20
QUERIES = {
    "first page": "limit=50",
    "state=failed": "limit=50&status=failed",
    "metadata shard=3": "limit=50&metadata=shard%3D3",
    "script=seed_a.py": "limit=50&script=seed_a.py",
    "id prefix": "limit=50&id_prefix=exec_seed00012",
    "last 24 h": "limit=50&since={day_ago}",
}


def median_ms(client: httpx.Client, path: str) -> float:
    samples = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def measure(size: int, database_kind: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        database = (
            postgres_database(f"rgrid_bench_list_{size}") if database_kind == "postgres" else None
        )
        process, url = start_server(home, database)
        try:
            key, account = new_account(url, home, "bench")
            started = time.perf_counter()
            seed_executions(database or f"sqlite:///{home / 'rgrid.db'}", account, size)
            print(
                f"  seeded {size:,} on {database_kind} in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            day_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
            headers = {"authorization": f"Bearer {key}"}
            with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30) as client:
                results = {
                    name: median_ms(client, "/executions?" + query.format(day_ago=day_ago))
                    for name, query in QUERIES.items()
                }
                cursor = None
                for _ in range(99):
                    page = client.get("/executions", params={"limit": 50, "cursor": cursor}).json()
                    cursor = page["next_cursor"]
                results["page 100 (cursor)"] = median_ms(
                    client, f"/executions?limit=50&cursor={cursor}"
                )
            return results
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000,100000")
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for kind in args.databases.split(","):
        table = {size: measure(size, kind) for size in sizes}
        print(f"\n{kind}: GET /api/v1/executions, ms per request (median of {SAMPLES})")
        header = f"{'query':<22}" + "".join(f"{f'{s:,}':>12}" for s in sizes)
        print(header + (f"{'ratio':>9}" if len(sizes) > 1 else ""))
        for name in table[sizes[0]]:
            row = f"{name:<22}" + "".join(f"{table[s][name]:>12.1f}" for s in sizes)
            if len(sizes) > 1:
                row += f"{table[sizes[-1]][name] / table[sizes[0]][name]:>9.2f}"
            print(row)


if __name__ == "__main__":
    main()
