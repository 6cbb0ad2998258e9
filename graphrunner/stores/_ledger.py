"""The tenant ledger: running totals of each tenant's guardrail aggregates, and reservations.

One row per (tenant, aggregate) in ``gr_tenant_usage`` (total, count, least, greatest),
across all the tenant's lifetimes; ``gr_tenant_charges`` makes each execution count once.

Reservations (``gr_tenant_reservations``) make tenant caps hold under concurrency: before an
execution runs, `Ledger.tenant_reserve` settles the lifetime's finished executions, reads
the committed totals plus every live reservation, asks the caller whether this execution's
ceiling fits, and if so reserves it, all in one transaction serialised per tenant
(``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock keyed by the tenant on
PostgreSQL), so no two checks of one tenant can both see room that only one of them has.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Float,
    Insert,
    Text,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from graphrunner.stores._db import Database
from graphrunner.stores._models import (
    ReserveOutcome,
    UsageDelta,
    UsageReservation,
    UsageSettlement,
    UsageTotals,
)
from graphrunner.stores._schema import tenant_charges, tenant_reservations, tenant_usage

__all__ = ["Ledger"]


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


def _usage(rows: Sequence[Any]) -> dict[str, UsageTotals]:
    return {
        row.key: UsageTotals(total=row.total, count=row.count, lo=row.lo, hi=row.hi) for row in rows
    }


class Ledger(Database):
    """The tenant-ledger part of `graphrunner.stores.RecordStore`."""

    def _build_ledger_statements(self) -> None:
        u = tenant_usage.c
        self._read_usage = select(u.key, u.total, u.count, u.lo, u.hi).where(
            u.tenant == bindparam("tenant"), u.key.in_(bindparam("keys", expanding=True))
        )
        dialect: Any = sqlite if self.dialect == "sqlite" else postgresql
        self._insert_charge = (
            dialect.insert(tenant_charges)
            .on_conflict_do_nothing()
            .returning(tenant_charges.c.execution_id)
        )
        least, greatest = (
            (func.min, func.max) if self.dialect == "sqlite" else (func.least, func.greatest)
        )
        self._fold_usage = _fold_usage(dialect.insert(tenant_usage), least, greatest)
        r = tenant_reservations.c
        reserve = dialect.insert(tenant_reservations)
        self._upsert_reservation = reserve.on_conflict_do_update(
            index_elements=[r.execution_id],
            set_={"deltas": reserve.excluded.deltas, "expires_at": reserve.excluded.expires_at},
        )
        self._read_reservations = select(r.execution_id, r.deltas).where(
            r.tenant == bindparam("tenant"), r.expires_at > bindparam("now")
        )
        self._drop_expired = delete(tenant_reservations).where(
            r.tenant == bindparam("tenant"), r.expires_at <= bindparam("now")
        )
        self._drop_reservation = delete(tenant_reservations).where(
            r.execution_id == bindparam("execution_id")
        )
        self._live_reservations = self._read_reservations
        if self.dialect == "postgresql":
            self._build_postgresql_statements()

    def _build_postgresql_statements(self) -> None:
        # Fewer round trips (each ~0.1-0.2 ms here): a settlement is one statement (drop the
        # reservation, record the charge, fold the values it gates), and dropping expired
        # reservations rides along with reading the live ones.
        r = tenant_reservations.c
        tenant = bindparam("tenant", type_=tenant_usage.c.tenant.type)
        now = bindparam("now", type_=tenant_usage.c.updated_at.type)
        dropped = (
            delete(tenant_reservations)
            .where(r.execution_id == bindparam("execution_id"))
            .cte("dropped")
        )
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
        self._settle_charge = (
            _fold_usage(fold, func.least, func.greatest).add_cte(dropped).add_cte(charge)
        )
        gone = (
            delete(tenant_reservations)
            .where(r.tenant == bindparam("tenant"), r.expires_at <= bindparam("now"))
            .cte("gone")
        )
        self._live_reservations = self._read_reservations.add_cte(gone)

    async def tenant_charge(
        self, tenant: str, execution_id: str, deltas: dict[str, UsageDelta]
    ) -> dict[str, UsageTotals]:
        """Add one execution to its tenant's running totals, once; return the totals after.

        Atomic and idempotent: the first charge of ``execution_id`` folds every matched delta
        into its key's total, count, least and greatest value (and ends its reservation, if
        any); a repeated charge (a retried activity) changes nothing. It is a settlement
        alone (see `tenant_reserve`), serialised with every other of the tenant.

        Args:
            tenant: The tenant charged.
            execution_id: The execution whose values these are.
            deltas: By aggregate key (its canonical text), what the execution adds; a delta
                that is not ``matched`` adds nothing.

        Returns:
            The totals of every key in ``deltas`` (``UsageTotals()`` for one never charged),
            live reservations included.
        """
        settle = [UsageSettlement(execution_id=execution_id, deltas=deltas)]
        outcome = await self.tenant_reserve(tenant, keys=list(deltas), settle=settle)
        return outcome.totals

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

    async def tenant_reserve(
        self,
        tenant: str,
        *,
        keys: list[str],
        settle: Sequence[UsageSettlement] = (),
        reservation: UsageReservation | None = None,
        check: Callable[[dict[str, UsageTotals]], bool] | None = None,
    ) -> ReserveOutcome:
        """Settle, check and reserve against a tenant's totals in one atomic step.

        In one transaction, serialised with every other of the same tenant: end the
        reservations in ``settle`` (charging the executions that have deltas, once); read
        the committed totals of ``keys`` plus every live reservation but this one; call
        ``check`` with them; and, when it returns True (or there is no check), store
        ``reservation``. Expired reservations are deleted on the way.

        Args:
            tenant: The tenant.
            keys: The aggregate keys whose totals to return.
            settle: Executions whose reservations end now.
            reservation: The execution about to run, with its ceiling; None only settles
                and reads.
            check: Whether the execution fits, given the totals without it.

        Returns:
            The totals ``check`` saw, and whether the reservation was made.
        """
        return await asyncio.to_thread(
            self._tenant_reserve, tenant, keys, settle, reservation, check
        )

    async def tenant_reservations(self, tenant: str | None = None) -> dict[str, UsageReservation]:
        """Reservations stored (live or expired but not yet deleted), by execution id."""

        def read() -> dict[str, UsageReservation]:
            r = tenant_reservations.c
            query = select(r.execution_id, r.deltas, r.expires_at)
            if tenant is not None:
                query = query.where(r.tenant == tenant)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            return {
                row.execution_id: UsageReservation(
                    execution_id=row.execution_id,
                    deltas=_deltas_from_json(row.deltas),
                    expires_at=row.expires_at,
                )
                for row in rows
            }

        return await asyncio.to_thread(read)

    @contextmanager
    def _tenant_transaction(self, tenant: str) -> Iterator[Connection]:
        if self.dialect == "sqlite":
            with self._sqlite_write() as conn:
                yield conn
            return
        # Serialise per tenant without needing a row to exist: a transaction-scoped advisory
        # lock keyed by the tenant (a hash collision only serialises two tenants).
        key = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "big", signed=True)
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(key)))
            yield conn

    def _tenant_reserve(
        self,
        tenant: str,
        keys: list[str],
        settle: Sequence[UsageSettlement],
        reservation: UsageReservation | None,
        check: Callable[[dict[str, UsageTotals]], bool] | None,
    ) -> ReserveOutcome:
        now = datetime.now(UTC)
        with self._tenant_transaction(tenant) as conn:
            for done in settle:
                self._settle(conn, tenant, done, now)
            if self.dialect == "sqlite":  # on PostgreSQL, part of the read below
                conn.execute(self._drop_expired, {"tenant": tenant, "now": now})
            totals = dict.fromkeys(keys, UsageTotals())
            if keys:
                rows = conn.execute(self._read_usage, {"tenant": tenant, "keys": keys}).all()
                totals.update(_usage(rows))
            mine = reservation.execution_id if reservation is not None else None
            live = conn.execute(self._live_reservations, {"tenant": tenant, "now": now}).all()
            for row in live:
                if row.execution_id != mine:
                    _fold_into(totals, _deltas_from_json(row.deltas))
            fits = check(totals) if check is not None else True
            if reservation is not None and fits:
                conn.execute(
                    self._upsert_reservation,
                    {
                        "execution_id": reservation.execution_id,
                        "tenant": tenant,
                        "deltas": _deltas_to_json(reservation.deltas),
                        "reserved_at": now,
                        "expires_at": reservation.expires_at,
                    },
                )
        return ReserveOutcome(totals=totals, reserved=reservation is not None and fits)

    def _settle(self, conn: Connection, tenant: str, done: UsageSettlement, now: datetime) -> None:
        if done.deltas is not None and self.dialect == "postgresql":
            # Sorted, so concurrent folds lock a tenant's rows in one order.
            matched = sorted((key, d.value) for key, d in done.deltas.items() if d.matched)
            params = {
                "execution_id": done.execution_id,
                "tenant": tenant,
                "now": now,
                "keys": [key for key, _ in matched],
                "values": [value for _, value in matched],
            }
            conn.execute(self._settle_charge, params)
            return
        conn.execute(self._drop_reservation, {"execution_id": done.execution_id})
        if done.deltas is None:
            return
        charge = {"execution_id": done.execution_id, "tenant": tenant, "charged_at": now}
        if conn.execute(self._insert_charge, charge).first() is None:
            return  # charged already (a retried activity)
        matched = sorted((key, d.value) for key, d in done.deltas.items() if d.matched)
        if matched:
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


def _deltas_to_json(deltas: dict[str, UsageDelta]) -> dict[str, list[float | bool]]:
    return {key: [d.value, d.matched] for key, d in deltas.items()}


def _deltas_from_json(raw: Any) -> dict[str, UsageDelta]:
    return {key: UsageDelta(value=value, matched=matched) for key, (value, matched) in raw.items()}


def _fold_into(totals: dict[str, UsageTotals], deltas: dict[str, UsageDelta]) -> None:
    """Add one reservation to the totals of the keys asked for (a copy, never the row)."""
    for key, total in list(totals.items()):
        delta = deltas.get(key)
        if delta is None or not delta.matched:
            continue
        value = delta.value
        totals[key] = UsageTotals(
            total=total.total + value,
            count=total.count + 1,
            lo=value if total.lo is None else min(total.lo, value),
            hi=value if total.hi is None else max(total.hi, value),
        )
