"""Nodes that call models through ``ctx.llm`` (importable as tests.llm_nodes:Name)."""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task


class Ask(Task):
    """Calls ``config.tier`` ``config.calls`` times; reports each reply."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        replies = []
        for n in range(int(ctx.config.get("calls", 1))):
            reply = await ctx.llm.complete(
                [{"role": "user", "content": f"{ctx.config.get('prompt', 'hello')} #{n}"}],
                tier=str(ctx.config.get("tier", "standard")),
            )
            replies.append(
                {
                    "model": reply.model,
                    "text": reply.text,
                    "tokens_in": reply.tokens_in,
                    "tokens_out": reply.tokens_out,
                    "cost_usd": reply.cost_usd,
                    "skipped": [list(s) for s in reply.skipped],
                }
            )
        return {"replies": replies, "calls": ctx.llm.usage.calls}


class AskThenFail(Task):
    """Calls a model, then fails on its first attempt (its spend must still be recorded)."""

    async def run(self, ctx: NodeContext, data: Any) -> str:
        reply = await ctx.llm.complete([{"role": "user", "content": f"try {ctx.attempt}"}])
        if ctx.attempt == 1:
            raise RuntimeError("the answer did not parse")
        return reply.text


class Finish(Plan):
    """Finishes with what the task returned."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish(results[0].output)
