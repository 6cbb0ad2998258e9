"""The rows the state DB keeps and returns, as pydantic models (no I/O here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CostRow",
    "DecisionRecord",
    "ExecutionRecord",
    "ExecutionStatus",
    "LifetimeSummary",
    "ReserveOutcome",
    "UsageDelta",
    "UsageReservation",
    "UsageSettlement",
    "UsageTotals",
    "as_utc",
    "utc",
]


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    # Every time graphrunner stores is UTC: SQLite keeps no offset (it would store 12:00+02:00
    # as 12:00) and hands back naive datetimes, which are therefore UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime | None) -> datetime | None:
    """`as_utc` that lets None through."""
    return None if value is None else as_utc(value)


class ExecutionStatus(StrEnum):
    """Outcome of a node execution."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class ExecutionRecord(BaseModel):
    """One Task or Plan execution: headers, telemetry and where its result is."""

    model_config = ConfigDict(extra="forbid")

    # headers
    execution_id: str
    lifetime_id: str
    run_id: str
    graph_name: str
    graph_version: str
    graph_hash: str
    tenant: str
    node: str
    kind: str
    iteration: int
    seq: int = Field(description="Order in which the workflow scheduled the execution.")
    attempt: int
    parent_ids: list[str] = Field(default_factory=list)
    edge: str | None = Field(default=None, description="Type of the edge that led here.")
    next: list[str] = Field(default_factory=list, description="Where the execution led.")
    status: ExecutionStatus
    created_at: datetime
    started_at: datetime
    finished_at: datetime | None = None
    # telemetry
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    model: str = ""
    # result: inline JSON text, or a blob URI with size and digest
    result_inline: str | None = None
    result_uri: str | None = None
    result_size: int = 0
    result_sha256: str | None = None
    error: str | None = None
    # lifetime state: {"seen": the state the execution saw, "update": what it returned}
    state_inline: str | None = None
    state_uri: str | None = None
    # a human-input step (kind "human"): who answered, e.g. "alice (update)" (version 5)
    answered_by: str | None = None
    # an execution of a fork: the lifetime and step it was forked from, "<id>#<N>" (version 6)
    forked_from: str | None = None
    # a sub-graph task: the child lifetime it ran (version 7)
    child_id: str | None = None
    # LLM nodes (version 9): a tool call's tool (kind "tool"); an LLM node's notes, e.g.
    # {"reasks": [{"answer": ..., "errors": [...]}], "default_taken": "..."}
    tool: str | None = None
    notes: dict[str, Any] | None = None

    @property
    def result_location(self) -> str:
        """The URI of a large result, or ``inline`` with its size."""
        return self.result_uri or f"inline ({self.result_size} B)"

    def result_value(self) -> Any:
        """The inline result, decoded (None when the result is in the blob store)."""
        return json.loads(self.result_inline) if self.result_inline is not None else None


class LifetimeSummary(BaseModel):
    """Aggregates of one lifetime's records."""

    lifetime_id: str
    graph_name: str
    graph_version: str
    tenant: str
    executions: int
    failed: int
    tokens: int
    cost_usd: Decimal
    first_at: datetime
    last_at: datetime | None


class DecisionRecord(BaseModel):
    """One guardrail decision: a rule that fired, or an operator's resume, and why."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str
    lifetime_id: str
    run_id: str
    tenant: str
    graph_name: str
    execution_id: str | None = Field(default=None, description="The execution decided on.")
    node: str | None = None
    iteration: int | None = None
    seq: int = Field(description="Order of the decision within its lifetime run.")
    rule: str
    action: str = Field(description="reject_execution, pause_lifetime, abort_lifetime or resume.")
    phase: str = Field(
        description="before (checked before scheduling), after (on the result) or resume."
    )
    scope: str
    condition: str = Field(description="The rule's expression text.")
    observed: dict[str, float | str] = Field(
        default_factory=dict, description="Value of each sub-expression, by its text."
    )
    message: str = ""
    decided_at: datetime = Field(description="When the decision was taken, in UTC.")

    @field_validator("decided_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return as_utc(value)


class UsageTotals(BaseModel):
    """Running totals of one tenant aggregate: sum, count, least and greatest value."""

    total: float = 0.0
    count: int = 0
    lo: float | None = None
    hi: float | None = None


class UsageDelta(BaseModel):
    """What one execution adds to one tenant aggregate."""

    value: float = Field(
        default=0.0, description="The execution's value (ignored by count aggregates)."
    )
    matched: bool = Field(
        default=True, description="Whether the execution passed the aggregate's filter."
    )


class CostRow(BaseModel):
    """Token and cost totals of one tenant or graph."""

    key: str
    lifetimes: int
    executions: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


class UsageSettlement(BaseModel):
    """How one execution leaves the tenant ledger's reservations.

    Attributes:
        execution_id: The execution whose reservation ends.
        deltas: What it actually adds, by aggregate key (it is charged, once); None releases
            the reservation without a charge (the execution failed, or never ran).
    """

    execution_id: str
    deltas: dict[str, UsageDelta] | None = None


class UsageReservation(BaseModel):
    """What one execution about to run may add to its tenant's totals, until it settles.

    Attributes:
        execution_id: The execution.
        deltas: Its ceiling's contributions, by aggregate key.
        expires_at: When the reservation stops counting if nothing settles it (its lifetime
            was terminated, say).
    """

    execution_id: str
    deltas: dict[str, UsageDelta]
    expires_at: datetime


class ReserveOutcome(BaseModel):
    """What `RecordStore.tenant_reserve` saw and did.

    Attributes:
        totals: Committed totals plus every other live reservation, by key (not this one).
        reserved: Whether the reservation was made.
    """

    totals: dict[str, UsageTotals]
    reserved: bool
