"""The gate around each node activity: check before scheduling, run, check the result.

`Gate.start` pins the lifetime's effective policy: the graph's own layer (in the input) and,
when the worker has global or tenant layers (or the graph has tenant rules to count), the
worker's layers read by a local activity behind the ``graphrunner-policy-layers`` patch
marker. A lifetime with no layers therefore starts with no marker and no local activity, and
replays on a worker that has gained layers since (the marker is absent: the patch says no).

Rules that read ``state.<field>`` apply to a lifetime only when its graph declares that
field as a number or integer (`for_state`): a worker's global or tenant policy spans many
graphs, and a rule about one graph's state is not broken by another graph that lacks it.

`Gate.run` checks one execution. Execution and lifetime rules are checked in the workflow.
Tenant rules are checked in the state DB, atomically with a reservation of the execution's
ceiling (`graphrunner.guardrails._io`): the node's ``max_tokens`` / ``max_cost_usd``, else the
policy's ``reserve``, else nothing. A rule that fires acts before the execution runs, and
the verdict comes back in the local activity's result, so replay is deterministic. After the
result, the tenant totals "with my actual" are the reserve's totals plus this execution's
actual figures, computed here; the settlement itself rides on the lifetime's next reserve.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import StartActivityInput, StartLocalActivityInput

from graphrunner._types import (
    InheritedGuard,
    LifetimeInput,
    LifetimeResult,
    PlanCall,
    Rejection,
    TaskCall,
)
from graphrunner.errors import FailureType, GuardrailRejected
from graphrunner.graph._model import StateField
from graphrunner.guardrails._eval import Tally
from graphrunner.guardrails._guard import LifetimeGuard, Phase, Verdict, execution_row
from graphrunner.guardrails._holds import Holds, show_values
from graphrunner.guardrails._io import LedgerIO, ceiling_of, execution_header
from graphrunner.guardrails._policy import (
    Action,
    Policy,
    Reserve,
    Scope,
    for_state,
    merge_policies,
)
from graphrunner.guardrails._sources import PolicySource
from graphrunner.guardrails._wire import PauseInfo, TallyValue, TenantReserveInput

__all__ = ["POLICY_LAYERS", "Gate", "WorkerLayers"]

#: Patch id (``workflow.patched``) whose marker says the worker's layers were pinned.
POLICY_LAYERS = "graphrunner-policy-layers"
_SEVERITY = {Action.ABORT_LIFETIME: 3, Action.PAUSE_LIFETIME: 2, Action.REJECT_EXECUTION: 1}
_IN_WORKFLOW = (Scope.EXECUTION, Scope.LIFETIME)
_NO_RESERVE = Reserve()


@dataclass(frozen=True)
class WorkerLayers:
    """What a worker brings to every lifetime: its policy layers, and whether it has a state DB.

    Attributes:
        policies: The worker's global and tenant layers.
        ledger: Whether the worker keeps a state DB (tenant rules need one).
    """

    policies: PolicySource = field(default_factory=PolicySource)
    ledger: bool = False

    def any_for(self, tenant: str) -> bool:
        """Whether a lifetime of ``tenant`` has a worker layer to pin."""
        return self.policies.global_policy is not None or tenant in self.policies.tenant_policies


def _tallies(totals: dict[str, TallyValue]) -> dict[str, Tally]:
    return {k: Tally(v.total, v.count, v.lo, v.hi) for k, v in totals.items()}


class Gate:
    """The guardrail side of one lifetime: its guard, the check around each node, its holds.

    Args:
        layers: The worker's layers.
    """

    def __init__(self, layers: WorkerLayers) -> None:
        self._layers = layers
        self.io = LedgerIO()
        self.holds = Holds(self.io)
        self._guard: LifetimeGuard | None = None
        self._input: LifetimeInput | None = None
        self._reserve = _NO_RESERVE
        self._ledger = False
        # Tenant totals each reserve returned (without its execution), for the after check.
        self._seen: dict[str, dict[str, Tally]] = {}
        self._origin: datetime | None = None  # when the lifetime's first run started

    # -- start ----------------------------------------------------------------------------

    async def start(self, inp: LifetimeInput) -> None:
        """Pin the effective policy (see the module docstring) and start enforcing it."""
        self._input = self.io.input = inp
        graph_policy = inp.graph.guardrails
        carry = inp.carry
        if carry is not None:
            self._origin = carry.started_at
            if carry.guard is not None:
                # A run after continue-as-new: the policy the first run pinned, its totals.
                self._resume(carry.guard)
                return
        inherited = inp.parent.guard if inp.parent is not None else None
        if inherited is not None:
            self._start_child(inherited, graph_policy, inp.graph.state)
            return
        counts_tenant = graph_policy is not None and any(
            rule.scope is Scope.TENANT for rule in graph_policy.rules
        )
        wanted = self._layers.any_for(inp.tenant) or (counts_tenant and self._layers.ledger)
        # In replay the marker decides: found, the local activity's result is in history too.
        if (wanted or workflow.unsafe.is_replaying()) and workflow.patched(POLICY_LAYERS):
            snapshot = await self.io.load_policy()
            policy = merge_policies(snapshot.global_policy, graph_policy, snapshot.tenant_policy)
            ledger = snapshot.ledger
        else:
            # No layers pinned: graph rules only. Tenant rules among them were pinned with a
            # ledger if the worker had one, so here there is none.
            policy = merge_policies(None, graph_policy, None)
            ledger = False
        # A worker's rules over state fields apply to lifetimes whose graph declares them as
        # numbers; the graph's own rules were checked against its state by validation.
        policy = for_state(policy, inp.graph.state)
        self._ledger = ledger
        guard = LifetimeGuard(policy)
        if guard.tenant_keys and not ledger:
            raise ApplicationError(
                "this lifetime has tenant-scope guardrail rules but the worker keeps no state "
                "DB to count them in; enable records (GRAPHRUNNER_RECORD=1)",
                type=FailureType.GUARDRAIL_CONFIG,
                non_retryable=True,
            )
        self._guard = self.holds.guard = guard
        self._reserve = policy.reserve or _NO_RESERVE
        self.holds.active = True

    def _start_child(
        self,
        inherited: InheritedGuard,
        graph_policy: Policy | None,
        graph_state: dict[str, StateField] | None,
    ) -> None:
        """Start a child lifetime under its parent's guardrails.

        The parent's pinned policy goes over the child graph's (no layers are read: the
        parent pinned them), and lifetime aggregates count on from the parent's totals.
        """
        policy = merge_policies(inherited.policy, graph_policy, None)
        # The parent's rules over state fields the child's graph does not declare leave it
        # alone, as a worker's rules do (see `for_state`).
        policy = for_state(policy, graph_state)
        guard = LifetimeGuard(policy)
        guard.seed(_tallies(inherited.totals))
        if guard.tenant_keys and not inherited.ledger:
            raise ApplicationError(
                "this child lifetime has tenant-scope guardrail rules but its parent's worker "
                "kept no state DB to count them in; enable records (GRAPHRUNNER_RECORD=1)",
                type=FailureType.GUARDRAIL_CONFIG,
                non_retryable=True,
            )
        self._ledger = inherited.ledger
        self._guard = self.holds.guard = guard
        self._reserve = policy.reserve or _NO_RESERVE
        self.holds.active = True

    def _resume(self, carried: InheritedGuard) -> None:
        """Start a lifetime's next run under the guardrails its earlier runs pinned."""
        guard = LifetimeGuard(carried.policy)
        guard.seed(_tallies(carried.totals))
        self._ledger = carried.ledger
        self._guard = self.holds.guard = guard
        self._reserve = carried.policy.reserve or _NO_RESERVE
        self.holds.active = True

    def carry(self, inp: LifetimeInput) -> LifetimeInput:
        """The input of this lifetime's next run (continue-as-new), carrying its guardrails.

        The pinned policy and lifetime totals go along, so the next run neither pins worker
        layers again nor forgets what earlier runs spent.
        """
        guard, carry = self._guard, inp.carry
        if guard is None or carry is None:
            return inp
        carried = InheritedGuard(
            policy=guard.policy, totals=self._totals(guard), ledger=self._ledger
        )
        return inp.model_copy(update={"carry": carry.model_copy(update={"guard": carried})})

    @staticmethod
    def _totals(guard: LifetimeGuard) -> dict[str, TallyValue]:
        return {
            key: TallyValue(total=t.total, count=t.count, lo=t.lo, hi=t.hi)
            for key, t in guard.lifetime_totals().items()
        }

    def inherit(self, inp: LifetimeInput) -> LifetimeInput:
        """The input of a child lifetime this one starts, carrying its guardrails."""
        guard = self._guard
        if guard is None or inp.parent is None or not guard.policy.rules:
            return inp
        totals = self._totals(guard)
        link = inp.parent.model_copy(
            update={
                "guard": InheritedGuard(policy=guard.policy, totals=totals, ledger=self._ledger)
            }
        )
        return inp.model_copy(update={"parent": link})

    def fold_child(self, inp: LifetimeInput, result: LifetimeResult) -> None:
        """Count a finished child lifetime in this one's totals.

        It counts as one execution of its sub-graph task that spent what the child's
        executions spent.
        """
        guard, link = self._guard, inp.parent
        if guard is None or link is None or result.telemetry is None:
            return
        row = execution_row(
            node=link.node,
            kind="task",
            iteration=link.iteration,
            status="succeeded",
            telemetry=result.telemetry.model_dump(),
        )
        guard.fold(row, self._elapsed())

    async def finish(self) -> None:
        """Settle what the lifetime owes the tenant ledger (every exit path calls this)."""
        guard = self._guard
        if guard is not None and self.io.owing:
            await self.io.flush(list(guard.tenant_keys))

    # -- the check around each node activity ----------------------------------------------

    def gates(self) -> bool:
        """Whether the next node activity must go through `run`.

        Not when the lifetime has no rules and is not paused by hand: nothing could stop it,
        and the node is scheduled directly.
        """
        if self._guard is None or not self.holds.active:
            return False
        return self.holds.paused_by_hand or bool(self._guard.policy.rules)

    async def run(
        self,
        input: StartActivityInput | StartLocalActivityInput,
        start: Callable[[Any], Awaitable[Any]],
    ) -> Any:
        """Check, schedule, check the result; act on what fires."""
        guard = self._guard
        call = input.args[0] if input.args else None
        if guard is None or not isinstance(call, TaskCall | PlanCall):
            return await start(input)
        kind = call.record_kind  # task, plan, or human (a human step's answer)
        eid = call.execution_id
        row = execution_row(
            node=call.node_name,
            kind=kind,
            iteration=call.iteration,
            status="scheduled",
            state=call.state,
        )
        while True:
            if self.holds.paused_by_hand:
                await self._settle_owed()
                await self.holds.wait_manual(call.node_name, call.iteration)
            verdict = await self._check_before(guard, call, kind, row)
            if verdict is None:
                if not self.holds.paused_by_hand:
                    break
                # Paused by hand while the ledger was consulted: this node waits too, and
                # gives its reservation back meanwhile.
                self.io.settle(eid, None)
            else:
                await self._act(verdict, call, kind, row, ran=False)
        guard.admit(eid, row, self._elapsed())
        if self.holds.holding:
            self.holds.show()  # the workflow has just shown this node as running
        try:
            result = await start(input)
        except BaseException:
            guard.drop(eid)
            self._seen.pop(eid, None)
            self.io.settle(eid, None)
            raise
        telemetry = result.telemetry
        row = execution_row(
            node=call.node_name,
            kind=kind,
            iteration=call.iteration,
            status="succeeded",
            attempt=telemetry.attempt or 1,
            telemetry=telemetry.model_dump(),
            state=call.state,
        )
        tenant = self._with_actual(guard, eid, row)
        while True:
            verdict = guard.check(
                Phase.AFTER, row, execution_id=eid, elapsed_s=self._elapsed(), tenant=tenant
            )
            if verdict is None:
                break
            keys = list(guard.tenant_keys)
            await self._act(verdict, call, kind, row, ran=True)
            if tenant is not None and list(guard.tenant_keys) != keys:
                # Resumed with a new tenant condition: read its counters (this execution
                # was settled under the old ones only, so they miss it).
                read = await self.io.reserve(self._ledger_input(guard))
                tenant = _tallies(read.totals)
        guard.fold(row, self._elapsed(), execution_id=eid)
        if self.io.owes and self.io.in_flight:
            # Fan-out siblings still run: the lifetime's next reserve may be far off, and
            # this execution's reservation could expire before it, its spend then counting
            # nowhere. Settle now.
            await self._settle_owed()
        return result

    async def _check_before(
        self,
        guard: LifetimeGuard,
        call: TaskCall | PlanCall,
        kind: str,
        row: dict[str, object],
    ) -> Verdict | None:
        """The rule to act on before ``call`` runs; reserves its ceiling if none fires."""
        eid = call.execution_id
        elapsed = self._elapsed()
        local = guard.check(
            Phase.BEFORE, row, execution_id=eid, elapsed_s=elapsed, scopes=_IN_WORKFLOW
        )
        if not guard.tenant_keys or (local and local.rule.action is Action.ABORT_LIFETIME):
            return local
        rules = [
            r
            for r in guard.policy.rules
            if r.scope is Scope.TENANT and not guard.waived(r.name, eid)
        ]
        ceiling, expires_at = (
            ceiling_of(self._input, call, kind, self._reserve)
            if self._input
            else (row, workflow.now())
        )
        inp = self._ledger_input(guard)
        inp.execution_id = eid
        inp.deltas = guard.tenant_contributions(ceiling, elapsed)
        inp.expires_at = expires_at
        inp.rules = rules
        inp.row = {k: v for k, v in ceiling.items() if isinstance(v, int | float | str)}
        inp.elapsed_s = elapsed
        inp.reserve = local is None
        result = await self.io.reserve(inp)
        self._seen[eid] = _tallies(result.totals)
        if result.verdict is None:
            return local
        fired = next(r for r in rules if r.name == result.verdict.rule)
        tenant = Verdict(fired, Phase.BEFORE, result.verdict.observed)
        if local is None:
            return tenant
        # The most severe wins; between equals, the first in the policy.
        order = [r.name for r in guard.policy.rules]
        return min(
            (local, tenant),
            key=lambda v: (-_SEVERITY[v.rule.action], order.index(v.rule.name)),
        )

    def _with_actual(
        self, guard: LifetimeGuard, eid: str, row: dict[str, object]
    ) -> dict[str, Tally] | None:
        """Tenant totals with this execution's actual figures, owing them to the ledger."""
        seen = self._seen.pop(eid, None)
        if not guard.tenant_keys:
            return None
        deltas = guard.tenant_contributions(row, self._elapsed())
        self.io.settle(eid, deltas)
        totals = {k: Tally(t.total, t.count, t.lo, t.hi) for k, t in (seen or {}).items()}
        for key, (value, counts) in deltas.items():
            totals.setdefault(key, Tally()).add(value, counts)
        return totals

    def _ledger_input(self, guard: LifetimeGuard) -> TenantReserveInput:
        tenant = self._input.tenant if self._input else ""
        return TenantReserveInput(tenant=tenant, keys=list(guard.tenant_keys))

    async def _settle_owed(self) -> None:
        """Settle now what the lifetime owes (before a hold, which may last)."""
        guard = self._guard
        if guard is not None and guard.tenant_keys and self.io.owes:
            await self.io.reserve(self._ledger_input(guard))

    async def _act(
        self,
        verdict: Verdict,
        call: TaskCall | PlanCall,
        kind: str,
        row: dict[str, object],
        *,
        ran: bool,
    ) -> None:
        """Carry out a verdict; returns only after a pause was resumed (check again)."""
        rule = verdict.rule
        inp = self._input
        decision = await self.io.record(
            rule.name,
            rule.action.value,
            verdict.phase.value,
            scope=rule.scope.value,
            condition=str(rule.when),
            observed=verdict.observed,
            message=rule.message,
            execution=execution_header(inp, call, kind) if inp else None,
            reject=rule.action is Action.REJECT_EXECUTION,
            ran=ran,
        )
        where = f"{kind} '{call.node_name}' (iteration {call.iteration})"
        values = show_values(verdict.observed)
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
            # never happened, so it does not count.
            if ran and self._guard is not None:
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
        await self._settle_owed()
        await self.holds.hold(
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

    def _elapsed(self) -> float:
        """Seconds since the lifetime started (its first run, if it continued as new)."""
        return (workflow.now() - (self._origin or workflow.info().start_time)).total_seconds()
