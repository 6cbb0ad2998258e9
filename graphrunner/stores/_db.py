"""The state DB connection: engine per dialect, schema version checks and upgrades.

`Database` is the base of `graphrunner.stores.RecordStore`; the writes, the tenant ledger and
the reads build on its engine. Calls are synchronous SQLAlchemy run in a thread by the
callers, so SQLite and psycopg 3 need no async drivers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from graphrunner.errors import GraphrunnerError
from graphrunner.stores._schema import MIGRATIONS, SCHEMA_VERSION, schema_table

__all__ = ["Database", "SchemaError"]

# Key of the PostgreSQL advisory lock that serialises migrations ("grschema" in ASCII).
_MIGRATION_LOCK = 0x67_72_73_63_68_65_6D_61


class SchemaError(GraphrunnerError):
    """The state DB's schema is missing, behind or ahead of this graphrunner."""


def _engine_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """A SQLite or PostgreSQL state DB.

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

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def safe_url(self) -> str:
        """The database URL with any password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

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
