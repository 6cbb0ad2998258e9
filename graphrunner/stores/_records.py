"""The record store: append-only execution records in SQLite or PostgreSQL (SQLAlchemy 2).

Writes are idempotent: an execution's id is derived from (workflow id, run id, node,
iteration), so an activity retry or a crashed worker's re-run never adds a second record.
A later attempt of the same execution supersedes an earlier one only through a guarded
upsert (``WHERE stored.attempt < new.attempt``); every finished attempt is kept in
``gr_attempts``. Calls are synchronous SQLAlchemy run in a thread, so SQLite and psycopg 3
need no async drivers.

`RecordStore` is assembled from parts, one module each: the connection and schema
(`graphrunner.stores._db`), the writes (here: execution records and guardrail decisions),
the tenant ledger (`graphrunner.stores._ledger`) and the reads (`graphrunner.stores._queries`).
The row models live in `graphrunner.stores._models`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite

from graphrunner.codec._records import RecordCipher
from graphrunner.stores._db import SchemaError
from graphrunner.stores._ledger import Ledger
from graphrunner.stores._models import (
    CostRow,
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    LifetimeSummary,
    UsageDelta,
    UsageTotals,
    utc,
)
from graphrunner.stores._queries import Queries
from graphrunner.stores._schema import attempts, decisions, executions

__all__ = [
    "CostRow",
    "DecisionRecord",
    "ExecutionRecord",
    "ExecutionStatus",
    "LifetimeSummary",
    "RecordStore",
    "SchemaError",
    "UsageDelta",
    "UsageTotals",
]


def _execution_row(rec: ExecutionRecord) -> dict[str, Any]:
    row = rec.model_dump()
    for name in ("created_at", "started_at", "finished_at"):
        row[name] = utc(row[name])
    return row


class RecordStore(Ledger, Queries):
    """Execution records, guardrail decisions and the tenant ledger in a SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql://user@host/db`` (psycopg 3).
        cipher: Opens encrypted records as they are read (the codec keys); the worker's
            `Recorder` seals with it when records are encrypted.
    """

    def __init__(self, url: str, *, cipher: RecordCipher | None = None) -> None:
        super().__init__(url)
        self.cipher = cipher
        # Built once: compiling these per write cost more than the write itself (bench/).
        dialect: Any = sqlite if self.dialect == "sqlite" else postgresql
        self._insert_attempt = dialect.insert(attempts).on_conflict_do_nothing()
        upsert = dialect.insert(executions)
        self._upsert_execution = upsert.on_conflict_do_update(
            index_elements=[executions.c.execution_id],
            set_={c.name: upsert.excluded[c.name] for c in executions.c if not c.primary_key},
            where=executions.c.attempt < upsert.excluded.attempt,
        ).returning(executions.c.execution_id)
        if self.dialect == "postgresql":
            # One statement, one round trip: the attempt row rides along as a data-modifying
            # CTE, atomic with the upsert without BEGIN/COMMIT trips.
            attempt_cte = (
                postgresql.insert(attempts)
                .values({c.name: bindparam(f"a_{c.name}", type_=c.type) for c in attempts.c})
                .on_conflict_do_nothing()
                .cte("new_attempt")
            )
            combined = postgresql.insert(executions).values(
                {c.name: bindparam(c.name, type_=c.type) for c in executions.c}
            )
            self._combined = (
                combined.on_conflict_do_update(
                    index_elements=[executions.c.execution_id],
                    set_={
                        c.name: combined.excluded[c.name] for c in executions.c if not c.primary_key
                    },
                    where=executions.c.attempt < combined.excluded.attempt,
                )
                .returning(executions.c.execution_id)
                .add_cte(attempt_cte)
            )
        self._build_decision_statements(dialect)
        self._build_ledger_statements()
        self._build_query_statements()

    def _build_decision_statements(self, dialect: Any) -> None:
        self._insert_decision = (
            dialect.insert(decisions).on_conflict_do_nothing().returning(decisions.c.decision_id)
        )
        # A rejection after the execution ran keeps what it spent: only status and error change.
        reject = dialect.insert(executions)
        self._reject_execution = reject.on_conflict_do_update(
            index_elements=[executions.c.execution_id],
            set_={"status": reject.excluded.status, "error": reject.excluded.error},
        )
        if self.dialect == "sqlite":
            return
        # PostgreSQL: one statement each, one round trip, atomic without BEGIN/COMMIT trips.
        reject_cte = (
            postgresql.insert(executions)
            .values({c.name: bindparam(c.name, type_=c.type) for c in executions.c})
            .on_conflict_do_update(
                index_elements=[executions.c.execution_id],
                set_={"status": reject.excluded.status, "error": reject.excluded.error},
            )
            .cte("rejected")
        )
        self._decision_and_rejection = (
            postgresql.insert(decisions)
            .values({c.name: bindparam(f"d_{c.name}", type_=c.type) for c in decisions.c})
            .on_conflict_do_nothing()
            .returning(decisions.c.decision_id)
            .add_cte(reject_cte)
        )

    # -- writes ---------------------------------------------------------------------------

    async def record(self, rec: ExecutionRecord) -> bool:
        """Write one finished attempt; return False if a later attempt is already recorded."""
        return await asyncio.to_thread(self._record, rec)

    def _record(self, rec: ExecutionRecord) -> bool:
        row = _execution_row(rec)
        attempt_row = {
            "execution_id": rec.execution_id,
            "attempt": rec.attempt,
            "status": rec.status.value,
            "started_at": row["started_at"],
            "finished_at": row["finished_at"] or row["started_at"],
            "latency_ms": rec.latency_ms,
            "error": rec.error,
            "tokens_in": rec.tokens_in,
            "tokens_out": rec.tokens_out,
            "cost_usd": rec.cost_usd,
            "model": rec.model,
        }
        # RETURNING, not rowcount: drivers disagree on the rowcount of a skipped upsert.
        if self.dialect == "postgresql":
            params = {**row, **{f"a_{k}": v for k, v in attempt_row.items()}}
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return conn.execute(self._combined, params).first() is not None
        with self.engine.begin() as conn:
            conn.execute(self._insert_attempt, attempt_row)
            written = conn.execute(self._upsert_execution, row).first()
        return written is not None

    async def record_decision(
        self, decision: DecisionRecord, rejected: ExecutionRecord | None = None
    ) -> bool:
        """Write one guardrail decision, once; optionally mark an execution rejected with it.

        Args:
            decision: The decision. Writing one whose ``decision_id`` is already stored (a
                retried activity) changes nothing.
            rejected: The execution the decision rejects, with status ``rejected`` and the
                reason in ``error``. If the execution ran and is recorded, only its status and
                error change (its telemetry and result were spent); if not, it is recorded as
                given, without an attempt (it never ran). Written in the same transaction.

        Returns:
            True if the decision was new.

        Raises:
            ValueError: ``rejected`` does not have status ``rejected``.
        """
        if rejected is not None and rejected.status is not ExecutionStatus.REJECTED:
            raise ValueError(
                f"execution {rejected.execution_id} passed as rejected has status "
                f"'{rejected.status.value}': set status=ExecutionStatus.REJECTED"
            )
        return await asyncio.to_thread(self._record_decision, decision, rejected)

    def _record_decision(self, decision: DecisionRecord, rejected: ExecutionRecord | None) -> bool:
        row = decision.model_dump()
        if self.dialect == "postgresql":
            if rejected is None:
                statement, params = self._insert_decision, row
            else:
                statement = self._decision_and_rejection
                params = {**_execution_row(rejected), **{f"d_{k}": v for k, v in row.items()}}
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return conn.execute(statement, params).first() is not None
        with self._sqlite_write() as conn:
            written = conn.execute(self._insert_decision, row).first()
            if rejected is not None:
                conn.execute(self._reject_execution, _execution_row(rejected))
        return written is not None
