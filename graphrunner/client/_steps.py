"""Every step of a lifetime across its runs, and resetting it to a step.

A reset (``graphrunner reset``, the Web UI, ``temporal workflow reset``) makes a new run of
the same workflow id: the new run's history is the base run's events up to the chosen
workflow-task boundary, a workflow-task failure that names both runs (``base_run_id``,
``new_run_id``), then whatever the new run does. So the run that produced each event is
known from history alone: before the i-th reset failure event, the i-th reset's base run;
after the last one, the history's own run. Nothing is written to the state DB when a run is
abandoned: which steps (and records) are superseded is worked out here, at read time, from
the histories of the lifetime's runs. Resets done outside graphrunner are therefore shown
just as consistently as graphrunner's own.
"""

from __future__ import annotations

import bisect
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import ResetReapplyExcludeType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError

from graphrunner._types import ForkSeed, StepRecord, StepStatus, execution_id, parse_step_summary
from graphrunner.client._history import fork_of, steps_from_history
from graphrunner.errors import GraphrunnerError
from graphrunner.graph._model import NodeKind
from graphrunner.stores import ExecutionRecord

__all__ = [
    "LifetimeStep",
    "LifetimeSteps",
    "ResetResult",
    "lifetime_steps",
    "own_steps",
    "rerun_from",
    "reset_to_step",
    "superseded_records",
]

#: The messages that carry human answers (re-applied after a reset unless dropped).
_ANSWER_UPDATE = "graphrunner.respond"
_ANSWER_SIGNAL = "graphrunner.answer"


class LifetimeStep(BaseModel):
    """One step of a lifetime, in whichever run executed it.

    Attributes:
        seq: The step's number (``#`` in ``status`` and ``history``).
        node: The node.
        kind: ``task`` or ``plan``.
        iteration: The node's iteration.
        status: ``running``, ``completed``, ``failed`` or ``rejected``.
        started_at: When it was scheduled (or, for a local plan, began).
        finished_at: When it finished, if it did.
        execution_id: Its record's id in the state DB (derived from ``run_id``).
        run_id: The run that executed it.
        event_id: The event that began it (activity scheduled, child initiated, the human
            request published, or a local plan's marker).
        closed_event_id: The event that ended it, if any.
        reset_point: The workflow-task-completed event just before it began: resetting
            there re-runs it (None for a superseded step).
        superseded_by: The run that replaced it (a reset), or None if it is on the
            lifetime's current path.
        child: A sub-graph task's child lifetime id.
        history_run: The run whose history holds the step's events and ``reset_point``
            (the executing run, or the run a reset made from it).
        forked_from: In a fork, on a step before its fork point: ``<parent id>#<step>``.
            The step was taken from the parent, not run: ``execution_id`` and ``run_id``
            are the parent's (its record), and its times are when the fork started.
    """

    model_config = ConfigDict(extra="forbid")

    seq: int
    node: str
    kind: NodeKind
    iteration: int
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    execution_id: str
    run_id: str
    event_id: int | None = None
    closed_event_id: int | None = None
    reset_point: int | None = None
    superseded_by: str | None = None
    child: str | None = None
    history_run: str = ""
    forked_from: str | None = None


class LifetimeSteps(BaseModel):
    """Every step of a lifetime: the current path, then steps abandoned by resets.

    Attributes:
        lifetime_id: The lifetime.
        run_id: Its current run.
        runs: Every run, oldest first.
        chain: The runs of the current path, oldest first: the current run and the runs
            it continued as new from (one, unless the lifetime continued as new).
        steps: Every step by number; a step run again after a reset follows the one it
            replaced.
    """

    lifetime_id: str
    run_id: str
    runs: list[str]
    chain: list[str] = []
    steps: list[LifetimeStep]

    @property
    def live(self) -> list[LifetimeStep]:
        """The steps on the current path (not superseded), by number."""
        return sorted((s for s in self.steps if s.superseded_by is None), key=lambda s: s.seq)


class ResetResult(BaseModel):
    """What ``reset`` did (or, with ``dry_run``, would do).

    Attributes:
        lifetime_id: The lifetime.
        base_run_id: The run that was reset (now abandoned).
        new_run_id: The new run ("" on a dry run).
        step: The step asked for.
        event_id: The workflow-task-completed event the reset went to.
        rerun: The steps that run again, from the new run.
        answers: Human answers (Updates/Signals) received after the reset point.
        answers_dropped: Whether they were dropped (else re-applied to the new run).
    """

    lifetime_id: str
    base_run_id: str
    new_run_id: str
    step: int
    event_id: int
    rerun: list[LifetimeStep]
    answers: int
    answers_dropped: bool


@dataclass
class _Span:
    begin: int
    close: int | None = None


@dataclass
class _Walk:
    """What one run's history says about who did what, and where it can be reset."""

    run_id: str
    spans: dict[tuple[str, int], _Span] = field(default_factory=dict)
    resets: list[tuple[int, str, str]] = field(default_factory=list)  # event, base, new
    completed: list[int] = field(default_factory=list)  # workflow-task-completed events
    continued_from: str = ""  # the run this one continued as new from
    fork: ForkSeed | None = None  # a fork's parent and fork point (its first run's input)

    def owner(self, event_id: int) -> str:
        """The run that produced ``event_id``."""
        for at, base, _new in self.resets:
            if event_id < at:
                return base
        return self.run_id

    def reset_point(self, event_id: int) -> int | None:
        i = bisect.bisect_left(self.completed, event_id)
        return self.completed[i - 1] if i else None


def _summary(event: HistoryEvent) -> tuple[str, int] | None:
    if not event.user_metadata.HasField("summary"):
        return None
    return parse_step_summary(event.user_metadata.summary.data.decode(errors="replace").strip('"'))


def _closed_ref(event: HistoryEvent) -> int | None:
    for name in (
        "activity_task_completed_event_attributes",
        "activity_task_failed_event_attributes",
        "activity_task_timed_out_event_attributes",
        "activity_task_canceled_event_attributes",
    ):
        if event.HasField(name):
            return int(getattr(event, name).scheduled_event_id)
    for name in (
        "child_workflow_execution_completed_event_attributes",
        "child_workflow_execution_failed_event_attributes",
        "child_workflow_execution_canceled_event_attributes",
        "child_workflow_execution_timed_out_event_attributes",
        "child_workflow_execution_terminated_event_attributes",
        "start_child_workflow_execution_failed_event_attributes",
    ):
        if event.HasField(name):  # type: ignore[arg-type]
            return int(getattr(event, name).initiated_event_id)
    return None


def _asked(event: HistoryEvent) -> list[tuple[str, int]]:
    """The human requests a memo upsert publishes (node, iteration)."""
    fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
    if "pending" not in fields:
        return []
    try:
        pending = json.loads(fields["pending"].data)
        return [(str(r["node"]), int(r["iteration"])) for r in pending]
    except (ValueError, KeyError, TypeError):
        return []


def _walk(history: WorkflowHistory, run_id: str) -> _Walk:
    walk = _Walk(run_id)
    by_event: dict[int, tuple[str, int]] = {}
    asked: dict[tuple[str, int], int] = {}
    for event in history.events:
        eid = event.event_id
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            walk.continued_from = started.continued_execution_run_id
        elif event.HasField("workflow_task_completed_event_attributes"):
            walk.completed.append(eid)
        elif event.HasField("workflow_task_failed_event_attributes"):
            failed = event.workflow_task_failed_event_attributes
            if failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
                walk.resets.append((eid, failed.base_run_id, failed.new_run_id))
        elif event.HasField("workflow_properties_modified_event_attributes"):
            for key in _asked(event):
                asked.setdefault(key, eid)
        elif event.HasField("activity_task_scheduled_event_attributes") or event.HasField(
            "start_child_workflow_execution_initiated_event_attributes"
        ):
            named = _summary(event)
            if named is not None and named not in walk.spans:
                walk.spans[named] = _Span(eid)
                by_event[eid] = named
        elif event.HasField("marker_recorded_event_attributes"):
            named = _summary(event)
            if named is not None and named not in walk.spans:
                walk.spans[named] = _Span(asked.get(named, eid), eid)
        else:
            ref = _closed_ref(event)
            if ref is not None and ref in by_event:
                walk.spans[by_event[ref]].close = eid
    return walk


def own_steps(history: WorkflowHistory, run_id: str, steps: list[StepRecord]) -> None:
    """Give each step of ``history`` the execution id of the run that executed it.

    `steps_from_history` derives every id from one run; after a reset, the steps before the
    reset point were executed (and recorded) by the base run.
    """
    walk = _walk(history, run_id)
    if not walk.resets:
        return
    for step in steps:
        span = walk.spans.get((step.node, step.iteration))
        if span is not None and span.close is not None:
            owner = walk.owner(span.close)
            step.execution_id = execution_id(history.workflow_id, owner, step.node, step.iteration)


async def _run_steps(
    temporal: Client, lifetime_id: str, run_id: str
) -> tuple[_Walk, list[LifetimeStep]]:
    handle = temporal.get_workflow_handle(lifetime_id, run_id=run_id)
    history = await handle.fetch_history()
    walk = _walk(history, run_id)
    found: list[LifetimeStep] = []
    seed = walk.fork = await fork_of(history, temporal.data_converter)
    taken = {m.seq: m for m in seed.memos} if seed is not None else {}
    for step in await steps_from_history(history, temporal.data_converter, run_id=run_id):
        memo = taken.get(step.seq)
        if seed is not None and memo is not None and memo.node == step.node:
            found.append(
                LifetimeStep(
                    **step.model_dump(
                        include={"seq", "node", "kind", "iteration", "status", "child"}
                    ),
                    started_at=step.started_at,
                    finished_at=step.finished_at,
                    execution_id=step.execution_id,
                    run_id=seed.ran(memo)[1],
                    forked_from=seed.mark,
                )
            )
            continue
        span = walk.spans.get((step.node, step.iteration))
        closed = span.close if span else None
        # A step runs in the run that finished it: one still pending at a reset point is
        # dispatched again by the new run.
        owner = walk.owner(closed) if closed is not None else run_id
        found.append(
            LifetimeStep(
                seq=step.seq,
                node=step.node,
                kind=step.kind,
                iteration=step.iteration,
                status=step.status,
                started_at=step.started_at,
                finished_at=step.finished_at,
                execution_id=execution_id(lifetime_id, owner, step.node, step.iteration),
                run_id=owner,
                event_id=span.begin if span else None,
                closed_event_id=closed,
                reset_point=walk.reset_point(span.begin) if span else None,
                child=step.child,
                history_run=run_id,
            )
        )
    return walk, found


async def lifetime_steps(temporal: Client, lifetime_id: str) -> LifetimeSteps:
    """Every step of a lifetime across all its runs (see the module docstring).

    Steps of abandoned runs come from their own histories (found by a visibility query on
    the workflow id, so a run reset a moment ago may show up a little later).
    """
    current = (await temporal.get_workflow_handle(lifetime_id).describe()).run_id
    runs: list[tuple[datetime, str]] = []
    async for found in temporal.list_workflows(f"WorkflowId='{lifetime_id}'"):
        runs.append((found.start_time, found.run_id))
    order = [r for _, r in sorted(runs)]
    if current not in order:
        order.append(current)
    # The current path: this run, and the runs it continued as new from, back to the first.
    chain: list[str] = []
    live: list[LifetimeStep] = []
    replaced: dict[str, str] = {}
    run = current
    while run and run not in chain and len(chain) <= len(order):
        walk, steps = await _run_steps(temporal, lifetime_id, run)
        chain.append(run)
        live = steps + live
        replaced.update({base: new for _, base, new in walk.resets if base not in replaced})
        run = walk.continued_from
    chain.reverse()
    if walk.fork is not None:
        live = await _from_parent(temporal, walk.fork, live) + live
    seen = {s.execution_id for s in live}
    abandoned: list[LifetimeStep] = []
    for run in order:
        if run in chain:
            continue
        other, steps = await _run_steps(temporal, lifetime_id, run)
        replaced.update({base: new for _, base, new in other.resets if base not in replaced})
        for step in steps:
            if step.execution_id in seen:
                continue
            seen.add(step.execution_id)
            abandoned.append(step)
    for step in abandoned:
        step.reset_point = None
        step.superseded_by = replaced.get(step.run_id, current)
    # By number; where a reset ran a step again, the abandoned one (oldest run first) first.
    rank = {run: i for i, run in enumerate(order)}
    everything = sorted(
        live + abandoned,
        key=lambda s: (s.seq, s.superseded_by is None, rank.get(s.run_id, len(rank))),
    )
    return LifetimeSteps(
        lifetime_id=lifetime_id, run_id=current, runs=order, chain=chain, steps=everything
    )


async def _from_parent(
    temporal: Client, seed: ForkSeed, live: list[LifetimeStep]
) -> list[LifetimeStep]:
    """A fork's steps from before the run of its parent it started from (see `plan_fork`).

    A fork of a step in a run its parent continued as new from starts with that run's
    carried walk: the steps of the parent's earlier runs are the fork's too, taken.
    """
    first = min((s.seq for s in live), default=0)
    if first == 0:
        return []
    try:
        parent = await lifetime_steps(temporal, seed.parent_id)
    except RPCError:  # the parent is gone (retention): its steps cannot be listed
        return []
    return [
        s.model_copy(update={"forked_from": seed.mark, "reset_point": None})
        for s in parent.live
        if s.seq < first
    ]


def superseded_records(records: list[ExecutionRecord], steps: LifetimeSteps) -> dict[str, str]:
    """Which records belong to abandoned work: execution id -> the run that replaced it.

    A record is superseded when its run is not the current one and its execution is not on
    the current path (an earlier run's steps before the reset point stay live).
    """
    live = {s.execution_id for s in steps.live}
    replaced = {s.run_id: s.superseded_by for s in steps.steps if s.superseded_by}
    return {
        r.execution_id: replaced.get(r.run_id) or steps.run_id
        for r in records
        if r.run_id != steps.run_id and r.execution_id not in live
    }


def rerun_from(steps: LifetimeSteps, seq: int) -> tuple[LifetimeStep, list[LifetimeStep]]:
    """Step ``seq`` on the current path, and every step a reset to it runs again.

    Raises:
        GraphrunnerError: There is no such step, or it has no reset point.
    """
    live = steps.live
    if not live:
        raise GraphrunnerError(f"lifetime {steps.lifetime_id} has no steps yet: nothing to reset")
    target = next((s for s in live if s.seq == seq), None)
    if target is None:
        raise GraphrunnerError(
            f"lifetime {steps.lifetime_id} has no step #{seq} on its current run: its steps "
            f"are #{live[0].seq}..#{live[-1].seq} (see 'graphrunner steps {steps.lifetime_id}')"
        )
    if target.reset_point is None:
        raise GraphrunnerError(
            f"step #{seq} of lifetime {steps.lifetime_id} has no workflow-task boundary "
            "before it to reset to"
        )
    point = target.reset_point
    position = {run: i for i, run in enumerate(steps.chain)}
    at = position.get(target.history_run, len(position))

    def runs_again(s: LifetimeStep) -> bool:
        where = position.get(s.history_run, len(position))
        if where != at:  # a later run of the chain is abandoned whole
            return where > at
        # Everything that began after the boundary runs again, and so does anything begun
        # before it that had not finished there (Temporal dispatches it again).
        return (
            (s.event_id is not None and s.event_id > point)
            or s.closed_event_id is None
            or s.closed_event_id > point
        )

    return target, [s for s in live if runs_again(s)]


async def _answers_after(temporal: Client, lifetime_id: str, runs: list[str], point: int) -> int:
    """Answers the lifetime got after ``point`` of ``runs[0]``, and in the runs after it."""
    count = 0
    for i, run_id in enumerate(runs):
        handle = temporal.get_workflow_handle(lifetime_id, run_id=run_id)
        count += _answers_in(await handle.fetch_history(), point if i == 0 else 0)
    return count


def _answers_in(history: WorkflowHistory, point: int) -> int:
    count = 0
    for event in history.events:
        if event.event_id <= point:
            continue
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            accepted = event.workflow_execution_update_accepted_event_attributes
            count += accepted.accepted_request.input.name == _ANSWER_UPDATE
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            signaled = event.workflow_execution_signaled_event_attributes
            count += signaled.signal_name == _ANSWER_SIGNAL
    return count


async def reset_to_step(
    temporal: Client,
    lifetime_id: str,
    seq: int,
    *,
    drop_answers: bool = False,
    reason: str = "",
    dry_run: bool = False,
) -> ResetResult:
    """Reset a lifetime to the workflow-task boundary before step ``seq``.

    Steps from there on run again with the current code, in a new run; the abandoned
    run's records stay, shown as superseded. Human answers received after the boundary
    are re-applied to the new run unless ``drop_answers`` (which drops every Signal and
    Update received after it, pause/resume/abort ones included).

    Raises:
        GraphrunnerError: No such step on the current run.
    """
    steps = await lifetime_steps(temporal, lifetime_id)
    target, rerun = rerun_from(steps, seq)
    point = target.reset_point or 0
    # A step in an earlier run of the chain (the lifetime continued as new since): that run
    # is reset, and the current one ends (the server terminates it).
    base = target.history_run or steps.run_id
    later = steps.chain[steps.chain.index(base) :] if base in steps.chain else [base]
    answers = await _answers_after(temporal, lifetime_id, later, point)
    new_run = ""
    if not dry_run:
        exclude = (
            [
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
            ]
            if drop_answers
            else []
        )
        response = await temporal.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=lifetime_id, run_id=base),
                reason=reason or f"graphrunner reset to step #{seq}",
                workflow_task_finish_event_id=point,
                request_id=str(uuid.uuid4()),
                reset_reapply_exclude_types=exclude,
            )
        )
        new_run = response.run_id
    return ResetResult(
        lifetime_id=lifetime_id,
        base_run_id=base,
        new_run_id=new_run,
        step=seq,
        event_id=point,
        rerun=rerun,
        answers=answers,
        answers_dropped=drop_answers,
    )
