"""Values the guardrail interceptor exchanges with its activities, handlers and the client.

Like `graphrunner._types`, these cross Temporal history: fields may be added (with defaults)
but not removed or renamed, or old histories stop replaying.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from graphrunner.guardrails._policy import Policy, Rule

__all__ = [
    "ABORT",
    "CANCEL",
    "GUARDRAIL_QUERY",
    "LOAD_POLICY",
    "MANUAL_ABORT",
    "MANUAL_PAUSE",
    "PAUSE",
    "RECORD_DECISION",
    "RESUME",
    "TENANT_RESERVE",
    "AbortRequest",
    "Decision",
    "GuardrailStatus",
    "PauseInfo",
    "PauseRequest",
    "PolicyRequest",
    "PolicySnapshot",
    "ResumeRequest",
    "ResumeResult",
    "Settlement",
    "TallyValue",
    "TenantReserveInput",
    "TenantReserveResult",
    "TenantVerdict",
]

# Local activities the interceptor runs, and the handlers it adds to every lifetime.
LOAD_POLICY = "graphrunner.guardrails.load_policy"
RECORD_DECISION = "graphrunner.guardrails.record_decision"
TENANT_RESERVE = "graphrunner.guardrails.tenant_reserve"
RESUME = "graphrunner.resume"
PAUSE = "graphrunner.pause"
ABORT = "graphrunner.abort"
GUARDRAIL_QUERY = "graphrunner.guardrails"
#: The rule name a pause by hand (`graphrunner pause`) is reported under.
MANUAL_PAUSE = "manual-pause"
#: The rule name an abort by hand (`graphrunner abort`) is recorded under.
MANUAL_ABORT = "manual-abort"
#: The rule name a cancellation (`graphrunner cancel`, Temporal's cancel) is recorded under.
CANCEL = "cancel"


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


class TallyValue(_Model):
    """A tenant-ledger counter (see `graphrunner.guardrails._eval.Tally`)."""

    total: float = 0.0
    count: int = 0
    lo: float | None = None
    hi: float | None = None


Deltas = dict[str, tuple[float, bool]]
"""What one execution adds to each tenant-ledger counter: (value, counts) by aggregate key."""


class Settlement(_Model):
    """An execution whose tenant reservation ends: charged its actual ``deltas``, or released.

    ``deltas`` is None for an execution that failed, or did not run after all.
    """

    execution_id: str
    deltas: Deltas | None = None


class TenantReserveInput(_Model):
    """Settle finished executions, then check and reserve one about to run, atomically.

    Attributes:
        tenant: The lifetime's tenant.
        keys: The ledger keys (aggregate texts) of every tenant rule in force.
        settle: This lifetime's executions whose reservations end now.
        execution_id: The execution about to run; None only settles and reads.
        deltas: Its ceiling's contributions (what it may add at most).
        expires_at: When its reservation stops counting if never settled.
        rules: The tenant-scope rules to check it against (a rule an operator waived for it
            is left out).
        row: The execution as the rules see it, with tokens and cost at its ceiling.
        elapsed_s: The lifetime's age.
        reserve: False to check without reserving (a lifetime rule has already fired).
    """

    tenant: str
    keys: list[str]
    settle: list[Settlement] = Field(default_factory=list)
    execution_id: str | None = None
    deltas: Deltas = Field(default_factory=dict)
    expires_at: datetime | None = None
    rules: list[Rule] = Field(default_factory=list)
    row: dict[str, float | int | str] = Field(default_factory=dict)
    elapsed_s: float = 0.0
    reserve: bool = True


class TenantVerdict(_Model):
    """A tenant rule that fired in the reserve transaction, and the values it saw."""

    rule: str
    observed: dict[str, float | str] = Field(default_factory=dict)


class TenantReserveResult(_Model):
    """What the reserve transaction saw and did (in history: replay reaches the same verdict).

    Attributes:
        totals: Committed totals plus every other live reservation (not this execution's).
        reserved: Whether the execution's ceiling was reserved.
        verdict: The tenant rule its ceiling would break, if any (then nothing is reserved).
    """

    totals: dict[str, TallyValue] = Field(default_factory=dict)
    reserved: bool = False
    verdict: TenantVerdict | None = None


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
