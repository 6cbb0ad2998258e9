"""Node implementations of the sub-graph tests (importable as tests.subgraph_nodes:Name)."""

from __future__ import annotations

import asyncio
from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, TaskResult, Telemetry, plan, task


@task
async def square(ctx: NodeContext, data: Any) -> Any:
    """Squares its input (a number), spending 10 tokens."""
    await asyncio.sleep(float(ctx.config.get("sleep_s", 0)))
    return TaskResult(output=int(data) ** 2, telemetry=Telemetry(tokens_in=7, tokens_out=3))


@task
async def fail(ctx: NodeContext, data: Any) -> Any:
    """Always fails."""
    raise ValueError(f"point agent gave up on {data!r}")


@plan
async def finish_first(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finishes with its first result's output."""
    return PlanResult.finish(results[0].output)


@plan
async def split(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """A lead agent: maps its sub-graph successor over the list it got."""
    return PlanResult.map(ctx.successors[0], list(results[0].output))


@plan
async def outputs(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finishes with every result's output, in order."""
    return PlanResult.finish([r.output for r in results])


@plan
async def first_then_finish(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Runs its successor with the input once, then finishes with what it returned."""
    if results[0].node == "__input__":
        return PlanResult.goto(ctx.successors[0], data=results[0].output)
    return PlanResult.finish(results[0].output)


@plan
async def slowly_first_then_finish(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """`first_then_finish` after ``config.sleep_s`` seconds."""
    await asyncio.sleep(float(ctx.config.get("sleep_s", 0)))
    return await first_then_finish(ctx, results)


VALID = """
name: generated
version: 1.0.0
nodes:
  - {name: sq, kind: task, impl: tests.subgraph_nodes:square}
  - {name: done, kind: plan, impl: tests.subgraph_nodes:finish_first}
edges:
  - {from: sq, to: done}
  - {from: done, type: FINAL}
"""

INVALID = """
name: generated
version: 1.0.0
nodes:
  - {name: sq, kind: task, impl: tests.subgraph_nodes:square}
  - {name: sq2, kind: task, impl: tests.subgraph_nodes:square}
edges:
  - {from: sq, to: sq2}
  - {from: sq2, type: FINAL}
"""

FOREIGN = """
name: generated
version: 1.0.0
nodes:
  - {name: sq, kind: task, impl: os:system}
edges:
  - {from: sq, type: FINAL}
"""


@plan
async def generate(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """A DOG generator: first an invalid graph (config ``bad``), then a valid one.

    After a rejection it finishes with what it saw if ``config.report`` is set, so the test
    can read the errors; otherwise it returns the valid graph, then finishes with its result.
    """
    last = results[-1]
    if last.rejection is not None:
        if ctx.config.get("report"):
            return PlanResult.finish(
                {"rule": last.rejection.rule, "errors": last.rejection.message}
            )
        return PlanResult.goto("run_generated", data=results[0].output, graph=VALID)
    if last.node == "run_generated":
        return PlanResult.finish({"result": last.output, "attempts": ctx.iteration})
    bad = ctx.config.get("bad")
    source = {"invalid": INVALID, "foreign": FOREIGN}.get(str(bad), VALID)
    return PlanResult.goto("run_generated", data=last.output, graph=source)
