"""Nodes of the coding-agent example (examples/parallel_edits.yaml), offline and deterministic.

A real agent would ask a model for the tool calls and run a linter; here the "model" plans
one edit per file and the "linter" fails a file's first attempt when its name is longer
than the request says, so the validate loop shows in the Temporal UI and in the state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult


class Understand(Task):
    """Turn the request into one tool call per file, and remember the request in state."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        request = str(data.get("request", "tidy up"))
        calls = [{"file": str(f), "try": 1} for f in data.get("files", [])]
        return TaskResult(output=calls, update={"request": request})


class Dispatch(Plan):
    """Spawn one tool-call branch per planned call: as many as the request needs."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        calls = results[-1].output or []
        limit = ctx.config.get("max_concurrency")
        return PlanResult.map("tool_call", calls, max_concurrency=limit)


class ToolCall(Task):
    """Apply one edit (a file write in a real agent) and count the attempt in state."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        await asyncio.sleep(float(ctx.config.get("latency_s", 0.05)))
        file, attempt = data["file"], int(data["try"])
        # The stand-in linter: a file whose name has a digit fails its first attempt.
        ok = attempt > 1 or not any(ch.isdigit() for ch in file)
        edit = f"{ctx.state.get('request', '')} in {file}"
        return TaskResult(
            output={"file": file, "try": attempt, "edit": edit, "lint_ok": ok},
            update={"attempts": 1},
        )


class Validate(Plan):
    """The branch's validate loop: retry the tool call until it lints, then report."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        call = results[-1].output
        if not call["lint_ok"] and call["try"] < int(ctx.config.get("max_tries", 3)):
            return PlanResult.goto("tool_call", data={"file": call["file"], "try": call["try"] + 1})
        return PlanResult.goto("report", data=call)


class Report(Task):
    """Report the branch's outcome; the edit joins the shared state."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        status = "ok" if data["lint_ok"] else "failed lint"
        return TaskResult(
            output={"file": data["file"], "status": status, "tries": data["try"]},
            update={"edits": [data["edit"]], "files": {data["file"]: status}},
        )


class Review(Plan):
    """Fan-in: every branch reported; finish with the change as the state tells it."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish(
            {
                "request": ctx.state.get("request"),
                "edits": ctx.state.get("edits"),
                "files": ctx.state.get("files"),
                "tool_calls": ctx.state.get("attempts"),
                "reports": [r.output for r in results],
            }
        )
