"""The long-loop section's parts: one lifetime of many iterations that continues as new whenever
Temporal suggests it, the runs it took and what each run's history holds.

graphrunner runs `bench.sides.long_loop_graph` (a task and a routing plan without code), the
baseline `BenchLongLoop` (an activity per iteration, the decision in workflow code). The server
suggests continuing as new once a run's history passes 4,096 events or 4 MiB (its defaults,
`limit.historyCount.suggestContinueAsNew` and `limit.historySize.suggestContinueAsNew`); each
side then continues between two iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from bench.env import ProcessCpu
from bench.history import HistoryStats, chain_events, history_stats
from bench.sides import Side, timed

__all__ = ["LongLoop", "Run", "long_loop"]


@dataclass(frozen=True)
class Run:
    """One run of the chain."""

    events: int
    history_bytes: int  # sum of the events' protobuf sizes, what the server stores
    iterations: int  # iterations whose activity the run scheduled (one each)


@dataclass(frozen=True)
class LongLoop:
    """One side's long-loop lifetime: its wall time, CPU and runs."""

    iterations: int
    seconds: float  # start to result, from the client
    worker_cpu_s: float  # this process (client and workers) meanwhile
    server_cpu_s: float
    runs: list[Run]
    largest: HistoryStats  # the run with the most history bytes, per iteration
    marker_bytes: float  # mean size of that run's marker events (local activities); 0: none

    @property
    def most_events(self) -> int:
        return max(run.events for run in self.runs)

    @property
    def most_bytes(self) -> int:
        return max(run.history_bytes for run in self.runs)

    @property
    def bytes_per_iteration(self) -> float:
        return sum(run.history_bytes for run in self.runs) / self.iterations


def _run(events: list[HistoryEvent]) -> Run:
    scheduled = sum(e.HasField("activity_task_scheduled_event_attributes") for e in events)
    return Run(len(events), sum(e.ByteSize() for e in events), scheduled)


async def long_loop(side: Side, iterations: int, cpu: ProcessCpu) -> LongLoop:
    """Run one lifetime of ``iterations`` iterations on ``side`` and read back all its runs.

    Raises:
        RuntimeError: The runs do not hold ``iterations`` iterations between them.
    """
    handles: list[WorkflowHandle[Any, Any]] = []

    async def start() -> WorkflowHandle[Any, Any]:
        handle = await side.long_loop(iterations)()
        handles.append(handle)
        return handle

    own0, server0 = cpu.read()
    # Longer than other lifetimes may take: ~15-30 ms an iteration on a 2-core box.
    seconds = await timed(start, timeout_s=max(180.0, 0.1 * iterations))
    own1, server1 = cpu.read()
    handle = handles[0]
    first = handle.first_execution_run_id or handle.result_run_id
    if first is None:
        raise RuntimeError(f"{side.name}: the long loop's first run is unknown")
    chain = await chain_events(side.client, handle.id, first)
    runs = [_run(events) for events in chain]
    if sum(run.iterations for run in runs) != iterations:
        raise RuntimeError(
            f"{side.name}: the long loop's {len(runs)} runs hold "
            f"{sum(run.iterations for run in runs)} iterations, not {iterations}"
        )
    biggest = max(range(len(runs)), key=lambda i: runs[i].history_bytes)
    markers = [
        e.ByteSize() for e in chain[biggest] if e.HasField("marker_recorded_event_attributes")
    ]
    return LongLoop(
        iterations=iterations,
        seconds=seconds,
        worker_cpu_s=own1 - own0,
        server_cpu_s=server1 - server0,
        runs=runs,
        largest=history_stats(chain[biggest], runs[biggest].iterations),
        marker_bytes=sum(markers) / len(markers) if markers else 0.0,
    )
