"""AgentLifetimeWorkflow: one Temporal workflow per run of an AgentGraph.

The workflow only routes: every Task and Plan runs as an activity named by the node and its
iteration, so the Temporal UI shows the graph's steps. Everything it decides derives from
its input (the pinned graph) and activity results, so histories replay deterministically.

It runs outside temporalio's workflow sandbox (``sandboxed=False``). The sandbox guards
workflow code a user writes; this is library code that runs no user code (nodes are
activities), touches no clock, randomness or I/O, and is checked by replay tests. Inside the
sandbox every activation and every payload's serialization context crossed into it through
``exec`` (about 0.6 ms per crossing with external payload storage), which made a graphrunner
step cost more worker CPU than a hand-written one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from graphrunner._answers import (
        ANSWER_SIGNAL,
        PENDING_QUERY,
        RECORD_HUMAN,
        RESPOND_UPDATE,
        HumanAnswer,
        HumanCall,
        HumanOutcome,
        HumanRequest,
        RefusedAnswer,
    )
    from graphrunner._attributes import COST_KEY, FORK_KEY, GRAPH_KEY, STATUS_KEY, VERSION_KEY
    from graphrunner._llm_wire import (
        MAX_TOOL_RESULT_CHARS,
        LlmTurn,
        Spent,
        ToolOutcome,
        ToolRequest,
    )
    from graphrunner._observe import human_wait_ended, human_wait_started
    from graphrunner._pinned import pin
    from graphrunner._state import StateError, apply_update, initial_state
    from graphrunner._tool_call import RUN_TOOL, ToolCallInput, tool_execution_id
    from graphrunner._types import (
        FIRST_QUESTION,
        GRAPH_KEY_LENGTH,
        INPUT_FORMAT,
        MAX_CARRIED_REJECTIONS,
        MAX_CHILD_DEPTH,
        RECORD_CHILD,
        RUN_PLAN,
        RUN_TASK,
        CarriedUpstream,
        Carry,
        ChildCall,
        FirstQuestion,
        ForkMemo,
        GeneratedGraph,
        LifetimeInput,
        LifetimePhase,
        LifetimeResult,
        LifetimeStatus,
        NodeOutput,
        ParentLink,
        PlanCall,
        PlanResult,
        QuestionRequest,
        Rejection,
        StepRecord,
        StepStatus,
        TaskCall,
        TaskResult,
        Telemetry,
        check_format,
        execution_id,
        step_summary,
    )
    from graphrunner._values import clip
    from graphrunner.errors import FailureType, GraphrunnerError, GuardrailRejected
    from graphrunner.graph._human import render_prompt
    from graphrunner.graph._llm import tool_name
    from graphrunner.graph._model import GENERATED, AgentGraph, EdgeType, NodeKind, NodeSpec
    from graphrunner.workflows._checks import graph_problems
    from graphrunner.workflows._fork import ForkReplay
    from graphrunner.workflows._human import HumanDesk, Refused
    from graphrunner.workflows._phase import PhaseBoard, phase_of

__all__ = ["LIFETIME_WORKFLOW", "AgentLifetimeWorkflow"]

LIFETIME_WORKFLOW = "AgentLifetime"
INPUT = "__input__"  # node name under which a start plan sees the lifetime input
_TOO_LARGE = "PayloadsTooLarge"  # ApplicationError type the SDK core gives an oversized result
_MESSAGE_LIMIT = 8192  # characters of a failure message the workflow builds
_PROBLEMS_SHOWN = 20  # problems of an invalid graph named in its failure
CHILD_RECORD_PATCH = "graphrunner-record-child"
"""Patch id of recording a sub-graph task's execution (issue 13); older histories did not."""
CONTINUE_PATCH = "graphrunner-continue-as-new"
"""Patch id of continuing a long lifetime as new (issue 13); older histories never did."""


@dataclass(frozen=True)
class _Via:
    """How a path arrived at a node: the executions that led there and the edge type.

    ``REJECTED`` marks a plan run again because a guardrail rejected what it chose.
    """

    parents: list[tuple[str, int]]  # (node, iteration)
    edge: EdgeType | Literal["REJECTED"] | None


@dataclass(frozen=True)
class _Upstream:
    """The plan that chose the current task on a NORMAL edge, to run again on a rejection."""

    plan: str
    results: list[NodeOutput]
    via: _Via


_START = _Via([], None)
_R = TypeVar("_R", TaskResult, PlanResult)


@dataclass
class _Scope:
    """The lifetime state along one path: the lifetime's own, or one fan-out branch's.

    A branch starts from the state at its fan-out and sees its own updates as it goes; at
    the JOIN the branches' updates are applied to the enclosing scope branch by branch, in
    the order the branches were chosen (item order for a map), whatever order they finished
    in. So the state is the same on every replay, and independent of timing.
    """

    state: dict[str, Any] | None
    updates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Finished:
    output: Any


@dataclass(frozen=True)
class _Joined:
    plan: str
    result: NodeOutput


def _fail(message: str, kind: FailureType) -> ApplicationError:
    return ApplicationError(clip(message, _MESSAGE_LIMIT), type=kind, non_retryable=True)


def _join_after(graph: AgentGraph, task: str) -> str | None:
    """The JOIN plan ``task`` leads straight to, if it does."""
    edges = graph.out_edges(task)
    if edges and edges[0].type is EdgeType.JOIN:
        return edges[0].target
    return None


def _rejection(exc: GuardrailRejected) -> Rejection:
    if isinstance(exc.rejection, Rejection):
        return exc.rejection
    raise _fail(f"malformed guardrail rejection: {exc.rejection!r}", FailureType.INTERNAL)


def _invalid_graph(errors: list[str]) -> Rejection:
    """What a plan sees of the graph it generated when that graph broke validation rules."""
    return Rejection(
        rule="invalid-graph",
        message=clip("; ".join(errors), _MESSAGE_LIMIT),
        condition="the generated graph passes 'graphrunner validate'",
        phase="after",
    )


_MAX_ID = 1000  # characters of a workflow id the server takes


def _child_id(parent: str, node: str, iteration: int) -> str:
    """A child lifetime's id: the parent's, the node and iteration, and a replayed suffix.

    The suffix (from the workflow's seeded randomness: the same on replay, new after a reset)
    keeps the child of a run made by a reset from colliding with its predecessor's, which
    the server may still be closing (it refuses a running duplicate id).
    """
    head = parent if len(parent) <= _MAX_ID - 100 else hashlib.sha256(parent.encode()).hexdigest()
    return f"{head}/{node}-{iteration}-{workflow.uuid4().hex[:8]}"


def _summed(before: Spent, more: Telemetry) -> Spent:
    """A round's spend added to the earlier rounds' (bounded as `Telemetry` is)."""
    return Spent(
        tokens_in=min(before.tokens_in + more.tokens_in, 2**53),
        tokens_out=min(before.tokens_out + more.tokens_out, 2**53),
        cost_usd=min(before.cost_usd + more.cost_usd, 1e9),
    )


def _edge_text(edge: EdgeType | Literal["REJECTED"] | None) -> str | None:
    return edge.value if isinstance(edge, EdgeType) else edge


def _carried_via(parents: list[tuple[str, int]], edge: str | None) -> _Via:
    how: EdgeType | Literal["REJECTED"] | None
    if edge is None:
        how = None
    elif edge == "REJECTED":
        how = "REJECTED"
    else:
        how = EdgeType(edge)
    return _Via([(p[0], p[1]) for p in parents], how)


def _rejected(step: StepRecord, rejection: Rejection) -> NodeOutput:
    # No execution id: the plan's activity derives it (see NodeOutput), history stays small.
    return NodeOutput(node=step.node, iteration=step.iteration, rejection=rejection)


# Failures graphrunner means fail the lifetime: its ApplicationErrors, its own errors, and an
# input the workflow cannot decode (ValidationError: a graph or value that breaks the
# model's bounds, sent by a client that skipped validation). Anything else fails the
# workflow task, so that a fixed deploy resumes the lifetime.
@workflow.defn(
    name=LIFETIME_WORKFLOW,
    failure_exception_types=[GraphrunnerError, ValidationError],
    sandboxed=False,
)
class AgentLifetimeWorkflow:
    """Runs one AgentLifetime: walks the pinned graph from its start node to a FINAL edge."""

    def __init__(self) -> None:
        self._input: LifetimeInput | None = None
        self._iterations: Counter[str] = Counter()
        self._steps: list[StepRecord] = []
        self._scope = _Scope(None)
        # The phase and spend, kept in the GraphrunnerStatus/GraphrunnerCostUsd attributes.
        self.board = PhaseBoard()
        # What the executions spent (children included), reported to a parent lifetime.
        self._spent = Telemetry()
        # Graphs plans generated, by the plan execution (node, iteration) that returned them.
        self._generated: dict[tuple[str, int], tuple[AgentGraph, str]] = {}
        # Human-input steps: what waits, what was answered, refused signals.
        self._desk = HumanDesk()
        # Continued as new: steps begun and runs before this run, rejections carried.
        self._seq0 = 0
        self._runs = 0
        self._carried_rejections: list[StepRecord] = []
        self._started_at: datetime | None = None  # the first run's start
        # A fork's steps before its fork point, taken from the parent (see _fork.py).
        self._fork: ForkReplay | None = None

    @workflow.run
    async def run(self, inp: LifetimeInput) -> LifetimeResult:
        """Run the lifetime to its end and return its output and path.

        Every exit, a result or a failure, first waits for running signal and update
        handlers, so an answer that arrives with the last node is never cut off.
        """
        try:
            result = await self._run(inp)
        # Not GeneratorExit: an evicted workflow's coroutine is closed outside the
        # workflow's event loop, where nothing may be awaited.
        except (Exception, asyncio.CancelledError) as exc:
            self.board.finish(phase_of(exc))  # before the wait: it releases first_question
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self.board.finish(LifetimePhase.COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _run(self, inp: LifetimeInput) -> LifetimeResult:
        check_format(inp)  # an input of another graphrunner stalls, visibly, until its worker
        self._input = inp
        self._fork = ForkReplay(inp.fork, self._running) if inp.fork is not None else None
        graph = inp.graph
        if graph.content_hash() != inp.graph_hash:
            raise _fail(
                f"graph '{graph.name}' does not match its pinned hash {inp.graph_hash[:12]}",
                FailureType.GRAPH_MISMATCH,
            )
        # A graph started by another client (or the temporal CLI) may never have been
        # validated: run only what `graphrunner validate` accepts.
        problems = graph_problems(graph, inp.graph_hash)
        if problems:
            shown = [clip(p, 300) for p in problems[:_PROBLEMS_SHOWN]]
            if len(problems) > _PROBLEMS_SHOWN:
                shown.append(f"and {len(problems) - _PROBLEMS_SHOWN} more")
            raise _fail(
                f"graph '{clip(graph.name, 100)}' {clip(graph.version, 100)} is invalid, so "
                f"no node of it runs ({len(problems)} problem{'s' if len(problems) > 1 else ''}"
                "; 'graphrunner validate' lists them all): " + "; ".join(shown),
                FailureType.INVALID_GRAPH,
            )
        pin(graph, inp.graph_hash)  # this worker's node activities find it here
        self._scope = _Scope(initial_state(graph))
        info = workflow.info()
        # Request ids name the first run: a reset's run takes the answers its base run got.
        self._desk.chain = info.workflow_id, info.first_execution_run_id
        for node in graph.nodes:
            if node.human is not None:
                self._desk.expect(node.name, 1, node.human)
        # Failures graphrunner means (ApplicationErrors, GraphrunnerErrors) fail the lifetime.
        # Anything else, above all the SDK's NondeterminismError and a sandbox's
        # RestrictedWorkflowAccessError, fails only the workflow task: the lifetime stalls,
        # visibly (`graphrunner status`), until a fixed deploy or a reset lets it go on.
        if inp.carry is not None:
            end = await self._go_on(graph, inp.carry)
        else:
            self._started_at = info.start_time
            start = graph.node(graph.start_node)
            # A start task gets the input as its data; a start plan as its one upstream
            # result.
            results = (
                []
                if start.kind is NodeKind.TASK
                else [NodeOutput(node=INPUT, iteration=0, output=inp.input)]
            )
            end = await self._walk(
                graph,
                start.name,
                data=inp.input,
                results=results,
                via=_START,
                depth=0,
                scope=self._scope,
            )
        if not isinstance(end, _Finished):  # only reachable through a bug in _walk
            raise _fail(f"lifetime ended at a JOIN into '{end.plan}'", FailureType.BAD_FAN_IN)
        workflow.set_current_details("finished")
        # The path stays out of the result: history holds it already (the client reads it
        # back), and a long lifetime's path would outgrow a payload's size limit. Only what
        # history cannot tell goes in: the steps a guardrail rejected.
        return LifetimeResult(
            output=end.output,
            graph_name=graph.name,
            graph_version=graph.version,
            graph_hash=inp.graph_hash,
            steps=self._rejections(),
            state=self._scope.state,
            telemetry=self._spent if self._spent != Telemetry() else None,
        )

    def _running(self) -> int:
        """How many of this run's steps are running now."""
        return sum(1 for s in self._steps if s.status is StepStatus.RUNNING)

    def _rejections(self) -> list[StepRecord]:
        """The steps a guardrail rejected: this run's, after the newest carried ones."""
        rejected = [s for s in self._steps if s.status is StepStatus.REJECTED]
        return [*self._carried_rejections, *rejected][-MAX_CARRIED_REJECTIONS:]

    # -- continue-as-new ------------------------------------------------------------------

    async def _go_on(self, graph: AgentGraph, carry: Carry) -> _Finished | _Joined:
        """Go on where the run before this one continued as new (see `Carry`)."""
        self._runs, self._seq0 = carry.runs, carry.seq
        self._started_at = carry.started_at or workflow.info().start_time
        self._iterations = Counter(carry.iterations)
        self._scope = _Scope(carry.state)
        self._spent = carry.spent or Telemetry()
        self.board.seed(self._spent.cost_usd)
        self._carried_rejections = list(carry.rejected)
        for made in carry.generated:
            self._generated[made.node, made.iteration] = made.graph, made.graph_hash
        for node in graph.nodes:
            if node.human is not None:
                self._desk.expect(node.name, self._iterations[node.name] + 1, node.human)
        for held in carry.answers:
            outcome = HumanOutcome.model_validate(held)
            self._desk.outcomes[outcome.request_id] = outcome
        self._desk.refused = [RefusedAnswer.model_validate(r) for r in carry.refused]
        up = carry.upstream
        return await self._walk(
            graph,
            carry.node,
            data=carry.data,
            results=carry.results,
            via=_carried_via(carry.parents, carry.edge),
            depth=0,
            scope=self._scope,
            upstream=(
                _Upstream(up.plan, up.results, _carried_via(up.parents, up.edge)) if up else None
            ),
        )

    def _continue_due(self, graph: AgentGraph) -> bool:
        """Whether to continue as new now: between two steps of the main path, when due.

        Due when Temporal suggests it (the history is getting long) or after
        ``defaults.continue_as_new_after`` steps in this run; never while the lifetime is
        paused or a person's answer is awaited (nothing may be in flight: see `Carry`).
        """
        if not self._steps:
            return False
        fork = self._fork
        if fork is not None and self._seq0 + len(self._steps) < fork.seed.step:
            return False  # a fork takes its memoized steps in one run
        after = graph.defaults.continue_as_new_after
        due = workflow.info().is_continue_as_new_suggested() or (
            after is not None and len(self._steps) >= after
        )
        return due and self.board.phase is LifetimePhase.RUNNING and not self._desk.pending

    async def _continue(
        self,
        graph: AgentGraph,
        name: str,
        *,
        data: Any,
        results: list[NodeOutput],
        via: _Via,
        upstream: _Upstream | None,
    ) -> None:
        """Continue as new, carrying the walk to ``name`` (returns if it must not, now).

        A history written before continuing as new existed has no marker here, and replays
        as it ran (on, in the same run).
        """
        if not workflow.patched(CONTINUE_PATCH):
            return
        # Running handlers (a pause, an answer, the first-question update) finish first.
        self.board.moving = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.board.moving = False
        if not self._continue_due(graph):  # a pause came meanwhile: go on here
            return
        inp = self._input
        if inp is None or self._started_at is None:
            raise _fail("lifetime input missing", FailureType.INTERNAL)
        chooser = via.parents[0] if via.parents else None
        made = self._generated.get(chooser) if chooser else None
        carry = Carry(
            runs=self._runs + 1,
            seq=self._seq0 + len(self._steps),
            started_at=self._started_at,
            node=name,
            data=data,
            results=results,
            parents=via.parents,
            edge=_edge_text(via.edge),
            upstream=CarriedUpstream(
                plan=upstream.plan,
                results=upstream.results,
                parents=upstream.via.parents,
                edge=_edge_text(upstream.via.edge),
            )
            if upstream
            else None,
            state=self._scope.state,
            iterations=dict(self._iterations),
            spent=self._spent if self._spent != Telemetry() else None,
            rejected=self._rejections(),
            generated=[
                GeneratedGraph(
                    node=chooser[0], iteration=chooser[1], graph=made[0], graph_hash=made[1]
                )
            ]
            if made and chooser
            else [],
            answers=[o.model_dump(mode="json") for o in self._desk.held()],
            refused=[r.model_dump(mode="json") for r in self._desk.refused],
        )
        workflow.set_current_details(
            f"continued as new after {carry.seq} steps (run {carry.runs + 1} goes on at **{name}**)"
        )
        # A fork's next runs keep its mark (records, steps) but not the steps it took.
        fork = inp.fork.model_copy(update={"memos": []}) if inp.fork is not None else None
        workflow.continue_as_new(inp.model_copy(update={"carry": carry, "fork": fork}))

    def _mark(self, phase: LifetimePhase) -> None:
        """Say where the lifetime is now (running, waiting for a person, ...).

        The one place the workflow changes its phase, so the ``GraphrunnerStatus`` search
        attribute and the UI can follow it: ``WAITING`` when an execution starts waiting for
        a person, ``RUNNING`` when it stops (pair them: with parallel waits the lifetime is
        ``waiting`` while any one waits). Pauses are the guardrails' to mark, endings the
        exit paths' (see `graphrunner.workflows._phase`).
        """
        self.board.mark(phase)

    @workflow.update(name=FIRST_QUESTION)
    async def first_question(self, request: QuestionRequest) -> FirstQuestion:
        """Wait until the lifetime waits for a person, or ends without asking anyone.

        With Update-with-Start (`GraphrunnerClient.start_and_ask`) a program starts a
        lifetime and gets its first question in one call.
        """
        board = self.board
        await workflow.wait_condition(lambda: board.waiting or board.done or board.moving)
        if board.moving and not board.waiting:  # asks nothing in this run: ask the next
            return FirstQuestion(phase=LifetimePhase.RUNNING, continued=True)
        return FirstQuestion(phase=board.phase, question=self._question())

    def _question(self) -> object:
        """What the lifetime asks now: its first pending human-input request, if any."""
        waiting = next(iter(self._desk.pending.values()), None)
        return waiting.request.model_dump(mode="json", by_alias=True) if waiting else None

    @workflow.query(name="status")
    def status(self) -> LifetimeStatus:
        """Where the lifetime is: running nodes and the steps taken so far."""
        inp = self._input
        if inp is None:
            raise ApplicationError("lifetime has not started yet")
        return LifetimeStatus(
            graph_name=inp.graph.name,
            graph_version=inp.graph.version,
            graph_hash=inp.graph_hash,
            tenant=inp.tenant,
            running=[
                f"{s.node}#{s.iteration}" for s in self._steps if s.status is StepStatus.RUNNING
            ],
            steps=self._steps,
            state=self._scope.state,
            waiting=self._desk.requests(),
            refused=self._desk.refused,
        )

    @workflow.query(name="state")
    def state(self) -> dict[str, Any] | None:
        """The lifetime state now (None when the graph declares none).

        While branches of a fan-out run, their updates are not in it yet: they join it at
        the JOIN, in branch order.
        """
        return self._scope.state

    # -- human input: the answers (see _run_human) -----------------------------------------

    @workflow.query(name=PENDING_QUERY)
    def pending(self) -> list[HumanRequest]:
        """The human-input requests the lifetime waits on now."""
        return self._desk.requests()

    @workflow.update(name=RESPOND_UPDATE)
    def respond(self, answer: HumanAnswer) -> HumanOutcome:
        """Answer a waiting human-input step; returns the outcome (the first, if answered)."""
        # Checked again: another answer may have settled the request since the validator ran.
        request_id = self._desk.check(answer)
        return self._settle(request_id, answer, "update")

    @respond.validator
    def _check_respond(self, answer: HumanAnswer) -> None:
        # A refusal goes to the caller and leaves no event in history.
        self._desk.check(answer)

    @workflow.signal(name=ANSWER_SIGNAL)
    def answer(self, payload: Any) -> None:
        """Answer by signal (the `temporal` CLI, the Web UI): the update's payload.

        A payload the lifetime cannot take is kept as refused (``status``, the memo and the
        Web UI's current details show it) and the lifetime keeps waiting.
        """
        try:
            answer = self._desk.parse(payload)
            request_id = self._desk.check(answer)
        except Refused as refused:
            self._desk.refuse(payload, refused.message, workflow.now())
            workflow.logger.warning("refused a signalled answer: %s", refused.message)
            self._show_desk()
            return
        self._settle(request_id, answer, "signal")

    def _settle(self, request_id: str, answer: HumanAnswer, via: str) -> HumanOutcome:
        outcome = self._desk.settle(request_id, answer, via=via, now=workflow.now())
        if not outcome.duplicate:
            self._show_desk()
        return outcome

    def _show_desk(self) -> None:
        """Publish the pending requests: memo (pending lists) and the UI's current details."""
        workflow.upsert_memo(self._desk.memo())
        if self._desk.pending or self._desk.refused:
            workflow.set_current_details(self._desk.details(workflow.info().workflow_id))
        else:
            workflow.set_current_details("answered; running")

    async def _walk(
        self,
        graph: AgentGraph,
        name: str,
        *,
        data: Any,
        results: list[NodeOutput],
        via: _Via,
        depth: int,
        scope: _Scope,
        mark: str = "",
        upstream: _Upstream | None = None,
    ) -> _Finished | _Joined:
        """Run nodes from ``name`` until a FINAL edge, or (inside a fan-out) a JOIN edge.

        ``mark`` (a map branch's ``[i/n]``) is shown with the first node's step summary.
        On the main path (depth 0) the lifetime may continue as new before any step.
        """
        while True:
            if depth == 0 and self._continue_due(graph):
                await self._continue(
                    graph, name, data=data, results=results, via=via, upstream=upstream
                )
            node = graph.node(name)
            if node.kind is NodeKind.TASK:
                task_result, step = await self._run_task(graph, node, data, via, scope, mark)
                mark = ""
                edge = graph.out_edges(node.name)[0]
                if isinstance(task_result, Rejection):
                    rejected = _rejected(step, task_result)
                    if upstream is not None:
                        # The plan that chose this task chooses again, knowing why.
                        name, results = upstream.plan, [*upstream.results, rejected]
                        via, upstream = _Via([(step.node, step.iteration)], "REJECTED"), None
                        continue
                    if edge.type is EdgeType.FINAL:
                        raise _fail(
                            f"guardrail '{task_result.rule}' rejected task '{node.name}' "
                            f"(iteration {step.iteration}), which ends the lifetime, and no "
                            f"plan chose it that could choose again: {task_result.message}",
                            FailureType.GUARDRAIL_REJECTED,
                        )
                    # A start task or a fan-out branch: the rejection flows on like a result.
                    produced = rejected
                else:
                    self._apply(graph, scope, step, task_result.update)
                    if edge.type is EdgeType.FINAL:
                        return _Finished(task_result.output)
                    produced = NodeOutput(
                        node=node.name, iteration=step.iteration, output=task_result.output
                    )
                if edge.target is None:  # validation forbids it; never route on a guess
                    raise _fail(f"edge {edge.label()} has no target", FailureType.BAD_FAN_IN)
                if edge.type is EdgeType.JOIN and depth > 0:
                    return _Joined(edge.target, produced)
                # A JOIN reached outside any fan-out is a fan-in of one.
                name, results = edge.target, [produced]
                via = _Via([(step.node, step.iteration)], edge.type)
                continue

            decision, plan_step = await self._run_plan(graph, node, results, via, scope)
            if isinstance(decision, Rejection):
                # The plan runs again with its own rejected decision among its results.
                results = [*results, _rejected(plan_step, decision)]
                via = _Via([(plan_step.node, plan_step.iteration)], "REJECTED")
                continue
            self._apply(graph, scope, plan_step, decision.update)
            chosen = decision.next_task_names
            if decision.items is not None:
                name, results = await self._map(graph, plan_step, decision, depth, scope)
                via = _Via([(r.node, r.iteration) for r in results], EdgeType.JOIN)
                continue
            if not chosen:
                return _Finished(decision.output)
            edges = {e.target: e for e in graph.out_edges(node.name) if e.target in chosen}
            parallel = all(edges[t].type is EdgeType.PARALLEL for t in chosen)
            if len(chosen) == 1 and not parallel:
                upstream = _Upstream(node.name, results, via)
                name, data = chosen[0], decision.data
                via = _Via([(plan_step.node, plan_step.iteration)], edges[name].type)
                continue
            if not parallel:
                raise _fail(
                    f"plan '{node.name}' chose {len(chosen)} tasks ({', '.join(chosen)}) but only "
                    "PARALLEL edges may fan out; choose one NORMAL successor or declare PARALLEL "
                    "edges",
                    FailureType.BAD_FAN_IN,
                )
            name, results = await self._fan_out(
                graph, plan_step, [(t, decision.data, "") for t in chosen], depth, scope
            )
            via = _Via([(r.node, r.iteration) for r in results], EdgeType.JOIN)

    async def _map(
        self,
        graph: AgentGraph,
        plan_step: StepRecord,
        decision: PlanResult,
        depth: int,
        scope: _Scope,
    ) -> tuple[str, list[NodeOutput]]:
        """Run one PARALLEL successor once per item the plan chose; JOIN in item order."""
        plan = plan_step.node
        items = decision.items or []
        chosen = decision.next_task_names
        edge = next((e for e in graph.out_edges(plan) if e.target in chosen), None)
        if len(chosen) != 1 or edge is None or edge.type is not EdgeType.PARALLEL:
            raise _fail(
                f"plan '{plan}' mapped over {', '.join(chosen) or 'no task'}; a map runs one "
                "task, which must be a PARALLEL successor of the plan",
                FailureType.BAD_FAN_IN,
            )
        task = chosen[0]
        cap = graph.defaults.map_cap()
        if len(items) > cap:
            raise _fail(
                f"plan '{plan}' mapped '{task}' over {len(items)} items, more than "
                f"defaults.max_map_items={cap} allows (raise it if the fan-out is meant)",
                FailureType.MAP_TOO_LARGE,
            )
        if not items:
            join = _join_after(graph, task)
            if join is None:
                raise _fail(
                    f"plan '{plan}' mapped '{task}' over no items, and '{task}' does not lead "
                    "straight to a JOIN plan to go on with",
                    FailureType.BAD_FAN_IN,
                )
            return join, []
        n = len(items)
        branches = [(task, item, f"[{i + 1}/{n}]") for i, item in enumerate(items)]
        return await self._fan_out(
            graph, plan_step, branches, depth, scope, limit=decision.max_concurrency
        )

    async def _fan_out(
        self,
        graph: AgentGraph,
        plan_step: StepRecord,
        branches_of: list[tuple[str, Any, str]],
        depth: int,
        scope: _Scope,
        *,
        limit: int | None = None,
    ) -> tuple[str, list[NodeOutput]]:
        """Run ``(task, data, mark)`` branches concurrently (at most ``limit`` at a time)."""
        plan = plan_step.node
        chosen = [task for task, _, _ in branches_of]
        branch_via = _Via([(plan_step.node, plan_step.iteration)], EdgeType.PARALLEL)
        # FIFO waiters: branches start in item order, on replay too.
        gate = asyncio.Semaphore(limit) if limit else None

        # Each branch starts from the state here; the JOIN applies their updates in order.
        scopes = [_Scope(scope.state) for _ in branches_of]

        async def run_branch(task: str, data: Any, mark: str, own: _Scope) -> _Finished | _Joined:
            async with gate or contextlib.nullcontext():
                return await self._walk(
                    graph,
                    task,
                    data=data,
                    results=[],
                    via=branch_via,
                    depth=depth + 1,
                    scope=own,
                    mark=mark,
                )

        branches = [
            asyncio.ensure_future(run_branch(*b, own))
            for b, own in zip(branches_of, scopes, strict=True)
        ]
        try:
            ends = await asyncio.gather(*branches)
        except BaseException:
            for branch in branches:
                branch.cancel()
            raise
        joins = {end.plan for end in ends if isinstance(end, _Joined)}
        if len(joins) != 1 or not all(isinstance(end, _Joined) for end in ends):
            raise _fail(
                f"the branches fanned out by plan '{plan}' ({', '.join(sorted(set(chosen)))}) "
                "must all reach "
                f"the same JOIN plan; they reached {sorted(joins) or 'a FINAL edge'}",
                FailureType.BAD_FAN_IN,
            )
        join = joins.pop()
        for own in scopes:
            for update in own.updates:
                self._join_update(graph, scope, update, join)
        return join, [end.result for end in ends if isinstance(end, _Joined)]

    def _begin(self, graph: AgentGraph, node: NodeSpec) -> StepRecord:
        done = self._iterations[node.name]
        cap = graph.defaults.max_iterations
        if done >= cap:
            raise _fail(
                f"node '{node.name}' would run for time {done + 1}, past max_iterations={cap}; "
                "the graph is looping without reaching a FINAL edge (raise "
                "defaults.max_iterations if the loop is legitimate)",
                FailureType.MAX_ITERATIONS,
            )
        self._iterations[node.name] = done + 1
        info = workflow.info()
        step = StepRecord(
            node=node.name,
            kind=node.kind,
            iteration=done + 1,
            status=StepStatus.RUNNING,
            started_at=workflow.now(),
            execution_id=execution_id(info.workflow_id, info.run_id, node.name, done + 1),
            seq=self._seq0 + len(self._steps),
        )
        self._steps.append(step)
        workflow.set_current_details(f"running **{node.name}** · iteration {done + 1}")
        return step

    def _options(
        self, graph: AgentGraph, node: NodeSpec, step: StepRecord, mark: str = ""
    ) -> dict[str, Any]:
        retry = graph.retry(node)
        return {
            "start_to_close_timeout": graph.timeout(node),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=retry.initial_interval_s or 1.0),
                backoff_coefficient=retry.backoff or 2.0,
                maximum_interval=timedelta(seconds=retry.max_interval_s)
                if retry.max_interval_s
                else None,
                maximum_attempts=retry.max_attempts or 0,
                # A payload the server refuses would be refused again on every retry.
                non_retryable_error_types=[*(retry.non_retryable_errors or []), _TOO_LARGE],
            ),
            "summary": step_summary(node.name, step.iteration, mark),
        }

    def _apply(
        self,
        graph: AgentGraph,
        scope: _Scope,
        step: StepRecord,
        update: dict[str, Any] | None,
    ) -> None:
        """Apply a node's state update to the state along its path."""
        if update is None:
            return
        try:
            scope.state = apply_update(graph, scope.state or {}, update)
        except StateError as exc:
            step.status = StepStatus.FAILED
            raise _fail(
                f"{step.kind.value} '{step.node}' (iteration {step.iteration}) returned a state "
                f"update the lifetime cannot apply: {exc}",
                FailureType.BAD_STATE_UPDATE,
            ) from None
        scope.updates.append(update)

    def _join_update(
        self, graph: AgentGraph, scope: _Scope, update: dict[str, Any], join: str
    ) -> None:
        """Apply one branch's update to the enclosing state at the JOIN into ``join``."""
        try:
            scope.state = apply_update(graph, scope.state or {}, update)
        except StateError as exc:
            raise _fail(
                f"the branches joining into plan '{join}' returned state updates that cannot "
                f"be combined: {exc}",
                FailureType.BAD_STATE_UPDATE,
            ) from None
        scope.updates.append(update)

    def _call_fields(
        self, node: NodeSpec, step: StepRecord, via: _Via, scope: _Scope
    ) -> dict[str, Any]:
        inp = self._input
        if inp is None:
            raise _fail("lifetime input missing", FailureType.GRAPH_MISMATCH)
        # Only what differs from the defaults, so history stays small (see WireModel).
        fields: dict[str, Any] = {
            "graph": inp.graph_hash[:GRAPH_KEY_LENGTH],
            "node": node.name,
            "iteration": step.iteration,
            "seq": step.seq,
        }
        if inp.tenant != "default":
            fields["tenant"] = inp.tenant
        if via.parents:
            fields["parents"] = via.parents
        if via.edge is not None:
            fields["edge"] = _edge_text(via.edge)
        if scope.state is not None:
            fields["state"] = scope.state
        if self._fork is not None:
            fields["forked_from"] = self._fork.mark
        return fields

    def _memo(self, step: StepRecord, kind: str) -> ForkMemo | None:
        """In a fork, the parent's outcome a step before the fork point takes instead."""
        return self._fork.memo(step, kind) if self._fork is not None else None

    async def _replayed(self, step: StepRecord, memo: ForkMemo) -> TaskResult | Rejection:
        """A fork's memoized task step: the parent's result (or rejection), in its turn."""
        if self._fork is None:  # only reachable through a bug in _memo
            raise _fail("a memo outside a fork", FailureType.INTERNAL)
        outcome = await self._fork.task(memo)
        if isinstance(outcome, Rejection):
            self._finish(step, StepStatus.REJECTED, [])
        return outcome

    @staticmethod
    def _finish(step: StepRecord, status: StepStatus, nxt: list[str]) -> None:
        step.status = status
        step.finished_at = workflow.now()
        step.next = nxt

    async def _settled(
        self, node: NodeSpec, step: StepRecord, start: Callable[[], Awaitable[_R]]
    ) -> _R | Rejection:
        """Run a node's activity: its result, or the rejection a guardrail gave it.

        A failure ends the step and raises: the node's failure (NodeFailed), the lifetime's
        cancellation, or a guardrail's abort as it is.
        """
        try:
            return await start()
        except GuardrailRejected as rejected:
            self._finish(step, StepStatus.REJECTED, [])
            return _rejection(rejected)
        except ActivityError as err:
            self._finish(step, StepStatus.FAILED, [])
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError() from err  # the lifetime was cancelled
            failure = self._node_failed(node, step, err)
            raise failure from failure.__cause__
        except ApplicationError:  # a guardrail aborted the lifetime here
            self._finish(step, StepStatus.FAILED, [])
            raise

    async def _run_task(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        data: Any,
        via: _Via,
        scope: _Scope,
        mark: str = "",
    ) -> tuple[TaskResult | Rejection, StepRecord]:
        if node.graph is not None:
            return await self._run_child(graph, node, data, via, scope, mark)
        if node.human is not None:
            return await self._run_human(graph, node, data, via, scope, mark)
        step = self._begin(graph, node)
        memo = self._memo(step, "task")
        call = TaskCall(**self._call_fields(node, step, via, scope), data=data)
        call.with_execution_id(step.execution_id)
        result = (
            await self._replayed(step, memo)
            if memo is not None
            else await self._settled(
                node,
                step,
                lambda: workflow.execute_activity(
                    RUN_TASK,
                    call,
                    result_type=TaskResult,
                    heartbeat_timeout=graph.heartbeat_timeout(node),
                    **self._options(graph, node, step, mark),
                ),
            )
        )
        if isinstance(result, Rejection):
            return result, step
        if result.tools is not None:  # only a built-in LLM task with tools asks for them
            result = await self._tool_rounds(graph, node, step, call, result, mark)
            if isinstance(result, Rejection):
                return result, step
        self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
        self._spend(result.telemetry)
        return result, step

    async def _tool_rounds(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        step: StepRecord,
        call: TaskCall,
        result: TaskResult,
        mark: str,
    ) -> TaskResult | Rejection:
        """Run the tool calls an LLM task's model asks for, round after round.

        Each call is a ``graphrunner.run_tool`` activity (summary ``task · iteration ·
        tool``), in the order the model gave them; then the LLM activity runs again (summary
        ``task · iteration · round N``) with their results, until the model answers without
        tools, or fails the task after ``max_tool_rounds`` rounds.
        """
        spec = node.llm
        if spec is None:  # only reachable through a bug in the activity
            raise _fail(f"node '{node.name}' is no LLM task", FailureType.INTERNAL)
        tools = {tool_name(path): path for path in spec.tools or []}
        attempts = result.telemetry.attempt or 1
        round_no = 1
        spent = Spent()  # the rounds' model calls so far, for the task's record
        while result.tools is not None:
            self._spend(result.telemetry)
            spent = _summed(spent, result.telemetry)
            if round_no > spec.max_tool_rounds:
                self._finish(step, StepStatus.FAILED, [])
                raise ApplicationError(
                    f"node '{node.name}' (task, iteration {step.iteration}) failed: the model "
                    f"still asked for tools after max_tool_rounds={spec.max_tool_rounds} rounds",
                    {"node": node.name, "iteration": step.iteration},
                    type=FailureType.NODE_FAILED,
                    non_retryable=True,
                )
            outcomes = []
            for index, request in enumerate(result.tools.calls, start=1):
                content = await self._tool(graph, node, step, call, tools, request, round_no, index)
                outcomes.append(ToolOutcome(id=request.id, name=request.name, content=content))
            round_no += 1
            turn = LlmTurn(
                round=round_no,
                attempts_before=attempts,
                spent_before=spent,
                messages=result.tools.messages,
                messages_ref=result.tools.messages_ref,
                results=outcomes,
            )
            again = call.model_copy(update={"turn": turn}).with_execution_id(step.execution_id)
            options = self._options(graph, node, step, mark)
            options["summary"] = f"{options['summary']} · round {round_no}"
            settled = await self._settled(
                node, step, self._round_start(graph, node, again, options)
            )
            if isinstance(settled, Rejection):
                return settled
            result = settled
            attempts += result.telemetry.attempt or 1
        return result

    @staticmethod
    def _round_start(
        graph: AgentGraph, node: NodeSpec, call: TaskCall, options: dict[str, Any]
    ) -> Callable[[], Awaitable[TaskResult]]:
        def start() -> Awaitable[TaskResult]:
            return workflow.execute_activity(
                RUN_TASK,
                call,
                result_type=TaskResult,
                heartbeat_timeout=graph.heartbeat_timeout(node),
                **options,
            )

        return start

    async def _tool(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        step: StepRecord,
        call: TaskCall,
        tools: dict[str, str],
        request: ToolRequest,
        round_no: int,
        index: int,
    ) -> str:
        """Run one tool call as its own activity; what the model is told of it (JSON text)."""
        path = tools.get(request.name)
        if path is None:
            known = ", ".join(tools) or "none"
            return json.dumps({"error": f"there is no tool {request.name!r} (tools: {known})"})
        info = workflow.info()
        tool_call = ToolCallInput(
            **call.model_dump(exclude={"data", "turn"}, exclude_defaults=True),
            tool=path,
            name=request.name,
            call_id=request.id,
            arguments=request.arguments,
            round=round_no,
            index=index,
        ).with_execution_id(
            tool_execution_id(
                info.workflow_id, info.run_id, node.name, step.iteration, round_no, index
            )
        )
        options = self._options(graph, node, step)
        options["summary"] = f"{options['summary']} · {request.name}"
        try:
            done = await workflow.execute_activity(
                RUN_TOOL, tool_call, result_type=TaskResult, **options
            )
        except GuardrailRejected as rejected:
            return json.dumps({"error": f"rejected by guardrail: {_rejection(rejected).message}"})
        except ActivityError as err:
            self._finish(step, StepStatus.FAILED, [])
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError() from err
            failure = self._node_failed(node, step, err)
            raise failure from failure.__cause__
        self._spend(done.telemetry)
        text = json.dumps(done.output, ensure_ascii=False, default=str)
        return text if len(text) <= MAX_TOOL_RESULT_CHARS else clip(text, MAX_TOOL_RESULT_CHARS)

    async def _run_plan(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        results: list[NodeOutput],
        via: _Via,
        scope: _Scope,
    ) -> tuple[PlanResult | Rejection, StepRecord]:
        step = self._begin(graph, node)
        out = graph.out_edges(node.name)
        call = PlanCall(**self._call_fields(node, step, via, scope), results=results)
        call.with_execution_id(step.execution_id)
        successors = [e.target for e in out if e.target is not None]
        options = self._options(graph, node, step)

        def start() -> Awaitable[PlanResult]:
            if node.local:
                return workflow.execute_local_activity(
                    RUN_PLAN, call, result_type=PlanResult, **options
                )
            return workflow.execute_activity(
                RUN_PLAN,
                call,
                result_type=PlanResult,
                heartbeat_timeout=graph.heartbeat_timeout(node),
                **options,
            )

        memo = self._memo(step, "plan")
        if memo is not None and self._fork is not None:
            decision = await self._fork.plan(memo)
            if isinstance(decision, Rejection):
                self._finish(step, StepStatus.REJECTED, [])
        else:
            decision = await self._settled(node, step, start)
        if isinstance(decision, Rejection):
            return decision, step
        # The activity checks this too; the workflow never trusts a result it routes on.
        undeclared = [t for t in decision.next_task_names if t not in successors]
        can_finish = any(e.type is EdgeType.FINAL for e in out)
        if undeclared or (not decision.next_task_names and not can_finish):
            self._finish(step, StepStatus.FAILED, [])
            raise _fail(
                f"plan '{node.name}' chose {undeclared or 'to finish'}, which its declared "
                f"edges do not allow",
                FailureType.UNDECLARED_SUCCESSOR,
            )
        if decision.graph_errors is not None:  # a generated graph that is invalid
            self._finish(step, StepStatus.REJECTED, [])
            return _invalid_graph(decision.graph_errors), step
        self._note_generated(step, decision)
        self._finish(step, StepStatus.COMPLETED, decision.next_task_names or ["END"])
        self._spend(decision.telemetry)
        return decision, step

    async def _run_human(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        data: Any,
        via: _Via,
        scope: _Scope,
        mark: str = "",
    ) -> tuple[TaskResult | Rejection, StepRecord]:
        """Ask a person and wait, in the workflow (no activity slot), for a valid answer.

        The request id is the step's execution id in the lifetime's first run. The answer
        comes by the ``graphrunner.respond`` update or the ``graphrunner.answer`` signal; when
        ``timeout_s`` passes first, ``on_timeout`` decides (a default answer, or the task
        fails). The answer is then recorded (kind ``human``) by a local activity the
        guardrails gate like any node, and flows on as the task's output.
        """
        human = node.human
        if human is None:  # only reachable through a bug in _run_task
            raise _fail(f"node '{node.name}' asks no person", FailureType.INTERNAL)
        step = self._begin(graph, node)
        memo = self._memo(step, "human")
        if memo is not None:  # a fork before its fork point: the parent's answer, nobody asked
            taken = await self._replayed(step, memo)
            if isinstance(taken, Rejection):
                return taken, step
            self._desk.expect(node.name, step.iteration + 1, human)
            self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
            update = {human.state: taken.output} if human.state else None
            return TaskResult(output=taken.output, update=update), step
        # The request id outlives resets (see HumanDesk): a reset run replays the answers
        # its base run took and is handed the ones after the reset point; both name it.
        request_id = self._desk.request_id(node.name, step.iteration)
        asked = workflow.now()
        timeout = timedelta(seconds=human.timeout_s) if human.timeout_s else None
        self._desk.ask(
            HumanRequest(
                lifetime_id=workflow.info().workflow_id,
                request_id=request_id,
                node=node.name,
                iteration=step.iteration,
                question=render_prompt(human.prompt, data),
                schema_=human.schema_or_any(),
                since=asked,
                deadline=asked + timeout if timeout else None,
                on_timeout="fail" if human.on_timeout == "fail" else "respond",
                assignee=human.assignee,
                labels=human.labels,
            ),
            human,
        )
        self._show_desk()
        self._mark(LifetimePhase.WAITING)
        tenant = self._input.tenant if self._input is not None else "default"
        human_wait_started(graph.name, tenant, node.name)
        try:
            await workflow.wait_condition(
                lambda: request_id in self._desk.outcomes,
                timeout=timeout,
                timeout_summary=f"{step_summary(node.name, step.iteration, mark)} deadline",
            )
            outcome = self._desk.outcomes[request_id]
        except TimeoutError:
            timed_out = self._desk.time_out(request_id, workflow.now())
            self._stop_waiting()
            waited = (workflow.now() - asked).total_seconds()
            human_wait_ended(graph.name, tenant, node.name, "timeout", waited)
            if timed_out is None:
                self._finish(step, StepStatus.FAILED, [])
                raise ApplicationError(
                    f"node '{node.name}' (task, iteration {step.iteration}) failed: nobody "
                    f"answered within timeout_s={human.timeout_s:g} (on_timeout: fail)",
                    {"node": node.name, "iteration": step.iteration},
                    type=FailureType.NODE_FAILED,
                    non_retryable=True,
                ) from None
            outcome = timed_out
        except asyncio.CancelledError:
            self._desk.withdraw(request_id)
            self._stop_waiting()
            waited = (workflow.now() - asked).total_seconds()
            human_wait_ended(graph.name, tenant, node.name, "cancelled", waited)
            self._finish(step, StepStatus.FAILED, [])
            raise
        else:
            self._stop_waiting()
            waited = outcome.waited_ms / 1000
            human_wait_ended(graph.name, tenant, node.name, outcome.via, waited)
        call = HumanCall(
            **self._call_fields(node, step, via, scope),
            data=outcome.data,
            by=outcome.by,
            via=outcome.via,
            asked_at=asked,
            answered_at=outcome.answered_at,
            waited_ms=outcome.waited_ms,
        )
        call.with_execution_id(step.execution_id)
        recorded = await self._settled(
            node,
            step,
            lambda: workflow.execute_local_activity(
                RECORD_HUMAN,
                call,
                result_type=TaskResult,
                start_to_close_timeout=timedelta(seconds=30),
                # The state DB may be away for a while: the lifetime waits for it, as the
                # guardrail local activities do.
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
                summary=step_summary(node.name, step.iteration, mark),
            ),
        )
        if isinstance(recorded, Rejection):
            return recorded, step
        self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
        update = {human.state: outcome.data} if human.state else None
        return TaskResult(output=outcome.data, update=update), step

    def _stop_waiting(self) -> None:
        # Not in a finally: an evicted workflow's coroutine is closed outside its event loop.
        # One RUNNING per WAITING: the board counts the waits, so the lifetime stays
        # ``waiting`` while any parallel step still waits.
        self._mark(LifetimePhase.RUNNING)
        self._show_desk()

    def _spend(self, telemetry: Telemetry) -> None:
        spent = self._spent
        self._spent = Telemetry(
            tokens_in=min(spent.tokens_in + telemetry.tokens_in, 2**53),
            tokens_out=min(spent.tokens_out + telemetry.tokens_out, 2**53),
            cost_usd=min(spent.cost_usd + telemetry.cost_usd, 1e9),
        )
        self.board.spend(self._spent.cost_usd)

    def _note_generated(self, step: StepRecord, decision: PlanResult) -> None:
        """Pin the graph a plan generated (the activity validated it; check it again)."""
        if decision.graph is None:
            return
        generated = AgentGraph.model_validate(decision.graph)
        found = generated.content_hash()
        if found != decision.graph_hash:
            raise _fail(
                f"plan '{step.node}' (iteration {step.iteration}) returned a graph whose hash "
                f"{found[:12]} is not the {str(decision.graph_hash)[:12]} its activity pinned",
                FailureType.GRAPH_MISMATCH,
            )
        self._generated[step.node, step.iteration] = generated, found

    def _child_input(
        self, graph: AgentGraph, node: NodeSpec, data: Any, via: _Via
    ) -> LifetimeInput:
        """The input of a sub-graph task's child lifetime, or a failure saying why none."""
        inp = self._input
        if inp is None:
            raise _fail("lifetime input missing", FailureType.GRAPH_MISMATCH)
        child: tuple[AgentGraph, str] | None
        if node.graph == GENERATED:
            chooser = via.parents[0] if via.parents else None
            child = self._generated.get(chooser) if chooser else None
            if child is None:
                raise _fail(
                    f"task '{node.name}' runs the graph its plan generates, but "
                    f"{f'plan {chooser[0]!r}' if chooser else 'no plan'} returned none "
                    "(PlanResult.goto(..., graph=...))",
                    FailureType.SUBGRAPH_FAILED,
                )
        else:
            found = graph.subgraph(node)
            child = (found, found.content_hash()) if found is not None else None
            if child is None:
                raise _fail(
                    f"task '{node.name}' runs sub-graph '{node.graph}', which is not pinned",
                    FailureType.SUBGRAPH_FAILED,
                )
        depth = (inp.parent.depth if inp.parent else 0) + 1
        if depth > MAX_CHILD_DEPTH:
            raise _fail(
                f"task '{node.name}' would start a child lifetime {depth} levels deep; at "
                f"most {MAX_CHILD_DEPTH} are allowed (a generated graph that keeps "
                "generating?)",
                FailureType.SUBGRAPH_FAILED,
            )
        info = workflow.info()
        return LifetimeInput(
            graph=child[0],
            graph_hash=child[1],
            input=data,
            tenant=inp.tenant,
            format=INPUT_FORMAT,
            parent=ParentLink(
                lifetime_id=info.workflow_id,
                run_id=info.run_id,
                node=node.name,
                iteration=0,  # set when the step begins
                depth=depth,
            ),
        )

    async def _run_child(
        self,
        graph: AgentGraph,
        node: NodeSpec,
        data: Any,
        via: _Via,
        scope: _Scope,
        mark: str = "",
    ) -> tuple[TaskResult | Rejection, StepRecord]:
        """Run a sub-graph task: its graph as a child lifetime, whose output is its result.

        The child has its own lifetime id (``<parent id>/<node>-<iteration>-<suffix>``), the
        parent's tenant, and the parent's guardrails (see the guardrail interceptor). Closing
        the parent asks the child to cancel (``ParentClosePolicy.REQUEST_CANCEL``); a child
        that fails, is aborted or cancelled fails this node, naming it.
        """
        child_input = self._child_input(graph, node, data, via)
        step = self._begin(graph, node)
        memo = self._memo(step, "child")
        if memo is not None:  # a fork before its fork point: the parent's child, reused
            step.child = memo.child
            taken = await self._replayed(step, memo)
            if isinstance(taken, Rejection):
                return taken, step
            self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
            return taken, step
        info = workflow.info()
        child_id = _child_id(info.workflow_id, node.name, step.iteration)
        step.child = child_id
        if child_input.parent is not None:
            child_input.parent.iteration = step.iteration
            child_input.parent.execution_id = step.execution_id
        child = child_input.graph
        # The parent's search attributes (none if the parent has none), with the child's
        # graph and version, and the child's own status and spend.
        own: dict[str, object] = {
            GRAPH_KEY.name: child.name,
            VERSION_KEY.name: child.version,
            STATUS_KEY.name: LifetimePhase.RUNNING.value,
            COST_KEY.name: 0.0,
        }
        pairs = [
            SearchAttributePair(p.key, own[p.key.name]) if p.key.name in own else p
            for p in info.typed_search_attributes
            if p.key.name != FORK_KEY.name  # a fork's child is no fork of anything
        ]
        try:
            result = await workflow.execute_child_workflow(
                LIFETIME_WORKFLOW,
                child_input,
                id=child_id,
                task_queue=node.task_queue,
                result_type=LifetimeResult,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                execution_timeout=timedelta(seconds=node.timeout_s) if node.timeout_s else None,
                static_summary=step_summary(node.name, step.iteration, mark),
                static_details=f"sub-graph {child.name} {child.version} of {info.workflow_id}",
                memo={"graph": child.name, "version": child.version, "tenant": child_input.tenant},
                search_attributes=TypedSearchAttributes(pairs) if pairs else None,
            )
        except GuardrailRejected as rejected:
            self._finish(step, StepStatus.REJECTED, [])
            return _rejection(rejected), step
        except ChildWorkflowError as err:
            self._finish(step, StepStatus.FAILED, [])
            current = asyncio.current_task()
            if isinstance(err.cause, CancelledError) and current and current.cancelling():
                raise asyncio.CancelledError() from err  # this lifetime was cancelled
            failure = self._child_failed(node, step, child_id, err)
            await self._record_child(
                ChildCall(
                    **self._call_fields(node, step, via, scope),
                    data=data,
                    child=child_id,
                    error=str(failure),
                    started_at=step.started_at,
                    finished_at=step.finished_at,
                ),
                step,
                mark,
            )
            raise failure from failure.__cause__
        except ApplicationError:  # a guardrail aborted the lifetime here
            self._finish(step, StepStatus.FAILED, [])
            raise
        except asyncio.CancelledError:  # this lifetime was cancelled: so was the child
            self._finish(step, StepStatus.FAILED, [])
            raise
        self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
        telemetry = result.telemetry or Telemetry()
        await self._record_child(
            ChildCall(
                **self._call_fields(node, step, via, scope),
                data=data,
                child=child_id,
                output=result.output,
                spent=telemetry,
                started_at=step.started_at,
                finished_at=step.finished_at,
            ),
            step,
            mark,
        )
        self._spend(telemetry)
        return TaskResult(output=result.output, telemetry=telemetry), step

    async def _record_child(self, call: ChildCall, step: StepRecord, mark: str) -> None:
        """Write a sub-graph task's execution record (its child's id, output or failure).

        A history written before sub-graph tasks were recorded has no marker here, and
        replays as it ran (no record).
        """
        if not workflow.patched(CHILD_RECORD_PATCH):
            return
        call.with_execution_id(step.execution_id)
        await workflow.execute_local_activity(
            RECORD_CHILD,
            call,
            result_type=TaskResult,
            start_to_close_timeout=timedelta(seconds=30),
            # The state DB may be away for a while: the lifetime waits for it, as the
            # guardrail local activities do.
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            summary=f"{step_summary(step.node, step.iteration, mark)} · record",
        )

    @staticmethod
    def _child_failed(
        node: NodeSpec, step: StepRecord, child_id: str, err: ChildWorkflowError
    ) -> ApplicationError:
        cause: BaseException | None = err.cause
        if isinstance(cause, CancelledError):
            reason = f"child lifetime '{child_id}' was cancelled"
        elif isinstance(cause, ApplicationError):
            text = str(cause)
            if cause.type and not text.startswith(f"{cause.type}: "):
                text = f"{cause.type}: {text}"
            reason = f"child lifetime '{child_id}' failed: {text}"
        else:
            kind = type(cause).__name__ if cause else "ChildWorkflowError"
            reason = f"child lifetime '{child_id}' ended: {kind}: {cause or err}"
        failure = ApplicationError(
            f"node '{node.name}' (task, iteration {step.iteration}) failed: "
            + clip(reason, _MESSAGE_LIMIT),
            {"node": node.name, "iteration": step.iteration, "child": child_id},
            type=FailureType.NODE_FAILED,
            non_retryable=True,
        )
        failure.__cause__ = err if len(reason) <= _MESSAGE_LIMIT else None
        return failure

    @staticmethod
    def _node_failed(node: NodeSpec, step: StepRecord, err: ActivityError) -> ApplicationError:
        cause: BaseException | None = err.cause
        reason = str(cause) if cause else str(err)
        if isinstance(cause, ApplicationError) and cause.type:
            if not reason.startswith(f"{cause.type}: "):  # an activity's message may have it
                reason = f"{cause.type}: {reason}"
        elif isinstance(cause, FailureError) and type(cause).__name__ != "ApplicationError":
            reason = f"{type(cause).__name__}: {reason}"
        failure = ApplicationError(
            f"node '{node.name}' ({node.kind.value}, iteration {step.iteration}) failed: "
            + clip(reason, _MESSAGE_LIMIT),
            {"node": node.name, "iteration": step.iteration},
            type=FailureType.NODE_FAILED,
            non_retryable=True,
        )
        # The activity's failure rides along as the cause (the UI shows its stack trace)
        # unless it is large: the lifetime's failure must stay well under the server's 2 MiB
        # payload limit, or failing the lifetime would itself fail, on every retry.
        failure.__cause__ = err if len(reason) <= _MESSAGE_LIMIT else None
        return failure
