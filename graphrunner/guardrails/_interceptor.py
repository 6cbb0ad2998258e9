"""The worker interceptor that enforces guardrails around every Task and Plan activity.

`GuardrailInterceptor` is registered by `graphrunner.worker.build_worker` on every worker, so
no graph can run without it. For each AgentLifetime it:

1. pins the effective policy at start: a local activity returns the worker's global and
   tenant layers, which are merged with the graph's own (pinned in the input) layer;
2. wraps each node activity the workflow schedules: checks before scheduling, then checks the
   result; tenant totals come from the state DB through local activities;
3. acts: ``reject_execution`` raises `GuardrailRejected` into the workflow (which routes the
   rejection to a plan), ``pause_lifetime`` waits for a resume (update or signal
   ``graphrunner.resume``), ``abort_lifetime`` fails the lifetime (non-retryable
   ``GuardrailAborted``). Every decision is recorded by a local activity.

Everything it decides derives from the workflow input, activity results and handler inputs,
all in history, so `temporalio.worker.Replayer` (given this interceptor) reaches the same
decisions.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from graphrunner._types import RUN_PLAN, RUN_TASK, LifetimeInput, PlanCall, Rejection, TaskCall
from graphrunner.errors import FailureType, GuardrailRejected, PolicyError
from graphrunner.guardrails._eval import Tally
from graphrunner.guardrails._expr import parse_expression
from graphrunner.guardrails._guard import LifetimeGuard, Phase, Verdict, execution_row
from graphrunner.guardrails._policy import Action, Rule, merge_policies
from graphrunner.guardrails._wire import (
    ABORT,
    GUARDRAIL_QUERY,
    LOAD_POLICY,
    MANUAL_ABORT,
    MANUAL_PAUSE,
    PAUSE,
    RECORD_DECISION,
    RESUME,
    TENANT_CHARGE,
    TENANT_USAGE,
    AbortRequest,
    Decision,
    DecisionInput,
    GuardrailStatus,
    PauseInfo,
    PauseRequest,
    PolicyRequest,
    PolicySnapshot,
    ResumeRequest,
    ResumeResult,
    TenantChargeInput,
    TenantTotals,
    TenantUsageInput,
)

__all__ = ["GuardrailInterceptor"]

LIFETIME_WORKFLOW = "AgentLifetime"  # graphrunner.workflows.LIFETIME_WORKFLOW, without the import
_NODE_ACTIVITIES = (RUN_TASK, RUN_PLAN)
_LOCAL_TIMEOUT = timedelta(seconds=30)
_LOCAL_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
# Patch id (workflow.patched) of guardrails v2, which (1) reuses the totals a tenant charge
# returned as the next execution's "before" totals within one workflow task instead of
# reading them again, (2) counts admitted executions as in flight (fan-out siblings see each
# other) and (3) does not count an execution rejected before it ran. Asked once, before the
# first command of the lifetime: the core SDK rejects a patch marker recorded after a local
# activity's in the same workflow task when it replays a paused lifetime.
_V2 = "graphrunner-guardrails-v2"


class GuardrailInterceptor(Interceptor):
    """Enforces guardrail policies on every AgentLifetime a worker runs.

    Pass it to `temporalio.worker.Replayer` too when replaying lifetime histories: the
    decisions it took are part of them.
    """

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        """The per-workflow interceptor class."""
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._guardian = _Guardian()
        super().init(_Outbound(outbound, self._guardian))
        # Here, not in execute_workflow: an update that arrives with the first activation is
        # applied before the workflow starts. workflow.info() is not available yet, so every
        # workflow of the worker gets the handlers (graphrunner workers run only lifetimes).
        self._guardian.register()

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await self._execute(input)
        # Not GeneratorExit: an evicted workflow's coroutine is closed outside the
        # workflow's event loop, where nothing may be awaited.
        except (Exception, asyncio.CancelledError):
            await _handlers_finished()
            raise
        await _handlers_finished()
        return result

    async def _execute(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type == LIFETIME_WORKFLOW and input.args:
            inp = input.args[0]
            if isinstance(inp, LifetimeInput):
                await self._guardian.start(inp)
        if not self._guardian.abortable:
            return await self.next.execute_workflow(input)
        # The lifetime runs as a task so that an abort by hand can end it wherever it is.
        run = asyncio.ensure_future(self.next.execute_workflow(input))
        aborted = asyncio.ensure_future(
            workflow.wait_condition(lambda: self._guardian.aborted is not None)
        )
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
        raise self._guardian.abort_error()


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, guardian: _Guardian) -> None:
        super().__init__(next)
        self._guardian = guardian

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity not in _NODE_ACTIVITIES or not self._guardian.gates():
            return self.next.start_activity(input)
        # The check must run before the activity is scheduled, so the handle the workflow
        # awaits is a task that checks, schedules, then checks the result.
        gated = self._guardian.guard(input, self.next.start_activity)
        return asyncio.ensure_future(gated)  # type: ignore[return-value]

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity not in _NODE_ACTIVITIES or not self._guardian.gates():
            return self.next.start_local_activity(input)
        gated = self._guardian.guard(input, self.next.start_local_activity)
        return asyncio.ensure_future(gated)  # type: ignore[return-value]


class _Guardian:
    """The guardrail side of one lifetime: its guard, decisions, pauses and handlers."""

    def __init__(self) -> None:
        self.active = False
        self._guard: LifetimeGuard | None = None
        self._input: LifetimeInput | None = None
        self._decisions: list[Decision] = []
        self._paused: dict[int, tuple[PauseInfo, str]] = {}
        self._next_pause = 0
        self._generation = 0
        self._manual: PauseInfo | None = None
        # (workflow time, totals) returned by this lifetime's latest tenant charge.
        self._charged: tuple[datetime, dict[str, Tally]] | None = None
        self._v2 = False  # see _V2; False when replaying a history from before it
        self._manual_at: list[tuple[str, int]] = []  # (node, iteration) held by hand
        self.aborted: Decision | None = None  # an abort by hand, once recorded
        self._aborting = False

    # -- start ----------------------------------------------------------------------------

    def register(self) -> None:
        workflow.set_query_handler(GUARDRAIL_QUERY, self.status)
        workflow.set_update_handler(RESUME, self.resume, validator=self.validate_resume)
        workflow.set_signal_handler(RESUME, self.resume_signal)
        workflow.set_update_handler(PAUSE, self.pause, validator=self.validate_pause)
        workflow.set_update_handler(ABORT, self.abort, validator=self.validate_abort)

    async def start(self, inp: LifetimeInput) -> None:
        self._input = inp
        self._v2 = workflow.patched(_V2)
        snapshot = await workflow.execute_local_activity(
            LOAD_POLICY,
            PolicyRequest(tenant=inp.tenant),
            result_type=PolicySnapshot,
            summary="guardrails · policy",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        graph_policy = inp.graph.guardrails
        policy = merge_policies(snapshot.global_policy, graph_policy, snapshot.tenant_policy)
        self._guard = LifetimeGuard(policy)
        if self._guard.tenant_keys and not snapshot.ledger:
            raise ApplicationError(
                "this lifetime has tenant-scope guardrail rules but the worker keeps no state "
                "DB to count them in; enable records (GRAPHRUNNER_RECORD=1)",
                type=FailureType.GUARDRAIL_CONFIG,
                non_retryable=True,
            )
        self.active = True

    # -- the check around each node activity ----------------------------------------------

    def gates(self) -> bool:
        """Whether the next node activity must go through `guard`.

        Not when the lifetime has no rules and is not paused by hand: nothing could stop it,
        and the node is scheduled directly (guardrails v2; older histories were always gated,
        and replay keeps them so).
        """
        if not self.active:
            return False
        if self._v2 and self._manual is None and self._guard is not None:
            return bool(self._guard.policy.rules)
        return True

    async def guard(
        self,
        input: StartActivityInput | StartLocalActivityInput,
        start: Callable[[Any], Awaitable[Any]],
    ) -> Any:
        guard = self._guard
        call = input.args[0] if input.args else None
        if guard is None or not isinstance(call, TaskCall | PlanCall):
            return await start(input)
        kind = "task" if isinstance(call, TaskCall) else "plan"
        eid = call.execution_id
        row = execution_row(
            node=call.node_name, kind=kind, iteration=call.iteration, status="scheduled"
        )
        while True:
            if self._manual is not None:
                await self._wait_manual(call)
            tenant_keys = list(guard.tenant_keys)  # a resume may have replaced a tenant rule
            tenant = await self._tenant_usage(tenant_keys) if tenant_keys else None
            verdict = guard.check(
                Phase.BEFORE, row, execution_id=eid, elapsed_s=self._elapsed(), tenant=tenant
            )
            if verdict is None:
                # A pause by hand that came while the tenant ledger was read holds this
                # node too (older histories let it through).
                if self._manual is None or not self._v2:
                    break
            elif not await self._act(verdict, call, kind, row, ran=False):
                break
        if self._v2:
            guard.admit(eid, row, self._elapsed())
        if self._paused or self._manual is not None:
            self._show_pauses()  # the workflow has just shown this node as running
        try:
            result = await start(input)
        except BaseException:
            guard.drop(eid)
            raise
        telemetry = result.telemetry
        row = execution_row(
            node=call.node_name,
            kind=kind,
            iteration=call.iteration,
            status="succeeded",
            attempt=telemetry.attempt or 1,
            telemetry=telemetry.model_dump(),
        )
        tenant = None
        if tenant_keys:
            tenant = await self._tenant_charge(eid, guard, row)
        while True:
            verdict = guard.check(
                Phase.AFTER, row, execution_id=eid, elapsed_s=self._elapsed(), tenant=tenant
            )
            if verdict is None or not await self._act(verdict, call, kind, row, ran=True):
                break
            if tenant is not None and list(guard.tenant_keys) != tenant_keys:
                # Resumed with a new tenant condition: read its counters (this execution
                # was charged under the old ones only, so they miss it).
                tenant_keys = list(guard.tenant_keys)
                tenant = await self._tenant_usage(tenant_keys) if tenant_keys else None
        guard.fold(row, self._elapsed(), execution_id=eid)
        return result

    async def _wait_manual(self, call: TaskCall | PlanCall) -> None:
        """Hold a node while the lifetime is paused by hand, saying so where users look."""
        held = (call.node_name, call.iteration)
        self._manual_at.append(held)
        self._show_pauses()
        try:
            await workflow.wait_condition(lambda: self._manual is None)
        finally:
            self._manual_at.remove(held)
        if not self._show_pauses():
            workflow.set_current_details(f"resumed before {call.node_name} · {call.iteration}")

    def _show_pauses(self) -> bool:
        """Show every hold in the Temporal UI's current details; False when nothing is held.

        The workflow sets the details to the node it starts, so a hold that began earlier
        (another fan-out branch) is shown again whenever the interceptor runs.
        """
        lines = [
            f"**paused** by guardrail **{info.rule}** at {info.node} · {info.iteration}: "
            f"{info.message or info.condition} ({_values(info.observed)})"
            for info, _ in self._paused.values()
        ]
        if self._manual is not None:
            at = ", ".join(f"{node} · {iteration}" for node, iteration in self._manual_at)
            where = f" before {at}" if at else ""
            lines.append(f"**paused** by hand{where}: {self._manual.message or 'no reason given'}")
        if not lines:
            return False
        resume = f"Resume with `graphrunner resume {workflow.info().workflow_id}`"
        if self._paused:
            resume += " (add `--when` to raise the limit)"
        workflow.set_current_details("\n\n".join([*lines, resume]))
        return True

    async def _act(
        self,
        verdict: Verdict,
        call: TaskCall | PlanCall,
        kind: str,
        row: dict[str, object],
        *,
        ran: bool,
    ) -> bool:
        """Carry out a verdict; True when the lifetime was resumed and must be checked again."""
        rule = verdict.rule
        decision = await self._record(
            rule.name,
            rule.action.value,
            verdict.phase.value,
            scope=rule.scope.value,
            condition=str(rule.when),
            observed=verdict.observed,
            message=rule.message,
            call=call,
            kind=kind,
            reject=rule.action is Action.REJECT_EXECUTION,
            ran=ran,
        )
        where = f"{kind} '{call.node_name}' (iteration {call.iteration})"
        values = _values(verdict.observed)
        if rule.action is Action.ABORT_LIFETIME:
            raise ApplicationError(
                f"guardrail '{rule.name}' aborted the lifetime at {where}, "
                f"{verdict.phase.value} it ran: {rule.message or 'no message'} "
                f"[{rule.when}; observed {values}]",
                decision.model_dump(mode="json"),
                type=FailureType.GUARDRAIL_ABORTED,
                non_retryable=True,
            )
        if rule.action is Action.REJECT_EXECUTION:
            # A rejected execution that ran spent what it spent; one rejected before it ran
            # never happened, so it does not count (older histories counted it: _V2).
            if self._guard is not None and (ran or not self._v2):
                rejected = {**row, "status": "rejected"}
                self._guard.fold(rejected, self._elapsed(), execution_id=call.execution_id)
            raise GuardrailRejected(
                Rejection(
                    rule=rule.name,
                    message=rule.message,
                    condition=str(rule.when),
                    observed=verdict.observed,
                    phase=verdict.phase.value,
                )
            )
        await self._hold(
            PauseInfo(
                rule=rule.name,
                message=rule.message,
                condition=str(rule.when),
                observed=verdict.observed,
                node=call.node_name,
                iteration=call.iteration,
                since=workflow.now(),
            ),
            call.execution_id,
        )
        return True

    async def _hold(self, info: PauseInfo, execution_id: str) -> None:
        token = self._next_pause
        self._next_pause += 1
        self._paused[token] = (info, execution_id)
        generation = self._generation
        self._show_pauses()
        try:
            await workflow.wait_condition(lambda: self._generation > generation)
        finally:
            self._paused.pop(token, None)
        if not self._show_pauses():
            workflow.set_current_details(f"resumed after guardrail **{info.rule}**")

    # -- handlers -------------------------------------------------------------------------

    def status(self) -> GuardrailStatus:
        rules = self._guard.policy.rules if self._guard else []
        paused = [info for info, _ in self._paused.values()]
        if self._manual is not None:
            # One entry per node the pause holds (none yet: it holds the next one to start).
            manual = self._manual
            held = [
                manual.model_copy(update={"node": n, "iteration": i}) for n, i in self._manual_at
            ]
            paused.extend(held or [manual])
        return GuardrailStatus(
            rules=[
                {"name": r.name, "when": str(r.when), "scope": r.scope, "action": r.action}
                for r in rules
            ],
            paused=paused,
            decisions=self._decisions,
        )

    def validate_resume(self, request: ResumeRequest) -> None:
        self._replacement(request)

    def _replacement(self, request: ResumeRequest) -> Rule | None:
        """The rule a resume request installs; ValueError (rejecting it) when invalid."""
        if not self._paused and self._manual is None:
            raise ValueError("the lifetime is not paused")
        if request.when is None:
            if request.rule is not None:
                raise ValueError("'rule' needs 'when': the new condition of that rule")
            return None
        rule_name = request.rule or next((i.rule for i, _ in self._paused.values()), None)
        if rule_name is None:
            raise ValueError("name the rule whose condition 'when' replaces")
        guard = self._guard
        if guard is None:
            raise ValueError("the lifetime has not started")
        try:
            old = guard.policy.rule(rule_name)
        except KeyError:
            known = ", ".join(r.name for r in guard.policy.rules) or "none"
            raise ValueError(f"no guardrail rule '{rule_name}' (rules: {known})") from None
        try:
            when = parse_expression(request.when)
        except PolicyError as exc:
            raise ValueError(f"invalid condition: column {exc.column}: {exc.message}") from None
        return old.model_copy(update={"when": when})

    async def resume(self, request: ResumeRequest) -> ResumeResult:
        rule = self._replacement(request)
        paused = sorted({info.rule for info, _ in self._paused.values()})
        if self._manual is not None:
            paused.append(self._manual.rule)
        replaced: dict[str, str] = {}
        guard = self._guard
        if rule is not None and guard is not None:
            guard.replace_rule(rule)
            replaced[rule.name] = str(rule.when)
        if guard is not None:
            # Resuming lets the held executions through the rules that held them (the rules
            # still apply to every other execution), except the rule given a new condition:
            # its holds are checked again under it. Before v2 a new condition waived nothing.
            for info, execution_id in self._paused.values():
                if rule is None or (self._v2 and info.rule != rule.name):
                    guard.waive(info.rule, execution_id)
        # Cleared now, not when the waiters wake: a status query must not show them meanwhile.
        self._paused.clear()
        self._manual = None
        if self._v2:
            # Wake the holds now: one that begins while the resume is being recorded is not
            # released by it (before v2 it was, and paused again at once).
            self._generation += 1
        await self._record(
            ",".join(paused),
            "resume",
            "resume",
            scope="",
            condition="; ".join(f"{k}: {v}" for k, v in replaced.items()),
            observed={},
            message=request.reason,
        )
        if not self._v2:
            self._generation += 1
        return ResumeResult(resumed=paused, replaced=replaced)

    async def resume_signal(self, raw: Any) -> None:
        # A signal cannot be refused: an invalid one is logged and dropped, harming nothing.
        try:
            request = ResumeRequest.model_validate(raw if raw is not None else {})
            self._replacement(request)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            workflow.logger.warning("ignored graphrunner.resume signal: %s", exc)
            return
        await self.resume(request)

    def validate_pause(self, request: PauseRequest) -> None:
        if self._manual is not None:
            raise ValueError("the lifetime is already paused by hand")

    async def pause(self, request: PauseRequest) -> PauseInfo:
        info = PauseInfo(rule=MANUAL_PAUSE, message=request.reason, since=workflow.now())
        self._manual = info
        await self._record(
            MANUAL_PAUSE,
            "pause_lifetime",
            "before",
            scope="",
            condition="",
            observed={},
            message=request.reason,
        )
        if self._manual is info:  # not resumed while the decision was being recorded
            self._show_pauses()
        return info

    @property
    def abortable(self) -> bool:
        """Whether an abort by hand can end this lifetime (guardrails v2 and later)."""
        return self.active and self._v2

    def validate_abort(self, request: AbortRequest) -> None:
        if not self.abortable:
            raise ValueError(
                "this lifetime cannot be aborted by graphrunner (it started before "
                "graphrunner supported it); use 'temporal workflow terminate'"
            )
        if self._aborting:
            raise ValueError("the lifetime is already being aborted")

    async def abort(self, request: AbortRequest) -> Decision:
        self._aborting = True
        decision = await self._record(
            MANUAL_ABORT,
            "abort_lifetime",
            "abort",
            scope="",
            condition="",
            observed={},
            message=request.reason,
        )
        self.aborted = decision
        return decision

    def abort_error(self) -> ApplicationError:
        """The failure that ends a lifetime aborted by hand."""
        decision = self.aborted
        reason = (decision.message if decision else "") or "no reason given"
        return ApplicationError(
            f"lifetime aborted by hand: {reason}",
            decision.model_dump(mode="json") if decision else None,
            type=FailureType.GUARDRAIL_ABORTED,
            non_retryable=True,
        )

    # -- activities -----------------------------------------------------------------------

    async def _record(
        self,
        rule: str,
        action: str,
        phase: str,
        *,
        scope: str,
        condition: str,
        observed: dict[str, float | str],
        message: str,
        call: TaskCall | PlanCall | None = None,
        kind: str | None = None,
        reject: bool = False,
        ran: bool = False,
    ) -> Decision:
        info = workflow.info()
        seq = len(self._decisions)
        identity = f"{info.workflow_id}/{info.run_id}/decision/{seq}"
        decision = Decision(
            decision_id=hashlib.sha256(identity.encode()).hexdigest()[:32],
            seq=seq,
            rule=rule,
            action=action,
            phase=phase,
            scope=scope,
            condition=condition,
            observed=observed,
            message=message,
            node=call.node_name if call else None,
            iteration=call.iteration if call else None,
            execution_id=call.execution_id if call else None,
            decided_at=workflow.now(),
        )
        self._decisions.append(decision)
        inp = self._input
        headers = None
        if call is not None:
            headers = call.model_dump(mode="json", exclude={"data", "results"})
        await workflow.execute_local_activity(
            RECORD_DECISION,
            DecisionInput(
                decision=decision,
                lifetime_id=info.workflow_id,
                run_id=info.run_id,
                tenant=inp.tenant if inp else "",
                graph_name=inp.graph.name if inp else "",
                call=headers,
                kind=kind,
                reject=reject,
                ran=ran,
            ),
            summary=f"guardrail · {rule} · {action}",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        return decision

    async def _tenant_usage(self, keys: list[str]) -> dict[str, Tally]:
        # The totals this lifetime's last charge returned are as fresh as a read would be
        # when no workflow task has passed since (the next node is scheduled in the same
        # task as the previous result): the only charges they can miss are of executions
        # already in flight, the bound tenant caps promise. This halves the local
        # activities per execution (each costs ~3 ms of SDK work, see bench/README.md).
        charged = self._charged
        if (
            charged is not None
            and charged[0] == workflow.now()
            and self._v2
            and all(key in charged[1] for key in keys)
        ):
            return charged[1]
        inp = self._input
        totals = await workflow.execute_local_activity(
            TENANT_USAGE,
            TenantUsageInput(tenant=inp.tenant if inp else "", keys=keys),
            result_type=TenantTotals,
            summary="guardrails · tenant usage",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        return _tallies(totals)

    async def _tenant_charge(
        self, execution_id: str, guard: LifetimeGuard, row: dict[str, object]
    ) -> dict[str, Tally]:
        inp = self._input
        totals = await workflow.execute_local_activity(
            TENANT_CHARGE,
            TenantChargeInput(
                tenant=inp.tenant if inp else "",
                execution_id=execution_id,
                deltas=guard.tenant_contributions(row, self._elapsed()),
            ),
            result_type=TenantTotals,
            summary="guardrails · tenant charge",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        tallies = _tallies(totals)
        self._charged = workflow.now(), tallies
        return tallies

    @staticmethod
    def _elapsed() -> float:
        return (workflow.now() - workflow.info().start_time).total_seconds()


async def _handlers_finished() -> None:
    """Wait until every signal and update handler has finished (every exit path does).

    A resume that releases the lifetime's last node, or a pause that lands during it, is
    still recording its decision when the lifetime could end: ending then would fail its
    caller with ``AcceptedUpdateCompletedWorkflow`` and leave the decision unrecorded.
    """
    await workflow.wait_condition(workflow.all_handlers_finished)


def _tallies(totals: TenantTotals) -> dict[str, Tally]:
    return {k: Tally(v.total, v.count, v.lo, v.hi) for k, v in totals.totals.items()}


def _values(observed: dict[str, float | str]) -> str:
    def show(value: float | str) -> str:
        if isinstance(value, str):
            return repr(value)
        return f"{value:.10g}"

    return ", ".join(f"{k} = {show(v)}" for k, v in observed.items()) or "no values"
