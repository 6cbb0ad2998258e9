"""Tables of the state DB and the migrations that build them, owned by the project.

Each migration is a function of a connection; the ``gr_schema`` table holds the version
applied. A fresh database is created at the latest version; an older one must be upgraded
explicitly (``graphrunner db upgrade``), so a worker never rewrites a shared schema by surprise.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "attempts",
    "decisions",
    "executions",
    "metadata",
    "schema_table",
    "tenant_charges",
    "tenant_usage",
]

metadata = MetaData()

schema_table = Table(
    "gr_schema",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# One row per node execution (a node at an iteration in one workflow run). A later attempt of
# the same execution supersedes an earlier one (guarded by attempt number); every attempt that
# finished is also kept, append-only, in gr_attempts.
executions = Table(
    "gr_executions",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("lifetime_id", String(1000), nullable=False),  # Temporal's workflow id limit
    Column("run_id", String(64), nullable=False),
    Column("graph_name", String(128), nullable=False),
    Column("graph_version", String(64), nullable=False),
    Column("graph_hash", String(64), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("node", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("iteration", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("parent_ids", JSON, nullable=False),
    Column("edge", String(16)),
    Column("next", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
    Column("cost_usd", Numeric(20, 10), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("model", String(255), nullable=False),
    Column("result_inline", Text),
    Column("result_uri", Text),
    Column("result_size", BigInteger, nullable=False),
    Column("result_sha256", String(64)),
    Column("error", Text),
    Index("ix_gr_executions_lifetime", "lifetime_id", "seq"),
    Index("ix_gr_executions_tenant", "tenant", "created_at"),
    Index("ix_gr_executions_graph", "graph_name", "created_at"),
    Index("ix_gr_executions_status", "status"),
)

attempts = Table(
    "gr_attempts",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
)


# One row per guardrail decision: a rule that fired, or an operator's resume. Kept beside the
# execution records, so `graphrunner` can show why a lifetime paused or an execution was
# rejected.
decisions = Table(
    "gr_decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("lifetime_id", String(1000), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("graph_name", String(128), nullable=False),
    Column("execution_id", String(64)),
    Column("node", String(64)),
    Column("iteration", Integer),
    Column("seq", Integer, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("condition", Text, nullable=False),
    Column("observed", JSON, nullable=False),
    Column("message", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_gr_decisions_lifetime", "lifetime_id", "seq"),
    Index("ix_gr_decisions_tenant", "tenant", "decided_at"),
)

# Running totals of a tenant's aggregates (one row per aggregate's canonical text), across
# all its lifetimes; gr_tenant_charges makes each execution count once.
tenant_usage = Table(
    "gr_tenant_usage",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("total", Float, nullable=False, server_default=text("0")),
    Column("count", BigInteger, nullable=False, server_default=text("0")),
    Column("lo", Float),
    Column("hi", Float),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

tenant_charges = Table(
    "gr_tenant_charges",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("tenant", String(255), nullable=False),
    Column("charged_at", DateTime(timezone=True), nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[executions, attempts])


def _v2(conn: Connection) -> None:
    # Guardrails: decisions and the tenant ledger.
    metadata.create_all(conn, tables=[decisions, tenant_usage, tenant_charges])


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)
