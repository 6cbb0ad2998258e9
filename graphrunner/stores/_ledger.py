"""The tenant ledger: running totals of each tenant's guardrail aggregates.

One row per (tenant, aggregate) in ``gr_tenant_usage`` (total, count, least, greatest),
across all the tenant's lifetimes; ``gr_tenant_charges`` makes each execution count once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Float,
    Insert,
    Text,
    any_,
    bindparam,
    cast,
    column,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from graphrunner.stores._db import Database
from graphrunner.stores._models import UsageDelta, UsageTotals
from graphrunner.stores._schema import tenant_charges, tenant_usage

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
        if self.dialect == "sqlite":
            self._insert_charge = (
                sqlite.insert(tenant_charges)
                .on_conflict_do_nothing()
                .returning(tenant_charges.c.execution_id)
            )
            self._fold_usage = _fold_usage(sqlite.insert(tenant_usage), func.min, func.max)
            return
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
