"""Model cooldowns: which models the runtime skips, and until when.

Every worker sharing a state DB sees the same cooldowns (`SqlCooldowns` in
``graphrunner.stores._cooldowns``): Temporal may run the next attempt of a node on another
worker, which must not hammer the model that just rate-limited the first. A worker without a
state DB (``GRAPHRUNNER_RECORD=0``) keeps them in its own memory (`MemoryCooldowns`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from graphrunner.llm._config import CooldownPolicy, ErrorKind

__all__ = ["CooldownStore", "MemoryCooldowns", "ModelCooldown"]


@dataclass(frozen=True)
class ModelCooldown:
    """One model's state.

    Attributes:
        model: The litellm model id.
        failures: Retryable failures in a row (0 after a success).
        cooling_until: Until when every worker skips it (None: not cooling).
        last_error: The kind of the last failure (``rate_limit``, ``timeout``, ...).
        last_message: Its message, cut.
        updated_at: When the row last changed.
    """

    model: str
    failures: int
    cooling_until: datetime | None
    last_error: str | None
    last_message: str | None
    updated_at: datetime

    def cooling(self, now: datetime) -> bool:
        """Whether the model is skipped at ``now``."""
        return self.cooling_until is not None and self.cooling_until > now


class CooldownStore(Protocol):
    """Where cooldowns live: the state DB (shared) or a worker's memory."""

    shared: bool

    async def get(self, models: list[str]) -> dict[str, ModelCooldown]:
        """The states of ``models`` that have one."""
        ...

    async def failed(
        self, model: str, kind: ErrorKind, message: str, policy: CooldownPolicy
    ) -> ModelCooldown:
        """Count a retryable failure and cool the model down for its backoff."""
        ...

    async def succeeded(self, model: str) -> None:
        """Reset the model's failures: it answered."""
        ...

    async def all(self) -> list[ModelCooldown]:
        """Every model with a state, by name."""
        ...


def now_utc() -> datetime:
    """Wall-clock now, in UTC (cooldowns compare workers' clocks)."""
    return datetime.now(UTC)


def next_state(
    previous: ModelCooldown | None,
    model: str,
    kind: ErrorKind,
    message: str,
    policy: CooldownPolicy,
    now: datetime,
) -> ModelCooldown:
    """The state after one more retryable failure of ``model``."""
    failures = (previous.failures if previous else 0) + 1
    until = now + timedelta(seconds=policy.seconds(kind, failures))
    return ModelCooldown(model, failures, until, kind.value, message[:2000], now)


class MemoryCooldowns:
    """Cooldowns of one worker process (no state DB): other workers do not see them."""

    shared = False

    def __init__(self) -> None:
        self._states: dict[str, ModelCooldown] = {}

    async def get(self, models: list[str]) -> dict[str, ModelCooldown]:
        """The states of ``models`` that have one."""
        return {m: self._states[m] for m in models if m in self._states}

    async def failed(
        self, model: str, kind: ErrorKind, message: str, policy: CooldownPolicy
    ) -> ModelCooldown:
        """Count a retryable failure and cool the model down for its backoff."""
        state = next_state(self._states.get(model), model, kind, message, policy, now_utc())
        self._states[model] = state
        return state

    async def succeeded(self, model: str) -> None:
        """Reset the model's failures: it answered."""
        state = self._states.get(model)
        if state is not None:
            self._states[model] = replace(
                state, failures=0, cooling_until=None, updated_at=now_utc()
            )

    async def all(self) -> list[ModelCooldown]:
        """Every model with a state, by name."""
        return [self._states[m] for m in sorted(self._states)]
