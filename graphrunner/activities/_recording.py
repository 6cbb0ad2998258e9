"""Turn one finished node attempt into an execution record (result inline or in a blob)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pydantic_core
from temporalio import activity

from graphrunner._types import ExecutionHeader, Telemetry
from graphrunner.stores._blobs import BlobRef, BlobStore
from graphrunner.stores._records import ExecutionRecord, ExecutionStatus, RecordStore

__all__ = ["Attempt", "Recorder"]


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """What the activity observed of one attempt."""

    status: ExecutionStatus
    started_at: datetime
    finished_at: datetime
    latency_ms: float
    output: Any = None
    telemetry: Telemetry | None = None
    next: list[str] | None = None
    error: str | None = None
    state: dict[str, Any] | None = None  # {"seen": ..., "update": ...} in a stateful graph
    answered_by: str | None = None  # a human step: who answered, and how
    child_id: str | None = None  # a sub-graph task: the child lifetime it ran
    notes: dict[str, Any] | None = None  # an LLM node: its re-asks, a default taken
    attempt: int | None = None  # the attempt recorded (default: Temporal's)


class Recorder:
    """Writes execution records; results over ``inline_limit`` bytes go to the blob store.

    Args:
        records: The state DB.
        blobs: Where large results go.
        inline_limit: Largest result (JSON bytes) kept inline in the record.
        encrypt: Seal results, state, errors and notes (inline and blobs) with the state
            DB's cipher (``records.cipher``, the codec keys); see `graphrunner.codec`.

    Raises:
        ValueError: ``encrypt`` without a cipher on ``records``.
    """

    def __init__(
        self, records: RecordStore, blobs: BlobStore, *, inline_limit: int, encrypt: bool = False
    ) -> None:
        if encrypt and records.cipher is None:
            raise ValueError("encrypted records need a state DB opened with the codec keys")
        self.records = records
        self.blobs = blobs
        self.inline_limit = inline_limit
        self.cipher = records.cipher if encrypt else None

    async def _put(self, key: str, data: bytes, execution_id: str, column: str) -> BlobRef:
        if self.cipher is not None:
            data = self.cipher.seal_bytes(data, execution_id=execution_id, column=column)
        return await self.blobs.put(key, data)

    async def write(self, header: ExecutionHeader, attempt: Attempt) -> bool:
        """Record ``attempt`` of the execution ``header`` names.

        Returns False if a later attempt was already recorded.
        """
        number = attempt.attempt or activity.info().attempt
        telemetry = attempt.telemetry or Telemetry()
        result: dict[str, Any] = {"result_size": 0}
        if attempt.status is ExecutionStatus.SUCCEEDED:
            data = pydantic_core.to_json(attempt.output)
            result["result_size"] = len(data)
            if len(data) > self.inline_limit:
                key = f"results/{header.lifetime_id}/{header.execution_id}.{number}.json"
                ref = await self._put(key, data, header.execution_id, "result")
                result.update(result_uri=ref.uri, result_sha256=ref.sha256)
            else:
                result["result_inline"] = data.decode()
            if attempt.state is not None:
                data = pydantic_core.to_json(attempt.state)
                if len(data) > self.inline_limit:
                    key = f"state/{header.lifetime_id}/{header.execution_id}.{number}.json"
                    ref = await self._put(key, data, header.execution_id, "state")
                    result["state_uri"] = ref.uri
                else:
                    result["state_inline"] = data.decode()
        record = ExecutionRecord(
            **header.model_dump(exclude={"scheduled_at"}),
            attempt=number,
            next=attempt.next or [],
            status=attempt.status,
            created_at=header.scheduled_at or attempt.started_at,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            tokens_in=telemetry.tokens_in,
            tokens_out=telemetry.tokens_out,
            cost_usd=Decimal(str(telemetry.cost_usd)),
            latency_ms=attempt.latency_ms,
            model=telemetry.model,
            answered_by=attempt.answered_by,
            child_id=attempt.child_id,
            **self._sealed(header.execution_id, error=attempt.error, notes=attempt.notes, **result),
        )
        return await self.records.record(record)

    def _sealed(self, execution_id: str, **fields: Any) -> dict[str, Any]:
        return fields if self.cipher is None else self.cipher.seal_fields(execution_id, fields)
