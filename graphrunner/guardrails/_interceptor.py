"""The worker interceptor that enforces guardrails around every Task and Plan activity.

`GuardrailInterceptor` is registered by `graphrunner.worker.build_worker` on every worker, so
no graph can run without it. This module is the Temporal plumbing only; the jobs live apart:

- `graphrunner.guardrails._gate`: pins the policy at start, checks each node activity before
  scheduling and after its result, and acts (reject, pause, abort);
- `graphrunner.guardrails._holds`: the pause/resume/abort state machine, its handlers and
  what the Temporal UI shows;
- `graphrunner.guardrails._io`: the local activities (policy layers, decisions, the tenant
  ledger's reservations).

Everything it decides derives from the workflow input, activity results and handler inputs,
all in history, so `temporalio.worker.Replayer` (given this interceptor) reaches the same
decisions.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.worker import (
    ContinueAsNewInput,
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from graphrunner._answers import RECORD_HUMAN
from graphrunner._llm_wire import RUN_TOOL
from graphrunner._types import RUN_PLAN, RUN_TASK, LifetimeInput, LifetimeResult, check_format
from graphrunner.guardrails._gate import Gate, WorkerLayers
from graphrunner.guardrails._sources import PolicySource
from graphrunner.workflows._lifetime import LIFETIME_WORKFLOW
from graphrunner.workflows._phase import ENDS_LIFETIME, board_of, phase_of

__all__ = ["GuardrailInterceptor"]

# A human step is gated when its answer is recorded (kind "human", latency the wait); a
# tool call of an LLM task like any node (kind "tool").
_NODE_ACTIVITIES = (RUN_TASK, RUN_PLAN, RECORD_HUMAN, RUN_TOOL)


class GuardrailInterceptor(Interceptor):
    """Enforces guardrail policies on every AgentLifetime a worker runs.

    Pass it to `temporalio.worker.Replayer` too when replaying lifetime histories: the
    decisions it took are part of them. Layers and ledger matter only to lifetimes that
    start on this worker; a replay takes what the history pinned.

    Args:
        policies: The worker's global and tenant policy layers (the same the worker's
            ``load_policy`` activity serves).
        ledger: Whether the worker keeps a state DB (tenant-scope rules need one).
    """

    def __init__(self, policies: PolicySource | None = None, *, ledger: bool = False) -> None:
        layers = WorkerLayers(policies or PolicySource(), ledger)
        # The SDK asks for a class, not an instance: the worker's layers ride on a subclass.
        self._inbound = type("_BoundInbound", (_Inbound,), {"layers": layers})

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        """The per-workflow interceptor class."""
        return self._inbound


class _Inbound(WorkflowInboundInterceptor):
    layers = WorkerLayers()

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._gate = Gate(self.layers)
        super().init(_Outbound(outbound, self._gate))
        # Here, not in execute_workflow: an update that arrives with the first activation is
        # applied before the workflow starts. workflow.info() is not available yet, so every
        # workflow of the worker gets the handlers (graphrunner workers run only lifetimes).
        self._gate.holds.register()

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # The lifetime's phase board (None for other workflows): this is the lifetime's very
        # last exit, so the phase it ends in is shown here, after every handler finished.
        board = board_of(workflow.instance())
        try:
            result = await self._execute(input)
        except workflow.ContinueAsNewError:
            # The lifetime goes on in a new run: settle what it owes the tenant ledger, as
            # any run's exit does (its guardrail totals ride in the new run's input).
            await self._gate.finish()
            await _handlers_finished()
            raise
        # Not GeneratorExit: an evicted workflow's coroutine is closed outside the
        # workflow's event loop, where nothing may be awaited.
        except (Exception, asyncio.CancelledError) as exc:
            phase = phase_of(exc)
            if board is not None:
                board.finish(phase)
            # Only when the lifetime ends: any other error (a bug, nondeterminism) fails the
            # workflow task, the lifetime goes on after a fix, and its nodes still run.
            if isinstance(exc, ENDS_LIFETIME):
                if isinstance(exc, asyncio.CancelledError):
                    await self._gate.holds.record_cancel()
                await self._gate.finish()
            await _handlers_finished()
            if board is not None:
                board.close(phase)
            raise
        if board is not None:
            board.finish(phase_of(None))
        await self._gate.finish()
        await _handlers_finished()
        if board is not None:
            board.close(phase_of(None))
        return result

    async def _execute(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type == LIFETIME_WORKFLOW and input.args:
            inp = input.args[0]
            if isinstance(inp, LifetimeInput):
                check_format(inp)
                await self._gate.start(inp)
        holds = self._gate.holds
        if not holds.active:
            return await self.next.execute_workflow(input)
        # The lifetime runs as a task so that an abort by hand can end it wherever it is.
        run = asyncio.ensure_future(self.next.execute_workflow(input))
        aborted = asyncio.ensure_future(workflow.wait_condition(lambda: holds.aborted is not None))
        try:
            await asyncio.wait([run, aborted], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # A cancelled lifetime: hand the cancellation to the lifetime itself, so that its
            # running nodes are asked to cancel, and end as it ends.
            aborted.cancel()
            run.cancel()
            return await run
        if run.done():
            aborted.cancel()
            return run.result()
        # Not in the workflow task that completes the abort update: the server refuses to
        # close a workflow and complete an update in one task ("unexpected workflow task
        # failure"), so a 1 ms timer moves the failure to the next one.
        await workflow.sleep(timedelta(milliseconds=1), summary="guardrails · abort")
        # Failing the workflow closes it: a node still running can no longer complete, and
        # its heartbeats report the lifetime gone.
        raise holds.abort_error()


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, gate: Gate) -> None:
        super().__init__(next)
        self._gate = gate

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        # A lifetime's next run starts under the guardrails this one pinned.
        inp = input.args[0] if input.args else None
        if isinstance(inp, LifetimeInput):
            input.args = [self._gate.carry(inp), *input.args[1:]]
        self.next.continue_as_new(input)

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity not in _NODE_ACTIVITIES or not self._gate.gates():
            return self.next.start_activity(input)
        # The check must run before the activity is scheduled, so the handle the workflow
        # awaits is a task that checks, schedules, then checks the result.
        gated = self._gate.run(input, self.next.start_activity)
        return asyncio.ensure_future(gated)  # type: ignore[return-value]

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity not in _NODE_ACTIVITIES or not self._gate.gates():
            return self.next.start_local_activity(input)
        gated = self._gate.run(input, self.next.start_local_activity)
        return asyncio.ensure_future(gated)  # type: ignore[return-value]

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        # A child lifetime (a sub-graph task) runs under this lifetime's guardrails, counting
        # on from its totals; when it completes, what it spent counts here too.
        inp = input.args[0] if input.args else None
        if input.workflow != LIFETIME_WORKFLOW or not isinstance(inp, LifetimeInput):
            return await self.next.start_child_workflow(input)
        # A pause by hand holds a child's start as it holds any node of this lifetime.
        if inp.parent is not None and self._gate.holds.paused_by_hand:
            await self._gate.holds.wait_manual(inp.parent.node, inp.parent.iteration)
        inp = self._gate.inherit(inp)
        input.args = [inp, *input.args[1:]]
        handle = await self.next.start_child_workflow(input)
        gate = self._gate

        def fold(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                result = done.result()
                if isinstance(result, LifetimeResult):
                    gate.fold_child(inp, result)

        # Registered before the workflow awaits the handle, so it runs first.
        handle.add_done_callback(fold)
        return handle


async def _handlers_finished() -> None:
    """Wait until every signal and update handler has finished (every exit path does).

    A resume that releases the lifetime's last node, or a pause that lands during it, is
    still recording its decision when the lifetime could end: ending then would fail its
    caller with ``AcceptedUpdateCompletedWorkflow`` and leave the decision unrecorded.
    """
    await workflow.wait_condition(workflow.all_handlers_finished)
