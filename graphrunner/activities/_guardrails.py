"""Local activities of the guardrail interceptor: policy snapshot, decisions, tenant ledger.

They are the interceptor's only I/O; their results land in history (as local-activity
markers), which is what lets a replay reach the same decisions without touching the DB.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner.activities._recording import Recorder
from graphrunner.errors import FailureType
from graphrunner.guardrails._eval import Tally
from graphrunner.guardrails._guard import LifetimeGuard, Phase, Verdict
from graphrunner.guardrails._io import DecisionInput
from graphrunner.guardrails._policy import Policy
from graphrunner.guardrails._sources import PolicySource
from graphrunner.guardrails._wire import (
    LOAD_POLICY,
    RECORD_DECISION,
    TENANT_RESERVE,
    Deltas,
    PolicyRequest,
    PolicySnapshot,
    TallyValue,
    TenantReserveInput,
    TenantReserveResult,
    TenantVerdict,
)
from graphrunner.stores._models import (
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    UsageDelta,
    UsageReservation,
    UsageSettlement,
    UsageTotals,
)

__all__ = ["GuardrailActivities"]

_GUARDS_KEPT = 256  # compiled tenant rule sets kept per worker


def _usage_deltas(deltas: Deltas) -> dict[str, UsageDelta]:
    return {k: UsageDelta(value=v, matched=m) for k, (v, m) in deltas.items()}


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
        # Tenant rules compiled once per distinct rule set, not once per execution.
        self._guards: dict[str, LifetimeGuard] = {}

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
        header = inp.execution
        if inp.reject and header is not None:
            at = header.scheduled_at or d.decided_at
            rejected = ExecutionRecord(
                **header.model_dump(exclude={"scheduled_at"}),
                attempt=0,
                status=ExecutionStatus.REJECTED,
                created_at=at,
                started_at=at,
                finished_at=d.decided_at,
                error=f"rejected by guardrail '{d.rule}' {d.phase} it ran: {d.message}".strip(),
            )
        await self.recorder.records.record_decision(decision, rejected)

    @activity.defn(name=TENANT_RESERVE)
    async def tenant_reserve(self, inp: TenantReserveInput) -> TenantReserveResult:
        """Settle, check and reserve on the tenant ledger in one transaction."""
        if self.recorder is None:
            # The lifetime pinned a ledger at start (on a worker with a state DB) and now
            # runs on one without: skipping its tenant rules would let it spend unchecked.
            raise ApplicationError(
                "this lifetime has tenant-scope guardrail rules, which this worker cannot "
                "check: it keeps no state DB (enable records, GRAPHRUNNER_RECORD=1, on every "
                "worker of the task queue)",
                type=FailureType.GUARDRAIL_CONFIG,
                non_retryable=True,
            )
        guard = self._guard(inp) if inp.rules else None
        fired: list[Verdict] = []

        def fits(totals: dict[str, UsageTotals]) -> bool:
            if guard is None:
                return True
            tallies = {k: Tally(v.total, v.count, v.lo, v.hi) for k, v in totals.items()}
            verdict = guard.check(
                Phase.BEFORE,
                inp.row,
                execution_id=inp.execution_id or "",
                elapsed_s=inp.elapsed_s,
                tenant=tallies,
            )
            if verdict is not None:
                fired.append(verdict)
            return verdict is None and inp.reserve

        reservation = None
        if inp.execution_id is not None and inp.expires_at is not None:
            reservation = UsageReservation(
                execution_id=inp.execution_id,
                deltas=_usage_deltas(inp.deltas),
                expires_at=inp.expires_at,
            )
        outcome = await self.recorder.records.tenant_reserve(
            inp.tenant,
            keys=inp.keys,
            settle=[
                UsageSettlement(
                    execution_id=s.execution_id,
                    deltas=_usage_deltas(s.deltas) if s.deltas is not None else None,
                )
                for s in inp.settle
            ],
            reservation=reservation,
            check=fits,
        )
        verdict = fired[0] if fired else None
        return TenantReserveResult(
            totals={k: TallyValue(**v.model_dump()) for k, v in outcome.totals.items()},
            reserved=outcome.reserved,
            verdict=TenantVerdict(rule=verdict.rule.name, observed=verdict.observed)
            if verdict
            else None,
        )

    def _guard(self, inp: TenantReserveInput) -> LifetimeGuard:
        key = "\n".join(rule.model_dump_json() for rule in inp.rules)
        guard = self._guards.get(key)
        if guard is None:
            if len(self._guards) >= _GUARDS_KEPT:
                self._guards.pop(next(iter(self._guards)))
            guard = self._guards[key] = LifetimeGuard(Policy(rules=inp.rules))
        return guard
