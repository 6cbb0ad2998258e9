"""Execution records written by real lifetimes, on SQLite and on PostgreSQL.

The records must match the Temporal history one to one, keep large results out of both
history and the DB row, and lose nothing when many lifetimes write at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from graphrunner import (
    GraphBuilder,
    GraphrunnerClient,
    NodeContext,
    NodeOutput,
    Plan,
    PlanResult,
    Settings,
    Task,
    TaskResult,
)
from graphrunner._types import Telemetry
from graphrunner.activities import Recorder
from graphrunner.stores import LocalBlobStore, RecordStore, data_converter, open_records
from graphrunner.worker import build_worker
from tests.conftest import assert_replays
from tests.nodes import Boom, Collect, Echo, FanOutAll, LoopThenFinish

BIG = 50 * 1024 * 1024


class Priced(Task):
    """Reports telemetry as an LLM node would."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(
            output=f"answer {ctx.iteration}",
            telemetry=Telemetry(tokens_in=100, tokens_out=20, cost_usd=0.0015, model="offline"),
        )


class Huge(Task):
    """Returns a 50 MB result."""

    async def run(self, ctx: NodeContext, data: Any) -> str:
        return "x" * BIG


class Size(Task):
    """Reports the size of what it was handed, proving the large value arrived whole."""

    async def run(self, ctx: NodeContext, data: Any) -> int:
        return len(data)


class PassOn(Plan):
    """Hands the upstream output to ``measure`` once, then finishes with what it reported."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration == 1:
            return PlanResult.goto("measure", data=results[0].output)
        return PlanResult.finish(results[0].output)


class Setup:
    def __init__(self, client: GraphrunnerClient, records: RecordStore) -> None:
        self.client = client
        self.records = records


@pytest.fixture
async def setup(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path, state_db_url: str
) -> AsyncIterator[Setup]:
    """A worker recording into ``state_db_url`` with blobs in tmp, and a client that reads both."""
    settings = Settings(task_queue=task_queue, database_url=state_db_url, home=tmp_path)
    records = open_records(settings)
    blobs = LocalBlobStore(tmp_path / "blobs")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, blobs),
    )
    recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        yield Setup(
            GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs), records
        )
    records.close()


async def completed_in_history(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, int, int]]:
    """(node, iteration, attempt) of every activity that completed, in history order."""
    history = await handle.fetch_history()
    summary: dict[int, tuple[str, int]] = {}
    attempt: dict[int, int] = {}
    done = []
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            node, _, iteration = e.user_metadata.summary.data.decode().strip('"').rpartition(" · ")
            summary[e.event_id] = (node, int(iteration))
        elif e.HasField("activity_task_started_event_attributes"):
            a = e.activity_task_started_event_attributes
            attempt[a.scheduled_event_id] = a.attempt
        elif e.HasField("activity_task_completed_event_attributes"):
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            done.append((*summary[sid], attempt[sid]))
    return done


def fan_graph() -> GraphBuilder:
    return (
        GraphBuilder("fan-rec", version="1.2.0")
        .task("start", Priced)
        .plan("split", FanOutAll)
        .task("a", Echo)
        .task("b", Priced)
        .plan("merge", Collect)
        .edge("start", "split")
        .parallel("split", "a", "b")
        .join("merge", "a", "b")
        .final("merge")
    )


async def test_records_match_history_one_to_one(setup: Setup) -> None:
    handle = await setup.client.start(fan_graph().build(), "go", tenant="acme")
    result = await handle.result()
    records = await setup.client.history(handle.id)

    assert [(r.node, r.iteration) for r in records] == [(s.node, s.iteration) for s in result.steps]
    assert sorted((r.node, r.iteration, r.attempt) for r in records) == sorted(
        await completed_in_history(handle)
    )
    by_node = {r.node: r for r in records}
    assert {r.execution_id for r in records} == {s.execution_id for s in result.steps}
    # Headers: graph, tenant, parents and the edges taken.
    assert all(r.graph_name == "fan-rec" and r.graph_version == "1.2.0" for r in records)
    assert all(r.tenant == "acme" and r.lifetime_id == handle.id for r in records)
    assert by_node["start"].parent_ids == [] and by_node["start"].edge is None
    assert by_node["a"].parent_ids == [by_node["split"].execution_id]
    assert by_node["a"].edge == "PARALLEL" and by_node["merge"].edge == "JOIN"
    assert sorted(by_node["merge"].parent_ids) == sorted(
        [by_node["a"].execution_id, by_node["b"].execution_id]
    )
    assert by_node["split"].next == ["a", "b"] and by_node["merge"].next == ["END"]
    # Telemetry and inline results.
    assert (by_node["b"].tokens_in, by_node["b"].tokens_out, by_node["b"].model) == (
        100,
        20,
        "offline",
    )
    assert by_node["a"].tokens_in == 0 and by_node["a"].model == ""
    assert all(r.latency_ms >= 0 and r.finished_at is not None for r in records)
    assert by_node["a"].result_value() == {"node": "a", "iteration": 1, "data": "fanned"}
    assert by_node["a"].result_uri is None

    summary = {c.key: c for c in await setup.client.costs("tenant")}["acme"]
    assert (summary.tokens_in, summary.tokens_out, summary.executions) == (200, 40, 5)
    assert float(summary.cost_usd) == pytest.approx(0.003)


async def test_failed_attempts_are_kept_and_the_final_failure_recorded(setup: Setup) -> None:
    graph = (
        GraphBuilder("fail-rec", version="1.0.0")
        .task("explode", Boom, retry={"max_attempts": 3, "initial_interval_s": 0.05})
        .plan("decide", LoopThenFinish)
        .edge("explode", "decide")
        .edge("decide", "explode")
        .final("decide")
        .build()
    )
    handle = await setup.client.start(graph, None)
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    [record] = await setup.client.history(handle.id)
    assert (record.node, record.status.value, record.attempt) == ("explode", "failed", 3)
    assert record.error == "ValueError: boom on attempt 3"
    attempts = await setup.records.attempts(record.execution_id)
    assert [(a["attempt"], a["status"]) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]


async def test_fifty_megabyte_result_stays_out_of_history_and_the_row(setup: Setup) -> None:
    graph = (
        GraphBuilder("big", version="1.0.0")
        .task("produce", Huge, timeout_s=120)
        .plan("relay", PassOn)
        .task("measure", Size)
        .edge("produce", "relay")
        .edge("relay", "measure")
        .edge("measure", "relay")
        .final("relay")
        .build()
    )
    handle = await setup.client.start(graph, None)
    result = await handle.result()
    # The 50 MB value reached the next task whole (through the plan's data).
    assert result.output == BIG

    history = await handle.fetch_history()
    history_bytes = sum(e.ByteSize() for e in history.events)
    assert history_bytes < 64 * 1024, history_bytes

    records = await setup.client.history(handle.id)
    produced = next(r for r in records if r.node == "produce")
    assert produced.result_inline is None and produced.result_uri is not None
    assert produced.result_size == BIG + 2  # the JSON string's quotes
    digest = hashlib.sha256()
    chunks = 0
    async for chunk in setup.client.stream_result(produced):
        digest.update(chunk)
        chunks += 1
    assert digest.hexdigest() == produced.result_sha256
    assert chunks > 1  # streamed, not read whole
    await assert_replays_with(setup.client.temporal, handle)


async def assert_replays_with(temporal: Client, handle: WorkflowHandle[Any, Any]) -> None:
    from temporalio.worker import Replayer

    from graphrunner.plugin import GraphrunnerPlugin
    from graphrunner.workflows import AgentLifetimeWorkflow

    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[AgentLifetimeWorkflow],
        plugins=[GraphrunnerPlugin()],
        data_converter=temporal.data_converter,  # its blob store reads large payloads
    )
    await replayer.replay_workflow(history)


async def test_concurrent_lifetimes_lose_no_records(setup: Setup) -> None:
    graph = (
        GraphBuilder("busy", version="1.0.0")
        .task("work", Echo)
        .plan("decide", LoopThenFinish, config={"rounds": 3})
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )
    handles = await asyncio.gather(
        *(setup.client.start(graph, i, tenant=f"t{i % 3}") for i in range(20))
    )
    await asyncio.gather(*(h.result() for h in handles))

    for handle in handles:
        records = await setup.client.history(handle.id)
        assert [(r.node, r.iteration) for r in records] == [
            (n, i) for i in (1, 2, 3) for n in ("work", "decide")
        ]
    totals = await setup.records.lifetimes(graph="busy", limit=100)
    assert len(totals) == 20 and all(t.executions == 6 for t in totals)
    assert sum(c.executions for c in await setup.client.costs("tenant")) == 120
    await assert_replays(setup.client.temporal, handles[0])


class ThreeMegabytes(Task):
    async def run(self, ctx: NodeContext, data: Any) -> str:
        return "y" * (3 * 1024 * 1024)


async def test_oversized_payload_without_blob_offload_fails_fast_naming_the_node(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    # Offload raised above the server's 2 MiB payload limit: the one way left to hit it.
    settings = Settings(
        task_queue=task_queue, home=tmp_path, payload_threshold_bytes=64 * 1024 * 1024
    )
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, LocalBlobStore(tmp_path / "blobs")),
    )
    graph = (
        GraphBuilder("too-big", version="1.0.0")
        .task("produce", ThreeMegabytes, retry={"max_attempts": 5})
        .plan("decide", LoopThenFinish, config={"rounds": 1})
        .edge("produce", "decide")
        .edge("decide", "produce")
        .final("decide")
        .build()
    )
    async with build_worker(temporal, task_queue=task_queue, recorder=None):
        client = GraphrunnerClient(temporal, settings=settings)
        handle = await client.start(graph, None)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    message = str(info.value.cause)
    assert "node 'produce'" in message and "PayloadsTooLarge" in message
    history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts == [1]  # not retried: no retry could make it smaller
