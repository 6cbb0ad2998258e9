"""Node implementations for the lifetime state tests (tests/test_state.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult


class Count(Task):
    """Counts one run into every kind of field, and reports the count it saw."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        it = ctx.iteration
        return TaskResult(
            output=ctx.state["count"],
            update={
                "count": 1,
                "seen": it,
                "best": [5.0, 9.5, 7.0][(it - 1) % 3],
                "notes": {f"n{it}": it},
                "last": f"work {it}",
            },
        )


class UntilThree(Plan):
    """Loops back to its task until the state's count reaches 3, then finishes with it."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        update = {"last": f"check {ctx.iteration}"}
        if ctx.state["count"] >= 3:
            return PlanResult(output=dict(ctx.state), update=update)
        return PlanResult(next_task_names=[ctx.successors[0]], update=update)


class MapInput(Plan):
    """Maps its successor over the lifetime input (a list)."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.map(ctx.successors[0], results[0].output)


class SlowFirst(Task):
    """Item i of n sleeps (n - i) * 100 ms, so branches finish in reverse item order; it
    appends itself, adds itself, and tags itself; its output is the state it started from."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        i, n = data
        await asyncio.sleep((n - i) * 0.1)
        return TaskResult(
            output=dict(ctx.state), update={"order": [i], "total": i, "tags": [f"t{i}"]}
        )


class SeeState(Plan):
    """Finishes with the state the JOIN sees and the branches' outputs."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish({"state": dict(ctx.state), "seen": [r.output for r in results]})


class Tag(Task):
    """Updates the state with its data (a mapping)."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(output=data, update=data)


def unique(current: list[str] | None, update: list[str]) -> list[str]:
    """A named reducer: a list that refuses duplicates."""
    have = list(current or [])
    for item in update:
        if item in have:
            raise ValueError(f"duplicate {item!r}")
        have.append(item)
    return have


def longest(current: str | None, update: str) -> str:
    """A named reducer: keeps the longer string (the first on a tie)."""
    return update if current is None or len(update) > len(current) else current


class Grow(Task):
    """Writes ``config.kib`` KiB of text into the state, and reports how much it saw."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        seen = len(ctx.state.get("text") or "")
        return TaskResult(
            output=seen, update={"text": "x" * 1024 * int(ctx.config.get("kib", 1)), "n": 1}
        )


class TwiceThenStop(Plan):
    """Runs its task twice in all, then finishes with the text length the state holds."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.state["n"] < 2:
            return PlanResult.goto(ctx.successors[0])
        return PlanResult.finish(len(ctx.state["text"]))


class Tick(Task):
    """Counts one more round in the state; outputs the round it ran in."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(output=ctx.iteration, update={"count": 1})
