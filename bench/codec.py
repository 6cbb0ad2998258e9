"""What encryption at rest costs: the AES-GCM codec alone, and per step of a real lifetime.

``python -m bench.codec [--steps N] [--reps N]`` starts its own dev server (the project's
tuning flags) and runs the same no-op loop lifetime (a Task and a Plan per step) on four
workers in this process, alternating: without keys, with ``GRAPHRUNNER_CODEC_KEYS``, and,
recording into SQLite, with and without ``GRAPHRUNNER_ENCRYPT_RECORDS``. It prints the
median milliseconds per step of each, and the codec's own cost per payload size.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, Settings, build_worker
from graphrunner.client import temporal_binary
from graphrunner.client._devserver import TUNING_ARGS
from graphrunner.codec import EncryptionCodec, parse_keys

__all__ = ["codec_cost", "main"]

_KEYS = f"k1={base64.b64encode(os.urandom(32)).decode()}"


async def codec_cost(size: int, reps: int) -> tuple[float, float]:
    """Microseconds to encrypt and decrypt one payload of ``size`` bytes; and MB/s."""
    codec = EncryptionCodec(parse_keys(_KEYS))
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b"x" * size)
    began = time.perf_counter()
    for _ in range(reps):
        await codec.decode(await codec.encode([payload]))
    each = (time.perf_counter() - began) / reps
    return each * 1e6, size / each / 1e6


async def _lifetime_ms_per_step(client: GraphrunnerClient, steps: int) -> float:
    graph = (
        GraphBuilder("codec-bench", version="1.0.0")
        .task("work", "bench.nodes:Noop")
        .plan("loop", "bench.nodes:Loop", config={"steps": steps})
        .edge("work", "loop")
        .edge("loop", "work")
        .final("loop")
        .build()
    )
    began = time.perf_counter()
    handle = await client.start(graph, None)
    await handle.result()
    return (time.perf_counter() - began) * 1000 / steps


async def main(steps: int, reps: int) -> None:
    """Run the measurements and print them."""
    for size in (2_000, 256 * 1024, 5_000_000):
        micros, rate = await codec_cost(size, 2000 if size < 10_000 else 20)
        print(f"codec encrypt+decrypt {size:>9} B: {micros:9.1f} us  ({rate:7.0f} MB/s)")
    os.environ["TEMPORAL_CONFIG_FILE"] = "/nonexistent/temporal.toml"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_extra_args=list(TUNING_ARGS)
    )
    sides = {
        "plain": {"record": False},
        "codec": {"record": False, "codec_keys": _KEYS},
        "plain + records": {},
        "codec + encrypted records": {"codec_keys": _KEYS, "encrypt_records": True},
    }
    samples: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            clients = {}
            for i, (name, more) in enumerate(sides.items()):
                settings = Settings(task_queue=f"codec-bench-{i}", home=Path(tmp) / str(i), **more)
                client = await GraphrunnerClient.connect(
                    settings,
                    address=env.client.service_client.config.target_host,
                    namespace=env.client.namespace,
                )
                await stack.enter_async_context(build_worker(client))
                clients[name] = client
                await _lifetime_ms_per_step(client, 3)  # warm up
            for _ in range(reps):
                for name, client in clients.items():
                    samples[name].append(await _lifetime_ms_per_step(client, steps))
    await env.shutdown()
    for name, values in samples.items():
        print(
            f"{name:>26}: {statistics.median(values):6.1f} ms/step "
            f"(median of {reps} lifetimes of {steps} steps; min {min(values):.1f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.reps))
