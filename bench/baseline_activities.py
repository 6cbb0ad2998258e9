"""The hand-written baseline's activities and their typed inputs and results.

What an engineer would write for the same job without graphrunner: one activity per kind of
step, one pydantic model in and one out.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from bench.gate import GATE

__all__ = [
    "LoopInput",
    "LoopResult",
    "PlanInput",
    "PlanOutput",
    "TaskInput",
    "TaskOutput",
    "hold",
    "noop_plan",
    "noop_task",
]


class TaskInput(BaseModel):
    step: int


class TaskOutput(BaseModel):
    step: int


class PlanInput(BaseModel):
    step: int
    steps: int


class PlanOutput(BaseModel):
    done: bool


class LoopInput(BaseModel):
    steps: int = 0
    rounds: int = 0
    branches: int = 0


class LoopResult(BaseModel):
    steps: int


@activity.defn(name="bench.noop_task")
async def noop_task(inp: TaskInput) -> TaskOutput:
    return TaskOutput(step=inp.step)


@activity.defn(name="bench.noop_plan")
async def noop_plan(inp: PlanInput) -> PlanOutput:
    return PlanOutput(done=inp.step >= inp.steps)


@activity.defn(name="bench.hold")
async def hold(inp: TaskInput) -> TaskOutput:
    """Wait on the benchmark's gate (`bench.gate.GATE`) until it is released."""
    await GATE.wait()
    return TaskOutput(step=inp.step)
