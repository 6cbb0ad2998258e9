"""Observability: the worker's Prometheus endpoint and the traces of lifetimes and nodes.

Metrics come from a real ``graphrunner worker`` process started with
``GRAPHRUNNER_METRICS_BIND`` (and ``GRAPHRUNNER_TRACING=otlp``, exporting to an OTLP receiver
in this test), scraped over HTTP; traces from an in-process worker and client whose tracer
provider exports to an in-memory exporter. The Temporal server is the session's dev server.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import WorkflowFailureError
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider, create_tracer_provider
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import AgentGraph, GraphBuilder, GraphrunnerClient, Settings
from graphrunner._metrics import metrics_runtime
from graphrunner.client import connect_temporal
from graphrunner.worker import build_worker
from tests.conftest import ROOT, assert_replays
from tests.test_crash import start_worker, wait_polling, worker_output

ROUNDS = 3  # executions of the LLM task in the token-spending lifetime
MODEL = "offline/standard"  # what answers tier 'standard' offline
POLICY = """\
rules:
  - name: no-risky
    when: node == "risky"
    scope: execution
    action: reject_execution
    message: risky work is not allowed
  - name: no-doomed
    when: node == "doomed"
    scope: execution
    action: abort_lifetime
    message: doomed work ends the lifetime
"""


def looping(name: str, task: str, rounds: int = ROUNDS) -> AgentGraph:
    """Plan 'loop' sends task ``task`` (an offline-model call) ``rounds`` times, then ends."""
    return (
        GraphBuilder(name, version="1.0.0")
        .plan("loop", "tests.obs_nodes:Loop", config={"rounds": rounds})
        .task(task, "tests.llm_nodes:Ask", config={"calls": 1, "prompt": "summarise"})
        .edge("loop", task)
        .edge(task, "loop")
        .final("loop")
        .build()
    )


def asking(name: str) -> AgentGraph:
    """Asks a person once, then ends with the answer."""
    return (
        GraphBuilder(name, version="1.0.0")
        .plan("loop", "tests.obs_nodes:Loop", config={"rounds": 1})
        .human("approve", prompt="ship it?")
        .edge("loop", "approve")
        .edge("approve", "loop")
        .final("loop")
        .build()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- Prometheus ---------------------------------------------------------------------------

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> Series:
    """Prometheus text exposition: value by (name, labels)."""
    series: Series = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or line.startswith("#"):
            continue
        name, labels, value = found.groups()
        series[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return series


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and wanted <= ls)


def label_sets(series: Series, name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls), _ in series.items() if n == name]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


async def scrape_until(url: str, ready: Callable[[Series], bool], what: str) -> Series:
    """Scrape until ``ready`` holds: the worker records as the server's events reach it."""
    deadline = time.monotonic() + 30
    while True:
        series = parse_metrics(await asyncio.to_thread(scrape, url))
        if ready(series):
            return series
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never showed on {url}; last scrape:\n{series}")
        await asyncio.sleep(0.2)


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps every exported span, answers 200."""

    spans: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scoped in resource.scope_spans:
                for span in scoped.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append(
                        {"name": span.name, "service": service, "attributes": attributes}
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OTLP/HTTP endpoint on localhost, and the spans it received."""
    spans: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", spans
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(180)
async def test_a_worker_serves_temporal_and_graphrunner_metrics_and_exports_traces(
    env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    otlp_receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    endpoint, received = otlp_receiver
    (tmp_path / "policy.yaml").write_text(POLICY)
    port = free_port()
    proc = start_worker(
        env,
        task_queue,
        tmp_path,
        "metrics",
        GRAPHRUNNER_METRICS_BIND=f"127.0.0.1:{port}",
        GRAPHRUNNER_POLICY=str(tmp_path / "policy.yaml"),
        GRAPHRUNNER_LLM="offline",
        GRAPHRUNNER_TRACING="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="obs-worker",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    client = GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))
    try:
        await wait_polling(env, task_queue, proc, tmp_path)
        # One lifetime spends tokens, one has its work rejected by a guardrail, one is
        # aborted by one, and one waits for a person.
        spending = await client.start(looping("obs-llm", "ask"), "go", tenant="acme")
        rejected = await client.start(looping("obs-guarded", "risky"), "go", tenant="acme")
        aborted = await client.start(looping("obs-doomed", "doomed"), "go", tenant="globex")
        waiting = await client.start(asking("obs-human"), "go", tenant="globex")
        spent = await spending.result()
        assert (await rejected.result()).output == {"rejected": "risky", "rule": "no-risky"}
        with pytest.raises(WorkflowFailureError) as failure:
            await aborted.result()
        assert isinstance(failure.value.cause, ApplicationError)
        assert failure.value.cause.type == "GuardrailAborted"
        while not await client.pending(waiting.id):
            await asyncio.sleep(0.1)

        metric = "graphrunner_human_waits_started_total"
        series = await scrape_until(url, lambda s: total(s, metric) == 1, "the human wait")
        assert total(series, "graphrunner_human_waits_ended_total") == 0, "still waiting"
        await client.respond(waiting.id, "approve", {"ok": True}, by="ann")
        await waiting.result()

        def settled(s: Series) -> bool:
            return (
                total(s, "graphrunner_lifetimes_ended_total") == 4
                and total(s, "temporal_workflow_completed", workflow_type="AgentLifetime") == 3
            )

        series = await scrape_until(url, settled, "every lifetime's end")
    except BaseException:
        print(worker_output(tmp_path))
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # Temporal's own runtime metrics, on the same endpoint.
    assert total(series, "temporal_workflow_failed", workflow_type="AgentLifetime") == 1
    assert total(
        series,
        "temporal_activity_execution_latency_count",
        activity_type="graphrunner.run_task",
        task_queue=task_queue,
    ) == (ROUNDS)

    # Lifetimes by status.
    started = "graphrunner_lifetimes_started_total"
    ended = "graphrunner_lifetimes_ended_total"
    assert total(series, started, graph="obs-llm", tenant="acme") == 1
    assert total(series, started) == 4
    assert total(series, ended, graph="obs-llm", tenant="acme", status="completed") == 1
    assert total(series, ended, graph="obs-guarded", status="completed") == 1
    assert total(series, ended, graph="obs-doomed", tenant="globex", status="aborted") == 1
    assert total(series, ended, graph="obs-human", status="completed") == 1

    # Executions by node and outcome: as many as the graphs ran.
    runs = "graphrunner_node_executions_total"
    assert total(series, runs, graph="obs-llm", node="ask", kind="task", outcome="ok") == ROUNDS
    assert total(series, runs, graph="obs-llm", node="loop", kind="plan", outcome="ok") == (
        ROUNDS + 1
    )
    assert total(series, runs, node="risky") == 0, "rejected before it ran"
    assert total(series, runs, node="doomed") == 0, "aborted before it ran"
    assert total(series, runs, outcome="error") == 0
    durations = "graphrunner_node_duration_seconds_count"
    assert total(series, durations, graph="obs-llm", node="ask", outcome="ok") == ROUNDS
    assert total(series, "graphrunner_node_duration_seconds_sum", node="ask") > 0

    # Tokens and cost, by graph, tenant and model: what the lifetime reports it spent.
    assert spent.telemetry is not None and spent.telemetry.tokens_in > 0
    tokens = "graphrunner_tokens_total"
    assert total(series, tokens, graph="obs-llm", tenant="acme", direction="input") == (
        spent.telemetry.tokens_in
    )
    assert total(series, tokens, graph="obs-llm", tenant="acme", direction="output") == (
        spent.telemetry.tokens_out
    )
    # The model that answered (the offline provider's for the default tier), not a lifetime.
    assert {s["model"] for s in label_sets(series, tokens)} == {MODEL}
    cost = "graphrunner_node_cost_usd"
    assert total(series, f"{cost}_count", graph="obs-llm", tenant="acme") == ROUNDS
    assert total(series, f"{cost}_sum", tenant="acme") == pytest.approx(spent.telemetry.cost_usd)

    # Guardrail actions by rule and action.
    actions = "graphrunner_guardrail_actions_total"
    assert (
        total(
            series,
            actions,
            rule="no-risky",
            action="reject_execution",
            phase="before",
            tenant="acme",
        )
        == 1
    )
    assert total(series, actions, rule="no-doomed", action="abort_lifetime", tenant="globex") == 1

    # Human waits: started, answered (by update), and how long.
    assert total(series, "graphrunner_human_waits_started_total", node="approve") == 1
    assert total(series, "graphrunner_human_waits_ended_total", node="approve", via="update") == 1
    assert total(series, "graphrunner_human_wait_seconds_count", node="approve") == 1

    # No lifetime id is ever a label: series stay bounded however many lifetimes run.
    text = "\n".join(f"{n} {sorted(ls)}" for n, ls in series)
    for handle in (spending, rejected, aborted, waiting):
        assert handle.id not in text

    # The worker's traces went to the OTLP endpoint, with graphrunner's attributes.
    nodes = [s for s in received if s["attributes"].get("graphrunner.node") == "ask"]
    assert sorted(s["attributes"]["graphrunner.iteration"] for s in nodes) == [1, 2, 3]
    assert {s["service"]["service.name"] for s in nodes} == {"obs-worker"}
    assert sum(s["attributes"]["graphrunner.tokens.input"] for s in nodes) == (
        spent.telemetry.tokens_in
    )
    lifetimes = [s for s in received if s["name"] == "RunWorkflow:AgentLifetime"]
    ends = {
        (s["attributes"]["graphrunner.graph"], s["attributes"]["graphrunner.status"])
        for s in lifetimes
    }
    assert ends == {
        ("obs-llm", "completed"),
        ("obs-guarded", "completed"),
        ("obs-doomed", "aborted"),
        ("obs-human", "completed"),
    }


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("9464", "'9464' is not host:port"),
        ("127.0.0.1:{taken}", "Address already in use"),
    ],
)
def test_a_bad_metrics_address_stops_the_worker_naming_the_variable(
    tmp_path: Path, bind: str, message: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environ = {
            "GRAPHRUNNER_METRICS_BIND": bind.format(taken=taken.getsockname()[1]),
            "GRAPHRUNNER_HOME": str(tmp_path),
            "TEMPORAL_ADDRESS": "127.0.0.1:1",  # never reached
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-m", "graphrunner", "worker"],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: bad setting GRAPHRUNNER_METRICS_BIND: ")
    assert message in lines[0]


# -- traces -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracing() -> tuple[ReplaySafeTracerProvider, InMemorySpanExporter]:
    """A replay-safe tracer provider exporting to memory (OpenTelemetry's global: once)."""
    provider = create_tracer_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return by_id.get(span.parent.span_id) if span.parent is not None else None


@pytest.mark.timeout(120)
async def test_a_lifetime_is_one_trace_from_the_clients_start_to_each_node_attempt(
    env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    tracing: tuple[ReplaySafeTracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    exporter.clear()
    settings = Settings(task_queue=task_queue, home=tmp_path, llm="offline")
    temporal = await connect_temporal(
        settings,
        target_host=env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        tracer_provider=provider,
    )
    client = GraphrunnerClient(temporal, settings=settings)
    async with build_worker(temporal, settings=settings, recorder=None):
        handle = await client.start(looping("traced", "ask"), "go", tenant="acme")
        result = await handle.result()
    assert result.telemetry is not None
    spans = list(exporter.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}

    (start,) = [s for s in spans if s.name == "StartWorkflow:AgentLifetime"]
    assert start.attributes is not None and start.attributes["temporalWorkflowID"] == handle.id
    (run,) = [s for s in spans if s.name == "RunWorkflow:AgentLifetime"]
    assert run.attributes is not None
    assert run.attributes["graphrunner.graph"] == "traced"
    assert run.attributes["graphrunner.tenant"] == "acme"
    assert run.attributes["graphrunner.lifetime_id"] == handle.id
    assert run.attributes["graphrunner.status"] == "completed"
    assert run.attributes["graphrunner.tokens.input"] == result.telemetry.tokens_in
    assert _parent(run, by_id) is start, "the worker's run continues the client's trace"
    assert run.end_time is not None and run.start_time is not None
    assert run.end_time > run.start_time, "the run's span lasts as long as the run"

    tasks = [s for s in spans if s.name == "RunActivity:graphrunner.run_task"]
    plans = [s for s in spans if s.name == "RunActivity:graphrunner.run_plan"]
    assert len(tasks) == ROUNDS and len(plans) == ROUNDS + 1, "one span per node execution"
    for span in tasks + plans:
        assert span.context.trace_id == start.context.trace_id
        scheduled = _parent(span, by_id)
        assert scheduled is not None and scheduled.name.startswith("StartActivity:")
        assert _parent(scheduled, by_id) is run
        assert span.attributes is not None
        assert span.attributes["graphrunner.tenant"] == "acme"
        assert span.attributes["graphrunner.lifetime_id"] == handle.id
        assert span.attributes["graphrunner.graph"] == "traced"
        assert span.attributes["graphrunner.outcome"] == "ok"
    attrs = [s.attributes or {} for s in tasks]
    assert sorted((a["graphrunner.node"], a["graphrunner.iteration"]) for a in attrs) == [
        ("ask", 1),
        ("ask", 2),
        ("ask", 3),
    ]
    assert sum(int(str(a["graphrunner.tokens.input"])) for a in attrs) == (
        result.telemetry.tokens_in
    )
    assert sum(int(str(a["graphrunner.tokens.output"])) for a in attrs) == (
        result.telemetry.tokens_out
    )
    assert {a["graphrunner.model"] for a in attrs} == {MODEL}
    plan_nodes = sorted((s.attributes or {})["graphrunner.iteration"] for s in plans)
    assert plan_nodes == [1, 2, 3, 4]
    # Tracing left no trace in the history: it replays without it.
    await assert_replays(env.client, handle)


@pytest.mark.timeout(120)
async def test_counts_stay_exact_when_the_worker_replays_every_workflow_task(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    # No workflow cache: every workflow task replays the lifetime from its first event, so
    # workflow code that counted on replay would count its start and its wait again.
    settings = Settings(
        task_queue=task_queue, home=tmp_path, metrics_bind=f"127.0.0.1:{free_port()}"
    )
    temporal = await connect_temporal(
        settings,
        target_host=env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        runtime=metrics_runtime(settings),
    )
    client = GraphrunnerClient(temporal, settings=settings)
    async with build_worker(temporal, settings=settings, recorder=None, max_cached_workflows=0):
        handle = await client.start(asking("replayed"), "go", tenant="acme")
        while not await client.pending(handle.id):
            await asyncio.sleep(0.1)
        await client.respond(handle.id, "approve", {"ok": True})
        await handle.result()
        series = parse_metrics(
            await asyncio.to_thread(scrape, f"http://{settings.metrics_bind}/metrics")
        )
    assert total(series, "temporal_sticky_cache_hit") == 0, "nothing was kept in a cache"
    replays = "temporal_workflow_task_replay_latency_count"
    assert total(series, replays, workflow_type="AgentLifetime") >= 3, "the lifetime replayed"
    assert total(series, "graphrunner_lifetimes_started_total", graph="replayed") == 1
    assert total(series, "graphrunner_lifetimes_ended_total", status="completed") == 1
    assert total(series, "graphrunner_human_waits_started_total", node="approve") == 1
    assert total(series, "graphrunner_human_waits_ended_total", via="update") == 1
    assert total(series, "graphrunner_node_executions_total", node="loop", outcome="ok") == 2
