"""Model cooldowns in the state DB (``gr_model_cooldowns``), shared by every worker.

A failure is counted under a row lock (PostgreSQL ``SELECT ... FOR UPDATE``, SQLite
``BEGIN IMMEDIATE``), so two workers failing on one model at once make two failures in a row,
never one. Times are the workers' UTC wall clocks.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from graphrunner.llm._config import CooldownPolicy, ErrorKind
from graphrunner.llm._cooldowns import ModelCooldown, next_state, now_utc
from graphrunner.stores._db import Database
from graphrunner.stores._models import utc
from graphrunner.stores._schema import model_cooldowns

__all__ = ["SqlCooldowns"]

_c = model_cooldowns.c


def _state(row: Any) -> ModelCooldown:
    return ModelCooldown(
        model=row.model,
        failures=row.failures,
        cooling_until=utc(row.cooling_until),
        last_error=row.last_error,
        last_message=row.last_message,
        updated_at=utc(row.updated_at) or now_utc(),
    )


class SqlCooldowns:
    """Cooldowns every worker on the state DB ``db`` shares."""

    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db
        dialect: Any = sqlite if db.dialect == "sqlite" else postgresql
        self._ensure_row = dialect.insert(model_cooldowns).on_conflict_do_nothing()

    async def get(self, models: list[str]) -> dict[str, ModelCooldown]:
        """The states of ``models`` that have one."""

        def read() -> dict[str, ModelCooldown]:
            query = select(model_cooldowns).where(_c.model.in_(models))
            with self.db.engine.connect() as conn:
                return {row.model: _state(row) for row in conn.execute(query)}

        return await asyncio.to_thread(read)

    async def failed(
        self, model: str, kind: ErrorKind, message: str, policy: CooldownPolicy
    ) -> ModelCooldown:
        """Count a retryable failure and cool the model down for its backoff."""
        return await asyncio.to_thread(self._failed, model, kind, message, policy)

    def _failed(
        self, model: str, kind: ErrorKind, message: str, policy: CooldownPolicy
    ) -> ModelCooldown:
        now = now_utc()
        if self.db.dialect == "sqlite":
            with self.db._sqlite_write() as conn:
                return self._count(conn, model, kind, message, policy, now)
        with self.db.engine.begin() as conn:
            return self._count(conn, model, kind, message, policy, now)

    def _count(
        self,
        conn: Connection,
        model: str,
        kind: ErrorKind,
        message: str,
        policy: CooldownPolicy,
        now: datetime,
    ) -> ModelCooldown:
        conn.execute(self._ensure_row, {"model": model, "failures": 0, "updated_at": now})
        row = conn.execute(select(model_cooldowns).where(_c.model == model).with_for_update()).one()
        previous = _state(row) if row.failures else None
        state = next_state(previous, model, kind, message, policy, now)
        conn.execute(
            update(model_cooldowns)
            .where(_c.model == model)
            .values(
                failures=state.failures,
                cooling_until=state.cooling_until,
                last_error=state.last_error,
                last_message=state.last_message,
                updated_at=now,
            )
        )
        return state

    async def succeeded(self, model: str) -> None:
        """Reset the model's failures: it answered."""

        def write() -> None:
            statement = (
                update(model_cooldowns)
                .where(_c.model == model, _c.failures > 0)
                .values(failures=0, cooling_until=None, updated_at=now_utc())
            )
            with self.db.engine.begin() as conn:
                conn.execute(statement)

        await asyncio.to_thread(write)

    async def all(self) -> list[ModelCooldown]:
        """Every model with a state, by name."""

        def read() -> list[ModelCooldown]:
            with self.db.engine.connect() as conn:
                rows = conn.execute(select(model_cooldowns).order_by(_c.model))
                return [_state(row) for row in rows]

        return await asyncio.to_thread(read)
