"""Forking a lifetime: a new lifetime that takes the parent's steps before N and runs on.

DBOS's ``fork_workflow(workflow_id, start_step)`` is the model. The memos come from the
parent's Temporal history (its current run, which holds the events of the runs a reset
kept), not from the state DB: history holds exactly the results the workflow routed on (a
plan's ``data``, ``items`` and generated graph, which a record leaves out) and the order in
which it saw them complete. A human step's answer is the outcome of the update that took it
(or the signal, or the timeout's default). A fork of a fork takes its parent's own memos for
the steps that were memoized there.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from graphrunner._answers import ANSWER_SIGNAL, RESPOND_UPDATE, HumanAnswer, HumanOutcome
from graphrunner._types import (
    ForkMemo,
    ForkSeed,
    LifetimeInput,
    LifetimeResult,
    PlanResult,
    StepStatus,
    TaskResult,
    Telemetry,
    execution_id,
    parse_step_summary,
)
from graphrunner.client._steps import LifetimeStep, _asked, lifetime_steps
from graphrunner.errors import GraphrunnerError
from graphrunner.graph._human import TimeoutResponse, answer_problems
from graphrunner.graph._model import AgentGraph, NodeKind, NodeSpec

__all__ = ["ForkPlan", "ForkResult", "check_compatible", "fork_id", "memo_kind", "plan_fork"]

_MAX_ID = 1000


class ForkResult(BaseModel):
    """What ``fork`` started.

    Attributes:
        lifetime_id: The new lifetime (the fork).
        run_id: Its first run.
        parent_id: The lifetime it was forked from.
        parent_run_id: The parent's run the memos were read from.
        step: The fork point: the parent's steps numbered below it were taken, not run.
        forked_from: ``<parent id>#<step>`` (the ``GraphrunnerForkOf`` search attribute and
            the records' ``forked_from``).
        memoized: The parent's steps the fork took.
        first: The parent's step at the fork point, the first the fork runs (None when the
            fork point is past the parent's last step).
        graph_changed: Whether the fork runs another graph than the parent's.
        ui_url: The fork in the Temporal Web UI.
    """

    lifetime_id: str
    run_id: str
    parent_id: str
    parent_run_id: str
    step: int
    forked_from: str
    memoized: list[LifetimeStep]
    first: LifetimeStep | None = None
    graph_changed: bool = False
    ui_url: str = ""


@dataclass
class ForkPlan:
    """What a fork of a lifetime at a step starts from (read from the parent's history)."""

    parent: LifetimeInput
    seed: ForkSeed
    memoized: list[LifetimeStep]
    first: LifetimeStep | None


def fork_id(parent_id: str, step: int) -> str:
    """A fork's default id: ``<parent>-fork-<N>-<6 hex>`` (a long parent id by its hash)."""
    head = parent_id if len(parent_id) <= _MAX_ID - 40 else hashlib.sha256(parent_id.encode())
    text = head if isinstance(head, str) else head.hexdigest()
    return f"{text}-fork-{step}-{uuid.uuid4().hex[:6]}"


def memo_kind(node: NodeSpec) -> str:
    """How a fork takes a step of ``node``: ``plan``, ``child``, ``human`` or ``task``."""
    if node.kind is NodeKind.PLAN:
        return "plan"
    if node.graph is not None:
        return "child"
    return "human" if node.human is not None else "task"


_ROUND = re.compile(r" · round \d+$")


def _summary(event: HistoryEvent) -> tuple[str, int] | None:
    """The step an activity belongs to (None: a tool call's own activity, or none).

    ``node · iteration``, or a later round of an LLM task that calls tools (``node ·
    iteration · round N``): the same step, whose last round holds its result.
    """
    if not event.user_metadata.HasField("summary"):
        return None
    text = event.user_metadata.summary.data.decode(errors="replace").strip('"')
    return parse_step_summary(_ROUND.sub("", text))


@dataclass
class _Read:
    """What the parent's history says each step ended with, and the human answers."""

    inp: LifetimeInput | None = None
    first_run: str = ""
    ended: dict[tuple[str, int], tuple[int, str, list[Payload]]] = field(default_factory=dict)
    children: dict[tuple[str, int], str] = field(default_factory=dict)
    answers: dict[tuple[str, int], Any] = field(default_factory=dict)


async def _read(temporal: Client, history: WorkflowHistory) -> _Read:
    converter = temporal.data_converter
    read = _Read()
    begun: dict[int, tuple[str, int]] = {}
    respond_updates: set[str] = set()
    asked: dict[tuple[str, int], int] = {}
    for event in history.events:
        eid = event.event_id
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            read.first_run = started.first_execution_run_id or started.original_execution_run_id
            try:
                read.inp = (await converter.decode(started.input.payloads, [LifetimeInput]))[0]
            except (ValidationError, ValueError, TypeError, IndexError) as exc:
                raise GraphrunnerError(
                    f"lifetime {history.workflow_id} has an input graphrunner cannot read: {exc}"
                ) from None
            # Answers a run continued as new with, held for requests it had not asked yet.
            for held in read.inp.carry.answers if read.inp.carry else []:
                try:
                    outcome = HumanOutcome.model_validate(held)
                except ValidationError:
                    continue
                read.answers.setdefault((outcome.node, outcome.iteration), outcome.data)
        elif event.HasField("activity_task_scheduled_event_attributes"):
            named = _summary(event)
            if named is not None:
                begun[eid] = named
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            named = begun.get(done.scheduled_event_id)
            if named is not None:  # the last completion wins (a reset may run it again)
                read.ended[named] = eid, "result", list(done.result.payloads)
        elif event.HasField("marker_recorded_event_attributes"):
            named = _summary(event)
            marker = event.marker_recorded_event_attributes
            if named is not None and not marker.HasField("failure"):
                result = marker.details["result"].payloads if "result" in marker.details else []
                read.ended[named] = eid, "marker", list(result)
        elif event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            named = _summary(event)
            if named is not None:
                begun[eid] = named
                child = event.start_child_workflow_execution_initiated_event_attributes
                read.children[named] = child.workflow_id
        elif event.HasField("child_workflow_execution_completed_event_attributes"):
            closed = event.child_workflow_execution_completed_event_attributes
            named = begun.get(closed.initiated_event_id)
            if named is not None:
                read.ended[named] = eid, "child", list(closed.result.payloads)
        elif event.HasField("workflow_properties_modified_event_attributes"):
            for key in _asked(event):
                asked.setdefault(key, eid)
        elif event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == RESPOND_UPDATE:
                respond_updates.add(request.meta.update_id)
        elif event.HasField("workflow_execution_update_completed_event_attributes"):
            completed = event.workflow_execution_update_completed_event_attributes
            if completed.meta.update_id in respond_updates and completed.outcome.HasField(
                "success"
            ):
                outcome = await _value(temporal, completed.outcome.success.payloads, HumanOutcome)
                if isinstance(outcome, HumanOutcome) and not outcome.duplicate:
                    read.answers.setdefault((outcome.node, outcome.iteration), outcome.data)
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            signal = event.workflow_execution_signaled_event_attributes
            if signal.signal_name == ANSWER_SIGNAL:
                answer = await _value(temporal, signal.input.payloads, HumanAnswer)
                if isinstance(answer, HumanAnswer):
                    _take_signal(read, answer, asked, eid, history.workflow_id)
    return read


async def _value(temporal: Client, payloads: Any, model: type[BaseModel]) -> Any:
    """``payloads``' first value as ``model``, or None when it is not one."""
    try:
        return (await temporal.data_converter.decode(list(payloads)[:1], [model]))[0]
    except (ValidationError, ValueError, TypeError, IndexError):
        return None


def _take_signal(
    read: _Read,
    answer: HumanAnswer,
    asked: dict[tuple[str, int], int],
    eid: int,
    lifetime_id: str,
) -> None:
    """Which request a signalled answer settled, as the lifetime's desk decided it.

    By its request id, else the oldest request of its node asked before it and not yet
    answered; an answer that does not fit the node's schema was refused.
    """
    inp = read.inp
    node = next((n for n in inp.graph.nodes if n.name == answer.node), None) if inp else None
    if node is None or node.human is None:
        return
    waiting = sorted(
        key for key, at in asked.items() if key[0] == answer.node and key not in read.answers
    )
    if answer.request_id is not None:
        waiting = [
            key
            for key in waiting
            if execution_id(lifetime_id, read.first_run, *key) == answer.request_id
        ]
    elif not waiting or asked[waiting[0]] > eid:
        return
    if waiting and not answer_problems(node.human.schema_or_any(), answer.data):
        read.answers[waiting[0]] = answer.data


def _refuse(lifetime_id: str, step: LifetimeStep, why: str) -> GraphrunnerError:
    return GraphrunnerError(
        f"cannot fork {lifetime_id}: step #{step.seq} ({step.node}#{step.iteration}) {why}"
    )


async def _memo(
    temporal: Client, read: _Read, graph: AgentGraph, step: LifetimeStep, lifetime_id: str
) -> tuple[ForkMemo, int]:
    """The memo of one completed step, and the event that completed it (its rank's key)."""
    key = step.node, step.iteration
    try:
        node = graph.node(step.node)
    except KeyError:
        raise _refuse(lifetime_id, step, "names a node its graph lacks") from None
    kind = memo_kind(node)
    memo = ForkMemo(seq=step.seq, node=step.node, iteration=step.iteration, kind=kind, rank=0)
    ended = read.ended.get(key)
    if ended is None:
        raise _refuse(lifetime_id, step, "has no result in the lifetime's history")
    at, _how, payloads = ended
    if kind == "plan":
        decision = await _value(temporal, payloads, PlanResult)
        if not isinstance(decision, PlanResult):
            raise _refuse(lifetime_id, step, "has a decision graphrunner cannot read")
        memo.plan = decision.model_copy(update={"telemetry": Telemetry()})
    elif kind == "child":
        result = await _value(temporal, payloads, LifetimeResult)
        if not isinstance(result, LifetimeResult):
            raise _refuse(lifetime_id, step, "has a child result graphrunner cannot read")
        memo.task = TaskResult(output=result.output)
        memo.child = read.children.get(key)
    elif kind == "human":
        if key in read.answers:
            answer = read.answers[key]
        elif node.human is not None and isinstance(node.human.on_timeout, TimeoutResponse):
            answer = node.human.on_timeout.respond  # nobody answered: the default did
        else:
            raise _refuse(lifetime_id, step, "has an answer its history does not show")
        memo.task = TaskResult(output=answer)
    else:
        result = await _value(temporal, payloads, TaskResult)
        if not isinstance(result, TaskResult):
            raise _refuse(lifetime_id, step, "has a result graphrunner cannot read")
        memo.task = result.model_copy(update={"telemetry": Telemetry()})
    return memo, at


async def plan_fork(temporal: Client, lifetime_id: str, step: int) -> ForkPlan:
    """Read what a fork of ``lifetime_id`` at step ``step`` takes from it.

    Raises:
        GraphrunnerError: No such step, a step before it has not completed (still running,
            failed, or rejected by a guardrail), the lifetime is a child lifetime, or its
            history cannot tell a step's outcome.
    """
    steps = await lifetime_steps(temporal, lifetime_id)
    live = steps.live
    last = live[-1].seq if live else -1
    if step < 0 or step > last:
        raise GraphrunnerError(
            f"lifetime {lifetime_id} has no step #{step} to fork from: its steps are "
            f"#0..#{last} (see 'graphrunner steps {lifetime_id}')"
        )
    # The run whose history holds step N: a lifetime that continued as new holds it in one
    # run of its chain, which the fork starts from (its carried walk), taking that run's
    # steps before N; the earlier runs' steps are in the carry.
    at = next((s for s in live if s.seq == step), None)
    if at is None:
        raise GraphrunnerError(
            f"lifetime {lifetime_id} has no step #{step} on its current path to fork from "
            f"(see 'graphrunner steps {lifetime_id}')"
        )
    source = at.history_run or steps.run_id
    history = await temporal.get_workflow_handle(lifetime_id, run_id=source).fetch_history()
    read = await _read(temporal, history)
    inp = read.inp
    if inp is None:
        raise GraphrunnerError(f"{lifetime_id} is not a graphrunner lifetime")
    carried = inp.carry.seq if inp.carry is not None else 0
    before = [s for s in live if carried <= s.seq < step]
    numbers = [s.seq for s in before]
    if numbers != list(range(carried, step)):
        missing = sorted(set(range(carried, step)) - set(numbers))
        raise GraphrunnerError(
            f"cannot fork {lifetime_id} at step #{step}: step(s) "
            f"{', '.join(f'#{n}' for n in missing)} are not in its history (a guardrail "
            "refused them before they ran); fork from an earlier step"
        )
    for s in before:
        if s.status is StepStatus.RUNNING:
            raise _refuse(lifetime_id, s, "is still running: fork from it, or wait")
        if s.status is StepStatus.FAILED:
            raise _refuse(lifetime_id, s, "failed: fork from it to run it again")
        if s.status is StepStatus.REJECTED:
            raise _refuse(
                lifetime_id,
                s,
                "was rejected by a guardrail, whose verdict its history does not hold; fork "
                "from it or an earlier step",
            )
    if inp.parent is not None:
        raise GraphrunnerError(
            f"{lifetime_id} is a child lifetime of {inp.parent.lifetime_id} (its task "
            f"'{inp.parent.node}'); it runs under its parent's guardrails: fork the parent"
        )
    inherited = {m.seq: m for m in inp.fork.memos} if inp.fork is not None else {}
    found: list[tuple[tuple[int, int], ForkMemo]] = []
    for s in before:
        if inp.fork is not None and s.seq in inherited:  # a fork's fork: its own memo
            memo = inherited[s.seq]
            ran_in, run = inp.fork.ran(memo)
            found.append(
                ((0, memo.rank), memo.model_copy(update={"lifetime_id": ran_in, "run_id": run}))
            )
            continue
        memo, done = await _memo(temporal, read, inp.graph, s, lifetime_id)
        if s.run_id != source:  # run before a reset point: the base run's record
            memo.run_id = s.run_id
        found.append(((1, done), memo))
    # A fork's own memos all complete before any step it runs: they come first.
    for rank, (_, memo) in enumerate(sorted(found, key=lambda f: f[0])):
        memo.rank = rank
    seed = ForkSeed(
        parent_id=lifetime_id,
        parent_run_id=source,
        step=step,
        memos=sorted((m for _, m in found), key=lambda m: m.seq),
    )
    earlier = [s for s in live if s.seq < carried]
    return ForkPlan(parent=inp, seed=seed, memoized=earlier + before, first=at)


def check_compatible(graph: AgentGraph, seed: ForkSeed, name: str) -> None:
    """Refuse a graph a fork could not take the parent's steps before its fork point in.

    Every memoized step's node must be in ``graph`` with the same kind (task, plan,
    human-input task, sub-graph task), every memoized plan's choice among its declared
    successors, and every state update to fields ``graph`` declares. The workflow checks
    each step again as it begins (``ForkDiverged``).

    Raises:
        GraphrunnerError: Naming the first step that does not fit.
    """
    declared = set(graph.state or {})
    for memo in seed.memos:
        where = f"step #{memo.seq} ({memo.node}#{memo.iteration})"
        try:
            node = graph.node(memo.node)
        except KeyError:
            raise GraphrunnerError(
                f"graph {name} cannot take the parent's {where}: it has no node '{memo.node}'"
            ) from None
        kind = memo_kind(node)
        if kind != memo.kind:
            raise GraphrunnerError(
                f"graph {name} cannot take the parent's {where}: '{memo.node}' is a {kind} "
                f"step there, a {memo.kind} step in the parent"
            )
        if memo.plan is not None:
            targets = {e.target for e in graph.out_edges(memo.node) if e.target}
            undeclared = [t for t in memo.plan.next_task_names if t not in targets]
            if undeclared:
                raise GraphrunnerError(
                    f"graph {name} cannot take the parent's {where}: plan '{memo.node}' chose "
                    f"{', '.join(undeclared)}, which are not its successors there"
                )
        update = (memo.plan.update if memo.plan else memo.task.update if memo.task else None) or {}
        unknown = sorted(set(update) - declared)
        if unknown:
            raise GraphrunnerError(
                f"graph {name} cannot take the parent's {where}: it updated state field(s) "
                f"{', '.join(unknown)}, which the graph does not declare"
            )
