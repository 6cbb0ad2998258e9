"""Guardrail rows of the state DB (schema v2): decisions, rejections and the tenant ledger.

Every test runs against SQLite and PostgreSQL (see the ``state_db_url`` fixture in conftest).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, inspect

from graphrunner.stores import (
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    RecordStore,
    SchemaError,
    UsageDelta,
    UsageReservation,
    UsageSettlement,
    UsageTotals,
)
from graphrunner.stores._records import _execution_row
from graphrunner.stores._schema import MIGRATIONS, SCHEMA_VERSION, executions, schema_table

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
SUM = 'sum(tokens_used where node == "write")'
COUNT = "count(executions)"
# gr_executions' columns as version 1 made them (version 4 added the state columns, 5
# answered_by, 6 forked_from).
V1_EXECUTION_COLUMNS = [
    c.name
    for c in executions.columns
    if not c.name.startswith("state_")
    and c.name not in ("answered_by", "forked_from", "tool", "notes")
]
PEAK = "max(cost_usd)"


def _decision(**overrides: Any) -> DecisionRecord:
    seq = overrides.get("seq", 0)
    fields: dict[str, Any] = {
        "decision_id": f"dec-{uuid.uuid4().hex[:16]}",
        "lifetime_id": "lt-1",
        "run_id": "run-1",
        "tenant": "acme",
        "graph_name": "research",
        "execution_id": "exec-1",
        "node": "write",
        "iteration": 2,
        "seq": seq,
        "rule": "token-budget",
        "action": "reject_execution",
        "phase": "before",
        "scope": "lifetime",
        "condition": "sum(tokens_used) > 1000",
        "observed": {"sum(tokens_used)": 1200.0},
        "message": "over budget",
        "decided_at": T0 + timedelta(seconds=seq),
    }
    fields.update(overrides)
    return DecisionRecord(**fields)


def _execution(**overrides: Any) -> ExecutionRecord:
    fields: dict[str, Any] = {
        "execution_id": "exec-1",
        "lifetime_id": "lt-1",
        "run_id": "run-1",
        "graph_name": "research",
        "graph_version": "1.0",
        "graph_hash": "ab" * 32,
        "tenant": "acme",
        "node": "write",
        "kind": "task",
        "iteration": 2,
        "seq": 3,
        "attempt": 1,
        "status": ExecutionStatus.SUCCEEDED,
        "created_at": T0,
        "started_at": T0 + timedelta(milliseconds=5),
        "finished_at": T0 + timedelta(seconds=2),
    }
    fields.update(overrides)
    return ExecutionRecord(**fields)


def _rejected(**overrides: Any) -> ExecutionRecord:
    """The record a guardrail passes to mark an execution rejected."""
    fields: dict[str, Any] = {
        "attempt": 0,
        "status": ExecutionStatus.REJECTED,
        "error": "rejected by guardrail 'token-budget' after it ran: over budget",
    }
    fields.update(overrides)
    return _execution(**fields)


@pytest.fixture
def records(state_db_url: str) -> Iterator[RecordStore]:
    """A store on a fresh database with the current schema."""
    store = RecordStore(state_db_url)
    store.ensure_schema()
    try:
        yield store
    finally:
        store.close()


# --- decisions ------------------------------------------------------------------------------


async def test_decisions_round_trip_run_by_run_in_decision_order(records: RecordStore) -> None:
    paris = timezone(timedelta(hours=2))
    # run-b began first (a reset started run-a later), so its decisions come first.
    later_run = [
        _decision(run_id="run-a", seq=seq, decided_at=T0 + timedelta(hours=1, seconds=seq))
        for seq in (1, 0)
    ]
    first_run = [
        _decision(
            run_id="run-b",
            seq=2,
            execution_id=None,
            node=None,
            iteration=None,
            rule="stuck-loop",
            action="pause_lifetime",
            phase="after",
            scope="tenant",
            condition='count(executions where node == "review") >= 3 and last(verdict) != "ok"',
            observed={
                'count(executions where node == "review")': 3,
                "last(verdict)": "needs-work — «again»",
                "sum(cost_usd)": 0.0123456789,
            },
            message="paused: review loops without progress",
            decided_at=datetime(2025, 3, 1, 11, 31, tzinfo=paris),  # 09:31 UTC
        ),
        _decision(run_id="run-b", seq=0, decided_at=T0),
        _decision(
            run_id="run-b",
            seq=3,
            rule="operator",
            action="resume",
            phase="resume",
            scope="lifetime",
            condition="",
            observed={},
            message="resumed by alice",
            decided_at=T0 + timedelta(minutes=5),
        ),
    ]
    for decision in [*later_run, *first_run]:
        assert await records.record_decision(decision) is True
    await records.record_decision(_decision(lifetime_id="lt-other"))

    got = await records.decisions("lt-1")

    assert [(d.run_id, d.seq) for d in got] == [
        ("run-b", 0),
        ("run-b", 2),
        ("run-b", 3),
        ("run-a", 0),
        ("run-a", 1),
    ]
    assert got[1] == first_run[0]
    assert got[1].observed['count(executions where node == "review")'] == 3.0
    assert got[1].observed["last(verdict)"] == "needs-work — «again»"
    assert got[1].decided_at == datetime(2025, 3, 1, 9, 31, tzinfo=UTC)
    assert all(d.decided_at.utcoffset() == timedelta(0) for d in got)
    assert got[2].observed == {} and got[2].action == "resume"
    assert [d.lifetime_id for d in await records.decisions("lt-other")] == ["lt-other"]
    assert await records.decisions("lt-missing") == []


async def test_a_decision_written_twice_is_one_row(records: RecordStore) -> None:
    decision = _decision()
    rejected = _rejected(error="rejected before it ran")

    assert await records.record_decision(decision, rejected) is True
    assert await records.record_decision(decision, rejected) is False

    assert await records.decisions("lt-1") == [decision]
    assert await records.executions("lt-1") == [rejected]


# --- rejections -----------------------------------------------------------------------------


async def test_rejection_after_the_run_keeps_what_the_execution_spent(
    records: RecordStore,
) -> None:
    ran = _execution(
        tokens_in=900,
        tokens_out=400,
        cost_usd=Decimal("0.0123456789"),
        latency_ms=1500.5,
        model="anthropic/claude-sonnet-4",
        result_inline='{"draft": "too long"}',
        result_size=21,
    )
    await records.record(ran)
    reason = "rejected by guardrail 'token-budget' after it ran: 1300 tokens > 1000"

    assert await records.record_decision(_decision(phase="after"), _rejected(error=reason))

    [stored] = await records.executions("lt-1")
    assert stored.status is ExecutionStatus.REJECTED
    assert stored.error == reason
    assert stored == ran.model_copy(update={"status": ExecutionStatus.REJECTED, "error": reason})
    assert stored.result_value() == {"draft": "too long"}
    attempts = await records.attempts("exec-1")
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")]


async def test_rejection_before_the_run_is_recorded_without_an_attempt(
    records: RecordStore,
) -> None:
    paris = timezone(timedelta(hours=2))
    never_ran = _rejected(
        execution_id="exec-never",
        created_at=datetime(2025, 3, 1, 11, 30, tzinfo=paris),
        started_at=datetime(2025, 3, 1, 11, 30, tzinfo=paris),
        finished_at=datetime(2025, 3, 1, 11, 30, 1, tzinfo=paris),
        error="rejected by guardrail 'token-budget' before it ran: over budget",
    )

    await records.record_decision(_decision(execution_id="exec-never"), never_ran)

    [stored] = await records.executions("lt-1")
    assert stored == never_ran
    assert stored.status is ExecutionStatus.REJECTED
    assert stored.created_at == T0 and stored.created_at.utcoffset() == timedelta(0)
    assert (stored.tokens_in, stored.cost_usd, stored.result_inline) == (0, Decimal(0), None)
    assert await records.attempts("exec-never") == []
    [summary] = await records.lifetimes()
    assert summary.executions == 1


async def test_a_rejection_without_status_rejected_writes_nothing(records: RecordStore) -> None:
    with pytest.raises(ValueError, match="status=ExecutionStatus.REJECTED"):
        await records.record_decision(_decision(), _execution(status=ExecutionStatus.FAILED))

    assert await records.decisions("lt-1") == []
    assert await records.executions("lt-1") == []


# --- tenant ledger --------------------------------------------------------------------------


async def test_tenant_charge_folds_sum_count_least_and_greatest(records: RecordStore) -> None:
    assert await records.tenant_usage("acme", [SUM, COUNT, PEAK]) == {
        SUM: UsageTotals(),
        COUNT: UsageTotals(),
        PEAK: UsageTotals(),
    }

    first = await records.tenant_charge(
        "acme",
        "e-1",
        {SUM: UsageDelta(value=120.0), COUNT: UsageDelta(), PEAK: UsageDelta(value=0.25)},
    )
    assert first == {
        SUM: UsageTotals(total=120.0, count=1, lo=120.0, hi=120.0),
        COUNT: UsageTotals(total=0.0, count=1, lo=0.0, hi=0.0),
        PEAK: UsageTotals(total=0.25, count=1, lo=0.25, hi=0.25),
    }
    await records.tenant_charge(
        "acme",
        "e-2",
        {SUM: UsageDelta(value=-20.5), COUNT: UsageDelta(), PEAK: UsageDelta(value=1.75)},
    )
    third = await records.tenant_charge(
        "acme",
        "e-3",
        {SUM: UsageDelta(value=40.0), COUNT: UsageDelta(), PEAK: UsageDelta(value=0.5)},
    )

    assert third == {
        SUM: UsageTotals(total=139.5, count=3, lo=-20.5, hi=120.0),
        COUNT: UsageTotals(total=0.0, count=3, lo=0.0, hi=0.0),
        PEAK: UsageTotals(total=2.5, count=3, lo=0.25, hi=1.75),
    }
    assert await records.tenant_usage("acme", [PEAK, SUM, COUNT]) == third
    assert await records.tenant_usage("acme", []) == {}


async def test_tenant_charge_ignores_unmatched_deltas(records: RecordStore) -> None:
    untouched = await records.tenant_charge(
        "acme", "e-1", {SUM: UsageDelta(value=99.0, matched=False), COUNT: UsageDelta()}
    )
    assert untouched == {SUM: UsageTotals(), COUNT: UsageTotals(total=0.0, count=1, lo=0, hi=0)}

    await records.tenant_charge("acme", "e-2", {SUM: UsageDelta(value=5.0)})
    after = await records.tenant_charge(
        "acme", "e-3", {SUM: UsageDelta(value=-1000.0, matched=False), COUNT: UsageDelta()}
    )

    assert after[SUM] == UsageTotals(total=5.0, count=1, lo=5.0, hi=5.0)
    assert after[COUNT].count == 2
    assert await records.tenant_charge("acme", "e-4", {}) == {}


async def test_charging_one_execution_twice_counts_it_once(records: RecordStore) -> None:
    deltas = {SUM: UsageDelta(value=10.0), COUNT: UsageDelta()}
    once = await records.tenant_charge("acme", "e-1", deltas)

    again = await records.tenant_charge("acme", "e-1", deltas)
    # A retry whose deltas differ (say the policy was reloaded) still cannot add anything.
    changed = await records.tenant_charge(
        "acme", "e-1", {SUM: UsageDelta(value=500.0), PEAK: UsageDelta(value=3.0)}
    )

    expected_sum = UsageTotals(total=10.0, count=1, lo=10.0, hi=10.0)
    assert once[SUM] == again[SUM] == changed[SUM] == expected_sum
    assert again[COUNT].count == 1
    assert changed[PEAK] == UsageTotals()
    assert await records.tenant_usage("acme", [SUM, PEAK]) == {
        SUM: expected_sum,
        PEAK: UsageTotals(),
    }


async def test_tenants_have_separate_totals(records: RecordStore) -> None:
    await records.tenant_charge("acme", "e-a1", {SUM: UsageDelta(value=100.0)})
    await records.tenant_charge("acme", "e-a2", {SUM: UsageDelta(value=50.0)})
    globex = await records.tenant_charge("globex", "e-g1", {SUM: UsageDelta(value=7.0)})

    assert globex == {SUM: UsageTotals(total=7.0, count=1, lo=7.0, hi=7.0)}
    assert await records.tenant_usage("acme", [SUM]) == {
        SUM: UsageTotals(total=150.0, count=2, lo=50.0, hi=100.0)
    }
    assert await records.tenant_usage("initech", [SUM]) == {SUM: UsageTotals()}


async def test_concurrent_charges_of_one_tenant_are_exact(records: RecordStore) -> None:
    def deltas(n: int) -> dict[str, UsageDelta]:
        # Multiples of 0.25 add up exactly in binary floating point.
        return {
            SUM: UsageDelta(value=n * 0.25),
            COUNT: UsageDelta(),
            PEAK: UsageDelta(value=float(n), matched=n % 2 == 0),
        }

    # 20 executions, each also retried concurrently: 40 charges in flight.
    charges = [records.tenant_charge("acme", f"e-{n}", deltas(n)) for n in range(1, 21)]
    retries = [records.tenant_charge("acme", f"e-{n}", deltas(n)) for n in range(1, 21)]

    results = await asyncio.gather(*charges, *retries)

    assert await records.tenant_usage("acme", [SUM, COUNT, PEAK]) == {
        SUM: UsageTotals(total=52.5, count=20, lo=0.25, hi=5.0),
        COUNT: UsageTotals(total=0.0, count=20, lo=0.0, hi=0.0),
        PEAK: UsageTotals(total=110.0, count=10, lo=2.0, hi=20.0),
    }
    # Each first charge saw the totals right after its own fold: one count each, 1 to 20.
    assert set(range(1, 21)) <= {r[COUNT].count for r in results}
    assert max(r[SUM].count for r in results) == 20


# --- reservations ---------------------------------------------------------------------------


def _reservation(
    execution_id: str, value: float, *, expires_in_s: float = 3600
) -> UsageReservation:
    return UsageReservation(
        execution_id=execution_id,
        deltas={SUM: UsageDelta(value=value)},
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
    )


async def test_concurrent_reserves_of_one_tenant_never_share_the_same_room(
    records: RecordStore,
) -> None:
    # 30 executions of 40 tokens race for a cap of 400: the check and the reservation are one
    # atomic step per tenant, so exactly 10 fit, however the calls interleave.
    cap, ceiling = 400.0, 40.0

    def fits(totals: dict[str, UsageTotals]) -> bool:
        return totals[SUM].total + ceiling <= cap

    outcomes = await asyncio.gather(
        *(
            records.tenant_reserve(
                "acme", keys=[SUM], reservation=_reservation(f"e-{i}", ceiling), check=fits
            )
            for i in range(30)
        )
    )
    assert sum(o.reserved for o in outcomes) == 10
    assert max(o.totals[SUM].total for o in outcomes if o.reserved) <= cap - ceiling
    assert len(await records.tenant_reservations("acme")) == 10
    other = await records.tenant_reserve(
        "other", keys=[SUM], reservation=_reservation("o-1", ceiling), check=fits
    )
    assert other.reserved and other.totals[SUM] == UsageTotals(), "tenants are apart"


async def test_settling_charges_once_and_releasing_charges_nothing(records: RecordStore) -> None:
    await records.tenant_reserve("acme", keys=[SUM], reservation=_reservation("e-1", 40))
    await records.tenant_reserve("acme", keys=[SUM], reservation=_reservation("e-2", 40))
    seen = await records.tenant_reserve("acme", keys=[SUM])
    assert (seen.totals[SUM].total, seen.totals[SUM].count) == (80.0, 2), "live reservations"

    settle = [
        UsageSettlement(execution_id="e-1", deltas={SUM: UsageDelta(value=25)}),
        UsageSettlement(execution_id="e-2"),  # failed: released
    ]
    settled = await records.tenant_reserve("acme", keys=[SUM], settle=settle)
    assert (settled.totals[SUM].total, settled.totals[SUM].count) == (25.0, 1)
    again = await records.tenant_reserve("acme", keys=[SUM], settle=settle)  # a retry
    assert again.totals == settled.totals
    assert await records.tenant_reservations("acme") == {}
    assert (await records.tenant_usage("acme", [SUM]))[SUM].total == 25.0


async def test_an_expired_reservation_stops_counting_and_is_removed(records: RecordStore) -> None:
    await records.tenant_reserve(
        "acme", keys=[SUM], reservation=_reservation("lost", 40, expires_in_s=-1)
    )
    await records.tenant_reserve("acme", keys=[SUM], reservation=_reservation("live", 40))
    seen = await records.tenant_reserve("acme", keys=[SUM])
    assert seen.totals[SUM].total == 40.0, "only the live one counts"
    assert set(await records.tenant_reservations("acme")) == {"live"}


async def test_a_refused_check_reserves_nothing(records: RecordStore) -> None:
    outcome = await records.tenant_reserve(
        "acme", keys=[SUM], reservation=_reservation("e-1", 40), check=lambda totals: False
    )
    assert not outcome.reserved
    assert await records.tenant_reservations("acme") == {}


# --- schema upgrade -------------------------------------------------------------------------


async def test_a_version_1_database_upgrades_to_the_latest_and_keeps_its_records(
    state_db_url: str,
) -> None:
    assert SCHEMA_VERSION == 7
    store = RecordStore(state_db_url)
    try:
        with store.engine.begin() as conn:
            MIGRATIONS[0](conn)  # version 1's frozen DDL, gr_schema included
            conn.execute(insert(schema_table).values(version=1, applied_at=T0))
        kept = _execution(tokens_in=42)
        with store.engine.begin() as conn:  # as a version-1 graphrunner wrote it
            row = _execution_row(kept)
            conn.execute(insert(executions).values({c: row[c] for c in V1_EXECUTION_COLUMNS}))
        assert "gr_decisions" not in inspect(store.engine).get_table_names()

        with pytest.raises(SchemaError, match="graphrunner db upgrade"):
            store.ensure_schema()

        assert store.upgrade() == (1, 7)

        store.ensure_schema()
        tables = set(inspect(store.engine).get_table_names())
        assert {
            "gr_decisions",
            "gr_tenant_usage",
            "gr_tenant_charges",
            "gr_tenant_reservations",
        } <= tables
        assert await store.executions("lt-1") == [kept]
        decision = _decision()
        assert await store.record_decision(decision)
        assert await store.decisions("lt-1") == [decision]
        charged = await store.tenant_charge("acme", "e-1", {SUM: UsageDelta(value=1.0)})
        assert charged[SUM].count == 1
    finally:
        store.close()
