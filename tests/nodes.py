"""Node implementations used by the tests (importable as tests.nodes:Name)."""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult
from graphrunner._types import Telemetry


class Echo(Task):
    """Returns its input with its node name and iteration attached."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        return {"node": ctx.node, "iteration": ctx.iteration, "data": data}


class LoopThenFinish(Plan):
    """Routes back to ``config.loop_to`` until it has run ``config.rounds`` times, then finishes."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration < int(ctx.config.get("rounds", 3)):
            return PlanResult.goto(ctx.config.get("loop_to", "work"), data=ctx.iteration)
        return PlanResult.finish({"iterations": ctx.iteration, "last": results[0].output})


class LoopForever(Plan):
    """Always routes back to its first successor: only the iteration cap stops it."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto(ctx.successors[0])


class FanOutAll(Plan):
    """Chooses every declared successor (to fan out across PARALLEL edges)."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto(*ctx.successors, data="fanned")


class Collect(Plan):
    """Finishes with the outputs of every joined branch, keyed by node."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish({r.node: r.output for r in results})


class ChooseUndeclared(Plan):
    """Chooses a task that is not one of its declared successors."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto("not_a_successor")


class Boom(Task):
    """Always fails with a ValueError."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        raise ValueError(f"boom on attempt {ctx.attempt}")


class NotANode:
    """Neither a Task nor a Plan (for impl-kind validation)."""


class Tagged(Task):
    """Returns ``config.tag``: shows which version of a graph definition ran."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        return {"tag": ctx.config.get("tag"), "iteration": ctx.iteration}


class WaitForFile(Task):
    """Blocks until the file ``config.gate`` exists (lets a test act mid-lifetime)."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        import asyncio
        from pathlib import Path

        gate = Path(ctx.config["gate"])
        while not gate.exists():
            await asyncio.sleep(0.05)
        return {"tag": ctx.config.get("tag")}


class Forward(Plan):
    """Passes the outputs it received (e.g. of a joined fan-out) on to its first successor."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto(ctx.successors[0], data={r.node: r.output for r in results})


class ForgetGraphs(Task):
    """Empties this worker's pinned-graph cache, as a fresh worker process has it."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        from graphrunner import _pinned

        with _pinned._lock:
            _pinned._graphs.clear()
        return {"forgot": True}


class MapOver(Plan):
    """Maps its first successor over range(n), n the lifetime input (``config.limit``: at most
    that many branches at once)."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        n = int(results[0].output)
        limit = ctx.config.get("limit")
        return PlanResult.map(ctx.successors[0], list(range(n)), max_concurrency=limit)


class Double(Task):
    """Returns twice its input after ``config.sleep_s`` seconds."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        import asyncio

        await asyncio.sleep(float(ctx.config.get("sleep_s", 0)))
        return data * 2


class Outputs(Plan):
    """Finishes with the list of its results' outputs, in the order it got them."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish([r.output for r in results])


class Classify(Task):
    """Labels a ticket: 'billing' when its text mentions an invoice or a refund, else 'support'."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        text = str(data["text"])
        billing = any(word in text.lower() for word in ("invoice", "refund"))
        return {"label": "billing" if billing else "support", "text": text}


class Answer(Task):
    """Answers a ticket from the desk ``config.desk``."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        return {"desk": ctx.config["desk"], "reply": f"re: {data['text']}"}


class Draft(Task):
    """Writes a first draft; its quality is the input's ``quality``, raised by ``step`` later."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        return {"text": f"draft on {data['topic']}", "quality": data["quality"], **data}


class Score(Task):
    """Reviews a draft: its score is the draft's quality. ``config.count``: also add 1 to the
    lifetime state's ``rounds``."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        update = {"rounds": 1} if ctx.config.get("count") else None
        return TaskResult(output={**data, "score": data["quality"]}, update=update)


class Revise(Task):
    """Revises a reviewed draft: its quality rises by the input's ``step``."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        revised = {key: value for key, value in data.items() if key != "score"}
        revised.update(text=data["text"] + " (revised)", quality=data["quality"] + data["step"])
        return revised


class Update(Task):
    """Returns its input and the lifetime state update ``config.update``."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(output=data, update=dict(ctx.config["update"]))


class WaitForCancel(Task):
    """Runs until cancelled; then writes the file ``config.seen`` (proof the node heard)."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        import asyncio
        from pathlib import Path

        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            Path(ctx.config["seen"]).write_text("cancelled")
            raise
        return None


class Costly(Task):
    """Reports ``config.cost`` USD (default 0.25) per run, as a priced LLM call would."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(
            output={"iteration": ctx.iteration},
            telemetry=Telemetry(tokens_in=10, cost_usd=ctx.config.get("cost", 0.25), model="m"),
        )
