"""The local activity that records a human-input step once it is answered.

A human step runs no code: the lifetime waits in the workflow. When the answer is in, this
local activity writes the step's execution record (kind ``human``): who answered, when, the
answer (inline, or in the blob store when large, like any result) and how long the wait
lasted (``latency_ms``). It is also where guardrail rules see the step (the interceptor gates
it like a node activity), so rules can count and filter human steps.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from graphrunner._answers import RECORD_HUMAN, HumanCall
from graphrunner._types import TaskResult, Telemetry
from graphrunner.activities._graphs import resolve_call
from graphrunner.activities._recording import Attempt, Recorder
from graphrunner.stores._records import ExecutionStatus

__all__ = ["HumanActivities"]


class HumanActivities:
    """The ``graphrunner.record_human`` local activity, with the worker's recorder.

    Args:
        recorder: Writes execution records; None records nothing.
    """

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder

    @activity.defn(name=RECORD_HUMAN)
    async def record_human(self, call: HumanCall) -> TaskResult:
        """Record the answered step; return its telemetry (latency: the wait)."""
        telemetry = Telemetry(latency_ms=round(call.waited_ms, 3), attempt=1)
        if self.recorder is None:
            return TaskResult(telemetry=telemetry)
        header, graph = await resolve_call(call, call.record_kind, call.asked_at)
        node = graph.node(call.node)
        human = node.human
        update = {human.state: call.data} if human is not None and human.state else None
        now = datetime.now(UTC)
        await self.recorder.write(
            header,
            Attempt(
                status=ExecutionStatus.SUCCEEDED,
                started_at=call.asked_at or now,
                finished_at=call.answered_at or now,
                latency_ms=call.waited_ms,
                output=call.data,
                telemetry=telemetry,
                next=graph.task_next(call.node),
                state=None
                if call.state is None and update is None
                else {"seen": call.state, "update": update},
                answered_by=f"{call.by} ({call.via})" if call.by else call.via,
            ),
        )
        return TaskResult(telemetry=telemetry)
