"""Nodes of the lead-agent example (examples/lead_agent.yaml, examples/point_agent.yaml).

Offline and deterministic: "research" scores a sub-problem by the length of its name, and
each refinement adds 0.25, so short names need more rounds; the loop and the fan-out show in
`graphrunner status` and the Temporal UI as they would with a model behind each node.
"""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult


class Decompose(Task):
    """Split the question into its parts and remember the question in the lead's state."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        question = str(data.get("question", ""))
        parts = [str(p) for p in data.get("parts", [])]
        return TaskResult(output=parts, update={"question": question})


class Assign(Plan):
    """Hand each part to a point agent (a child lifetime each), shared memory included."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        memory = {"question": ctx.state.get("question")}
        problems = [{"part": part, "memory": memory} for part in results[-1].output or []]
        limit = ctx.config.get("max_concurrency")
        return PlanResult.map("solve", problems, max_concurrency=limit)


class Synthesize(Plan):
    """Every point agent reported: fold the reports into the state, then write up."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        reports = [r.output for r in results]
        scores = [float(r["score"]) for r in reports]
        update: dict[str, Any] = {"findings": reports}
        if scores:
            update["confidence"] = min(scores)
        return PlanResult(next_task_names=["write_up"], data=reports, update=update)


class WriteUp(Task):
    """The lead's answer: the question, each part's finding, and how sure it is."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        return {
            "question": ctx.state.get("question"),
            "answers": {r["part"]: r["answer"] for r in data},
            "confidence": ctx.state.get("confidence"),
        }


class Research(Task):
    """A point agent's first pass at its part (a search and a model call in a real agent)."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        part = str(data["part"])
        score = round(min(1.0, len(part) / 10), 2)
        report = {
            "part": part,
            "answer": f"{part}: first look for '{data['memory']['question']}'",
            "score": score,
        }
        return TaskResult(output=report, update={"rounds": 1, "score": score})


class Refine(Task):
    """One refinement round: a better answer and a higher score."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        score = round(min(1.0, float(data["score"]) + 0.25), 2)
        report = {**data, "answer": f"{data['answer']} (refined)", "score": score}
        return TaskResult(output=report, update={"rounds": 1, "score": score})
