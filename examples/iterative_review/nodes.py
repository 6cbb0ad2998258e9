"""Nodes of the iterative review example (graph.yaml): the bookkeeping around the model calls."""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, TaskResult, plan, task


@plan
async def submit(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Keep the new draft in state, count it, and send it to the judge."""
    text = str(results[-1].output)
    round_no = int(ctx.state.get("rounds", 0)) + 1
    return PlanResult(
        next_task_names=["review"],
        data={"round": round_no, "text": text},
        update={"draft": text, "rounds": 1},
    )


@task
async def feedback(ctx: NodeContext, data: dict[str, Any]) -> TaskResult:
    """Pair the judge's verdict with the draft it judged, for the reviser."""
    weak = ", ".join(d for d, g in data["grades"].items() if g not in ("S", "A", "B"))
    request = {"text": ctx.state["draft"], "weak": weak, "notes": data["notes"]}
    return TaskResult(output=request, update={"verdicts": [data]})


@plan
async def handoff(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the feedback to the reviser."""
    return PlanResult.goto("revise", data=results[-1].output)


@task
async def publish(ctx: NodeContext, data: dict[str, Any]) -> TaskResult:
    """The result: the last draft, its verdict and how many drafts it took."""
    output = {
        "text": ctx.state["draft"],
        "passed": data["passed"],
        "overall": data["overall"],
        "grades": data["grades"],
        "rounds": ctx.state["rounds"],
    }
    return TaskResult(output=output, update={"verdicts": [data]})
