"""A fork's steps before its fork point: the parent's outcomes, handed over in its order.

A fork (``graphrunner fork ID --step N``) is a new lifetime whose input carries the outcomes
of the parent's steps numbered below N (`graphrunner._types.ForkSeed`, read from the
parent's history by the client). When such a step begins, the workflow takes its memo
instead of scheduling an activity, starting a child or asking a person: nothing of it
reaches the fork's history, and it spends nothing there (its telemetry stays the parent's),
so guardrails never see it either (no activity, no interceptor).

Memos are released in the order the parent saw them complete (``rank``), each waiting until
the ones before it are out. Which step begins next depends only on the completions of the
steps begun before it, all memoized, so inside fan-outs too every step below N begins with
the parent's number, node and iteration. Each begins checked against its memo: a graph or
code that takes another path before N fails the fork (``ForkDiverged``) naming both.

Pure workflow-side bookkeeping: everything derives from the workflow input.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from graphrunner._types import (
        ForkMemo,
        ForkSeed,
        PlanResult,
        Rejection,
        StepRecord,
        TaskResult,
    )
    from graphrunner._values import clip
    from graphrunner.errors import FailureType

__all__ = ["ForkReplay"]


def _diverged(message: str) -> ApplicationError:
    return ApplicationError(clip(message, 8192), type=FailureType.FORK_DIVERGED, non_retryable=True)


class ForkReplay:
    """The memoized steps of one fork, and how many have been handed over so far."""

    def __init__(self, seed: ForkSeed, running: Callable[[], int]) -> None:
        self.seed = seed
        self._by_seq = {memo.seq: memo for memo in seed.memos}
        self._by_rank = {memo.rank: memo for memo in seed.memos}
        self._released = 0
        self._running = running  # how many of the lifetime's steps are running now
        self._waiting: set[int] = set()  # ranks of the memos waiting for their turn

    @property
    def mark(self) -> str:
        """``<parent id>#<step>``, carried by every execution the fork records."""
        return self.seed.mark

    def memo(self, step: StepRecord, kind: str) -> ForkMemo | None:
        """The memo a beginning step takes (None from the fork point on).

        Raises:
            ApplicationError: ``ForkDiverged``: the parent ran another step with this number.
        """
        if step.seq >= self.seed.step:
            return None
        memo = self._by_seq.get(step.seq)
        if memo is None or (memo.node, memo.iteration, memo.kind) != (
            step.node,
            step.iteration,
            kind,
        ):
            parent = (
                f"{memo.node}#{memo.iteration} ({memo.kind})"
                if memo
                else "no step with that number"
            )
            raise _diverged(
                f"fork diverged at step #{step.seq}: the parent {self.seed.parent_id} ran "
                f"{parent}, this graph runs {step.node}#{step.iteration} ({kind}); steps before "
                f"the fork point #{self.seed.step} must take the parent's path (fork from an "
                "earlier step, or keep the graph compatible up to it)"
            )
        return memo

    async def _turn(self, memo: ForkMemo) -> None:
        """Wait until every memo before this one (the parent's completion order) is out.

        If every running step waits for its turn and none is next, the step whose memo is
        next never began: the fork took another path (a graph or plan that routes
        differently in a way no begun step showed). It fails rather than wait for ever.
        """
        self._waiting.add(memo.rank)
        try:
            await workflow.wait_condition(lambda: self._released == memo.rank or self._stuck())
        finally:
            self._waiting.discard(memo.rank)
        if self._released != memo.rank:
            missing = self._by_rank.get(self._released)
            named = f"step #{missing.seq} ({missing.node}#{missing.iteration})" if missing else "?"
            raise _diverged(
                f"fork diverged before its fork point #{self.seed.step}: the parent "
                f"{self.seed.parent_id} finished {named} next, which this fork never began "
                "(a graph or code that takes another path before the fork point)"
            )
        self._released += 1

    def _stuck(self) -> bool:
        return self._released not in self._waiting and len(self._waiting) >= self._running()

    async def task(self, memo: ForkMemo) -> TaskResult | Rejection:
        """A task's (or child's, or person's) outcome in the parent, in its turn."""
        await self._turn(memo)
        if memo.rejection is not None:
            return memo.rejection
        if memo.task is None:
            raise _diverged(f"fork memo of step #{memo.seq} ({memo.node}) holds no task result")
        return memo.task

    async def plan(self, memo: ForkMemo) -> PlanResult | Rejection:
        """A plan's decision in the parent, in its turn."""
        await self._turn(memo)
        if memo.rejection is not None:
            return memo.rejection
        if memo.plan is None:
            raise _diverged(f"fork memo of step #{memo.seq} ({memo.node}) holds no decision")
        return memo.plan
