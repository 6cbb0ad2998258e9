"""Frozen migrations: every upgrade path ends at exactly the schema of a fresh database.

Schemas are compared as the database reports them (SQLAlchemy reflection): tables, columns in
order with type, nullability and default, primary keys, indexes, unique, foreign-key and check
constraints, and sequences. Every test runs against SQLite and PostgreSQL (a new database for
each schema built, on the server at ``GRAPHRUNNER_TEST_POSTGRES``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    DefaultClause,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    column,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.engine import make_url

from graphrunner.stores import _db, _schema
from graphrunner.stores._records import ExecutionRecord, RecordStore, SchemaError
from graphrunner.stores._schema import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import pg_admin_url

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)

NewDatabase = Callable[[], str]


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Make empty databases of one kind: SQLite files, or new databases on the PostgreSQL."""
    if request.param == "sqlite":
        count = iter(range(1_000))
        yield lambda: f"sqlite:///{tmp_path / f'db{next(count)}.sqlite'}"
        return
    admin_url = pg_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {admin_url} is unreachable (start it for these tests): {exc}")
    made: list[str] = []

    def make() -> str:
        name = f"gr_mig_{uuid.uuid4().hex}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    with admin:
        try:
            yield make
        finally:
            for name in made:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def schema_of(url: str) -> dict[str, str]:
    """The schema as the database reports it, one entry per column, key, index or constraint.

    Flat, so that a failed comparison names exactly what differs.
    """
    store = RecordStore(url)
    try:
        dialect = store.engine.dialect
        inspector = inspect(store.engine)
        found: dict[str, str] = {}
        for name in inspector.get_table_names():
            for position, col in enumerate(inspector.get_columns(name)):
                extras = {k: col.get(k) for k in ("identity", "computed", "comment") if col.get(k)}
                found[f"{name}.{col['name']}"] = (
                    f"#{position} {col['type'].compile(dialect)} "
                    f"{'NULL' if col['nullable'] else 'NOT NULL'} default={col['default']!r}"
                    + (f" {extras}" if extras else "")
                )
            pk = inspector.get_pk_constraint(name)
            found[f"{name} primary key"] = f"{pk['name']} {pk['constrained_columns']}"
            for index in inspector.get_indexes(name):
                if index.get("duplicates_constraint"):
                    continue  # PostgreSQL's index behind a unique constraint, listed below
                found[f"{name} index {index['name']}"] = (
                    f"{index['column_names']} unique={index['unique']}"
                )
            for unique in inspector.get_unique_constraints(name):
                found[f"{name} unique {unique['name']}"] = str(unique["column_names"])
            for fk in inspector.get_foreign_keys(name):
                found[f"{name} foreign key {fk['name']}"] = (
                    f"{fk['constrained_columns']} -> {fk['referred_table']}{fk['referred_columns']}"
                )
            for check in inspector.get_check_constraints(name):
                found[f"{name} check {check['name']}"] = check["sqltext"]
        if dialect.name == "postgresql":
            for sequence in inspector.get_sequence_names():
                found[f"sequence {sequence}"] = "exists"
        return found
    finally:
        store.close()


def fresh(url: str) -> str:
    """Give ``url`` the current schema the way a worker does on first use; return it."""
    store = RecordStore(url)
    try:
        store.ensure_schema()
    finally:
        store.close()
    return url


def at_version(url: str, version: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Build the schema of ``version`` (the code's first ``version`` migrations) at ``url``."""
    store = RecordStore(url)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(_db, "SCHEMA_VERSION", version)
            assert store.upgrade() == (0, version)
        assert store.schema_version() == version
    finally:
        store.close()
    return url


def created_from_tables(url: str, metadata: MetaData) -> str:
    """Build ``url`` from the live Table objects (``create_all``), as no migration may."""
    store = RecordStore(url)
    try:
        metadata.create_all(store.engine)
    finally:
        store.close()
    return url


def upgrade(url: str) -> tuple[int, int]:
    """What ``graphrunner db upgrade`` does."""
    store = RecordStore(url)
    try:
        return store.upgrade()
    finally:
        store.close()


def versions_recorded(url: str) -> list[int]:
    store = RecordStore(url)
    try:
        with store.engine.connect() as conn:
            return sorted(conn.execute(text("SELECT version FROM gr_schema")).scalars())
    finally:
        store.close()


def copy_of_tables() -> MetaData:
    """A private copy of the live tables, to edit without touching the real ones."""
    copied = MetaData()
    for live in _schema.metadata.tables.values():
        live.to_metadata(copied)
    return copied


# --- upgrade paths --------------------------------------------------------------------------


def test_upgrading_from_every_version_gives_the_schema_of_a_fresh_database(
    new_db: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = schema_of(fresh(new_db()))
    assert {"gr_schema", "gr_executions", "gr_decisions"} <= {k.split(".")[0] for k in expected}

    for version in range(1, SCHEMA_VERSION):
        old = at_version(new_db(), version, monkeypatch)
        store = RecordStore(old)
        try:
            with pytest.raises(SchemaError, match="graphrunner db upgrade"):
                store.ensure_schema()  # a worker never migrates by itself
        finally:
            store.close()

        assert upgrade(old) == (version, SCHEMA_VERSION)

        assert schema_of(old) == expected, f"upgrade from version {version} differs from fresh"
        assert versions_recorded(old) == list(range(1, SCHEMA_VERSION + 1))
        assert upgrade(old) == (SCHEMA_VERSION, SCHEMA_VERSION), "nothing left to do"


def test_the_table_objects_match_the_frozen_latest_schema(new_db: NewDatabase) -> None:
    # Editing a Table without adding a migration fails here: queries would use a column,
    # type or index that no database built by the migrations has.
    frozen = schema_of(fresh(new_db()))
    from_tables = schema_of(created_from_tables(new_db(), _schema.metadata))

    assert from_tables == frozen


# Expected SHA-256 of each released migration's statements, per dialect. A released migration
# is never edited (databases in the field were built by it): add a new one instead, and add
# its digests here when it is released.
RELEASED = {
    (1, "sqlite"): "8f4d238cb40fe0b8410c74c727d353d166912e3bef8b56183b25811802c2ef78",
    (1, "postgresql"): "81b9ffa7da909c3a1fe042e6da35ee8f9778c8d12a811878cb984099940ad2c8",
    (2, "sqlite"): "874ecd72be80cb13f3b30f7557f1956d4a37acbd6d88f2be19c2aa00cbf71b99",
    (2, "postgresql"): "76a0c807c33a361dc14df5dad228c4330b720c8b04eb460cdbc4abea4380cff9",
    (3, "sqlite"): "9125b3f496a7ef54c208dcdd460e370390b686b2ef13fa99f9826d19633816c7",
    (3, "postgresql"): "cad8130c1171671c033c7f2cf4b5959fd3a49e811da541d4dcc2d0cfdfe2e488",
}


def test_released_migrations_never_change() -> None:
    # An edited old migration would pass the upgrade test above (both paths run the edited
    # DDL) while every database already built by the original stays different.
    changed = [
        f"migration {version} ({dialect})"
        for (version, dialect), digest in RELEASED.items()
        if hashlib.sha256(
            "\n;\n".join(MIGRATIONS[version - 1].statements(dialect)).encode()
        ).hexdigest()
        != digest
    ]
    assert changed == [], "released migrations are frozen: add a new migration instead"
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


# --- data survives --------------------------------------------------------------------------

# gr_executions and gr_attempts as version 1 made them, for writing rows the way a graphrunner
# of that version did (not through today's Table objects, which may since have grown).
TS = DateTime(timezone=True)
V1_EXECUTIONS = table(
    "gr_executions",
    *(
        column(name, type_)
        for name, type_ in [
            ("execution_id", String()),
            ("lifetime_id", String()),
            ("run_id", String()),
            ("graph_name", String()),
            ("graph_version", String()),
            ("graph_hash", String()),
            ("tenant", String()),
            ("node", String()),
            ("kind", String()),
            ("iteration", None),
            ("seq", None),
            ("attempt", None),
            ("parent_ids", JSON()),
            ("edge", String()),
            ("next", JSON()),
            ("status", String()),
            ("created_at", TS),
            ("started_at", TS),
            ("finished_at", TS),
            ("tokens_in", None),
            ("tokens_out", None),
            ("cost_usd", Numeric(20, 10)),
            ("latency_ms", None),
            ("model", String()),
            ("result_inline", Text()),
            ("result_uri", Text()),
            ("result_size", None),
            ("result_sha256", String()),
            ("error", Text()),
        ]
    ),
)
V1_ATTEMPTS = table(
    "gr_attempts",
    *(column(name) for name in ("execution_id", "attempt", "status", "latency_ms", "error")),
    column("started_at", TS),
    column("finished_at", TS),
)

V1_ROW: dict[str, Any] = {
    "execution_id": "e-v1",
    "lifetime_id": "lt-v1",
    "run_id": "run-1",
    "graph_name": "research",
    "graph_version": "1.0.0",
    "graph_hash": "ab" * 32,
    "tenant": "acme",
    "node": "fetch",
    "kind": "task",
    "iteration": 2,
    "seq": 3,
    "attempt": 2,
    "parent_ids": ["p-1", "p-2"],
    "edge": "NORMAL",
    "next": ["review"],
    "status": "succeeded",
    "created_at": T0,
    "started_at": T0 + timedelta(milliseconds=5),
    "finished_at": T0 + timedelta(milliseconds=900),
    "tokens_in": 1200,
    "tokens_out": 345,
    "cost_usd": Decimal("0.0123456789"),
    "latency_ms": 895.5,
    "model": "gpt-x",
    "result_inline": None,
    "result_uri": "file:///srv/blobs/results/lt-v1/fetch-2.json",
    "result_size": 2_000_000,
    "result_sha256": "cd" * 32,
    "error": None,
}


def write_version_1_records(url: str) -> None:
    store = RecordStore(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(V1_EXECUTIONS), V1_ROW)
            conn.execute(
                insert(V1_ATTEMPTS),
                [
                    {
                        "execution_id": "e-v1",
                        "attempt": attempt,
                        "status": status,
                        "started_at": T0,
                        "finished_at": T0 + timedelta(milliseconds=900),
                        "latency_ms": 895.5,
                        "error": error,
                    }
                    for attempt, status, error in [(1, "failed", "boom"), (2, "succeeded", None)]
                ],
            )
    finally:
        store.close()


async def test_a_version_1_database_keeps_its_records_through_the_upgrade(
    new_db: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = at_version(new_db(), 1, monkeypatch)
    write_version_1_records(old)

    assert upgrade(old) == (1, SCHEMA_VERSION)

    assert schema_of(old) == schema_of(fresh(new_db()))
    store = RecordStore(old)
    try:
        store.ensure_schema()
        assert await store.executions("lt-v1") == [ExecutionRecord.model_validate(V1_ROW)]
        tried = await store.attempts("e-v1")
        assert [(a["attempt"], a["status"], a["error"]) for a in tried] == [
            (1, "failed", "boom"),
            (2, "succeeded", None),
        ]
        [summary] = await store.lifetimes()
        assert (summary.tokens, summary.cost_usd) == (1545, Decimal("0.0123456789"))
    finally:
        store.close()


# --- the next migration ---------------------------------------------------------------------


# Names of the live Table objects in graphrunner.stores._schema.
LIVE_TABLES = [
    "schema_table",
    "executions",
    "attempts",
    "decisions",
    "tenant_usage",
    "tenant_charges",
    "model_cooldowns",
]


def add_note_column(monkeypatch: pytest.MonkeyPatch) -> MetaData:
    """Make a graphrunner one version ahead, as its author would: edit a Table, add a migration.

    The new version adds ``gr_executions.note``; the edited tables are returned.
    """
    edited = copy_of_tables()
    edited.tables["gr_executions"].append_column(Column("note", Text))
    monkeypatch.setattr(_schema, "metadata", edited)
    for name in LIVE_TABLES:
        monkeypatch.setattr(_schema, name, edited.tables[getattr(_schema, name).name])

    def add_note(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE gr_executions ADD COLUMN note TEXT")

    monkeypatch.setattr(_db, "MIGRATIONS", [*MIGRATIONS, add_note])
    monkeypatch.setattr(_db, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    return edited


def test_editing_a_table_object_does_not_change_what_the_migrations_build(
    new_db: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = schema_of(fresh(new_db()))
    edited = copy_of_tables()
    edited.tables["gr_executions"].append_column(Column("note", Text))
    monkeypatch.setattr(_schema, "metadata", edited)
    monkeypatch.setattr(_schema, "executions", edited.tables["gr_executions"])

    assert schema_of(fresh(new_db())) == before


async def test_a_later_add_column_migration_works_on_fresh_and_old_databases(
    new_db: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first ALTER TABLE ... ADD COLUMN must not meet a column an earlier step already made.
    old = at_version(new_db(), 1, monkeypatch)
    write_version_1_records(old)
    edited = add_note_column(monkeypatch)
    latest = SCHEMA_VERSION + 1

    new = fresh(new_db())

    assert upgrade(old) == (1, latest)
    expected = schema_of(new)
    assert expected["gr_executions.note"].endswith("TEXT NULL default=None")
    assert schema_of(old) == expected
    assert schema_of(created_from_tables(new_db(), edited)) == expected
    store = RecordStore(old)
    try:
        with store.engine.connect() as conn:
            kept = conn.execute(select(edited.tables["gr_executions"])).mappings().one()
        assert kept["execution_id"] == "e-v1" and kept["tokens_in"] == 1200
        assert kept["note"] is None
    finally:
        store.close()


# --- the drift check itself -----------------------------------------------------------------


def _drop_index(tables: MetaData) -> None:
    executions = tables.tables["gr_executions"]
    executions.indexes.discard(
        next(i for i in executions.indexes if i.name == "ix_gr_executions_status")
    )


def _set_default(tables: MetaData) -> None:
    tables.tables["gr_tenant_usage"].c.total.server_default = DefaultClause(text("1"))


def _set_not_null(tables: MetaData) -> None:
    tables.tables["gr_decisions"].c.node.nullable = False


EDITS: dict[str, tuple[Callable[[MetaData], object], str]] = {
    "column added": (
        lambda t: t.tables["gr_attempts"].append_column(Column("worker", String(64))),
        "gr_attempts.worker",
    ),
    "length changed": (
        lambda t: setattr(t.tables["gr_attempts"].c.status, "type", String(32)),
        "gr_attempts.status",
    ),
    "nullability changed": (_set_not_null, "gr_decisions.node"),
    "default changed": (_set_default, "gr_tenant_usage.total"),
    "index dropped": (_drop_index, "gr_executions index ix_gr_executions_status"),
    "unique constraint added": (
        lambda t: t.tables["gr_tenant_charges"].append_constraint(
            UniqueConstraint("tenant", "charged_at", name="uq_gr_tenant_charges_at")
        ),
        "gr_tenant_charges unique uq_gr_tenant_charges_at",
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_the_drift_check_notices_a_table_edited_without_a_migration(
    new_db: NewDatabase, edit: str
) -> None:
    # The comparison above is only a guard if it sees each kind of edit.
    change, where = EDITS[edit]
    edited = copy_of_tables()
    change(edited)

    frozen = schema_of(fresh(new_db()))
    drifted = schema_of(created_from_tables(new_db(), edited))

    differing = {k for k in frozen.keys() | drifted.keys() if frozen.get(k) != drifted.get(k)}
    assert differing == {where}
