"""Filler history for scale tests: thousands of finished executions written straight into a
grid's database (running them would take an hour). They are ordinary rows: the API lists,
filters and pages them like any other; only their runs never happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rgrid.store.models import ExecutionMetadataRow, ExecutionRow

SEEDED_SCRIPTS = ("seed_a.py", "seed_b.py")


def seed_executions(database_url: str, account_id: str, count: int, *, days: int = 20) -> None:
    """``count`` finished executions of ``account_id``, spread over the last ``days`` days:
    every seventh failed, the others succeeded; each with metadata ``shard=N%4``."""
    engine = sa.create_engine(database_url)
    now = datetime.now(UTC)
    rows, metadata = [], []
    for i in range(count):
        created = now - timedelta(days=days) + timedelta(seconds=i * days * 86400 / count)
        execution_id = f"exec_seed{i:07d}"
        failed = i % 7 == 0
        rows.append(
            ExecutionRow(
                id=execution_id,
                account_id=account_id,
                state="failed" if failed else "succeeded",
                script=SEEDED_SCRIPTS[i % 2],
                args=[f"item-{i}"],
                env_ciphertext="",
                env_names=[],
                timeout_s=60,
                memory_bytes=2**30,
                network=True,
                exit_code=1 if failed else 0,
                failure_class="script_error" if failed else None,
                cause="the script exited with code 1" if failed else None,
                attempt=1,
                created_at=created,
                queued_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=2),
                last_seq=0,
                cancel_requested=False,
                requirements=[],
                dependency_source="none",
                packages=[],
                max_retries=2,
                cost_micros=5,
                cost_final=True,
            )
        )
        metadata.append(
            ExecutionMetadataRow(execution_id=execution_id, key="shard", value=str(i % 4))
        )
    with Session(engine) as session, session.begin():
        session.add_all(rows)
        session.flush()
        session.add_all(metadata)
    engine.dispose()
