"""Nodes for the worker-crash test (importable as tests.crash_nodes:Name by worker processes)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task


class SlowLoggedTask(Task):
    """Sleeps ``config.sleep_s``, then appends ``node iteration attempt pid`` to ``config.log``.

    The line is written only once the work is done, and fsynced, so the log holds exactly the
    executions that ran to completion in some worker process, whichever process it was.
    """

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        await asyncio.sleep(float(ctx.config["sleep_s"]))
        line = f"{ctx.node} {ctx.iteration} {ctx.attempt} {os.getpid()}\n"
        with open(ctx.config["log"], "a", encoding="utf-8") as log:
            log.write(line)
            log.flush()
            os.fsync(log.fileno())
        return {"node": ctx.node, "iteration": ctx.iteration}


class LoopUntil(Plan):
    """Routes back to ``config.loop_to`` until its ``config.rounds``-th run, then finishes."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration < int(ctx.config["rounds"]):
            return PlanResult.goto(ctx.config["loop_to"])
        return PlanResult.finish({"rounds": ctx.iteration, "last": results[0].output})
