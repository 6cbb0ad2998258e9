"""``python -m bench.fairness``: does one tenant's burst starve another tenant's lifetimes?

One worker, one task queue. Tenant ``small`` starts 5 lifetimes alone and we time them; then
tenant ``burst`` starts 200 lifetimes and, right after, ``small`` starts 5 again, and we time
those 5 under the burst. graphrunner keys every start by tenant (``Priority(fairness_key=
tenant)``), so a server with fair dispatch (``matching.enableFairness=true``, which
``graphrunner dev`` turns on) serves the two tenants alternately; the same run on a server
without it shows what arrival-order dispatch does. Figures: the small tenant's time under the
burst divided by its time alone, for each server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.env import _free_port, log
from graphrunner import (
    GraphBuilder,
    GraphrunnerClient,
    NodeContext,
    NodeOutput,
    PlanResult,
    Settings,
    plan,
    task,
)
from graphrunner.client import DevServer
from graphrunner.client._runtime import _connect_when_ready
from graphrunner.graph import AgentGraph
from graphrunner.worker import build_worker

ROUNDS = 3  # work -> again, three times per lifetime
VARIANTS = [  # name, fair dispatch on the server, eager activities on the worker
    ("fair", True, True),
    ("fair, no eager", True, False),
    ("arrival order", False, True),
]


@task
async def work(ctx: NodeContext, data: Any) -> Any:
    """A short node: a model call's worth of waiting, scaled down."""
    await asyncio.sleep(0.01)
    return data


@plan
async def again(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Loop ``ROUNDS`` times, then finish."""
    if ctx.iteration < ROUNDS:
        return PlanResult.goto("work", data=results[-1].output)
    return PlanResult.finish(results[-1].output)


def graph() -> AgentGraph:
    """work -> again -> work ... (ROUNDS times) -> FINAL."""
    return (
        GraphBuilder("fairness", version="1.0.0")
        .task("work", "bench.fairness:work")
        .plan("again", "bench.fairness:again")
        .edge("work", "again")
        .edge("again", "work")
        .final("again")
        .build()
    )


async def _batch(client: GraphrunnerClient, count: int, tag: str) -> float:
    """Start ``count`` lifetimes at once; seconds until every one has finished."""
    begun = time.perf_counter()
    model = graph()
    handles = await asyncio.gather(
        *(client.start(model, i, id=f"{tag}-{i}-{uuid.uuid4().hex[:6]}") for i in range(count))
    )
    await asyncio.gather(*(h.result() for h in handles))
    return time.perf_counter() - begun


async def measure(
    *, fair: bool, eager: bool, burst: int, small: int, slots: int
) -> dict[str, float]:
    """The small tenant's batch alone and under the burst, on a server with or without fair
    dispatch, with or without eager activities (which skip the task queue)."""
    with tempfile.TemporaryDirectory(prefix="graphrunner-fairness-") as home:
        server = DevServer(
            home=Path(home), port=_free_port(), ui_port=_free_port(), headless=True, fairness=fair
        )
        await server.start()
        try:
            settings = Settings(task_queue="fairness", record=False, eager_activities=eager)
            temporal = await _connect_when_ready(settings, server.address, None)
            small_client = GraphrunnerClient(
                temporal, settings=settings.model_copy(update={"tenant": "small"})
            )
            burst_client = GraphrunnerClient(
                temporal, settings=settings.model_copy(update={"tenant": "burst"})
            )
            async with build_worker(
                temporal,
                settings=settings,
                recorder=None,
                max_concurrent_workflow_tasks=slots,
                max_concurrent_activities=slots,
            ):
                await _batch(small_client, small, "warm")
                alone = await _batch(small_client, small, "alone")
                burst_run = asyncio.create_task(_batch(burst_client, burst, "burst"))
                await asyncio.sleep(0.5)  # the burst is queued first
                under = await _batch(small_client, small, "small")
                burst_s = await burst_run
        finally:
            server.stop()
    return {"alone_s": alone, "under_burst_s": under, "ratio": under / alone, "burst_s": burst_s}


async def main_async(burst: int, small: int, slots: int) -> dict[str, Any]:
    """Both servers, one after the other."""
    results: dict[str, Any] = {"burst": burst, "small": small, "worker_slots": slots}
    for name, fair, eager in VARIANTS:
        log(f"fairness: {name}: {small} lifetimes alone, then under a burst of {burst}")
        results[name] = await measure(fair=fair, eager=eager, burst=burst, small=small, slots=slots)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--burst", type=int, default=200, help="lifetimes of the big tenant")
    parser.add_argument("--small", type=int, default=5, help="lifetimes of the small tenant")
    parser.add_argument("--slots", type=int, default=8, help="worker task and activity slots")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args.burst, args.small, args.slots))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.small} lifetimes of one tenant while another starts {args.burst} (one worker)")
    print(f"{'dispatch':<16}{'alone':>10}{'under burst':>14}{'ratio':>8}{'burst took':>13}")
    for name, _, _ in VARIANTS:
        r = results[name]
        print(
            f"{name:<16}{r['alone_s']:>9.2f}s{r['under_burst_s']:>13.2f}s"
            f"{r['ratio']:>7.2f}x{r['burst_s']:>12.2f}s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
