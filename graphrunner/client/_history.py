"""Read a lifetime's path from its Temporal history: works with no worker running."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from graphrunner._types import RUN_PLAN, StepRecord, StepStatus, parse_step_summary
from graphrunner.graph._model import NodeKind

__all__ = ["failure_from_history", "stall_from_history", "steps_from_history"]


def _summary(event: HistoryEvent) -> tuple[str, int] | None:
    if not event.user_metadata.HasField("summary"):
        return None
    return parse_step_summary(event.user_metadata.summary.data.decode(errors="replace").strip('"'))


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def steps_from_history(history: WorkflowHistory) -> list[StepRecord]:
    """Every node execution in ``history``, in scheduling order.

    Regular activities give scheduled and closing times; local activities (plans with
    ``local: true``) appear once recorded, so they show as completed with no duration.
    """
    steps: list[StepRecord] = []
    by_event: dict[int, StepRecord] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            named = _summary(event)
            if named is None:
                continue
            attrs = event.activity_task_scheduled_event_attributes
            step = StepRecord(
                node=named[0],
                kind=NodeKind.PLAN if attrs.activity_type.name == RUN_PLAN else NodeKind.TASK,
                iteration=named[1],
                status=StepStatus.RUNNING,
                started_at=_time(event),
            )
            by_event[event.event_id] = step
            steps.append(step)
        elif event.HasField("marker_recorded_event_attributes"):
            named = _summary(event)
            if named is not None:
                at = _time(event)
                steps.append(
                    StepRecord(
                        node=named[0],
                        kind=NodeKind.PLAN,
                        iteration=named[1],
                        status=StepStatus.COMPLETED,
                        started_at=at,
                    )
                )
        else:
            closing = _closing(event)
            if closing is not None and closing[0] in by_event:
                step = by_event[closing[0]]
                step.status = closing[1]
                step.finished_at = _time(event)
    return steps


def _closing(event: HistoryEvent) -> tuple[int, StepStatus] | None:
    if event.HasField("activity_task_completed_event_attributes"):
        return (
            event.activity_task_completed_event_attributes.scheduled_event_id,
            StepStatus.COMPLETED,
        )
    if event.HasField("activity_task_failed_event_attributes"):
        return event.activity_task_failed_event_attributes.scheduled_event_id, StepStatus.FAILED
    if event.HasField("activity_task_timed_out_event_attributes"):
        return event.activity_task_timed_out_event_attributes.scheduled_event_id, StepStatus.FAILED
    if event.HasField("activity_task_canceled_event_attributes"):
        return event.activity_task_canceled_event_attributes.scheduled_event_id, StepStatus.FAILED
    return None


def failure_from_history(history: WorkflowHistory) -> str | None:
    """Why the lifetime failed (e.g. the guardrail rule that aborted it), if it did."""
    for event in reversed(history.events):
        if event.HasField("workflow_execution_failed_event_attributes"):
            failure = event.workflow_execution_failed_event_attributes.failure
            kind = failure.application_failure_info.type
            return f"{kind}: {failure.message}" if kind else failure.message
    return None


def stall_from_history(history: WorkflowHistory) -> str | None:
    """Why the lifetime's workflow task keeps failing, if its latest one failed.

    Such a lifetime is not failed: Temporal retries the task, and a deploy of fixed workflow
    code (or a reset) lets it go on. Typical causes are nondeterministic workflow code
    (``NON_DETERMINISTIC_ERROR``) and a bug in graphrunner's own workflow code.
    """
    stalled: HistoryEvent | None = None
    for event in history.events:
        if event.HasField("workflow_task_failed_event_attributes"):
            stalled = event
        elif event.HasField("workflow_task_completed_event_attributes") or event.HasField(
            "workflow_execution_completed_event_attributes"
        ):
            stalled = None
    if stalled is None:
        return None
    attrs = stalled.workflow_task_failed_event_attributes
    cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
    kind = attrs.failure.application_failure_info.type
    message = attrs.failure.message.strip() or "no message"
    return (
        f"workflow task failing since {_time(stalled).isoformat(timespec='seconds')} "
        f"({cause}{f', {kind}' if kind else ''}): {message}"
    )
