"""The state DBs the recording workers write to: a SQLite file and a fresh PostgreSQL database.

Both are the bench's own and are removed at the end: the SQLite file lives in a temporary
directory, the PostgreSQL database (``gr_bench_<hex>`` on 127.0.0.1:5432, user postgres, trust
auth) is created for the run and dropped ``WITH (FORCE)`` afterwards. When PostgreSQL cannot be
reached its rows are reported as unavailable instead of failing the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.env import log, on_interrupt
from graphrunner.stores import LocalBlobStore, RecordStore

__all__ = ["PG_ADMIN", "StateDbs", "state_dbs"]

# Where the bench creates (and later drops) its PostgreSQL database.
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"


@dataclass
class StateDbs:
    """Open record stores by kind (``sqlite``, ``postgres``), why a kind is missing, the blobs."""

    blobs: LocalBlobStore
    stores: dict[str, RecordStore] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def _open(url: str) -> RecordStore:
    store = RecordStore(url)
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


@contextlib.asynccontextmanager
async def state_dbs() -> AsyncIterator[StateDbs]:
    """A blob store and a SQLite state DB in a temporary directory; a fresh PostgreSQL one."""
    name = f"gr_bench_{uuid.uuid4().hex[:12]}"
    created = False

    def drop() -> None:
        if created:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    home = tempfile.TemporaryDirectory(prefix="graphrunner-bench-records-")
    with home, on_interrupt(home.cleanup), on_interrupt(drop):
        dbs = StateDbs(blobs=LocalBlobStore(Path(home.name) / "blobs"))
        try:
            path = Path(home.name) / "state.db"
            dbs.stores["sqlite"] = await asyncio.to_thread(_open, f"sqlite:///{path}")
            try:
                await asyncio.to_thread(_admin, f'CREATE DATABASE "{name}"')
                created = True
                dbs.stores["postgres"] = await asyncio.to_thread(_open, PG_URL.format(name=name))
            except Exception as exc:  # unreachable, no rights, schema error: report, go on
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
                dbs.unavailable["postgres"] = reason
                log(f"PostgreSQL state DB unavailable, its rows are skipped: {reason}")
            yield dbs
        finally:
            for store in dbs.stores.values():
                store.close()
            try:
                await asyncio.to_thread(drop)
            except Exception as exc:
                log(f"bench: could not drop PostgreSQL database {name}: {exc}")
