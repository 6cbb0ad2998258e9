"""The local activity that records a sub-graph task once its child lifetime has ended.

A sub-graph task runs no code of its own: its child lifetime does the work (and records its
own executions under its own id). When the child ends, this local activity writes the task's
execution record in the parent: the child's id (``child_id``), its output (inline, or in the
blob store when large, like any result) or why it failed, what it spent, and how long it
ran. It is not gated by guardrails: the interceptor counts a finished child in the parent's
totals when its result comes back (see `graphrunner.guardrails._gate.Gate.fold_child`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from graphrunner._types import RECORD_CHILD, ChildCall, TaskResult
from graphrunner.activities._graphs import resolve_call
from graphrunner.activities._recording import Attempt, Recorder
from graphrunner.stores._records import ExecutionStatus

__all__ = ["ChildActivities"]


class ChildActivities:
    """The ``graphrunner.record_child`` local activity, with the worker's recorder.

    Args:
        recorder: Writes execution records; None records nothing.
    """

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder

    @activity.defn(name=RECORD_CHILD)
    async def record_child(self, call: ChildCall) -> TaskResult:
        """Record the sub-graph task; return nothing the workflow needs but an ack."""
        if self.recorder is None:
            return TaskResult()
        header, graph = await resolve_call(call, call.record_kind, call.started_at)
        now = datetime.now(UTC)
        started, finished = call.started_at or now, call.finished_at or now
        failed = call.error is not None
        await self.recorder.write(
            header,
            Attempt(
                status=ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED,
                started_at=started,
                finished_at=finished,
                latency_ms=max((finished - started).total_seconds() * 1000, 0.0),
                output=None if failed else call.output,
                telemetry=call.spent,
                next=[] if failed else graph.task_next(call.node),
                error=call.error,
                state=None if call.state is None else {"seen": call.state, "update": None},
                child_id=call.child,
            ),
        )
        return TaskResult()
