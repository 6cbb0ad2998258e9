"""Where a lifetime is, kept in its ``GraphrunnerStatus`` and ``GraphrunnerCostUsd``.

One `PhaseBoard` per lifetime, owned by the workflow (``AgentLifetimeWorkflow.board``). The
workflow says when it waits for a person (``_mark``) and what its executions spent; the
guardrail interceptor says when a pause holds it (`PhaseBoard.hold`) and closes the board
on the lifetime's very last exit, once handlers have finished, with the phase its outcome
gives (`phase_of`).

The phase is derived, so concurrent causes combine: an ending wins, then a pause, then a
wait for a person (any of the branches waiting), else running. Each change is upserted only
when a value differs from what the attribute already says, and changes are batched: one
upsert at the end of the current round of ready workflow coroutines (``call_soon``), so a
fan-out whose branches finish together costs one upsert, not one per branch. Only
attributes the lifetime started with are upserted: upserting one the server lacks fails the
workflow task, and a lifetime started by an older client (without them) keeps replaying.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, FailureError

from graphrunner._attributes import COST_KEY, STATUS_KEY
from graphrunner._types import LifetimePhase
from graphrunner.errors import FailureType, GraphrunnerError

__all__ = ["BOARD_PATCH", "ENDS_LIFETIME", "PhaseBoard", "board_of", "phase_of"]

BOARD_PATCH = "graphrunner-phase-board"
"""Patch id of keeping ``GraphrunnerStatus``/``GraphrunnerCostUsd`` current (issue 12)."""

# What ends a lifetime (the workflow's failure_exception_types, temporalio's failures, a
# cancellation); every other exception fails only the workflow task.
ENDS_LIFETIME = (FailureError, GraphrunnerError, ValidationError, asyncio.CancelledError)

_TERMINAL = frozenset(
    {
        LifetimePhase.COMPLETED,
        LifetimePhase.FAILED,
        LifetimePhase.ABORTED,
        LifetimePhase.CANCELLED,
    }
)


def phase_of(exc: BaseException | None) -> LifetimePhase | None:
    """The phase a lifetime ends in, given how its body ended (None: it does not end)."""
    if exc is None:
        return LifetimePhase.COMPLETED
    if isinstance(exc, asyncio.CancelledError):
        return LifetimePhase.CANCELLED
    if isinstance(exc, ApplicationError) and exc.type == FailureType.GUARDRAIL_ABORTED:
        return LifetimePhase.ABORTED
    if isinstance(exc, ENDS_LIFETIME):
        return LifetimePhase.FAILED
    return None  # a bug or nondeterminism: the workflow task fails and is retried


class PhaseBoard:
    """A lifetime's phase and spend, and the search attributes that show them."""

    def __init__(self) -> None:
        self._waiting = 0  # executions waiting for a person
        self._held = False  # a guardrail pause (by a rule or by hand) is in force
        self._cost = 0.0
        self.final: LifetimePhase | None = None  # how the lifetime ends, once it does
        self.done = False  # the lifetime's body has ended (with or without a phase)
        self.moving = False  # about to continue as new: waiting handlers let go
        self._closed = False
        self._due = False  # an upsert is scheduled
        self._keys: set[str] | None = None  # attributes the lifetime started with
        self._shown: dict[str, Any] = {}  # what the attributes say now

    @property
    def phase(self) -> LifetimePhase:
        """Where the lifetime is now."""
        if self.final is not None:
            return self.final
        if self._held:
            return LifetimePhase.PAUSED
        if self._waiting:
            return LifetimePhase.WAITING
        return LifetimePhase.RUNNING

    @property
    def waiting(self) -> bool:
        """Whether some execution waits for a person."""
        return self._waiting > 0

    def mark(self, phase: LifetimePhase) -> None:
        """The workflow's word on its phase.

        WAITING when an execution starts waiting for a person, RUNNING when it stops (pair
        them, e.g. in ``try``/``finally``); a terminal phase ends the lifetime. PAUSED is
        the guardrails' to say (`hold`), so it is ignored here.
        """
        if phase is LifetimePhase.WAITING:
            self._waiting += 1
        elif phase is LifetimePhase.RUNNING:
            self._waiting = max(0, self._waiting - 1)
        elif phase in _TERMINAL:
            self.finish(phase)
            return
        else:  # PAUSED: the guardrails' to say (a pause must be resumed to end)
            return
        self._changed()

    def hold(self, held: bool) -> None:
        """Whether a guardrail pause holds the lifetime."""
        if held != self._held:
            self._held = held
            self._changed()

    def spend(self, cost_usd: float) -> None:
        """What the lifetime's executions have spent so far, in total."""
        if cost_usd != self._cost:
            self._cost = cost_usd
            self._changed()

    def seed(self, cost_usd: float) -> None:
        """What earlier runs spent (a lifetime that continued as new): shown already."""
        self._cost = cost_usd

    def finish(self, phase: LifetimePhase | None) -> None:
        """The lifetime's body ended (``phase`` None: not for good, the task failed)."""
        self.done = True
        if phase is not None and self.final is None:
            self.final = phase

    def close(self, phase: LifetimePhase | None) -> None:
        """Show the phase the lifetime ends in, now: the last thing before it closes."""
        self.finish(phase)
        if self.final is not None:
            self._flush()
        self._closed = True

    def _changed(self) -> None:
        if self._due or self._closed:
            return
        self._due = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._due = False
        if self._closed:
            return
        if self._keys is None:  # first flush: what the client set at start
            start = {p.key.name: p.value for p in workflow.info().typed_search_attributes}
            self._keys = {k for k in (STATUS_KEY.name, COST_KEY.name) if k in start}
            self._shown = {k: start[k] for k in self._keys}
            # A lifetime a worker from before the board ran (no marker in its history) keeps
            # upserting nothing when a newer worker takes it over: replay must match.
            if self._keys and not workflow.patched(BOARD_PATCH):
                self._keys = set()
        updates: list[SearchAttributeUpdate[Any]] = []
        status, cost = self.phase.value, self._cost
        if STATUS_KEY.name in self._keys and self._shown[STATUS_KEY.name] != status:
            updates.append(STATUS_KEY.value_set(status))
            self._shown[STATUS_KEY.name] = status
        if COST_KEY.name in self._keys and self._shown[COST_KEY.name] != cost:
            updates.append(COST_KEY.value_set(cost))
            self._shown[COST_KEY.name] = cost
        if updates:
            workflow.upsert_search_attributes(updates)


def board_of(instance: Any) -> PhaseBoard | None:
    """The board of a workflow instance, if it is a lifetime's."""
    board = getattr(instance, "board", None)
    return board if isinstance(board, PhaseBoard) else None
