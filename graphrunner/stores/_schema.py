"""Tables of the state DB, and the frozen migrations that build them, owned by the project.

The ``Table`` objects below are what queries use. They never create anything: the schema is
made only by `MIGRATIONS`, one literal DDL script per version (per dialect where SQLite and
PostgreSQL differ), applied in order; the ``gr_schema`` table holds the versions applied.
A released migration is never edited. To change the schema, append a migration and edit the
tables to match it; ``tests/test_migrations.py`` fails until an upgrade from every version
gives exactly the schema of a fresh database and the tables match what the migrations build
(and it holds a digest of every released migration, so an edited one fails it too).

A fresh database is created at the latest version; an older one must be upgraded explicitly
(``graphrunner db upgrade``), so a worker never rewrites a shared schema by surprise.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "Migration",
    "SCHEMA_VERSION",
    "attempts",
    "decisions",
    "executions",
    "metadata",
    "model_cooldowns",
    "schema_table",
    "tenant_charges",
    "tenant_reservations",
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
    # Lifetime state (version 4): {"seen": state, "update": update} as JSON, inline or a URI.
    Column("state_inline", Text),
    Column("state_uri", Text),
    # Human input (version 5): who answered a human step, and how (update, signal, timeout).
    Column("answered_by", String(300)),
    # Forks (version 6): the lifetime and step a fork's execution was forked from, "<id>#<N>".
    Column("forked_from", Text),
    # Sub-graphs (version 7): the child lifetime a sub-graph task ran.
    Column("child_id", Text),
    # LLM nodes (version 9): a tool call's tool (kind "tool"); an LLM node's notes (re-asks).
    Column("tool", String(64)),
    Column("notes", JSON(none_as_null=True)),  # SQL NULL, not JSON null, when unset
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
    # What the attempt's model calls spent (version 8), failed attempts included: a later
    # attempt replaces the execution row, so this is where an earlier attempt's spend stays.
    Column("tokens_in", BigInteger, nullable=False, server_default=text("0")),
    Column("tokens_out", BigInteger, nullable=False, server_default=text("0")),
    Column("cost_usd", Numeric(20, 10), nullable=False, server_default=text("0")),
    Column("model", String(255), nullable=False, server_default=text("''")),
)

# One row per LLM model that failed retryably (version 8), shared by every worker: failures
# in a row, until when the model is skipped, and why. A success resets it.
model_cooldowns = Table(
    "gr_model_cooldowns",
    metadata,
    Column("model", String(255), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("cooling_until", DateTime(timezone=True)),
    Column("last_error", String(32)),
    Column("last_message", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
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

# What each execution still running may add to its tenant's totals (its declared ceiling, as
# deltas by aggregate key), so that concurrent checks see each other's in-flight spend. A
# reservation is replaced by a charge when its execution settles, or deleted when it fails
# or is rejected; one whose lifetime vanished (terminated) stops counting at ``expires_at``.
tenant_reservations = Table(
    "gr_tenant_reservations",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("tenant", String(255), nullable=False),
    Column("deltas", JSON, nullable=False),
    Column("reserved_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_gr_tenant_reservations_tenant", "tenant", "expires_at"),
)


# --- frozen migrations ------------------------------------------------------------------------
#
# Never edit a released migration: databases in the field were built by it. Its DDL is what
# `metadata.create_all` emitted for the tables as they were then, so databases built before
# the migrations were frozen are identical to new ones. Statements are written once, with the
# few type names SQLite and PostgreSQL spell differently left as placeholders; the spellings
# are part of the frozen DDL (a migration that needs other SQL per dialect writes both).

_SPELLINGS: dict[str, dict[str, str]] = {
    "sqlite": {"timestamp": "DATETIME", "serial": "INTEGER"},
    # gr_schema.version became SERIAL by accident (an integer primary key under create_all);
    # it is kept so that old and new databases stay identical.
    "postgresql": {"timestamp": "TIMESTAMP WITH TIME ZONE", "serial": "SERIAL"},
}


def _spelled(dialect: str, *ddl: str) -> tuple[str, ...]:
    return tuple(statement.format(**_SPELLINGS[dialect]) for statement in ddl)


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One schema version: the literal DDL that takes the previous version to it.

    Calling it with a connection runs the statements of the connection's dialect, in order,
    inside the caller's transaction.

    Attributes:
        version: The schema version the migration produces (its position in `MIGRATIONS`).
        summary: What the version adds, for people reading the list.
        sqlite: The statements for SQLite.
        postgresql: The statements for PostgreSQL.
    """

    version: int
    summary: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        """The DDL for ``dialect`` (``sqlite`` or ``postgresql``)."""
        if dialect == "sqlite":
            return self.sqlite
        if dialect == "postgresql":
            return self.postgresql
        raise ValueError(f"no migration DDL for dialect {dialect!r}: use sqlite or postgresql")

    def __call__(self, conn: Connection) -> None:
        for statement in self.statements(conn.dialect.name):
            conn.exec_driver_sql(statement)


_V1 = (
    # IF NOT EXISTS, as create_all did: an empty gr_schema (version 0) still upgrades.
    """CREATE TABLE IF NOT EXISTS gr_schema (
    version {serial} NOT NULL,
    applied_at {timestamp} NOT NULL,
    PRIMARY KEY (version)
)""",
    """CREATE TABLE gr_executions (
    execution_id VARCHAR(64) NOT NULL,
    lifetime_id VARCHAR(1000) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    graph_name VARCHAR(128) NOT NULL,
    graph_version VARCHAR(64) NOT NULL,
    graph_hash VARCHAR(64) NOT NULL,
    tenant VARCHAR(255) NOT NULL,
    node VARCHAR(64) NOT NULL,
    kind VARCHAR(8) NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    parent_ids JSON NOT NULL,
    edge VARCHAR(16),
    next JSON NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_at {timestamp} NOT NULL,
    started_at {timestamp} NOT NULL,
    finished_at {timestamp},
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    cost_usd NUMERIC(20, 10) NOT NULL,
    latency_ms FLOAT NOT NULL,
    model VARCHAR(255) NOT NULL,
    result_inline TEXT,
    result_uri TEXT,
    result_size BIGINT NOT NULL,
    result_sha256 VARCHAR(64),
    error TEXT,
    PRIMARY KEY (execution_id)
)""",
    "CREATE INDEX ix_gr_executions_lifetime ON gr_executions (lifetime_id, seq)",
    "CREATE INDEX ix_gr_executions_tenant ON gr_executions (tenant, created_at)",
    "CREATE INDEX ix_gr_executions_graph ON gr_executions (graph_name, created_at)",
    "CREATE INDEX ix_gr_executions_status ON gr_executions (status)",
    """CREATE TABLE gr_attempts (
    execution_id VARCHAR(64) NOT NULL,
    attempt INTEGER NOT NULL,
    status VARCHAR(16) NOT NULL,
    started_at {timestamp} NOT NULL,
    finished_at {timestamp} NOT NULL,
    latency_ms FLOAT NOT NULL,
    error TEXT,
    PRIMARY KEY (execution_id, attempt)
)""",
)

_V2 = (
    """CREATE TABLE gr_decisions (
    decision_id VARCHAR(64) NOT NULL,
    lifetime_id VARCHAR(1000) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    tenant VARCHAR(255) NOT NULL,
    graph_name VARCHAR(128) NOT NULL,
    execution_id VARCHAR(64),
    node VARCHAR(64),
    iteration INTEGER,
    seq INTEGER NOT NULL,
    rule VARCHAR(64) NOT NULL,
    action VARCHAR(32) NOT NULL,
    phase VARCHAR(16) NOT NULL,
    scope VARCHAR(16) NOT NULL,
    condition TEXT NOT NULL,
    observed JSON NOT NULL,
    message TEXT NOT NULL,
    decided_at {timestamp} NOT NULL,
    PRIMARY KEY (decision_id)
)""",
    "CREATE INDEX ix_gr_decisions_lifetime ON gr_decisions (lifetime_id, seq)",
    "CREATE INDEX ix_gr_decisions_tenant ON gr_decisions (tenant, decided_at)",
    """CREATE TABLE gr_tenant_usage (
    tenant VARCHAR(255) NOT NULL,
    "key" TEXT NOT NULL,
    total FLOAT DEFAULT 0 NOT NULL,
    count BIGINT DEFAULT 0 NOT NULL,
    lo FLOAT,
    hi FLOAT,
    updated_at {timestamp} NOT NULL,
    PRIMARY KEY (tenant, "key")
)""",
    """CREATE TABLE gr_tenant_charges (
    execution_id VARCHAR(64) NOT NULL,
    tenant VARCHAR(255) NOT NULL,
    charged_at {timestamp} NOT NULL,
    PRIMARY KEY (execution_id)
)""",
)

_V3 = (
    """CREATE TABLE gr_tenant_reservations (
    execution_id VARCHAR(64) NOT NULL,
    tenant VARCHAR(255) NOT NULL,
    deltas JSON NOT NULL,
    reserved_at {timestamp} NOT NULL,
    expires_at {timestamp} NOT NULL,
    PRIMARY KEY (execution_id)
)""",
    "CREATE INDEX ix_gr_tenant_reservations_tenant ON gr_tenant_reservations (tenant, expires_at)",
)

_V4 = (
    "ALTER TABLE gr_executions ADD COLUMN state_inline TEXT",
    "ALTER TABLE gr_executions ADD COLUMN state_uri TEXT",
)

_V5 = ("ALTER TABLE gr_executions ADD COLUMN answered_by VARCHAR(300)",)

_V6 = ("ALTER TABLE gr_executions ADD COLUMN forked_from TEXT",)

_V7 = ("ALTER TABLE gr_executions ADD COLUMN child_id TEXT",)

_V8 = (
    "ALTER TABLE gr_attempts ADD COLUMN tokens_in BIGINT DEFAULT 0 NOT NULL",
    "ALTER TABLE gr_attempts ADD COLUMN tokens_out BIGINT DEFAULT 0 NOT NULL",
    "ALTER TABLE gr_attempts ADD COLUMN cost_usd NUMERIC(20, 10) DEFAULT 0 NOT NULL",
    "ALTER TABLE gr_attempts ADD COLUMN model VARCHAR(255) DEFAULT '' NOT NULL",
    """CREATE TABLE gr_model_cooldowns (
    model VARCHAR(255) NOT NULL,
    failures INTEGER NOT NULL,
    cooling_until {timestamp},
    last_error VARCHAR(32),
    last_message TEXT,
    updated_at {timestamp} NOT NULL,
    PRIMARY KEY (model)
)""",
)

_V9 = (
    "ALTER TABLE gr_executions ADD COLUMN tool VARCHAR(64)",
    "ALTER TABLE gr_executions ADD COLUMN notes JSON",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        summary="execution records: gr_executions, gr_attempts (and gr_schema itself)",
        sqlite=_spelled("sqlite", *_V1),
        postgresql=_spelled("postgresql", *_V1),
    ),
    Migration(
        version=2,
        summary="guardrails: gr_decisions and the tenant ledger (gr_tenant_usage, _charges)",
        sqlite=_spelled("sqlite", *_V2),
        postgresql=_spelled("postgresql", *_V2),
    ),
    Migration(
        version=3,
        summary="tenant budgets: gr_tenant_reservations (in-flight ceilings)",
        sqlite=_spelled("sqlite", *_V3),
        postgresql=_spelled("postgresql", *_V3),
    ),
    Migration(
        version=4,
        summary="lifetime state: the state each execution saw and the update it made",
        sqlite=_spelled("sqlite", *_V4),
        postgresql=_spelled("postgresql", *_V4),
    ),
    Migration(
        version=5,
        summary="human input: who answered a human step (answered_by)",
        sqlite=_spelled("sqlite", *_V5),
        postgresql=_spelled("postgresql", *_V5),
    ),
    Migration(
        version=6,
        summary="forks: the lifetime and step a fork's execution was forked from (forked_from)",
        sqlite=_spelled("sqlite", *_V6),
        postgresql=_spelled("postgresql", *_V6),
    ),
    Migration(
        version=7,
        summary="sub-graphs: the child lifetime a sub-graph task's record names (child_id)",
        sqlite=_spelled("sqlite", *_V7),
        postgresql=_spelled("postgresql", *_V7),
    ),
    Migration(
        version=8,
        summary="LLM runtime: what each attempt's model calls spent (gr_attempts), and model "
        "cooldowns shared by every worker (gr_model_cooldowns)",
        sqlite=_spelled("sqlite", *_V8),
        postgresql=_spelled("postgresql", *_V8),
    ),
    Migration(
        version=9,
        summary="LLM nodes: a tool call's tool, an LLM node's notes (re-asks, default taken)",
        sqlite=_spelled("sqlite", *_V9),
        postgresql=_spelled("postgresql", *_V9),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
