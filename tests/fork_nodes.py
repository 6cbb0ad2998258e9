"""Node code for the fork tests (tests/test_fork.py)."""

from __future__ import annotations

import os
from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, TaskResult, plan, task

#: The environment variable `stamp` reads: a test changes it to change the node's behaviour.
TAG = "GRAPHRUNNER_FORK_TEST_TAG"


@task
async def stamp(ctx: NodeContext, data: Any) -> TaskResult:
    """Its data, stamped with the node, the tag the worker has now and its config."""
    output = {
        "by": ctx.node,
        "tag": os.environ.get(TAG, "v1"),
        "extra": ctx.config.get("extra"),
        "data": data,
    }
    return TaskResult(output=output, update={"trail": [ctx.node]})


@plan
async def relay(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the last output to the plan's first successor."""
    return PlanResult.goto(ctx.successors[0], data=results[-1].output)


@plan
async def finish(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finish with the last output and the trail of nodes the state kept."""
    return PlanResult.finish({"last": results[-1].output, "trail": ctx.state["trail"]})
