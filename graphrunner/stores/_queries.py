"""Reads of the state DB: what ``graphrunner history``, ``list`` and ``costs`` show.

A lifetime's executions, decisions and attempts; totals by lifetime, tenant or graph.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, case, func, select

from graphrunner.codec._records import RecordCipher, open_fields
from graphrunner.stores._db import Database
from graphrunner.stores._models import (
    CostRow,
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    LifetimeSummary,
    utc,
)
from graphrunner.stores._schema import attempts, decisions, executions

__all__ = ["Queries"]


class Queries(Database):
    """The read part of `graphrunner.stores.RecordStore`.

    Sealed (encrypted) results, state, errors and notes are opened with ``cipher`` as they
    are read; without one, reading a sealed record raises `DecryptionError`.
    """

    cipher: RecordCipher | None = None

    def _build_query_statements(self) -> None:
        d = decisions.c
        runs = (
            select(d.run_id, func.min(d.decided_at).label("run_start"))
            .where(d.lifetime_id == bindparam("lifetime_id"))
            .group_by(d.run_id)
            .subquery()
        )
        self._read_decisions = (
            select(decisions)
            .join(runs, runs.c.run_id == d.run_id)
            .where(d.lifetime_id == bindparam("lifetime_id"))
            .order_by(runs.c.run_start, d.run_id, d.seq, d.decided_at, d.decision_id)
        )

    async def executions(self, lifetime_id: str) -> list[ExecutionRecord]:
        """Every execution of a lifetime, in the order the workflow scheduled them."""

        def read() -> list[ExecutionRecord]:
            c = executions.c
            # Runs of one lifetime (after a reset, say) in the order they began, each in the
            # order its workflow scheduled the executions.
            runs = (
                select(c.run_id, func.min(c.created_at).label("run_start"))
                .where(c.lifetime_id == lifetime_id)
                .group_by(c.run_id)
                .subquery()
            )
            query = (
                select(executions)
                .join(runs, runs.c.run_id == c.run_id)
                .where(c.lifetime_id == lifetime_id)
                .order_by(runs.c.run_start, c.run_id, c.seq)
            )
            with self.engine.connect() as conn:
                return [self._to_record(row._mapping) for row in conn.execute(query)]

        return await asyncio.to_thread(read)

    async def decisions(self, lifetime_id: str) -> list[DecisionRecord]:
        """Every guardrail decision of a lifetime, run by run, each run in decision order."""

        def read() -> list[DecisionRecord]:
            with self.engine.connect() as conn:
                rows = conn.execute(self._read_decisions, {"lifetime_id": lifetime_id})
                return [DecisionRecord.model_validate(row._mapping) for row in rows]

        return await asyncio.to_thread(read)

    async def attempts(self, execution_id: str) -> list[dict[str, Any]]:
        """Every finished attempt of one execution, oldest first."""

        def read() -> list[dict[str, Any]]:
            query = (
                select(attempts)
                .where(attempts.c.execution_id == execution_id)
                .order_by(attempts.c.attempt)
            )
            with self.engine.connect() as conn:
                rows = [open_fields(self.cipher, dict(row._mapping)) for row in conn.execute(query)]
            for row in rows:
                row["started_at"], row["finished_at"] = (
                    utc(row["started_at"]),
                    utc(row["finished_at"]),
                )
            return rows

        return await asyncio.to_thread(read)

    async def lifetimes(
        self,
        *,
        graph: str | None = None,
        tenant: str | None = None,
        lifetime_ids: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[LifetimeSummary]:
        """Per-lifetime aggregates, newest first, optionally filtered."""
        c = executions.c
        query = (
            select(
                c.lifetime_id,
                func.max(c.graph_name).label("graph_name"),
                func.max(c.graph_version).label("graph_version"),
                func.max(c.tenant).label("tenant"),
                func.count().label("executions"),
                func.sum(case((c.status == ExecutionStatus.FAILED.value, 1), else_=0)).label(
                    "failed"
                ),
                func.sum(c.tokens_in + c.tokens_out).label("tokens"),
                func.sum(c.cost_usd).label("cost_usd"),
                func.min(c.created_at).label("first_at"),
                func.max(c.finished_at).label("last_at"),
            )
            .group_by(c.lifetime_id)
            .order_by(func.min(c.created_at).desc())
            .limit(limit)
        )
        if graph:
            query = query.where(c.graph_name == graph)
        if tenant:
            query = query.where(c.tenant == tenant)
        if lifetime_ids is not None:
            query = query.where(c.lifetime_id.in_(list(lifetime_ids)))

        def read() -> list[LifetimeSummary]:
            with self.engine.connect() as conn:
                rows = [dict(row._mapping) for row in conn.execute(query)]
            for row in rows:
                row["first_at"], row["last_at"] = utc(row["first_at"]), utc(row["last_at"])
                row["cost_usd"] = Decimal(row["cost_usd"] or 0)
                row["tokens"] = int(row["tokens"] or 0)
            return [LifetimeSummary.model_validate(row) for row in rows]

        return await asyncio.to_thread(read)

    async def costs(self, by: str = "tenant", *, tenant: str | None = None) -> list[CostRow]:
        """Token and cost totals grouped by ``tenant`` or ``graph`` (of ``tenant`` only, if set).

        Each execution's record holds its newest attempt's spend; what earlier attempts
        that failed spent (model calls made before the failure) is added from
        ``gr_attempts``, so nothing spent is lost to a retry.
        """
        c = executions.c
        key = {"tenant": c.tenant, "graph": c.graph_name}.get(by)
        if key is None:
            raise ValueError(f"costs can be grouped by 'tenant' or 'graph', not {by!r}")
        a = attempts.c
        failed_before = (
            select(
                key.label("key"),
                func.sum(a.tokens_in).label("tokens_in"),
                func.sum(a.tokens_out).label("tokens_out"),
                func.sum(a.cost_usd).label("cost_usd"),
            )
            .select_from(attempts.join(executions, a.execution_id == c.execution_id))
            .where(a.attempt != c.attempt, a.status == "failed")
            .group_by(key)
        )
        query = (
            select(
                key.label("key"),
                func.count(func.distinct(c.lifetime_id)).label("lifetimes"),
                func.count().label("executions"),
                func.sum(c.tokens_in).label("tokens_in"),
                func.sum(c.tokens_out).label("tokens_out"),
                func.sum(c.cost_usd).label("cost_usd"),
            )
            .group_by(key)
            .order_by(key)
        )
        if tenant is not None:
            failed_before = failed_before.where(c.tenant == tenant)
            query = query.where(c.tenant == tenant)

        def read() -> list[CostRow]:
            with self.engine.connect() as conn:
                rows = [dict(row._mapping) for row in conn.execute(query)]
                extra = {row.key: row for row in conn.execute(failed_before)}
            found = []
            for r in rows:
                more = extra.get(r["key"])
                cost = Decimal(r["cost_usd"] or 0)
                if more is not None:
                    r["tokens_in"] = (r["tokens_in"] or 0) + (more.tokens_in or 0)
                    r["tokens_out"] = (r["tokens_out"] or 0) + (more.tokens_out or 0)
                    cost += Decimal(more.cost_usd or 0)
                found.append(CostRow.model_validate({**r, "cost_usd": cost}))
            return found

        return await asyncio.to_thread(read)

    def _to_record(self, row: Any) -> ExecutionRecord:
        data = open_fields(self.cipher, dict(row))
        for name in ("created_at", "started_at", "finished_at"):
            data[name] = utc(data[name])
        return ExecutionRecord.model_validate(data)
