"""The state DB (RecordStore): schema versions, idempotent writes, reads and aggregates.

Every store test runs against SQLite (a file in tmp_path) and PostgreSQL (a fresh database per
test on the server at ``GRAPHRUNNER_TEST_POSTGRES``, default 127.0.0.1:5432 with trust auth).
An unreachable PostgreSQL fails those tests: CI starts the server, so a skip would hide a gap.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select

from graphrunner.stores import _db
from graphrunner.stores._records import (
    ExecutionRecord,
    ExecutionStatus,
    RecordStore,
    SchemaError,
)
from graphrunner.stores._schema import MIGRATIONS, SCHEMA_VERSION, Migration, schema_table

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def _rec(**overrides: Any) -> ExecutionRecord:
    """A record with plausible headers; ``overrides`` set what the test is about."""
    seq = overrides.get("seq", 0)
    fields: dict[str, Any] = {
        "execution_id": f"exec-{uuid.uuid4().hex[:16]}",
        "lifetime_id": "lt-1",
        "run_id": "run-1",
        "graph_name": "research",
        "graph_version": "1.0",
        "graph_hash": "ab" * 32,
        "tenant": "acme",
        "node": "fetch",
        "kind": "task",
        "iteration": 1,
        "seq": seq,
        "attempt": 1,
        "status": ExecutionStatus.SUCCEEDED,
        "created_at": T0 + timedelta(seconds=seq),
        "started_at": T0 + timedelta(seconds=seq, milliseconds=5),
        "finished_at": T0 + timedelta(seconds=seq, milliseconds=900),
    }
    fields.update(overrides)
    return ExecutionRecord(**fields)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def db_url(state_db_url: str) -> str:
    """URL of a fresh, empty database of each kind (see conftest)."""
    return state_db_url


@pytest.fixture
def store(db_url: str) -> Iterator[RecordStore]:
    """A store on an empty database (no schema yet)."""
    opened = RecordStore(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def records(store: RecordStore) -> RecordStore:
    """A store whose database has the current schema."""
    store.ensure_schema()
    return store


# --- schema ---------------------------------------------------------------------------------


async def test_fresh_database_gets_the_current_schema_and_ensure_is_repeatable(
    store: RecordStore,
) -> None:
    assert store.schema_version() == 0
    store.ensure_schema()
    assert store.schema_version() == SCHEMA_VERSION
    kept = _rec()
    assert await store.record(kept)

    store.ensure_schema()

    assert store.schema_version() == SCHEMA_VERSION
    assert await store.executions("lt-1") == [kept]


def _add_extra_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make _db see a graphrunner one schema version ahead of the installed one."""

    ddl = ("CREATE TABLE gr_test_notes (id INTEGER PRIMARY KEY, note TEXT)",)
    add_notes = Migration(version=SCHEMA_VERSION + 1, summary="notes", sqlite=ddl, postgresql=ddl)
    # _db imports the names, so patch them where it reads them.
    monkeypatch.setattr(_db, "MIGRATIONS", [*MIGRATIONS, add_notes])
    monkeypatch.setattr(_db, "SCHEMA_VERSION", SCHEMA_VERSION + 1)


async def test_schema_behind_the_code_needs_an_explicit_upgrade(
    records: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _rec()
    await records.record(kept)
    _add_extra_migration(monkeypatch)
    needed = SCHEMA_VERSION + 1

    with pytest.raises(SchemaError) as raised:
        records.ensure_schema()
    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION}" in message
    assert f"needs {needed}" in message
    assert "graphrunner db upgrade" in message
    assert records.schema_version() == SCHEMA_VERSION, "ensure_schema must not migrate"

    assert records.upgrade() == (SCHEMA_VERSION, needed)

    assert records.schema_version() == needed
    records.ensure_schema()
    assert "gr_test_notes" in inspect(records.engine).get_table_names()
    assert await records.executions("lt-1") == [kept]
    assert records.upgrade() == (needed, needed), "a second upgrade has nothing to do"


def _stamp_newer_schema(store: RecordStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(schema_table).values(version=SCHEMA_VERSION + 1, applied_at=T0))


def test_schema_ahead_of_the_code_says_to_upgrade_graphrunner(records: RecordStore) -> None:
    _stamp_newer_schema(records)

    with pytest.raises(SchemaError) as raised:
        records.ensure_schema()

    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"({SCHEMA_VERSION})" in message
    assert "upgrade graphrunner" in message


def test_upgrade_refuses_a_schema_ahead_of_the_code(records: RecordStore) -> None:
    # `graphrunner db upgrade` must not report a "downgrade" to an older version as success.
    _stamp_newer_schema(records)

    with pytest.raises(SchemaError, match="upgrade graphrunner"):
        records.upgrade()

    assert records.schema_version() == SCHEMA_VERSION + 1


def test_workers_starting_together_on_a_fresh_database_all_get_the_schema(db_url: str) -> None:
    # Several workers (or a worker and the CLI) opening an empty shared DB at the same moment.
    assert start_together(db_url) == []
    check = RecordStore(db_url)
    try:
        assert check.schema_version() == SCHEMA_VERSION
        with check.engine.connect() as conn:
            versions = conn.execute(select(schema_table.c.version)).scalars().all()
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))
    finally:
        check.close()


# --- writes ---------------------------------------------------------------------------------


async def test_record_round_trip_preserves_every_field(records: RecordStore) -> None:
    inline = _rec(
        execution_id="e-inline",
        lifetime_id="lt-ünïcødé-数据",
        run_id="run-7f3a",
        graph_name="recherche-données",
        graph_version="2.1.0-β",
        graph_hash="f" * 64,
        tenant="société-générale",
        node="résumé",
        kind="plan",
        iteration=3,
        seq=4,
        attempt=2,
        parent_ids=["e-parent-1", "e-parent-2"],
        edge="conditional",
        next=["write", "review", "naïve"],
        created_at=T0,
        started_at=T0 + timedelta(microseconds=123456),
        finished_at=T0 + timedelta(seconds=2, microseconds=654321),
        tokens_in=3_000_000_000,
        tokens_out=1234,
        cost_usd=Decimal("0.0123456789"),
        latency_ms=2530.25,
        model="anthropic/claude-sonnet-4",
        result_inline='{"text": "héllo wörld 🌍", "n": [1, 2.5, null]}',
        result_size=48,
    )
    blob = _rec(
        execution_id="e-blob",
        lifetime_id="lt-ünïcødé-数据",
        run_id="run-7f3a",
        seq=5,
        status=ExecutionStatus.FAILED,
        parent_ids=[],
        next=[],
        finished_at=None,
        cost_usd=Decimal("12345.6789012345"),
        result_uri="s3://bucket/results/lt/e-blob.1.json",
        result_size=10 * 1024 * 1024,
        result_sha256="0" * 64,
        error="TimeoutError: model did not answer in 30 s — «retry»",
    )
    assert await records.record(inline)
    assert await records.record(blob)

    got = await records.executions("lt-ünïcødé-数据")

    assert got == [inline, blob]
    assert got[0].cost_usd == Decimal("0.0123456789")
    assert got[0].result_value() == {"text": "héllo wörld 🌍", "n": [1, 2.5, None]}
    assert got[1].result_location == "s3://bucket/results/lt/e-blob.1.json"
    assert got[1].result_value() is None
    for rec in got:
        for when in (rec.created_at, rec.started_at):
            assert when.utcoffset() == timedelta(0)


async def test_times_in_other_zones_keep_their_instant_and_come_back_in_utc(
    records: RecordStore,
) -> None:
    paris = timezone(timedelta(hours=2))
    new_york = timezone(timedelta(hours=-5))
    sent = _rec(
        execution_id="e-tz",
        created_at=datetime(2025, 6, 1, 12, 0, tzinfo=paris),
        started_at=datetime(2025, 6, 1, 12, 0, 1, tzinfo=paris),
        finished_at=datetime(2025, 6, 1, 5, 0, 3, tzinfo=new_york),
    )
    await records.record(sent)

    [got] = await records.executions("lt-1")
    [attempt] = await records.attempts("e-tz")

    assert got.created_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert got.started_at == datetime(2025, 6, 1, 10, 0, 1, tzinfo=UTC)
    assert got.finished_at == datetime(2025, 6, 1, 10, 0, 3, tzinfo=UTC)
    assert attempt["started_at"] == datetime(2025, 6, 1, 10, 0, 1, tzinfo=UTC)
    assert attempt["finished_at"] == datetime(2025, 6, 1, 10, 0, 3, tzinfo=UTC)
    for when in (got.created_at, got.started_at, attempt["started_at"], attempt["finished_at"]):
        assert when.utcoffset() == timedelta(0)


async def test_the_same_attempt_written_twice_is_one_record(records: RecordStore) -> None:
    rec = _rec(execution_id="e-dup")

    assert await records.record(rec) is True
    assert await records.record(rec) is False

    assert await records.executions("lt-1") == [rec]
    assert [a["attempt"] for a in await records.attempts("e-dup")] == [1]


async def test_a_later_attempt_supersedes_and_both_attempts_are_kept(
    records: RecordStore,
) -> None:
    first = _rec(
        execution_id="e-retry",
        attempt=1,
        status=ExecutionStatus.FAILED,
        error="RateLimitError: slow down",
        latency_ms=100.0,
    )
    second = _rec(
        execution_id="e-retry",
        attempt=2,
        status=ExecutionStatus.SUCCEEDED,
        result_inline='"done"',
        result_size=6,
        tokens_in=50,
        latency_ms=250.0,
    )

    assert await records.record(first) is True
    assert await records.record(second) is True

    [stored] = await records.executions("lt-1")
    assert stored == second
    assert stored.result_value() == "done" and stored.error is None
    history = await records.attempts("e-retry")
    assert [(a["attempt"], a["status"], a["error"]) for a in history] == [
        (1, "failed", "RateLimitError: slow down"),
        (2, "succeeded", None),
    ]
    assert [a["latency_ms"] for a in history] == [100.0, 250.0]


async def test_an_older_attempt_arriving_late_does_not_overwrite(records: RecordStore) -> None:
    newer = _rec(execution_id="e-late", attempt=2, result_inline='"new"', result_size=5)
    older = _rec(
        execution_id="e-late", attempt=1, status=ExecutionStatus.FAILED, error="worker crashed"
    )

    assert await records.record(newer) is True
    assert await records.record(older) is False

    assert await records.executions("lt-1") == [newer]
    assert [a["attempt"] for a in await records.attempts("e-late")] == [1, 2]


# --- reads ----------------------------------------------------------------------------------


async def test_executions_come_in_scheduling_order_and_per_lifetime(records: RecordStore) -> None:
    seqs = [5, 0, 3, 1, 4, 2]
    for seq in seqs:
        await records.record(_rec(lifetime_id="lt-a", seq=seq, node=f"n{seq}"))
    await records.record(_rec(lifetime_id="lt-b", seq=0, node="other"))
    # A second run of lt-a (say after a reset) keeps its executions together.
    for seq in (1, 0):
        await records.record(_rec(lifetime_id="lt-a", run_id="run-2", seq=seq, node=f"r{seq}"))

    got = await records.executions("lt-a")

    assert [(r.run_id, r.seq) for r in got] == [("run-1", s) for s in range(6)] + [
        ("run-2", 0),
        ("run-2", 1),
    ]
    assert [r.node for r in await records.executions("lt-b")] == ["other"]
    assert await records.executions("lt-missing") == []


async def _seed_three_lifetimes(store: RecordStore) -> None:
    """lt-a: research/acme, 3 executions (1 failed, 1 retried); lt-b: summarise/acme;
    lt-c: research/globex."""
    a = {"lifetime_id": "lt-a", "graph_name": "research", "tenant": "acme"}
    await store.record(_rec(**a, seq=0, tokens_in=100, tokens_out=20, cost_usd=Decimal("0.5")))
    await store.record(
        _rec(**a, execution_id="a-1", seq=1, attempt=1, status=ExecutionStatus.FAILED, error="x")
    )
    await store.record(
        _rec(
            **a,
            execution_id="a-1",
            seq=1,
            attempt=2,
            tokens_in=10,
            cost_usd=Decimal("0.0123456789"),
        )
    )
    await store.record(
        _rec(
            **a,
            seq=2,
            status=ExecutionStatus.FAILED,
            error="boom",
            tokens_out=5,
            cost_usd=Decimal("0.0000000001"),
            finished_at=T0 + timedelta(minutes=5),
        )
    )
    b = {"lifetime_id": "lt-b", "graph_name": "summarise", "tenant": "acme"}
    base_b = T0 + timedelta(hours=1)
    await store.record(
        _rec(**b, seq=0, created_at=base_b, started_at=base_b, finished_at=base_b, tokens_in=7)
    )
    c = {"lifetime_id": "lt-c", "graph_name": "research", "tenant": "globex"}
    base_c = T0 + timedelta(hours=2)
    for seq in range(2):
        await store.record(
            _rec(
                **c,
                seq=seq,
                created_at=base_c,
                started_at=base_c,
                finished_at=None,
                tokens_in=1,
                tokens_out=2,
                cost_usd=Decimal("1.25"),
            )
        )


async def test_lifetimes_aggregate_each_lifetime(records: RecordStore) -> None:
    assert await records.lifetimes() == []
    await _seed_three_lifetimes(records)

    summaries = await records.lifetimes()

    assert [s.lifetime_id for s in summaries] == ["lt-c", "lt-b", "lt-a"], "newest first"
    a = summaries[2]
    assert (a.graph_name, a.graph_version, a.tenant) == ("research", "1.0", "acme")
    assert (a.executions, a.failed) == (3, 1), "the retried execution counts once, as succeeded"
    assert a.tokens == 100 + 20 + 10 + 5
    assert a.cost_usd == Decimal("0.5123456790")
    assert a.first_at == T0
    assert a.last_at == T0 + timedelta(minutes=5)
    c = summaries[0]
    assert (c.executions, c.failed, c.tokens, c.cost_usd) == (2, 0, 6, Decimal("2.5"))
    assert c.last_at is None, "no execution of lt-c has finished"


async def test_lifetimes_filter_by_graph_tenant_ids_and_limit(records: RecordStore) -> None:
    await _seed_three_lifetimes(records)

    async def ids(**filters: Any) -> list[str]:
        return sorted(s.lifetime_id for s in await records.lifetimes(**filters))

    assert await ids(graph="research") == ["lt-a", "lt-c"]
    assert await ids(tenant="acme") == ["lt-a", "lt-b"]
    assert await ids(graph="research", tenant="acme") == ["lt-a"]
    assert await ids(lifetime_ids=["lt-b", "lt-c", "lt-missing"]) == ["lt-b", "lt-c"]
    assert await ids(lifetime_ids=[]) == []
    assert await ids(graph="nope") == []
    assert [s.lifetime_id for s in await records.lifetimes(limit=2)] == ["lt-c", "lt-b"]
    [a] = await records.lifetimes(lifetime_ids=["lt-a"])
    assert a.executions == 3, "a filter must not change the aggregates"


async def test_costs_total_by_tenant_and_by_graph(records: RecordStore) -> None:
    assert await records.costs() == []
    await _seed_three_lifetimes(records)

    by_tenant = {row.key: row for row in await records.costs(by="tenant")}
    by_graph = {row.key: row for row in await records.costs(by="graph")}

    assert list(by_tenant) == ["acme", "globex"]
    acme = by_tenant["acme"]
    assert (acme.lifetimes, acme.executions) == (2, 4)
    assert (acme.tokens_in, acme.tokens_out) == (100 + 10 + 7, 20 + 5)
    assert acme.cost_usd == Decimal("0.5123456790")
    globex = by_tenant["globex"]
    assert (globex.lifetimes, globex.executions, globex.cost_usd) == (1, 2, Decimal("2.5"))

    assert list(by_graph) == ["research", "summarise"]
    research = by_graph["research"]
    assert (research.lifetimes, research.executions) == (2, 5)
    assert (research.tokens_in, research.tokens_out) == (100 + 10 + 2, 20 + 5 + 4)
    assert research.cost_usd == Decimal("3.0123456790")
    assert by_graph["summarise"].cost_usd == Decimal(0)

    with pytest.raises(ValueError, match="'tenant' or 'graph'"):
        await records.costs(by="nope")


# --- concurrency ----------------------------------------------------------------------------


async def test_concurrent_writes_lose_and_duplicate_nothing(records: RecordStore) -> None:
    batch = [
        _rec(lifetime_id=f"lt-{n % 20:02d}", seq=n // 20, cost_usd=Decimal("0.0000000001"))
        for n in range(200)
    ]
    random.Random(7).shuffle(batch)

    written = await asyncio.gather(*(records.record(rec) for rec in batch))

    assert written == [True] * 200
    for lifetime in range(20):
        got = await records.executions(f"lt-{lifetime:02d}")
        assert [r.seq for r in got] == list(range(10)), f"lifetime {lifetime}"
    summaries = await records.lifetimes()
    assert len(summaries) == 20
    assert sum(s.executions for s in summaries) == 200
    [totals] = await records.costs()
    assert totals.cost_usd == Decimal("0.0000000200")


async def test_concurrent_attempts_of_one_execution_keep_the_highest(
    records: RecordStore,
) -> None:
    attempts = [
        _rec(
            execution_id=f"e-race-{n}",
            seq=n,
            attempt=attempt,
            status=ExecutionStatus.SUCCEEDED if attempt == 12 else ExecutionStatus.FAILED,
            error=None if attempt == 12 else f"attempt {attempt} failed",
            result_inline=f'"attempt {attempt}"',
        )
        for n in range(5)
        for attempt in range(1, 13)
    ]
    random.Random(11).shuffle(attempts)

    written = await asyncio.gather(*(records.record(rec) for rec in attempts))

    stored = await records.executions("lt-1")
    assert [(r.execution_id, r.attempt) for r in stored] == [(f"e-race-{n}", 12) for n in range(5)]
    assert all(r.status is ExecutionStatus.SUCCEEDED and r.error is None for r in stored)
    assert all(r.result_value() == "attempt 12" for r in stored)
    for n in range(5):
        history = await records.attempts(f"e-race-{n}")
        assert [a["attempt"] for a in history] == list(range(1, 13))
    wins = Counter(rec.execution_id for rec, won in zip(attempts, written, strict=True) if won)
    assert all(1 <= wins[f"e-race-{n}"] <= 12 for n in range(5))


# --- bad URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/graphrunner", "unsupported state DB 'mysql'"),
        ("not a database url", "not a valid"),
        ("postgresql://gr@127.0.0.1:notaport/db", "not a valid"),
    ],
)
def test_unsupported_or_malformed_url_is_a_schema_error(url: str, expected: str) -> None:
    with pytest.raises(SchemaError, match=expected) as raised:
        RecordStore(url)
    assert "sqlite" in str(raised.value) and "postgresql" in str(raised.value)


def test_unreachable_postgresql_is_a_schema_error_without_the_password() -> None:
    store = RecordStore("postgresql://graphrunner:s3cret-pw@127.0.0.1:1/state")
    try:
        with pytest.raises(SchemaError, match="cannot open state DB") as raised:
            store.ensure_schema()
    finally:
        store.close()
    assert "127.0.0.1:1/state" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


def test_sqlite_path_that_is_a_directory_is_a_schema_error(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path}")
    try:
        with pytest.raises(SchemaError, match="cannot open state DB"):
            store.ensure_schema()
    finally:
        store.close()


def test_sqlite_path_below_a_regular_file_is_a_schema_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    with pytest.raises(SchemaError, match="not-a-dir"):
        RecordStore(f"sqlite:///{blocker / 'records.db'}")


def test_sqlite_workers_starting_together_never_see_a_locked_database(tmp_path: Path) -> None:
    """One start in ~15 of 8 workers on a fresh SQLite file used to fail 'database is locked'.

    Switching a fresh file to WAL refuses the others at once, without SQLite's busy handler;
    the schema steps now wait that out. Sixty fresh files, eight workers each.
    """
    failures: list[str] = []
    for round_ in range(60):
        url = f"sqlite:///{tmp_path / str(round_) / 'records.db'}"
        failures += [f"{url}: {exc}" for exc in start_together(url)]
    assert failures == []


def start_together(db_url: str, workers: int = 8) -> list[BaseException]:
    """What ``ensure_schema`` raised in each of ``workers`` stores opened at the same moment."""
    starting = threading.Barrier(workers)
    errors: list[BaseException] = []

    def start_worker() -> None:
        store = RecordStore(db_url)
        try:
            starting.wait()
            store.ensure_schema()
        except BaseException as exc:  # noqa: BLE001 - returned to the caller
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start_worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
