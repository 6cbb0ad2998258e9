"""The hand-written baseline's workflows: the same work as the graphrunner graphs.

Idiomatic temporalio: a loop of ``execute_activity`` calls with an explicit timeout and retry
policy, typed pydantic input and result, activity models imported through the sandbox.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench.baseline_activities import (
        LoopInput,
        LoopResult,
        PlanInput,
        PlanOutput,
        StateLoopInput,
        StateLoopResult,
        StatePlanInput,
        StateTaskInput,
        TaskInput,
        TaskOutput,
        hold,
        noop_plan,
        noop_task,
        state_plan,
        state_task,
    )

__all__ = [
    "FanOutWorkflow",
    "HoldWorkflow",
    "LocalLoopWorkflow",
    "LoopWorkflow",
    "StateLoopWorkflow",
]

# The same settings graphrunner's graph defaults give every node.
TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)


async def _task(step: int) -> TaskOutput:
    return await workflow.execute_activity(
        noop_task, TaskInput(step=step), start_to_close_timeout=TIMEOUT, retry_policy=RETRY
    )


@workflow.defn(name="BenchLoop")
class LoopWorkflow:
    """Task then Plan, ``steps`` times; both as regular activities."""

    @workflow.run
    async def run(self, inp: LoopInput) -> LoopResult:
        step = 0
        while True:
            step += 1
            await _task(step)
            plan = await workflow.execute_activity(
                noop_plan,
                PlanInput(step=step, steps=inp.steps),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if plan.done:
                return LoopResult(steps=step)


@workflow.defn(name="BenchLocalLoop")
class LocalLoopWorkflow:
    """Task as an activity, then Plan as a local activity, ``steps`` times."""

    @workflow.run
    async def run(self, inp: LoopInput) -> LoopResult:
        step = 0
        while True:
            step += 1
            await _task(step)
            plan: PlanOutput = await workflow.execute_local_activity(
                noop_plan,
                PlanInput(step=step, steps=inp.steps),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if plan.done:
                return LoopResult(steps=step)


@workflow.defn(name="BenchFanOut")
class FanOutWorkflow:
    """A Plan fans out to ``branches`` parallel Tasks that join into the next Plan."""

    @workflow.run
    async def run(self, inp: LoopInput) -> LoopResult:
        step = 0
        while True:
            step += 1
            plan = await workflow.execute_activity(
                noop_plan,
                PlanInput(step=step, steps=inp.rounds + 1),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if plan.done:
                return LoopResult(steps=step - 1)
            await asyncio.gather(*(_task(step) for _ in range(inp.branches)))


@workflow.defn(name="BenchHold")
class HoldWorkflow:
    """One activity that waits until the benchmark releases it (the idle-memory section)."""

    @workflow.run
    async def run(self, inp: LoopInput) -> LoopResult:
        await workflow.execute_activity(
            hold, TaskInput(step=1), start_to_close_timeout=TIMEOUT, retry_policy=RETRY
        )
        return LoopResult(steps=1)


@workflow.defn(name="BenchStateLoop")
class StateLoopWorkflow:
    """The loop holding a state dict: each activity gets all of it, the task's update is
    merged in by hand (a counter, a list, a maximum, a string; one large string if ``big``)."""

    @workflow.run
    async def run(self, inp: StateLoopInput) -> StateLoopResult:
        state: dict[str, Any] = {"count": 0, "notes": [], "best": None, "last": None}
        if inp.big:
            state["doc"] = None
        step = 0
        while True:
            step += 1
            out = await workflow.execute_activity(
                state_task,
                StateTaskInput(step=step, state=state, big=inp.big),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            update = out.update
            state["count"] += update["count"]
            state["notes"].append(update["notes"])
            best = state["best"]
            state["best"] = update["best"] if best is None else max(best, update["best"])
            state["last"] = update["last"]
            if "doc" in update:
                state["doc"] = update["doc"]
            plan = await workflow.execute_activity(
                state_plan,
                StatePlanInput(steps=inp.steps, state=state),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if plan.done:
                return StateLoopResult(steps=step, state=state)
