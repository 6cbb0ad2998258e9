"""The hand-written baseline's workflows: the same work as the graphrunner graphs.

Idiomatic temporalio: a loop of ``execute_activity`` calls with an explicit timeout and retry
policy, typed pydantic input and result, activity models imported through the sandbox.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from bench.baseline_activities import (
        Answer,
        AskInput,
        AskResult,
        LongLoopInput,
        LongLoopResult,
        LoopInput,
        LoopResult,
        PlanInput,
        PlanOutput,
        StateLoopInput,
        StateLoopResult,
        StatePlanInput,
        StateTaskInput,
        TalkInput,
        TalkResult,
        TaskInput,
        TaskOutput,
        TickInput,
        ToolInput,
        TurnInput,
        hold,
        noop_plan,
        noop_task,
        state_plan,
        state_task,
        tick,
        tool_bulky,
        turn,
    )

__all__ = [
    "AskWorkflow",
    "FanOutWorkflow",
    "HoldWorkflow",
    "LocalLoopWorkflow",
    "LongLoopWorkflow",
    "LoopWorkflow",
    "StateLoopWorkflow",
    "ToolTalkWorkflow",
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


@workflow.defn(name="BenchLongLoop")
class LongLoopWorkflow:
    """One activity per round and the decision in workflow code, ``iterations`` rounds;
    continues as new, carrying its count, whenever Temporal suggests it between two rounds."""

    @workflow.run
    async def run(self, inp: LongLoopInput) -> LongLoopResult:
        count = inp.count
        while True:
            out = await workflow.execute_activity(
                tick, TickInput(count=count), start_to_close_timeout=TIMEOUT, retry_policy=RETRY
            )
            count += out.add
            if count >= inp.iterations:
                return LongLoopResult(count=count, runs=inp.runs)
            if workflow.info().is_continue_as_new_suggested():
                carried = LongLoopInput(iterations=inp.iterations, count=count, runs=inp.runs + 1)
                workflow.continue_as_new(carried)


@workflow.defn(name="BenchAsk")
class AskWorkflow:
    """Waits for a person's answer (the ``answer`` update, validated), then a no-op plan.

    The wait-and-answer section's baseline for graphrunner's human task: the validator
    checks what graphrunner's does for the bench graph's schema (the node, one boolean
    ``ok``), and a refused answer leaves no event in history.
    """

    def __init__(self) -> None:
        self._answer: Answer | None = None

    @workflow.run
    async def run(self, inp: AskInput) -> AskResult:
        await workflow.wait_condition(lambda: self._answer is not None)
        answer = self._answer
        if answer is None:  # for the type checker: the condition above holds
            raise ApplicationError("no answer", non_retryable=True)
        await workflow.execute_activity(
            noop_plan,
            PlanInput(step=1, steps=1),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return AskResult(data=answer.data, by=answer.by)

    @workflow.update(name="answer")
    def answer(self, answer: Answer) -> AskResult:
        self._answer = answer
        return AskResult(data=answer.data, by=answer.by)

    @answer.validator
    def _check(self, answer: Answer) -> None:
        if self._answer is not None:
            raise ApplicationError("already answered", non_retryable=True)
        if answer.node != "ask":
            raise ApplicationError(f"node '{answer.node}' is not waiting", non_retryable=True)
        data = answer.data
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool) or len(data) != 1:
            raise ApplicationError("the answer must be {ok: boolean}", non_retryable=True)


@workflow.defn(name="BenchToolTalk")
class ToolTalkWorkflow:
    """A model that calls a tool, round after round, the whole conversation in each call.

    What users of the SDK's agent anchors write (temporalio/sdk-python#1890): the message
    list lives in the workflow and goes to every model activity, so each round's input holds
    the whole conversation so far.
    """

    @workflow.run
    async def run(self, inp: TalkInput) -> TalkResult:
        messages: list[dict[str, Any]] = [{"role": "user", "content": inp.prompt}]
        rounds = 0
        while True:
            reply = await workflow.execute_activity(
                turn,
                TurnInput(messages=messages, rounds=inp.rounds),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            messages.append(reply.message)
            calls = reply.message.get("tool_calls") or []
            if not calls:
                return TalkResult(answer=str(reply.message.get("content")), rounds=rounds)
            rounds += 1
            for call in calls:
                arguments = json.loads(call["function"]["arguments"])
                result = await workflow.execute_activity(
                    tool_bulky,
                    ToolInput(n=arguments["n"]),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": result.content}
                )
