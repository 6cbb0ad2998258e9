"""The guardrail interceptor's I/O: the local activities that pin, record and count.

Everything the interceptor reads or writes outside the workflow goes through here, as local
activities whose results land in history (so a replay reaches the same decisions without
touching the state DB):

- ``load_policy``: the worker's global and tenant policy layers, pinned at lifetime start;
- ``record_decision``: one guardrail decision, beside the execution records;
- ``tenant_reserve``: one atomic step on the tenant ledger per execution: settle this
  lifetime's finished executions, check the next one's ceiling against the tenant's rules,
  and reserve it. Settling is deferred to the next reserve (one local activity per
  execution) and flushed on every exit of the lifetime (`LedgerIO.flush`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

from graphrunner._observe import guardrail_action
from graphrunner._types import ExecutionHeader, LifetimeInput, PlanCall, TaskCall
from graphrunner.graph._model import NodeSpec
from graphrunner.guardrails._guard import execution_row
from graphrunner.guardrails._policy import Reserve
from graphrunner.guardrails._wire import (
    LOAD_POLICY,
    RECORD_DECISION,
    TENANT_RESERVE,
    Decision,
    Deltas,
    PolicyRequest,
    PolicySnapshot,
    Settlement,
    TenantReserveInput,
    TenantReserveResult,
)

__all__ = ["DecisionInput", "LedgerIO", "ceiling_of", "execution_header", "expiry"]

_LOCAL_TIMEOUT = timedelta(seconds=30)
# Unbounded attempts, at most every 10 s: a lifetime waits out a state DB outage and never
# runs an execution unchecked.
_LOCAL_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


class DecisionInput(BaseModel):
    """Input of the decision-recording activity (it crosses history: fields keep defaults).

    ``execution`` names the execution the decision is about (None for a resume, or a pause
    or abort by hand); ``reject`` marks that execution rejected.
    """

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    lifetime_id: str
    run_id: str
    tenant: str
    graph_name: str
    execution: ExecutionHeader | None = None
    reject: bool = False
    ran: bool = False


def execution_header(inp: LifetimeInput, call: TaskCall | PlanCall, kind: str) -> ExecutionHeader:
    """The record header of the execution ``call`` starts, as the workflow knows it."""
    info = workflow.info()
    return call.header(
        lifetime_id=info.workflow_id,
        run_id=info.run_id,
        graph=inp.graph,
        graph_hash=inp.graph_hash,
        kind=kind,
        scheduled_at=workflow.now(),
    )


class LedgerIO:
    """The local-activity calls of one lifetime, and what it owes the tenant ledger.

    Attributes:
        decisions: Every decision recorded so far, in order.
    """

    def __init__(self) -> None:
        self.input: LifetimeInput | None = None  # set when the lifetime starts
        self.decisions: list[Decision] = []
        # Finished executions not yet settled (carried by the next reserve), and executions
        # reserved and not yet finished.
        self._owed: dict[str, Deltas | None] = {}
        self._reserved: set[str] = set()

    async def load_policy(self) -> PolicySnapshot:
        """The worker's policy layers for this lifetime's tenant (pinned in history)."""
        snapshot: PolicySnapshot = await workflow.execute_local_activity(
            LOAD_POLICY,
            PolicyRequest(tenant=self._tenant),
            result_type=PolicySnapshot,
            summary="guardrails · policy",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        return snapshot

    async def record(
        self,
        rule: str,
        action: str,
        phase: str,
        *,
        scope: str,
        condition: str,
        observed: dict[str, float | str],
        message: str,
        execution: ExecutionHeader | None = None,
        reject: bool = False,
        ran: bool = False,
    ) -> Decision:
        """Record one decision (its id derives from the run and its position: idempotent)."""
        info = workflow.info()
        seq = len(self.decisions)
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
            node=execution.node if execution else None,
            iteration=execution.iteration if execution else None,
            execution_id=execution.execution_id if execution else None,
            decided_at=workflow.now(),
        )
        self.decisions.append(decision)
        graph = self.input.graph.name if self.input else ""
        guardrail_action(graph, self._tenant, rule, action, phase)
        await workflow.execute_local_activity(
            RECORD_DECISION,
            DecisionInput(
                decision=decision,
                lifetime_id=info.workflow_id,
                run_id=info.run_id,
                tenant=self._tenant,
                graph_name=graph,
                execution=execution,
                reject=reject,
                ran=ran,
            ),
            summary=f"guardrail · {rule} · {action}",
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_LOCAL_RETRY,
        )
        return decision

    # -- the tenant ledger ----------------------------------------------------------------

    async def reserve(self, inp: TenantReserveInput) -> TenantReserveResult:
        """Settle what this lifetime owes, then check (and reserve) ``inp.execution_id``."""
        inp.settle = self._take_owed()
        if inp.execution_id is not None:
            # Held until the result says otherwise: a reserve cancelled (or failed) after its
            # transaction committed is released at the lifetime's end, not left to expire.
            # Releasing a reservation that was never made deletes nothing.
            self._reserved.add(inp.execution_id)
        try:
            result: TenantReserveResult = await workflow.execute_local_activity(
                TENANT_RESERVE,
                inp,
                result_type=TenantReserveResult,
                summary="guardrails · tenant reserve",
                start_to_close_timeout=_LOCAL_TIMEOUT,
                retry_policy=_LOCAL_RETRY,
            )
        except BaseException:
            self._owe_again(inp.settle)
            raise
        if not result.reserved and inp.execution_id is not None:
            self._reserved.discard(inp.execution_id)
        return result

    def settle(self, execution_id: str, deltas: Deltas | None) -> None:
        """Owe the ledger an execution's end: its actual ``deltas`` or, with None, a release.

        Carried by the lifetime's next reserve (or `flush`), not sent now: one local activity
        per execution instead of two.
        """
        if execution_id in self._reserved or deltas is not None:
            self._reserved.discard(execution_id)
            self._owed[execution_id] = deltas

    @property
    def owes(self) -> bool:
        """Whether finished executions wait to be settled."""
        return bool(self._owed)

    @property
    def in_flight(self) -> bool:
        """Whether executions of this lifetime hold reservations (fan-out siblings)."""
        return bool(self._reserved)

    @property
    def owing(self) -> bool:
        """Whether anything is owed to the ledger or still reserved."""
        return bool(self._owed or self._reserved)

    async def flush(self, keys: list[str]) -> None:
        """Settle everything owed, and release every reservation still held (lifetime end).

        An execution still running when its lifetime ends (an abort by hand) never reports
        back: its reservation is released, like a failed execution's.
        """
        for execution_id in sorted(self._reserved):
            self._owed.setdefault(execution_id, None)
        self._reserved.clear()
        if self._owed:
            await self.reserve(TenantReserveInput(tenant=self._tenant, keys=keys))

    @property
    def _tenant(self) -> str:
        return self.input.tenant if self.input else ""

    def _take_owed(self) -> list[Settlement]:
        owed = [Settlement(execution_id=k, deltas=v) for k, v in self._owed.items()]
        self._owed.clear()
        return owed

    def _owe_again(self, settle: list[Settlement]) -> None:
        for done in settle:
            self._owed.setdefault(done.execution_id, done.deltas)


def ceiling_of(
    inp: LifetimeInput, call: TaskCall | PlanCall, kind: str, reserve: Reserve
) -> tuple[dict[str, object], datetime]:
    """What ``call`` reserves: the execution as tenant rules see it at most, and until when.

    Tokens and cost are the node's ``max_tokens`` / ``max_cost_usd``, else the policy's
    ``reserve``; each token field at its own bound (``tokens_in`` and ``tokens_out`` may each
    reach the ceiling).
    """
    try:
        node: NodeSpec | None = inp.graph.node(call.node_name)
    except KeyError:
        node = None
    tokens = reserve.tokens
    cost = reserve.cost_usd
    until = expiry(workflow.now(), timedelta(0), 0)  # unknown node: the cap
    if node is not None:
        tokens = node.max_tokens if node.max_tokens is not None else tokens
        cost = node.max_cost_usd if node.max_cost_usd is not None else cost
        retry = inp.graph.retry(node)
        attempts = retry.max_attempts or 0
        # Each attempt may time out and then wait out the longest retry interval.
        per_attempt = inp.graph.timeout(node) + timedelta(seconds=retry.max_interval_s or 0)
        until = expiry(workflow.now(), per_attempt, attempts)
    row = execution_row(
        node=call.node_name,
        kind=kind,
        iteration=call.iteration,
        status="scheduled",
        state=call.state,
    )
    row.update(tokens_in=tokens, tokens_out=tokens, tokens_used=tokens, cost_usd=cost)
    return row, until


def expiry(now: datetime, attempt_timeout: timedelta, attempts: int) -> datetime:
    """When a reservation stops counting: every attempt timing out, plus slack, capped.

    Bounded so that a lifetime terminated mid-execution (nothing will settle it) stops
    holding its tenant's budget; unlimited retries (0 attempts) take the cap.
    """
    cap = timedelta(hours=24)
    span = attempt_timeout * attempts + timedelta(minutes=5) if attempts > 0 else cap
    return now + min(span, cap)
