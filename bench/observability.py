"""What metrics and tracing cost a worker: CPU per node execution, on and off.

``python -m bench.observability [--lifetimes N] [--steps N] [--reps N]`` starts its own dev
server and, in this process, five graphrunner workers on task queues of their own: plain,
plain on a Temporal runtime of its own (as the metrics sides have), with the Prometheus
endpoint (``metrics_runtime``), tracing with the OTLP/HTTP exporter (to a receiver in another
process that drops what it gets), and both. Each round runs one batch of
Task+Plan loop lifetimes per side, in turn; the table shows this process's CPU (client and
workers) per node execution, by side, median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider, create_tracer_provider
from temporalio.runtime import Runtime, TelemetryConfig

from bench.env import dev_server, log
from bench.sides import loop_graph
from graphrunner import GraphrunnerClient, Settings
from graphrunner._metrics import metrics_runtime
from graphrunner.client import connect_temporal
from graphrunner.worker import build_worker

_RECEIVER = """
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Drop(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Drop).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _otlp_receiver() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        proc.terminate()
        proc.wait()


@dataclass
class _Side:
    name: str
    metrics: bool
    tracing: bool
    own_runtime: bool = False  # a runtime of its own without metrics, as metrics sides have
    cpu_ms: list[float] = field(default_factory=list)  # per node execution, per round
    client: GraphrunnerClient | None = None


async def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.observability")
    parser.add_argument("--lifetimes", type=int, default=10, help="lifetimes per batch")
    parser.add_argument("--steps", type=int, default=20, help="loop rounds per lifetime")
    parser.add_argument("--reps", type=int, default=5, help="rounds")
    args = parser.parse_args()
    sides = [
        _Side("plain", metrics=False, tracing=False),
        _Side("own runtime", metrics=False, tracing=False, own_runtime=True),
        _Side("metrics", metrics=True, tracing=False),
        _Side("tracing (otlp)", metrics=False, tracing=True),
        _Side("metrics + tracing", metrics=True, tracing=True),
    ]
    graph = loop_graph(local=False, steps=args.steps)
    executions = args.lifetimes * args.steps * 2  # a task and a plan per round
    with _otlp_receiver() as endpoint:
        provider: ReplaySafeTracerProvider = create_tracer_provider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        async with dev_server() as (_, server), AsyncExitStack() as stack:
            endpoints: list[str] = []
            for n, side in enumerate(sides):
                settings = Settings(
                    task_queue=f"obs-bench-{n}",
                    home=Path(stack.enter_context(tempfile.TemporaryDirectory())),
                    record=False,
                    metrics_bind=f"127.0.0.1:{_free_port()}" if side.metrics else None,
                )
                if settings.metrics_bind:
                    endpoints.append(f"http://{settings.metrics_bind}/metrics")
                temporal = await connect_temporal(
                    settings,
                    target_host=server.address,
                    runtime=Runtime(telemetry=TelemetryConfig())
                    if side.own_runtime
                    else metrics_runtime(settings),
                    tracer_provider=provider if side.tracing else None,
                )
                side.client = GraphrunnerClient(temporal, settings=settings)
                await stack.enter_async_context(build_worker(temporal, settings=settings))
            for rep in range(args.reps):
                for side in sides:
                    assert side.client is not None
                    before = time.process_time()
                    handles = [await side.client.start(graph, None) for _ in range(args.lifetimes)]
                    await asyncio.gather(*(h.result() for h in handles))
                    provider.force_flush()
                    spent = time.process_time() - before
                    side.cpu_ms.append(spent * 1000 / executions)
                log(f"round {rep + 1}: " + ", ".join(f"{s.name} {s.cpu_ms[-1]:.2f}" for s in sides))
            series = urllib.request.urlopen(endpoints[0]).read().decode().count("\ngraphrunner_")
    plain = statistics.median(sides[0].cpu_ms)
    print(
        f"\n{args.reps} rounds of {args.lifetimes} lifetimes x {args.steps} rounds "
        f"({executions} node executions a batch); this process's CPU per node execution"
    )
    print(f"{'side':<20} {'median ms':>10} {'vs plain':>9}")
    for side in sides:
        median = statistics.median(side.cpu_ms)
        print(f"{side.name:<20} {median:>10.2f} {100 * (median / plain - 1):>+8.0f}%")
    print(f"graphrunner_ series on one metrics endpoint after the run: {series}")


if __name__ == "__main__":
    asyncio.run(main())
