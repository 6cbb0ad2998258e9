"""Node code for the observability tests (tests/test_observability.py)."""

from __future__ import annotations

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult


class Loop(Plan):
    """Sends its first successor ``config.rounds`` times, then finishes.

    A rejected execution ends the lifetime at once, naming the rule that rejected it.
    """

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        for result in results:
            if result.rejection is not None:
                return PlanResult.finish({"rejected": result.node, "rule": result.rejection.rule})
        if ctx.iteration <= int(ctx.config.get("rounds", 1)):
            return PlanResult.goto(ctx.successors[0], data=ctx.iteration)
        return PlanResult.finish({"rounds": ctx.iteration - 1})
