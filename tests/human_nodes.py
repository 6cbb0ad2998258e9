"""Node code for the human-input tests (tests/test_human.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from graphrunner import NodeContext, NodeOutput, PlanResult, plan, task


class Verdict(BaseModel):
    """A response model the loader turns into a pinned JSON Schema."""

    ok: bool
    note: str = ""


@task
async def propose(ctx: NodeContext, data: Any) -> dict[str, Any]:
    """Something to ask about."""
    return {"title": f"plan {ctx.iteration}", "cost": 12.5, "item": data}


@plan
async def ask(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the proposal to the person."""
    return PlanResult.goto("review", data=results[-1].output)


@plan
async def after(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finish with what the person said (and how many times they were asked)."""
    answer = results[-1].output
    if isinstance(answer, dict) and answer.get("again"):
        return PlanResult.goto("propose", data="again")
    return PlanResult.finish({"answer": answer, "state": {"answers": list(ctx.state["answers"])}})


@plan
async def ask_both(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Ask both PARALLEL human successors at once."""
    return PlanResult.goto(*ctx.successors)


@plan
async def outputs(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the joined answers, in branch order, to the next task."""
    return PlanResult.goto(ctx.successors[0], data=[r.output for r in results])


@task
async def linger(ctx: NodeContext, data: Any) -> Any:
    """Work a while after the answers (the lifetime runs, nobody is asked)."""
    await asyncio.sleep(1.5)
    return data
