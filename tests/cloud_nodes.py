"""Nodes of the cloud-profile tests (importable as tests.cloud_nodes:Name by worker processes).

The graph they make is a loop of ``prepare`` -> ``split`` -> PARALLEL ``double`` and
``triple`` -> JOIN ``merge`` -> ``prepare`` ...: each round multiplies the lifetime's number
by 5, so a lifetime started with ``{"n": i}`` finishes with ``5 ** rounds * i``. ``prepare``
also returns ``config.pad`` characters unique to the lifetime and round, so a payload
threshold below that sends its result to the blob store.

Every node appends ``start``/``end`` lines (``event lifetime node iteration attempt pid``) to
the file ``config.log`` when it has one: the test reads which worker process runs what, and
which executions are in flight, from it. One ``write`` of a short line to a file opened with
``O_APPEND`` is atomic, so the worker processes never interleave inside a line.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from graphrunner import NodeContext, NodeOutput, Plan, PlanResult, Task, TaskResult, Telemetry


def log_line(ctx: NodeContext, event: str) -> None:
    """Append ``event lifetime node iteration attempt pid`` to ``config.log``, if set."""
    path = ctx.config.get("log")
    if not path:
        return
    line = f"{event} {ctx.lifetime_id} {ctx.node} {ctx.iteration} {ctx.attempt} {os.getpid()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def pad(lifetime_id: str, iteration: int, size: int) -> str:
    """``size`` hex characters unique to the lifetime and iteration (no two blobs alike)."""
    out = ""
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{lifetime_id}/{iteration}/{block}".encode()).hexdigest()
        block += 1
    return out[:size]


class Prepare(Task):
    """Passes the number on, with ``config.pad`` characters of padding (0: none)."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        log_line(ctx, "start")
        out = {"n": int(data["n"]), "pad": pad(ctx.lifetime_id, ctx.iteration, ctx.config["pad"])}
        log_line(ctx, "end")
        return out


class Split(Plan):
    """Fans the number out to every successor."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        log_line(ctx, "start")
        decision = PlanResult.goto(*ctx.successors, data=results[0].output["n"])
        log_line(ctx, "end")
        return decision


class Scale(Task):
    """Waits ``config.sleep_s``, then returns its input times ``config.factor``.

    Reports ``config.tokens`` prompt tokens and ``config.cost`` USD (default none), as a
    priced model call would.
    """

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        log_line(ctx, "start")
        await asyncio.sleep(float(ctx.config.get("sleep_s", 0)))
        telemetry = Telemetry(
            tokens_in=int(ctx.config.get("tokens", 0)),
            cost_usd=float(ctx.config.get("cost", 0)),
            model="offline/m" if ctx.config.get("tokens") else "",
        )
        result = TaskResult(output=int(data) * int(ctx.config["factor"]), telemetry=telemetry)
        log_line(ctx, "end")
        return result


class Merge(Plan):
    """Sums the joined branches; loops back to ``prepare`` until ``config.rounds``, then ends."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        log_line(ctx, "start")
        total = sum(int(r.output) for r in results)
        if ctx.iteration < int(ctx.config["rounds"]):
            decision = PlanResult.goto("prepare", data={"n": total})
        else:
            decision = PlanResult.finish({"n": total, "rounds": ctx.iteration})
        log_line(ctx, "end")
        return decision
