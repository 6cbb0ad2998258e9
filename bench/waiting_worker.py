"""One side's worker in a process of its own, for the waiting-lifetimes section.

``python -m bench.waiting_worker SIDE ADDRESS QUEUE CACHE BLOBS`` runs the worker of SIDE
(``graphrunner`` or ``baseline``, built as in `bench.sides`) on QUEUE of the dev server at
ADDRESS, with ``max_cached_workflows=CACHE``, and prints ``ready``. Then each ``gc`` line on
stdin runs `gc.collect` and answers ``done``; end of input stops the worker. Its own process,
so that its resident set size holds that worker and the lifetimes it caches, and nothing the
benchmark's other sections left.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.env import quiet_runtime
from bench.sides import Baseline, Graphrunner, Side, graphrunner_client
from graphrunner import Settings
from graphrunner.stores import LocalBlobStore


class _ToStderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"waiting worker: temporal core: {record.getMessage()[:300]}", file=sys.stderr)


async def serve(side_name: str, address: str, queue: str, cache: int, blobs: Path) -> None:
    client = await Client.connect(
        address, data_converter=pydantic_data_converter, runtime=quiet_runtime(_ToStderr())
    )
    side: Side
    if side_name == "graphrunner":
        gr = graphrunner_client(client, Settings(), LocalBlobStore(blobs))
        side = Graphrunner(gr, queue=queue, cache=cache)
    else:
        side = Baseline(client, queue=queue, cache=cache)
    async with side.worker():
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "gc":
                gc.collect()
                print("done", flush=True)


def main() -> None:
    side, address, queue, cache, blobs = sys.argv[1:6]
    asyncio.run(serve(side, address, queue, int(cache), Path(blobs)))


if __name__ == "__main__":
    main()
