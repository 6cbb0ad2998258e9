"""No-op graphrunner nodes for the benchmark graphs (importable as bench.nodes:Name).

`Tally` and `UntilCount` are the stateful loop's: the same no-op work, with a state update
every step and a plan that routes on the state. `Tick` is the long loop's task: one added to
the state's count (its plan routes by an edge condition, without code).
"""

from __future__ import annotations

from typing import Any

from bench.gate import GATE
from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult


class Noop(Task):
    """Does nothing and returns nothing."""

    async def run(self, ctx: NodeContext, data: Any) -> None:
        return None


class Hold(Task):
    """Waits on the benchmark's gate (`bench.gate.GATE`) until it is released."""

    async def run(self, ctx: NodeContext, data: Any) -> None:
        await GATE.wait()


class Loop(Plan):
    """Routes back to its task until it has run ``config["steps"]`` times."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration < int(ctx.config["steps"]):
            return PlanResult.goto(ctx.successors[0])
        return PlanResult.finish(ctx.iteration)


class FanOut(Plan):
    """Fans out to every successor, ``config["rounds"]`` times, then finishes.

    Its successors JOIN back into it, so each iteration after the first is also the fan-in
    of the previous round.
    """

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration <= int(ctx.config["rounds"]):
            return PlanResult.goto(*ctx.successors)
        return PlanResult.finish(ctx.iteration - 1)


class Tally(Task):
    """Updates the state every step: one to ``count`` (add), a short item to ``notes``
    (append), a number to ``best`` (max), a string to ``last`` (replace); on its first run,
    ``config["big"]`` characters to ``doc`` (replace) when set."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        step = ctx.iteration
        update: dict[str, Any] = {
            "count": 1,
            "notes": f"note {step}",
            "best": step % 7,
            "last": f"step {step}",
        }
        big = int(ctx.config.get("big", 0))
        if big and step == 1:
            update["doc"] = "x" * big
        return TaskResult(update=update)


class UntilCount(Plan):
    """Routes back to its task until the state's ``count`` reaches ``config["steps"]``."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.state["count"] < int(ctx.config["steps"]):
            return PlanResult.goto(ctx.successors[0])
        return PlanResult.finish(ctx.state["count"])


class Tick(Task):
    """Adds one to the state's ``count`` (the long loop's task; its result stays as small)."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(update={"count": 1})


def bulky(n: int) -> str:
    """The tool conversation's tool (`bench.llm_turns`): about 2 KiB of text."""
    return f"chunk {n} " + "x" * 2048
