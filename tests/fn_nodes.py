"""Function nodes and a shared resource used by the tests (importable as tests.fn_nodes:name)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from graphrunner import NodeContext, NodeOutput, PlanResult, plan, resource, task


class Query(BaseModel):
    text: str
    limit: int = 3


@task
async def fetch(ctx: NodeContext, query: Query) -> dict[str, Any]:
    """Takes its input as a Query: a bad one fails before this body runs."""
    return {"hits": [f"{query.text} #{i}" for i in range(query.limit)], "iteration": ctx.iteration}


@task
async def shout(data: str) -> str:
    """No context: just the data."""
    return data.upper()


@plan
async def route(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Loops to fetch until it ran twice, then hands the hits to shout."""
    hits = results[0].output["hits"]
    if ctx.iteration < 2:
        return PlanResult.goto("fetch", data={"text": "again", "limit": len(hits) + 1})
    return PlanResult.goto("shout", data=" ".join(hits))


@plan
async def finish(results: list[NodeOutput]) -> PlanResult:
    """No context: finishes with what came in."""
    return PlanResult.finish([r.output for r in results])


async def undecorated(ctx: NodeContext, data: Any) -> Any:
    """A plain function: not a node until decorated."""
    return data


class Pool:
    """Stands in for a connection pool; counts how often it is made and closed."""

    opened = 0
    closed = 0

    def __init__(self) -> None:
        self.uses = 0


@resource
async def pool() -> AsyncIterator[Pool]:
    await asyncio.sleep(0.05)  # a slow connect, so concurrent first uses overlap it
    Pool.opened += 1
    made = Pool()
    try:
        yield made
    finally:
        Pool.closed += 1


@task
async def use_pool(ctx: NodeContext, data: Any) -> dict[str, Any]:
    shared = await ctx.resource(pool)
    shared.uses += 1
    return {"pool": id(shared), "node": ctx.node}


@plan
async def fan(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    return PlanResult.goto(*ctx.successors)


@plan
async def fan_again(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    if ctx.iteration < 3:
        return PlanResult.goto("start")
    return PlanResult.finish(sorted({r.output["pool"] for r in results}))


@task
async def flaky(ctx: NodeContext, data: Any) -> dict[str, Any]:
    """Fails its first two attempts (square brackets in the error: shown verbatim)."""
    if ctx.attempt < 3:
        raise ValueError(f"flaky [attempt {ctx.attempt}] of {ctx.node}")
    return {"attempt": ctx.attempt}


@plan
async def twice(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Runs its first successor again once, then finishes."""
    if ctx.iteration < 2:
        return PlanResult.goto(ctx.successors[0])
    return PlanResult.finish(results[0].output)


@plan
async def broken(results: list[NodeOutput]) -> PlanResult:
    raise ValueError("broken plan")
