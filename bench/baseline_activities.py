"""The hand-written baseline's activities and their typed inputs and results.

What an engineer would write for the same job without graphrunner: one activity per kind of
step, one pydantic model in and one out.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from bench.gate import GATE

__all__ = [
    "Answer",
    "AskInput",
    "AskResult",
    "LongLoopInput",
    "LongLoopResult",
    "LoopInput",
    "LoopResult",
    "PlanInput",
    "PlanOutput",
    "StateLoopInput",
    "StateLoopResult",
    "StatePlanInput",
    "StateTaskInput",
    "StateUpdate",
    "TaskInput",
    "TaskOutput",
    "TickInput",
    "TickOutput",
    "TalkInput",
    "TalkResult",
    "ToolInput",
    "ToolOutput",
    "TurnInput",
    "TurnOutput",
    "hold",
    "noop_plan",
    "noop_task",
    "state_plan",
    "state_task",
    "tick",
    "tool_bulky",
    "turn",
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


class StateLoopInput(BaseModel):
    steps: int
    big: int = 0  # characters of the one large field the first task writes (0: none)


class StateLoopResult(BaseModel):
    steps: int
    state: dict[str, Any]


class StateTaskInput(BaseModel):
    step: int
    state: dict[str, Any]
    big: int = 0


class StateUpdate(BaseModel):
    update: dict[str, Any]


class StatePlanInput(BaseModel):
    steps: int
    state: dict[str, Any]


class LongLoopInput(BaseModel):
    """The long loop's input; a run that continues as new carries ``count`` and ``runs``."""

    iterations: int
    count: int = 0
    runs: int = 1  # this run's number in the chain


class LongLoopResult(BaseModel):
    count: int
    runs: int


class TickInput(BaseModel):
    count: int


class TickOutput(BaseModel):
    add: int


class AskInput(BaseModel):
    question: str


class Answer(BaseModel):
    """A person's answer to `BenchAsk` (its update's payload), as graphrunner's carries."""

    node: str
    data: Any = None
    by: str = ""


class AskResult(BaseModel):
    data: Any
    by: str


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


@activity.defn(name="bench.state_task")
async def state_task(inp: StateTaskInput) -> StateUpdate:
    """The update `bench.nodes.Tally` returns, for the same step."""
    update: dict[str, Any] = {
        "count": 1,
        "notes": f"note {inp.step}",
        "best": inp.step % 7,
        "last": f"step {inp.step}",
    }
    if inp.big and inp.step == 1:
        update["doc"] = "x" * inp.big
    return StateUpdate(update=update)


@activity.defn(name="bench.state_plan")
async def state_plan(inp: StatePlanInput) -> PlanOutput:
    """Routes on the state, as `bench.nodes.UntilCount` does."""
    return PlanOutput(done=inp.state["count"] >= inp.steps)


@activity.defn(name="bench.tick")
async def tick(inp: TickInput) -> TickOutput:
    """One more round: the update `bench.nodes.Tick` returns (one added to the count)."""
    return TickOutput(add=1)


class TalkInput(BaseModel):
    """A tool conversation of ``rounds`` rounds, each tool result about 2 KiB."""

    prompt: str
    rounds: int


class TalkResult(BaseModel):
    answer: str
    rounds: int


class TurnInput(BaseModel):
    """One model call: the whole conversation so far, as anchors users write it."""

    messages: list[dict[str, Any]]
    rounds: int


class TurnOutput(BaseModel):
    message: dict[str, Any]  # the assistant's message, with its tool calls if any


class ToolInput(BaseModel):
    n: int


class ToolOutput(BaseModel):
    content: str


@activity.defn(name="bench.turn")
async def turn(inp: TurnInput) -> TurnOutput:
    """The model, a stand-in: a tool call while fewer than ``rounds`` results came back.

    Asks what graphrunner's offline model is scripted to ask (`bench.llm_turns`); no
    litellm here, since only what crosses history is compared.
    """
    done = sum(m.get("role") == "tool" for m in inp.messages)
    if done >= inp.rounds:
        return TurnOutput(message={"role": "assistant", "content": "finished"})
    call = {
        "id": f"call_{done}",
        "type": "function",
        "function": {"name": "bulky", "arguments": json.dumps({"n": done})},
    }
    return TurnOutput(message={"role": "assistant", "content": None, "tool_calls": [call]})


@activity.defn(name="bench.tool_bulky")
async def tool_bulky(inp: ToolInput) -> ToolOutput:
    """The tool: about 2 KiB of text (`bench.nodes.bulky`'s), as JSON, as the model sees it."""
    return ToolOutput(content=json.dumps(f"chunk {inp.n} " + "x" * 2048))
