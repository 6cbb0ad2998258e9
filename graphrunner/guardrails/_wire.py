"""Values the guardrail interceptor exchanges with its activities, handlers and the client.

Like `graphrunner._types`, these cross Temporal history: fields may be added (with defaults)
but not removed or renamed, or old histories stop replaying.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphrunner.guardrails._policy import Policy

__all__ = [
    "ABORT",
    "GUARDRAIL_QUERY",
    "LOAD_POLICY",
    "MANUAL_ABORT",
    "MANUAL_PAUSE",
    "PAUSE",
    "RECORD_DECISION",
    "RESUME",
    "TENANT_CHARGE",
    "TENANT_USAGE",
    "AbortRequest",
    "Decision",
    "DecisionInput",
    "GuardrailStatus",
    "PauseInfo",
    "PauseRequest",
    "PolicyRequest",
    "PolicySnapshot",
    "ResumeRequest",
    "ResumeResult",
    "TallyValue",
    "TenantChargeInput",
    "TenantTotals",
    "TenantUsageInput",
]

# Local activities the interceptor runs, and the handlers it adds to every lifetime.
LOAD_POLICY = "graphrunner.guardrails.load_policy"
RECORD_DECISION = "graphrunner.guardrails.record_decision"
TENANT_USAGE = "graphrunner.guardrails.tenant_usage"
TENANT_CHARGE = "graphrunner.guardrails.tenant_charge"
RESUME = "graphrunner.resume"
PAUSE = "graphrunner.pause"
ABORT = "graphrunner.abort"
GUARDRAIL_QUERY = "graphrunner.guardrails"
#: The rule name a pause by hand (`graphrunner pause`) is reported under.
MANUAL_PAUSE = "manual-pause"
#: The rule name an abort by hand (`graphrunner abort`) is recorded under.
MANUAL_ABORT = "manual-abort"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyRequest(_Model):
    """Input of the policy-loading activity: whose tenant layer to include."""

    tenant: str


class PolicySnapshot(_Model):
    """The worker's policy layers for one tenant, pinned into history at lifetime start.

    Attributes:
        global_policy: The worker's global policy, if any.
        tenant_policy: The tenant's override policy, if any.
        ledger: Whether the worker has a state DB to keep tenant totals in.
        sources: Where the layers came from (file paths), for messages.
    """

    global_policy: Policy | None = None
    tenant_policy: Policy | None = None
    ledger: bool = False
    sources: list[str] = Field(default_factory=list)


class Decision(_Model):
    """One guardrail decision: a rule that fired (or an operator's resume), and why."""

    decision_id: str
    seq: int
    rule: str
    action: str
    phase: str
    scope: str
    condition: str
    observed: dict[str, float | str] = Field(default_factory=dict)
    message: str = ""
    node: str | None = None
    iteration: int | None = None
    execution_id: str | None = None
    decided_at: datetime


class DecisionInput(_Model):
    """Input of the decision-recording activity.

    ``call`` is the activity input of the execution the decision is about, without its data
    (headers for the record); ``reject`` marks that execution rejected.
    """

    decision: Decision
    lifetime_id: str
    run_id: str
    tenant: str
    graph_name: str
    call: dict[str, Any] | None = None
    kind: str | None = None
    reject: bool = False
    ran: bool = False


class TallyValue(_Model):
    """A tenant-ledger counter (see `graphrunner.guardrails._eval.Tally`)."""

    total: float = 0.0
    count: int = 0
    lo: float | None = None
    hi: float | None = None


class TenantUsageInput(_Model):
    """Read a tenant's counters."""

    tenant: str
    keys: list[str]


class TenantChargeInput(_Model):
    """Add one execution to a tenant's counters: (value, counts) per key."""

    tenant: str
    execution_id: str
    deltas: dict[str, tuple[float, bool]]


class TenantTotals(_Model):
    """A tenant's counters after a read or a charge."""

    totals: dict[str, TallyValue] = Field(default_factory=dict)


# An operator's reason is shown in the UI's current details and kept in the decision record;
# a new condition is parsed in the workflow. Both are bounded like a rule's message.
MAX_REASON = 1000
MAX_CONDITION = 4096


class ResumeRequest(_Model):
    """Resume a paused lifetime, optionally changing a rule's condition (a raised limit).

    Attributes:
        when: A new condition for ``rule`` (default: the rule that paused the lifetime),
            e.g. ``sum(cost_usd) > 5``; it applies to this lifetime only.
        rule: The rule ``when`` replaces.
        reason: Why, kept with the decision record.
    """

    when: str | None = Field(default=None, max_length=MAX_CONDITION)
    rule: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=MAX_REASON)


class ResumeResult(_Model):
    """What a resume did."""

    resumed: list[str] = Field(default_factory=list)
    replaced: dict[str, str] = Field(default_factory=dict)


class AbortRequest(_Model):
    """End a lifetime by hand, now, as a non-retryable failure."""

    reason: str = Field(default="", max_length=MAX_REASON)


class PauseRequest(_Model):
    """Pause a lifetime by hand before its next execution."""

    reason: str = Field(default="", max_length=MAX_REASON)


class PauseInfo(_Model):
    """Why a lifetime is paused."""

    rule: str
    message: str = ""
    condition: str = ""
    observed: dict[str, float | str] = Field(default_factory=dict)
    node: str | None = None
    iteration: int | None = None
    since: datetime


class GuardrailStatus(_Model):
    """Answer of the ``graphrunner.guardrails`` query."""

    rules: list[dict[str, str]] = Field(default_factory=list)
    paused: list[PauseInfo] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
