"""Node code for the tenant tests (tests/test_tenants.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from graphrunner import GraphBuilder, NodeContext, NodeOutput, PlanResult, plan, task
from graphrunner.graph import AgentGraph


@task
async def draft(ctx: NodeContext, data: Any) -> dict[str, Any]:
    """Something for a person to look at."""
    return {"draft": data}


@plan
async def ask(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the draft to the person."""
    return PlanResult.goto("review", data=results[-1].output)


@plan
async def done(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finish with the person's answer."""
    return PlanResult.finish({"answer": results[-1].output})


@task
async def step(ctx: NodeContext, data: Any) -> Any:
    """A short piece of work (the fairness test's unit)."""
    await asyncio.sleep(0.02)
    return data


@plan
async def again(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Run ``step`` three times, then finish."""
    if ctx.iteration < 3:
        return PlanResult.goto("step", data=results[-1].output)
    return PlanResult.finish(results[-1].output)


def review_graph(name: str = "tenant-review") -> AgentGraph:
    """draft -> ask -> review (human input) -> done -> FINAL."""
    return (
        GraphBuilder(name, version="1.0.0")
        .task("draft", draft)
        .plan("ask", ask)
        .human("review", prompt="look at {draft}")
        .plan("done", done)
        .edge("draft", "ask")
        .edge("ask", "review")
        .edge("review", "done")
        .final("done")
        .build()
    )


def loop_graph(name: str = "tenant-loop") -> AgentGraph:
    """step -> again -> step ... three times -> FINAL."""
    return (
        GraphBuilder(name, version="1.0.0")
        .task("step", step)
        .plan("again", again)
        .edge("step", "again")
        .edge("again", "step")
        .final("again")
        .build()
    )
