"""Tools and output models the LLM node tests name by import path."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task


class Summary(BaseModel):
    """What the summarising llm_task must answer."""

    title: str
    points: list[str]


def search(query: str, limit: int = 2) -> list[str]:
    """Search the notes: a fixed, offline answer."""
    return [f"{query} result {i}" for i in range(1, limit + 1)]


async def lookup(key: str) -> dict[str, str]:
    """Look a key up (async)."""
    return {"key": key, "value": key.upper()}


def bulky(n: int) -> str:
    """Return about 2 KiB of text (makes the conversation grow)."""
    return f"chunk {n} " + "x" * 2048


def untyped(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """A tool without annotations (validation refuses it)."""
    return x


class Same(Task):
    """Returns its input unchanged."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        return data


class FinishWithLast(Plan):
    """Finishes with the output of the task before it."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish(results[0].output)


class PassOn(Plan):
    """Hands the last output on to its first successor."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto(ctx.successors[0], data=results[0].output)
