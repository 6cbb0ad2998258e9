"""Every finished attempt of a lifetime's executions, failed ones with their error.

Temporal's history keeps only the last failure of an activity; the node activity writes each
attempt it finishes to ``gr_attempts``, so this is where earlier failures can be read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import func, select

from graphrunner.stores import ExecutionStatus, RecordStore
from graphrunner.stores._schema import attempts, executions

__all__ = ["AttemptRecord", "lifetime_attempts"]


class AttemptRecord(BaseModel):
    """One finished attempt of a node execution.

    Attributes:
        seq: The execution's place in the order the workflow scheduled executions (the same
            number ``graphrunner history`` and ``graphrunner status`` show).
        attempt: Temporal's attempt number, 1 on the first try.
        error: The failure, ``Type: message``, of a failed attempt.
        tokens_in: Prompt tokens the attempt's model calls spent (failed attempts too).
        tokens_out: Completion tokens they spent.
        cost_usd: What they cost.
        model: The model that answered last ("" when the attempt called none).
    """

    model_config = ConfigDict(extra="forbid")

    execution_id: str
    run_id: str
    node: str
    kind: str
    iteration: int
    seq: int
    attempt: int
    status: ExecutionStatus
    started_at: datetime
    finished_at: datetime
    latency_ms: float
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    model: str = ""

    @field_validator("started_at", "finished_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # SQLite hands back naive datetimes; every time graphrunner stores is UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def lifetime_attempts(
    store: RecordStore, lifetime_id: str, *, tenant: str | None = None
) -> list[AttemptRecord]:
    """Every finished attempt of ``lifetime_id``, in execution order, then attempt order.

    An attempt cut off by a crash or a timeout never finished, so it has no row. With
    ``tenant``, only that tenant's (another tenant may have used the same lifetime id in
    its own namespace).
    """
    e, a = executions.c, attempts.c
    # Runs of one lifetime (after a reset, say) in the order they began, as in `executions`.
    runs = (
        select(e.run_id, func.min(e.created_at).label("run_start"))
        .where(e.lifetime_id == lifetime_id)
        .group_by(e.run_id)
        .subquery()
    )
    query = (
        select(
            a.execution_id,
            e.run_id,
            e.node,
            e.kind,
            e.iteration,
            e.seq,
            a.attempt,
            a.status,
            a.started_at,
            a.finished_at,
            a.latency_ms,
            a.error,
            a.tokens_in,
            a.tokens_out,
            a.cost_usd,
            a.model,
        )
        .join(executions, e.execution_id == a.execution_id)
        .join(runs, runs.c.run_id == e.run_id)
        .where(e.lifetime_id == lifetime_id)
        .order_by(runs.c.run_start, e.run_id, e.seq, a.attempt)
    )
    if tenant is not None:
        query = query.where(e.tenant == tenant)

    def read() -> list[AttemptRecord]:
        with store.engine.connect() as conn:
            return [AttemptRecord.model_validate(dict(row._mapping)) for row in conn.execute(query)]

    return await asyncio.to_thread(read)
