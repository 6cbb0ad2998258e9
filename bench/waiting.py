"""Lifetimes waiting for a person: what they cost a worker, and answering them.

Each side's worker runs in a process of its own (`bench.waiting_worker`), so that its resident
set size (RSS, from ``/proc``) holds that worker and the lifetimes it caches and nothing else
of the benchmark; the client side (starting, answering, reading history) stays in this
process. graphrunner runs `bench.sides.ask_graph` (a human task, then a no-op plan), the
baseline `BenchAsk` (a workflow that waits for its ``answer`` update, then runs a no-op
activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from bench.env import ProcessCpu, log, on_interrupt
from bench.sides import Side, Starter

__all__ = [
    "QUEUES",
    "Parked",
    "RoundTrip",
    "WorkerProcess",
    "answer_all",
    "park",
    "park_and_answer",
    "round_trip",
    "worker_process",
]

# Task queue of each side's worker process; as long as each other, so histories compare.
QUEUES = {"graphrunner": "bench-gr-asks", "baseline": "bench-bl-asks"}
PARALLEL = 100  # client calls in flight at once when parking or answering many lifetimes
_ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A side's worker in its own process (`bench.waiting_worker`): its RSS, a gc in it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    def rss_kib(self) -> int:
        """The process's resident set size (``VmRSS``), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for process {self.process.pid}")

    async def collect(self) -> None:
        """Run `gc.collect` in the worker process, and wait until it has."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"gc\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60.0)
        if line.strip() != b"done":
            raise RuntimeError(f"waiting worker answered {line!r} to gc")


@contextlib.asynccontextmanager
async def worker_process(
    side: str, address: str, queue: str, cache: int, blobs: Path
) -> AsyncIterator[WorkerProcess]:
    """Run ``side``'s worker in a process of its own until the context ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.waiting_worker",
        side,
        address,
        queue,
        str(cache),
        str(blobs),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=_ROOT,
    )
    with on_interrupt(process.kill):
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60.0)
            if line.strip() != b"ready":
                raise RuntimeError(f"the {side} waiting worker did not start ({line!r})")
            yield WorkerProcess(process)
        finally:
            if process.stdin is not None:
                process.stdin.close()  # end of input: the worker shuts down
            try:
                await asyncio.wait_for(process.wait(), 30.0)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _parked(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the lifetime's first workflow task is done (it then waits for its answer)."""
    raw = (await handle.describe()).raw_description
    if raw.HasField("pending_workflow_task"):
        return False
    return raw.workflow_execution_info.history_length >= 4  # started, task scheduled/started/done


async def park(
    start: Starter, count: int, *, timeout_s: float = 600.0
) -> tuple[list[WorkflowHandle[Any, Any]], float]:
    """Start ``count`` lifetimes and wait until every one waits for its answer.

    Returns the handles and the wall time from the first start until the last lifetime was
    seen waiting. `PARALLEL` starts are in flight at once; then the lifetimes are described
    in the order they started (the worker takes them about in that order): the first not
    yet seen waiting alone until it waits, then up to `PARALLEL` after it at once, so that
    describing them adds little to the server's load while the worker catches up.
    """
    began = time.perf_counter()
    slots = asyncio.Semaphore(PARALLEL)

    async def one() -> WorkflowHandle[Any, Any]:
        async with slots:
            return await start()

    async with asyncio.timeout(timeout_s):
        handles = await asyncio.gather(*(one() for _ in range(count)))
        done = 0
        while done < count:
            if not await _parked(handles[done]):
                await asyncio.sleep(0.05)
                continue
            done += 1
            batch = handles[done : done + PARALLEL]
            seen = await asyncio.gather(*(_parked(h) for h in batch))
            done += next((i for i, ok in enumerate(seen) if not ok), len(batch))
    return handles, time.perf_counter() - began


async def answer_all(
    side: Side, handles: list[WorkflowHandle[Any, Any]], *, timeout_s: float = 600.0
) -> tuple[float, float]:
    """Answer every lifetime (`PARALLEL` answers in flight), then wait for them to end.

    Returns the wall time until every answer was taken (each ``respond`` call returned) and
    until every lifetime had ended (its next node ran); the SDK's ``result`` is awaited, not
    graphrunner's, which also reads the lifetime's path back from history.
    """
    began = time.perf_counter()
    slots = asyncio.Semaphore(PARALLEL)

    async def answer(handle: WorkflowHandle[Any, Any]) -> None:
        async with slots:
            await side.respond(handle.id)

    async def ended(handle: WorkflowHandle[Any, Any]) -> None:
        async with slots:
            await WorkflowHandle.result(handle)

    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(answer(h) for h in handles))
        answered = time.perf_counter() - began
        await asyncio.gather(*(ended(h) for h in handles))
    return answered, time.perf_counter() - began


@dataclass(frozen=True)
class RoundTrip:
    """One answer's round trip, in ms: the client's call, and the server's time."""

    client_ms: float  # the ``respond`` call (graphrunner: reading the request, the update)
    to_started_ms: float  # update taken (its workflow task scheduled) -> next node started


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime()


def started_ms(events: list[HistoryEvent]) -> float:
    """From one answered lifetime's history, ms from the workflow task that took the update
    being scheduled (the server has the update) to the next activity's
    ``ActivityTaskStarted`` (both sides' workers start it eagerly, with the task's
    completion: its ``ActivityTaskScheduled`` has the same time)."""
    kinds = [e.event_type for e in events]
    accepted = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    admitted = max(
        i for i in range(accepted) if kinds[i] == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    )
    started = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, accepted)
    return (_time(events[started]) - _time(events[admitted])).total_seconds() * 1000


async def round_trip(side: Side) -> RoundTrip:
    """Start one lifetime, wait until it waits, answer it; time the answer both ways."""
    handles, _ = await park(side.ask(), 1, timeout_s=60.0)
    handle = handles[0]
    began = time.perf_counter()
    await side.respond(handle.id)
    client_ms = (time.perf_counter() - began) * 1000
    async with asyncio.timeout(60.0):
        await WorkflowHandle.result(handle)
    events = [event async for event in handle.fetch_history_events()]
    return RoundTrip(client_ms, started_ms(events))


@dataclass(frozen=True)
class Parked:
    """What parking ``count`` lifetimes on a worker and answering them all took."""

    count: int
    rss_before_kib: int  # the worker process's RSS before (after gc)
    rss_waiting_kib: int  # ... with all of them waiting (after gc)
    park_s: float
    answer_s: float  # until every answer was taken
    end_s: float  # until every lifetime had ended
    # CPU seconds while parking and while answering (to the end): the worker process, the server
    park_cpu: tuple[float, float]
    answer_cpu: tuple[float, float]

    @property
    def rss_kib_per_lifetime(self) -> float:
        return (self.rss_waiting_kib - self.rss_before_kib) / self.count


async def park_and_answer(
    side: Side, worker: WorkerProcess, count: int, server: ProcessCpu
) -> Parked:
    """Park ``count`` lifetimes of ``side`` on its worker process, read its RSS, answer all."""
    await worker.collect()
    await asyncio.sleep(1.0)  # finished lifetimes leave the cache
    await worker.collect()
    before = worker.rss_kib()
    own = ProcessCpu(worker.process.pid)

    def used() -> tuple[float, float]:
        return own.read()[1], server.read()[1]

    used0 = used()
    handles, parked = await park(side.ask(), count)
    used1 = used()
    await worker.collect()
    waiting = worker.rss_kib()
    log(
        f"  {side.name}: worker RSS {before / 1024:,.1f} MiB before, {waiting / 1024:,.1f} MiB "
        f"with {count:,} waiting; parked in {parked:.1f} s"
    )
    answering, ended = await answer_all(side, handles)
    used2 = used()
    return Parked(
        count,
        before,
        waiting,
        parked,
        answering,
        ended,
        park_cpu=(used1[0] - used0[0], used1[1] - used0[1]),
        answer_cpu=(used2[0] - used1[0], used2[1] - used1[1]),
    )
