"""No-op graphrunner nodes for the benchmark graphs (importable as bench.nodes:Name)."""

from __future__ import annotations

from typing import Any

from bench.gate import GATE
from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task


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
