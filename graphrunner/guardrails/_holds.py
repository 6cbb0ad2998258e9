"""Pause, resume and abort: the state machine of a lifetime's guardrail holds.

A hold is an execution waiting, before or after it ran, for a resume: either a rule with
``pause_lifetime`` fired on it (`Holds.hold`), or the lifetime was paused by hand and the
node is about to start (`Holds.wait_manual`). A resume (update or signal
``graphrunner.resume``) releases every hold at once, waiving the rules that held them for
those executions, or, given a new condition, replacing a rule and checking its holds again.
An abort by hand (update ``graphrunner.abort``) is recorded here and carried out by the
interceptor. Every hold is shown, with the rule and the values, in the Temporal UI's current
details; the ``graphrunner.guardrails`` query returns rules, holds and decisions.

State derives only from handler inputs and activity results, so replay rebuilds it.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from graphrunner.errors import FailureType, PolicyError
from graphrunner.guardrails._expr import parse_expression
from graphrunner.guardrails._guard import LifetimeGuard
from graphrunner.guardrails._io import LedgerIO
from graphrunner.guardrails._policy import Rule
from graphrunner.guardrails._wire import (
    ABORT,
    CANCEL,
    GUARDRAIL_QUERY,
    MANUAL_ABORT,
    MANUAL_PAUSE,
    PAUSE,
    RESUME,
    AbortRequest,
    Decision,
    GuardrailStatus,
    PauseInfo,
    PauseRequest,
    ResumeRequest,
    ResumeResult,
)
from graphrunner.workflows._phase import board_of

__all__ = ["Holds", "show_values"]


def show_values(observed: dict[str, float | str]) -> str:
    """Observed values as users read them: ``sum(tokens_used) = 4500, node = 'work'``."""

    def show(value: float | str) -> str:
        if isinstance(value, str):
            return repr(value)
        return f"{value:.10g}"

    return ", ".join(f"{k} = {show(v)}" for k, v in observed.items()) or "no values"


RECORD_CANCEL = "graphrunner-record-cancel"
"""Patch id of recording a cancellation as a decision (see `Holds.record_cancel`)."""


class Holds:
    """The pauses of one lifetime, its pause/resume/abort handlers and what the UI shows.

    Args:
        io: Where decisions (pauses by hand, resumes, aborts) are recorded.
    """

    def __init__(self, io: LedgerIO) -> None:
        self.io = io
        self.guard: LifetimeGuard | None = None  # set when the lifetime starts
        self.active = False  # guardrails started (and so an abort by hand can end it)
        self.aborted: Decision | None = None  # an abort by hand, once recorded
        self._aborting = False
        # Holds by a rule: token -> (why, execution held); released together by a resume.
        self._paused: dict[int, tuple[PauseInfo, str]] = {}
        self._next_pause = 0
        self._generation = 0  # bumped by each resume: the holds waiting on it wake
        self._manual: PauseInfo | None = None  # a pause by hand
        self._manual_at: list[tuple[str, int]] = []  # (node, iteration) held by hand

    def register(self) -> None:
        """Add the handlers to the workflow (before its first activation is applied)."""
        workflow.set_query_handler(GUARDRAIL_QUERY, self.status)
        workflow.set_update_handler(RESUME, self.resume, validator=self.validate_resume)
        workflow.set_signal_handler(RESUME, self.resume_signal)
        workflow.set_update_handler(PAUSE, self.pause, validator=self.validate_pause)
        workflow.set_update_handler(ABORT, self.abort, validator=self.validate_abort)

    @property
    def paused_by_hand(self) -> bool:
        """Whether the lifetime is paused by hand (the next node to start waits)."""
        return self._manual is not None

    @property
    def holding(self) -> bool:
        """Whether anything is held."""
        return bool(self._paused) or self._manual is not None

    # -- holding --------------------------------------------------------------------------

    async def hold(self, info: PauseInfo, execution_id: str) -> None:
        """Hold one execution, paused by a rule, until the next resume."""
        token = self._next_pause
        self._next_pause += 1
        self._paused[token] = (info, execution_id)
        generation = self._generation
        self.show()
        self._phase()
        try:
            await workflow.wait_condition(lambda: self._generation > generation)
        finally:
            self._paused.pop(token, None)
            self._phase()
        if not self.show():
            workflow.set_current_details(f"resumed after guardrail **{info.rule}**")

    async def wait_manual(self, node: str, iteration: int) -> None:
        """Hold a node while the lifetime is paused by hand, saying so where users look."""
        held = (node, iteration)
        self._manual_at.append(held)
        self.show()
        try:
            await workflow.wait_condition(lambda: self._manual is None)
        finally:
            self._manual_at.remove(held)
        if not self.show():
            workflow.set_current_details(f"resumed before {node} · {iteration}")

    def _phase(self) -> None:
        """Tell the lifetime's phase board (``GraphrunnerStatus``) whether it is paused."""
        if not workflow.in_workflow():  # an evicted lifetime's coroutines being closed
            return
        board = board_of(workflow.instance())
        if board is not None:
            board.hold(self.holding)

    def show(self) -> bool:
        """Show every hold in the Temporal UI's current details; False when nothing is held.

        The workflow sets the details to the node it starts, so a hold that began earlier
        (another fan-out branch) is shown again whenever the interceptor runs.
        """
        lines = [
            f"**paused** by guardrail **{info.rule}** at {info.node} · {info.iteration}: "
            f"{info.message or info.condition} ({show_values(info.observed)})"
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

    # -- handlers -------------------------------------------------------------------------

    def status(self) -> GuardrailStatus:
        """Answer of the ``graphrunner.guardrails`` query."""
        rules = self.guard.policy.rules if self.guard else []
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
            decisions=self.io.decisions,
        )

    def validate_resume(self, request: ResumeRequest) -> None:
        """Refuse a resume that cannot apply (nothing paused, bad rule or condition)."""
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
        guard = self.guard
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
        """Release every hold; with ``when``, replace a rule's condition first."""
        rule = self._replacement(request)
        paused = sorted({info.rule for info, _ in self._paused.values()})
        if self._manual is not None:
            paused.append(self._manual.rule)
        replaced: dict[str, str] = {}
        guard = self.guard
        if rule is not None and guard is not None:
            guard.replace_rule(rule)
            replaced[rule.name] = str(rule.when)
        if guard is not None:
            # Resuming lets the held executions through the rules that held them (the rules
            # still apply to every other execution), except the rule given a new condition:
            # its holds are checked again under it.
            for info, execution_id in self._paused.values():
                if rule is None or info.rule != rule.name:
                    guard.waive(info.rule, execution_id)
        # Cleared now, not when the waiters wake: a status query must not show them meanwhile.
        self._paused.clear()
        self._manual = None
        self._phase()
        # Wake the holds now: one that begins while the resume is being recorded is not
        # released by it.
        self._generation += 1
        await self.io.record(
            ",".join(paused),
            "resume",
            "resume",
            scope="",
            condition="; ".join(f"{k}: {v}" for k, v in replaced.items()),
            observed={},
            message=request.reason,
        )
        return ResumeResult(resumed=paused, replaced=replaced)

    async def resume_signal(self, raw: Any) -> None:
        """`resume` as a signal, for the ``temporal`` CLI."""
        # A signal cannot be refused: an invalid one is logged and dropped, harming nothing.
        try:
            request = ResumeRequest.model_validate(raw if raw is not None else {})
            self._replacement(request)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            workflow.logger.warning("ignored graphrunner.resume signal: %s", exc)
            return
        await self.resume(request)

    def validate_pause(self, request: PauseRequest) -> None:
        """Refuse a second pause by hand."""
        if self._manual is not None:
            raise ValueError("the lifetime is already paused by hand")

    async def pause(self, request: PauseRequest) -> PauseInfo:
        """Pause by hand: the next node to start waits for a resume."""
        info = PauseInfo(rule=MANUAL_PAUSE, message=request.reason, since=workflow.now())
        self._manual = info
        self._phase()
        await self.io.record(
            MANUAL_PAUSE,
            "pause_lifetime",
            "before",
            scope="",
            condition="",
            observed={},
            message=request.reason,
        )
        if self._manual is info:  # not resumed while the decision was being recorded
            self.show()
        return info

    def validate_abort(self, request: AbortRequest) -> None:
        """Refuse an abort before guardrails started, or a second one."""
        if not self.active:
            raise ValueError(
                "this lifetime cannot be aborted by graphrunner (it has not started); use "
                "'temporal workflow terminate'"
            )
        if self._aborting:
            raise ValueError("the lifetime is already being aborted")

    async def abort(self, request: AbortRequest) -> Decision:
        """Record an abort by hand; the interceptor then ends the lifetime."""
        self._aborting = True
        decision = await self.io.record(
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

    async def record_cancel(self) -> None:
        """Record a cancellation of the lifetime (Temporal's, e.g. ``graphrunner cancel``).

        Behind a patch marker: a lifetime cancelled under a graphrunner that did not record
        cancellations has no such local activity in its history, and must still replay.
        """
        if not self.active or not workflow.patched(RECORD_CANCEL):
            return
        reason = workflow.cancellation_reason()
        await self.io.record(
            CANCEL,
            "cancel_lifetime",
            "cancel",
            scope="",
            condition="",
            observed={},
            message=reason or "",
        )

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
