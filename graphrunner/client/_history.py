"""Read a lifetime's path from its Temporal history: works with no worker running."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from graphrunner._types import (
    RUN_PLAN,
    ForkSeed,
    StepRecord,
    StepStatus,
    execution_id,
    parse_step_summary,
)
from graphrunner.graph._model import AgentGraph, NodeKind

__all__ = [
    "carried_from",
    "failure_from_history",
    "fork_of",
    "run_of",
    "stall_from_history",
    "steps_from_history",
]


def _summary(event: HistoryEvent) -> tuple[str, int] | None:
    if not event.user_metadata.HasField("summary"):
        return None
    return parse_step_summary(event.user_metadata.summary.data.decode(errors="replace").strip('"'))


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


async def steps_from_history(
    history: WorkflowHistory, converter: DataConverter, *, run_id: str
) -> list[StepRecord]:
    """Every node execution in ``history``, in scheduling order, with its record headers.

    An execution's ``execution_id`` is derived as the workflow derives it (lifetime, run,
    node, iteration); a regular activity's ``seq`` is read from its input (the call the
    workflow decided), and ``next`` from the pinned graph (a task) or its result (a plan),
    so each step carries the numbers its execution record has. Local activities (plans with
    ``local: true``) keep no input in history: their ``seq`` is one past the highest seen
    before them (the workflow's own, unless executions were begun concurrently or a
    guardrail refused one before it ran just before). A fork's steps before its fork point,
    taken from its parent, come from its input, with the parent's execution ids.
    """
    steps: list[StepRecord] = []
    before = -1  # the number of the step before this run's first
    by_event: dict[int, tuple[StepRecord, dict[str, Any]]] = {}
    successors: dict[str, str] = {}  # task -> where its one out-edge leads
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            inp = await _decoded(converter, started.input.payloads)
            successors = _task_successors(inp)
            carry = inp.get("carry")
            # A run after continue-as-new numbers its steps after the earlier runs' ones.
            before = int(carry.get("seq", 0)) - 1 if isinstance(carry, dict) else -1
            steps = _forked(_seed(inp), successors, _time(event))
        elif event.HasField("workflow_execution_completed_event_attributes"):
            completed = event.workflow_execution_completed_event_attributes
            result = await _decoded(converter, completed.result.payloads)
            steps = _merged(steps, result.get("steps") or [])
        elif event.HasField("activity_task_scheduled_event_attributes"):
            named = _summary(event)
            if named is None:
                continue
            attrs = event.activity_task_scheduled_event_attributes
            call = await _decoded(converter, attrs.input.payloads)
            step = StepRecord(
                node=named[0],
                kind=NodeKind.PLAN if attrs.activity_type.name == RUN_PLAN else NodeKind.TASK,
                iteration=named[1],
                status=StepStatus.RUNNING,
                started_at=_time(event),
                execution_id=execution_id(history.workflow_id, run_id, *named),
                seq=int(call.get("seq", 0)),
            )
            by_event[event.event_id] = step, call
            steps.append(step)
        elif event.HasField("marker_recorded_event_attributes"):
            named = _summary(event)
            if named is not None:
                marker = event.marker_recorded_event_attributes
                failed = marker.HasField("failure")
                decided = marker.details["result"].payloads if "result" in marker.details else []
                decision = {} if failed else await _decoded(converter, decided)
                # A local activity's marker is written when it completed; its result says
                # how long the plan ran.
                finished = _time(event)
                latency = (decision.get("telemetry") or {}).get("latency_ms")
                ran = timedelta(milliseconds=latency) if isinstance(latency, int | float) else None
                # A task's local activity is a human step's record (latency: the wait).
                human = named[0] in successors
                steps.append(
                    StepRecord(
                        node=named[0],
                        kind=NodeKind.TASK if human else NodeKind.PLAN,
                        iteration=named[1],
                        status=StepStatus.FAILED if failed else StepStatus.COMPLETED,
                        started_at=finished - ran if ran is not None else finished,
                        finished_at=finished if ran is not None else None,
                        execution_id=execution_id(history.workflow_id, run_id, *named),
                        seq=max((s.seq for s in steps), default=before) + 1,
                        next=[]
                        if failed
                        else [successors[named[0]]]
                        if human
                        else _plan_next(decision),
                    )
                )
        elif event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            named = _summary(event)  # a sub-graph task: its child lifetime
            if named is None:
                continue
            child = event.start_child_workflow_execution_initiated_event_attributes
            step = StepRecord(
                node=named[0],
                kind=NodeKind.TASK,
                iteration=named[1],
                status=StepStatus.RUNNING,
                started_at=_time(event),
                execution_id=execution_id(history.workflow_id, run_id, *named),
                seq=max((s.seq for s in steps), default=before) + 1,
                child=child.workflow_id,
            )
            by_event[event.event_id] = step, {}
            steps.append(step)
        else:
            closing = _closing(event) or _child_closing(event)
            if closing is not None and closing[0] in by_event:
                step, call = by_event[closing[0]]
                step.status = closing[1]
                step.finished_at = _time(event)
                if step.status is StepStatus.COMPLETED:
                    step.next = await _next(converter, step, successors, event)
    return steps


def _seed(inp: dict[str, Any]) -> ForkSeed | None:
    try:
        return ForkSeed.model_validate(inp["fork"]) if inp.get("fork") else None
    except ValueError:
        return None


async def fork_of(history: WorkflowHistory, converter: DataConverter) -> ForkSeed | None:
    """What a fork took from its parent (None for a lifetime that is no fork)."""
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            return _seed(await _decoded(converter, started.input.payloads))
    return None


def _forked(seed: ForkSeed | None, successors: dict[str, str], at: datetime) -> list[StepRecord]:
    """A fork's memoized steps as steps of its path (taken when it started)."""
    if seed is None:
        return []
    steps = []
    for memo in seed.memos:
        rejected = memo.rejection is not None
        nxt = (
            []
            if rejected
            else _plan_next(memo.plan.model_dump())
            if memo.plan is not None
            else [successors[memo.node]]
            if memo.node in successors
            else []
        )
        steps.append(
            StepRecord(
                node=memo.node,
                kind=NodeKind.PLAN if memo.kind == "plan" else NodeKind.TASK,
                iteration=memo.iteration,
                status=StepStatus.REJECTED if rejected else StepStatus.COMPLETED,
                started_at=at,
                finished_at=at,
                next=nxt,
                execution_id=execution_id(*seed.ran(memo), memo.node, memo.iteration),
                seq=memo.seq,
                child=memo.child,
            )
        )
    return steps


def run_of(history: WorkflowHistory) -> str:
    """The run id a history's events belong to ("" if the history does not say).

    A run's first event names it (``original_execution_run_id``); a run made by a reset
    starts with its base run's events, and the reset's workflow-task failure names it.
    """
    run_id = ""
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            run_id = event.workflow_execution_started_event_attributes.original_execution_run_id
        elif event.HasField("workflow_task_failed_event_attributes"):
            failed = event.workflow_task_failed_event_attributes
            if failed.new_run_id:
                run_id = failed.new_run_id
    return run_id


def _merged(steps: list[StepRecord], told: list[Any]) -> list[StepRecord]:
    """``steps`` with what only the workflow knew: the steps a guardrail rejected.

    A lifetime's result names them (history shows a rejected execution as a completed
    activity, or, rejected before it ran, not at all); older results list every step.
    """
    by_key = {(s.node, s.iteration): s for s in steps}
    for raw in told:
        try:
            step = StepRecord.model_validate(raw)
        except ValueError:
            continue
        known = by_key.get((step.node, step.iteration))
        if known is None:
            steps.append(step)
            by_key[step.node, step.iteration] = step
        else:
            known.status = step.status
            known.next = step.next
    return sorted(steps, key=lambda s: s.seq)


async def _decoded(converter: DataConverter, payloads: Sequence[Payload]) -> dict[str, Any]:
    """The first payload as a JSON object ({} if it is none).

    Plain JSON is parsed directly; anything else (a payload kept in the blob store) goes
    through the data converter.
    """
    if not payloads:
        return {}
    first = payloads[0]
    try:
        if first.metadata.get("encoding") == b"json/plain":
            value = json.loads(first.data)
        else:
            value = (await converter.decode([first]))[0]
    except Exception:  # a step without its headers beats no status at all
        return {}
    return value if isinstance(value, dict) else {}


async def carried_from(history: WorkflowHistory, converter: DataConverter) -> dict[str, Any]:
    """What a run took over from the run before it (``LifetimeInput.carry``; {} if none).

    A lifetime that continued as new starts each run after its first with the walk carried
    over: ``runs`` before this one, ``seq`` (the steps begun in them), ``started_at``.
    """
    for event in history.events[:1]:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            carry = (await _decoded(converter, started.input.payloads)).get("carry")
            return carry if isinstance(carry, dict) else {}
    return {}


def _task_successors(inp: dict[str, Any]) -> dict[str, str]:
    """Where each task of the lifetime's pinned graph leads (its one out-edge)."""
    try:
        graph = AgentGraph.model_validate(inp.get("graph"))
    except ValueError:  # not a graphrunner input: steps without ``next`` beat no status
        return {}
    return {
        node.name: nxt[0]
        for node in graph.nodes
        if node.kind is NodeKind.TASK and (nxt := graph.task_next(node.name))
    }


async def _next(
    converter: DataConverter, step: StepRecord, successors: dict[str, str], event: HistoryEvent
) -> list[str]:
    """Where a completed step led, as the workflow decided it."""
    if step.kind is NodeKind.TASK:
        return [successors[step.node]] if step.node in successors else []
    result = event.activity_task_completed_event_attributes.result.payloads
    return _plan_next(await _decoded(converter, result))


def _plan_next(decision: dict[str, Any]) -> list[str]:
    return [str(name) for name in decision.get("next_task_names") or []] or ["END"]


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


_CHILD_CLOSINGS = {
    "child_workflow_execution_completed_event_attributes": StepStatus.COMPLETED,
    "child_workflow_execution_failed_event_attributes": StepStatus.FAILED,
    "child_workflow_execution_canceled_event_attributes": StepStatus.FAILED,
    "child_workflow_execution_timed_out_event_attributes": StepStatus.FAILED,
    "child_workflow_execution_terminated_event_attributes": StepStatus.FAILED,
    "start_child_workflow_execution_failed_event_attributes": StepStatus.FAILED,
}


def _child_closing(event: HistoryEvent) -> tuple[int, StepStatus] | None:
    for field, status in _CHILD_CLOSINGS.items():
        if event.HasField(field):  # type: ignore[arg-type]
            return getattr(event, field).initiated_event_id, status
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
