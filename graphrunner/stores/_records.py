"""The record store: append-only execution records in SQLite or PostgreSQL (SQLAlchemy 2).

Writes are idempotent: an execution's id is derived from (workflow id, run id, node,
iteration), so an activity retry or a crashed worker's re-run never adds a second record.
A later attempt of the same execution supersedes an earlier one only through a guarded
upsert (``WHERE stored.attempt < new.attempt``); every finished attempt is kept in
``gr_attempts``. Calls are synchronous SQLAlchemy run in a thread, so SQLite and psycopg 3
need no async drivers.

Guardrails keep two more kinds of rows here: their decisions (``gr_decisions``), and a
per-tenant ledger of running totals (``gr_tenant_usage``) that every execution is charged to
exactly once (``gr_tenant_charges`` remembers which were).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Float,
    Insert,
    Text,
    any_,
    bindparam,
    case,
    cast,
    column,
    create_engine,
    event,
    exists,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from graphrunner.errors import GraphrunnerError
from graphrunner.stores._schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    attempts,
    decisions,
    executions,
    schema_table,
    tenant_charges,
    tenant_usage,
)

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

# Key of the PostgreSQL advisory lock that serialises migrations ("grschema" in ASCII).
_MIGRATION_LOCK = 0x67_72_73_63_68_65_6D_61


class SchemaError(GraphrunnerError):
    """The state DB's schema is missing, behind or ahead of this graphrunner."""


class ExecutionStatus(StrEnum):
    """Outcome of a node execution."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class ExecutionRecord(BaseModel):
    """One Task or Plan execution: headers, telemetry and where its result is."""

    model_config = ConfigDict(extra="forbid")

    # headers
    execution_id: str
    lifetime_id: str
    run_id: str
    graph_name: str
    graph_version: str
    graph_hash: str
    tenant: str
    node: str
    kind: str
    iteration: int
    seq: int = Field(description="Order in which the workflow scheduled the execution.")
    attempt: int
    parent_ids: list[str] = Field(default_factory=list)
    edge: str | None = Field(default=None, description="Type of the edge that led here.")
    next: list[str] = Field(default_factory=list, description="Where the execution led.")
    status: ExecutionStatus
    created_at: datetime
    started_at: datetime
    finished_at: datetime | None = None
    # telemetry
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    model: str = ""
    # result: inline JSON text, or a blob URI with size and digest
    result_inline: str | None = None
    result_uri: str | None = None
    result_size: int = 0
    result_sha256: str | None = None
    error: str | None = None

    @property
    def result_location(self) -> str:
        """The URI of a large result, or ``inline`` with its size."""
        return self.result_uri or f"inline ({self.result_size} B)"

    def result_value(self) -> Any:
        """The inline result, decoded (None when the result is in the blob store)."""
        return json.loads(self.result_inline) if self.result_inline is not None else None


class LifetimeSummary(BaseModel):
    """Aggregates of one lifetime's records."""

    lifetime_id: str
    graph_name: str
    graph_version: str
    tenant: str
    executions: int
    failed: int
    tokens: int
    cost_usd: Decimal
    first_at: datetime
    last_at: datetime | None


class DecisionRecord(BaseModel):
    """One guardrail decision: a rule that fired, or an operator's resume, and why."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str
    lifetime_id: str
    run_id: str
    tenant: str
    graph_name: str
    execution_id: str | None = Field(default=None, description="The execution decided on.")
    node: str | None = None
    iteration: int | None = None
    seq: int = Field(description="Order of the decision within its lifetime run.")
    rule: str
    action: str = Field(description="reject_execution, pause_lifetime, abort_lifetime or resume.")
    phase: str = Field(
        description="before (checked before scheduling), after (on the result) or resume."
    )
    scope: str
    condition: str = Field(description="The rule's expression text.")
    observed: dict[str, float | str] = Field(
        default_factory=dict, description="Value of each sub-expression, by its text."
    )
    message: str = ""
    decided_at: datetime = Field(description="When the decision was taken, in UTC.")

    @field_validator("decided_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


class UsageTotals(BaseModel):
    """Running totals of one tenant aggregate: sum, count, least and greatest value."""

    total: float = 0.0
    count: int = 0
    lo: float | None = None
    hi: float | None = None


class UsageDelta(BaseModel):
    """What one execution adds to one tenant aggregate."""

    value: float = Field(
        default=0.0, description="The execution's value (ignored by count aggregates)."
    )
    matched: bool = Field(
        default=True, description="Whether the execution passed the aggregate's filter."
    )


class CostRow(BaseModel):
    """Token and cost totals of one tenant or graph."""

    key: str
    lifetimes: int
    executions: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


def _engine_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _as_utc(value: datetime) -> datetime:
    # Every time graphrunner stores is UTC: SQLite keeps no offset (it would store 12:00+02:00
    # as 12:00) and hands back naive datetimes, which are therefore UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _as_utc(value)


def _execution_row(rec: ExecutionRecord) -> dict[str, Any]:
    row = rec.model_dump()
    for name in ("created_at", "started_at", "finished_at"):
        row[name] = _utc(row[name])
    return row


def _fold_usage(upsert: Any, least: Any, greatest: Any) -> Insert:
    # Fold one value (the row being inserted) into a (tenant, key) total. SQLite's scalar
    # min()/max() return NULL if any argument is NULL, hence the COALESCE for a first value.
    stored, new = tenant_usage.c, upsert.excluded
    folded: Insert = upsert.on_conflict_do_update(
        index_elements=[stored.tenant, stored.key],
        set_={
            "total": stored.total + new.total,
            "count": stored.count + new.count,
            "lo": least(func.coalesce(stored.lo, new.lo), new.lo),
            "hi": greatest(func.coalesce(stored.hi, new.hi), new.hi),
            "updated_at": new.updated_at,
        },
    )
    return folded


class RecordStore:
    """Execution records in a SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql://user@host/db`` (psycopg 3).
    """

    def __init__(self, url: str) -> None:
        try:
            self.url = _engine_url(url)
        except (ArgumentError, ValueError):
            # The URL is not echoed: an unparsable one may still hold a password.
            raise SchemaError(
                "the state DB URL is not a valid SQLAlchemy URL: use sqlite:///path.db or "
                "postgresql://user@host/db"
            ) from None
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                folder = Path(parsed.database).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise SchemaError(
                        f"cannot create the folder of state DB {parsed.database}: {exc}"
                    ) from None
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.dialect == "postgresql":
            # No pre-ping: it costs a round trip per write; recycling covers idle disconnects.
            self.engine = create_engine(self.url, pool_size=10, max_overflow=20, pool_recycle=600)
        else:
            raise SchemaError(
                f"unsupported state DB '{parsed.drivername}': use sqlite or postgresql"
            )
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
        self._build_guardrail_statements(dialect)

    def _build_guardrail_statements(self, dialect: Any) -> None:
        self._insert_decision = (
            dialect.insert(decisions).on_conflict_do_nothing().returning(decisions.c.decision_id)
        )
        # A rejection after the execution ran keeps what it spent: only status and error change.
        reject = dialect.insert(executions)
        self._reject_execution = reject.on_conflict_do_update(
            index_elements=[executions.c.execution_id],
            set_={"status": reject.excluded.status, "error": reject.excluded.error},
        )
        u = tenant_usage.c
        self._read_usage = select(u.key, u.total, u.count, u.lo, u.hi).where(
            u.tenant == bindparam("tenant"), u.key.in_(bindparam("keys", expanding=True))
        )
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
        if self.dialect == "sqlite":
            self._insert_charge = (
                sqlite.insert(tenant_charges)
                .on_conflict_do_nothing()
                .returning(tenant_charges.c.execution_id)
            )
            self._fold_usage = _fold_usage(sqlite.insert(tenant_usage), func.min, func.max)
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
        # The charge row gates the fold (an execution counts once); keys arrive as arrays so
        # one prebuilt statement serves any number of them, and the totals come back with it:
        # RETURNING for the rows it folded, a read for the others.
        tenant = bindparam("tenant", type_=tenant_usage.c.tenant.type)
        now = bindparam("now", type_=tenant_usage.c.updated_at.type)
        charge = (
            postgresql.insert(tenant_charges)
            .values(execution_id=bindparam("execution_id"), tenant=tenant, charged_at=now)
            .on_conflict_do_nothing()
            .returning(tenant_charges.c.execution_id)
            .cte("charge")
        )
        matched = (
            func.unnest(
                cast(bindparam("keys"), ARRAY(Text)), cast(bindparam("values"), ARRAY(Float))
            )
            .table_valued(column("key", Text), column("value", Float))
            .render_derived(name="matched")
        )
        rows = select(
            tenant,
            matched.c.key,
            matched.c.value,
            literal(1),
            matched.c.value,
            matched.c.value,
            now,
        ).where(exists(select(charge.c.execution_id)))
        fold = postgresql.insert(tenant_usage).from_select(
            ["tenant", "key", "total", "count", "lo", "hi", "updated_at"], rows
        )
        folded = (
            _fold_usage(fold, func.least, func.greatest)
            .returning(u.key, u.total, u.count, u.lo, u.hi)
            .cte("folded")
        )
        self._charge_tenant = select(
            folded.c.key, folded.c.total, folded.c.count, folded.c.lo, folded.c.hi
        ).union_all(
            select(u.key, u.total, u.count, u.lo, u.hi).where(
                u.tenant == tenant,
                u.key == any_(cast(bindparam("all_keys"), ARRAY(Text))),
                u.key.not_in(select(folded.c.key)),
            )
        )

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def _sqlite_write(self) -> Iterator[Connection]:
        # BEGIN IMMEDIATE takes the write lock up front: a transaction that reads first and
        # writes later fails at once ("database is locked") if another commits in between.
        with self.engine.begin() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    # -- schema ---------------------------------------------------------------------------

    def schema_version(self) -> int:
        """Version recorded in the database (0 when it has no graphrunner schema).

        Raises:
            SchemaError: The database cannot be reached or opened.
        """

        def read() -> int:
            with self.engine.connect() as conn:
                return self._version(conn)

        try:
            return _patient(read)
        except DBAPIError as exc:
            raise SchemaError(f"cannot open state DB {self.safe_url()}: {exc.orig}") from None

    def _version(self, conn: Connection) -> int:
        if not self.engine.dialect.has_table(conn, schema_table.name):
            return 0
        found = conn.execute(select(func.max(schema_table.c.version))).scalar()
        return int(found or 0)

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; fail clearly if it is behind or ahead.

        Raises:
            SchemaError: The schema is older than this graphrunner (run ``graphrunner db
                upgrade``) or newer (upgrade graphrunner).
        """
        current = self.schema_version()
        if current == 0:
            self.upgrade()
        elif current < SCHEMA_VERSION:
            raise SchemaError(
                f"state DB {self.safe_url()} has schema version {current}, this graphrunner "
                f"needs {SCHEMA_VERSION}: run 'graphrunner db upgrade'"
            )
        elif current > SCHEMA_VERSION:
            raise SchemaError(
                f"state DB {self.safe_url()} has schema version {current}, newer than this "
                f"graphrunner ({SCHEMA_VERSION}): upgrade graphrunner"
            )

    def upgrade(self) -> tuple[int, int]:
        """Apply pending migrations; return (version before, version after).

        Raises:
            SchemaError: The schema is newer than this graphrunner (upgrade graphrunner), or
                the database cannot be reached.
        """
        try:
            return _patient(self._upgrade)
        except DBAPIError as exc:
            raise SchemaError(f"cannot upgrade state DB {self.safe_url()}: {exc.orig}") from None

    def _upgrade(self) -> tuple[int, int]:
        with self.engine.begin() as conn:
            # Workers starting together on an empty database all get here: the first takes the
            # lock and migrates, the others then read its version and have nothing to do.
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            before = self._version(conn)
            if before > SCHEMA_VERSION:
                raise SchemaError(
                    f"state DB {self.safe_url()} has schema version {before}, newer than this "
                    f"graphrunner ({SCHEMA_VERSION}): upgrade graphrunner"
                )
            # Frozen DDL only (the first migration creates gr_schema): never create_all, so a
            # fresh database and an upgraded one are built by the same statements.
            for version in range(before + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](conn)
                conn.execute(
                    insert(schema_table).values(version=version, applied_at=datetime.now(UTC))
                )
        return before, SCHEMA_VERSION

    def safe_url(self) -> str:
        """The database URL with any password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

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

    async def tenant_charge(
        self, tenant: str, execution_id: str, deltas: dict[str, UsageDelta]
    ) -> dict[str, UsageTotals]:
        """Add one execution to its tenant's running totals, once; return the totals after.

        Atomic and idempotent: the first charge of ``execution_id`` folds every matched delta
        into its key's total, count, least and greatest value; a repeated charge (a retried
        activity) changes nothing. Concurrent charges of one tenant serialise on its rows.

        Args:
            tenant: The tenant charged.
            execution_id: The execution whose values these are.
            deltas: By aggregate key (its canonical text), what the execution adds; a delta
                that is not ``matched`` adds nothing.

        Returns:
            The totals of every key in ``deltas`` (``UsageTotals()`` for one never charged).
        """
        return await asyncio.to_thread(self._tenant_charge, tenant, execution_id, deltas)

    def _tenant_charge(
        self, tenant: str, execution_id: str, deltas: dict[str, UsageDelta]
    ) -> dict[str, UsageTotals]:
        now = datetime.now(UTC)
        # Sorted, so concurrent charges lock a tenant's rows in one order and cannot deadlock.
        matched = sorted((key, d.value) for key, d in deltas.items() if d.matched)
        found = dict.fromkeys(deltas, UsageTotals())
        if self.dialect == "postgresql":
            params = {
                "tenant": tenant,
                "execution_id": execution_id,
                "now": now,
                "keys": [key for key, _ in matched],
                "values": [value for _, value in matched],
                "all_keys": list(deltas),
            }
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                rows = conn.execute(self._charge_tenant, params).all()
        else:
            charge = {"execution_id": execution_id, "tenant": tenant, "charged_at": now}
            with self._sqlite_write() as conn:
                charged = conn.execute(self._insert_charge, charge).first() is not None
                if charged and matched:
                    conn.execute(
                        self._fold_usage,
                        [
                            {
                                "tenant": tenant,
                                "key": key,
                                "total": value,
                                "count": 1,
                                "lo": value,
                                "hi": value,
                                "updated_at": now,
                            }
                            for key, value in matched
                        ],
                    )
                rows = conn.execute(
                    self._read_usage, {"tenant": tenant, "keys": list(deltas)}
                ).all()
        found.update(_usage(rows))
        return found

    # -- reads ----------------------------------------------------------------------------

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

    async def tenant_usage(self, tenant: str, keys: list[str]) -> dict[str, UsageTotals]:
        """A tenant's current running totals of ``keys`` (``UsageTotals()`` if never charged)."""

        def read() -> dict[str, UsageTotals]:
            found = dict.fromkeys(keys, UsageTotals())
            if keys:
                # Autocommit: one statement needs no BEGIN/ROLLBACK round trips on PostgreSQL.
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    rows = conn.execute(self._read_usage, {"tenant": tenant, "keys": keys}).all()
                found.update(_usage(rows))
            return found

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
                rows = [dict(row._mapping) for row in conn.execute(query)]
            for row in rows:
                row["started_at"], row["finished_at"] = (
                    _utc(row["started_at"]),
                    _utc(row["finished_at"]),
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
                row["first_at"], row["last_at"] = _utc(row["first_at"]), _utc(row["last_at"])
                row["cost_usd"] = Decimal(row["cost_usd"] or 0)
                row["tokens"] = int(row["tokens"] or 0)
            return [LifetimeSummary.model_validate(row) for row in rows]

        return await asyncio.to_thread(read)

    async def costs(self, by: str = "tenant") -> list[CostRow]:
        """Token and cost totals grouped by ``tenant`` or ``graph``."""
        c = executions.c
        key = {"tenant": c.tenant, "graph": c.graph_name}.get(by)
        if key is None:
            raise ValueError(f"costs can be grouped by 'tenant' or 'graph', not {by!r}")
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

        def read() -> list[CostRow]:
            with self.engine.connect() as conn:
                rows = [dict(row._mapping) for row in conn.execute(query)]
            return [
                CostRow.model_validate({**r, "cost_usd": Decimal(r["cost_usd"] or 0)}) for r in rows
            ]

        return await asyncio.to_thread(read)

    @staticmethod
    def _to_record(row: Any) -> ExecutionRecord:
        data = dict(row)
        for name in ("created_at", "started_at", "finished_at"):
            data[name] = _utc(data[name])
        return ExecutionRecord.model_validate(data)


def _usage(rows: Sequence[Any]) -> dict[str, UsageTotals]:
    return {
        row.key: UsageTotals(total=row.total, count=row.count, lo=row.lo, hi=row.hi) for row in rows
    }


_T = TypeVar("_T")


def _patient(step: Callable[[], _T], seconds: float = 30.0) -> _T:
    """Run ``step``, again while SQLite says "database is locked" (for up to ``seconds``).

    A fresh SQLite file that several workers open at once is switched to WAL by one of them,
    and meanwhile the others' reads and ``BEGIN IMMEDIATE`` can be refused at once, without
    SQLite's busy handler (1 in 15 starts of 8 workers here). The schema steps are
    idempotent, so trying again is safe.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return step()
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL lets readers run beside the writer; NORMAL syncs at checkpoints, not every commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
