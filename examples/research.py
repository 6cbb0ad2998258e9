"""Nodes of the research example: a gather/review loop, a three-way review and a report.

Deterministic and offline: the "work" is string building with short sleeps that stand in
for API latency, so the demo shows real timings in the Temporal UI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task

REVIEWERS = ["critique", "fact_check", "style"]


class Gather(Task):
    """Collect one more note on the topic (a search call in a real agent)."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        topic = data.get("topic", "durable agents") if isinstance(data, dict) else str(data)
        notes = list(data.get("notes", [])) if isinstance(data, dict) else []
        await asyncio.sleep(float(ctx.config.get("latency_s", 0.05)))
        notes.append(f"finding {ctx.iteration} about {topic}")
        return {"topic": topic, "notes": notes}


class Review(Plan):
    """Loop back to Gather until enough notes exist, then fan out to three reviewers."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        state = results[0].output
        if len(state["notes"]) < int(ctx.config.get("rounds", 3)):
            return PlanResult.goto("gather", data=state)
        return PlanResult.goto(*REVIEWERS, data=state)


class Reviewer(Task):
    """One reviewer's verdict on the notes; the node's name says which reviewer it is."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        await asyncio.sleep(float(ctx.config.get("latency_s", 0.1)))
        return {"reviewer": ctx.node, "ok": True, "notes_seen": len(data["notes"])}


class Merge(Plan):
    """Fan-in: combine every reviewer's verdict and hand the lot to Publish."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        verdicts = {r.node: r.output for r in results}
        return PlanResult.goto("publish", data={"verdicts": verdicts})


class Publish(Task):
    """Write the final report; its edge is FINAL, so its output is the lifetime's."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        verdicts = data["verdicts"]
        approved = all(v["ok"] for v in verdicts.values())
        return {"approved": approved, "reviewers": sorted(verdicts)}
