"""Local activities of the guardrail interceptor: policy snapshot, decisions, tenant ledger.

They are the interceptor's only I/O; their results land in history (as local-activity
markers), which is what lets a replay reach the same decisions without touching the DB.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from graphrunner.activities._recording import Recorder
from graphrunner.guardrails._sources import PolicySource
from graphrunner.guardrails._wire import (
    LOAD_POLICY,
    RECORD_DECISION,
    TENANT_CHARGE,
    TENANT_USAGE,
    DecisionInput,
    PolicyRequest,
    PolicySnapshot,
    TallyValue,
    TenantChargeInput,
    TenantTotals,
    TenantUsageInput,
)
from graphrunner.stores._records import (
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    UsageDelta,
    UsageTotals,
)

__all__ = ["GuardrailActivities"]


def _totals(found: dict[str, UsageTotals]) -> TenantTotals:
    return TenantTotals(totals={k: TallyValue(**v.model_dump()) for k, v in found.items()})


class GuardrailActivities:
    """The guardrail activities of one worker.

    Args:
        policies: The worker's global and tenant policy layers.
        recorder: Where decisions and tenant totals are kept; None keeps nothing (and then a
            lifetime with tenant-scope rules fails at start, naming the missing state DB).
    """

    def __init__(self, policies: PolicySource, recorder: Recorder | None) -> None:
        self.policies = policies
        self.recorder = recorder

    @activity.defn(name=LOAD_POLICY)
    async def load_policy(self, request: PolicyRequest) -> PolicySnapshot:
        """The worker's policy layers for one tenant."""
        return self.policies.snapshot(request.tenant, ledger=self.recorder is not None)

    @activity.defn(name=RECORD_DECISION)
    async def record_decision(self, inp: DecisionInput) -> None:
        """Write one decision beside the execution records (and mark a rejection)."""
        if self.recorder is None:
            return
        d = inp.decision
        decision = DecisionRecord(
            decision_id=d.decision_id,
            lifetime_id=inp.lifetime_id,
            run_id=inp.run_id,
            tenant=inp.tenant,
            graph_name=inp.graph_name,
            execution_id=d.execution_id,
            node=d.node,
            iteration=d.iteration,
            seq=d.seq,
            rule=d.rule[:64],
            action=d.action,
            phase=d.phase,
            scope=d.scope,
            condition=d.condition,
            observed=d.observed,
            message=d.message,
            decided_at=d.decided_at,
        )
        rejected = None
        if inp.reject and inp.call is not None:
            call = inp.call
            scheduled = call.get("scheduled_at")
            at = datetime.fromisoformat(scheduled) if scheduled else d.decided_at
            rejected = ExecutionRecord(
                execution_id=call.get("execution_id") or d.execution_id or d.decision_id,
                lifetime_id=inp.lifetime_id,
                run_id=inp.run_id,
                graph_name=call.get("graph_name", inp.graph_name),
                graph_version=call.get("graph_version", ""),
                graph_hash=call.get("graph_hash", ""),
                tenant=inp.tenant,
                node=call["node"],
                kind=inp.kind or "",
                iteration=call.get("iteration", 0),
                seq=call.get("seq", 0),
                attempt=0,
                parent_ids=call.get("parent_ids") or [],
                edge=call.get("edge"),
                status=ExecutionStatus.REJECTED,
                created_at=at,
                started_at=at,
                finished_at=d.decided_at,
                error=f"rejected by guardrail '{d.rule}' {d.phase} it ran: {d.message}".strip(),
            )
        await self.recorder.records.record_decision(decision, rejected)

    @activity.defn(name=TENANT_USAGE)
    async def tenant_usage(self, inp: TenantUsageInput) -> TenantTotals:
        """A tenant's current counters."""
        if self.recorder is None:
            return TenantTotals()
        return _totals(await self.recorder.records.tenant_usage(inp.tenant, inp.keys))

    @activity.defn(name=TENANT_CHARGE)
    async def tenant_charge(self, inp: TenantChargeInput) -> TenantTotals:
        """Add one execution to its tenant's counters, once; return the counters after."""
        if self.recorder is None:
            return TenantTotals()
        deltas = {k: UsageDelta(value=v, matched=m) for k, (v, m) in inp.deltas.items()}
        found = await self.recorder.records.tenant_charge(inp.tenant, inp.execution_id, deltas)
        return _totals(found)
