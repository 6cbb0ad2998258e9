"""Nodes of the approval example (examples/approval.yaml): a drafting loop a person steers.

Offline and deterministic: "writing" a draft puts the topic, the round and the editor's last
comment into a sentence, where a real agent would call a model.
"""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, TaskResult, plan, task


@task
async def write(ctx: NodeContext, data: Any) -> TaskResult:
    """Write the next draft of the topic, taking the editor's comment into account."""
    topic = str(data.get("topic", ""))
    comment = data.get("comment")
    version = int(ctx.state.get("rounds") or 0) + 1
    text = f"Draft {version} about {topic}."
    if comment:
        text += f" Revised for: {comment}."
    draft = {"topic": topic, "version": version, "text": text}
    return TaskResult(output=draft, update={"draft": draft, "rounds": 1})


@plan
async def submit(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Send the new draft to the editor (the approve step's prompt reads its fields)."""
    return PlanResult.goto("approve", data=results[-1].output)


@plan
async def decide(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Act on the editor's answer: finish approved or rejected, or write again."""
    answer = results[-1].output or {}
    draft = ctx.state.get("draft") or {}
    decision = answer.get("decision")
    if decision == "changes":
        return PlanResult.goto(
            "write", data={"topic": draft.get("topic"), "comment": answer.get("comment", "")}
        )
    status = "approved" if decision == "approve" else "rejected"
    return PlanResult.finish({"status": status, "draft": draft, "comment": answer.get("comment")})
