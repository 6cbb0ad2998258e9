"""Lifetimes on a real Temporal server: loops, fan-out/fan-in, caps, failures, pinning, replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient
from graphrunner.graph import GraphDefaults, load_graph
from graphrunner.worker import build_worker
from tests.conftest import activity_summaries, assert_replays, marker_names
from tests.nodes import (
    Boom,
    ChooseUndeclared,
    Collect,
    Echo,
    FanOutAll,
    LoopForever,
    LoopThenFinish,
)


def loop_graph(rounds: int = 3, *, local: bool = False) -> GraphBuilder:
    return (
        GraphBuilder("loop", version="1.0.0")
        .task("work", Echo)
        .plan("decide", LoopThenFinish, config={"rounds": rounds}, local=local)
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
    )


@pytest.mark.usefixtures("worker")
async def test_loop_runs_until_final_edge(client: GraphrunnerClient) -> None:
    handle = await client.start(loop_graph(3).build(), {"q": 1})
    result = await handle.result()

    assert result.output["iterations"] == 3
    assert result.output["last"] == {"node": "work", "iteration": 3, "data": 2}
    assert [(s.node, s.iteration) for s in result.steps] == [
        ("work", 1),
        ("decide", 1),
        ("work", 2),
        ("decide", 2),
        ("work", 3),
        ("decide", 3),
    ]
    assert await activity_summaries(handle) == [
        "work · 1",
        "decide · 1",
        "work · 2",
        "decide · 2",
        "work · 3",
        "decide · 3",
    ]
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_plan_as_local_activity_loops_the_same(client: GraphrunnerClient) -> None:
    handle = await client.start(loop_graph(2, local=True).build(), None)
    result = await handle.result()

    assert result.output["iterations"] == 2
    history = await handle.fetch_history()
    kinds = [e.WhichOneof("attributes") for e in history.events]
    assert kinds.count("activity_task_scheduled_event_attributes") == 2  # the tasks only
    markers = marker_names(history)
    # the local plan runs only: a worker without guardrail layers adds no marker and no
    # policy snapshot to a lifetime (see tests/test_guardrails.py for one with layers)
    assert markers == ["core_local_activity"] * 2
    assert await activity_summaries(handle) == ["work · 1", "decide · 1", "work · 2", "decide · 2"]
    await assert_replays(client.temporal, handle)


def fan_graph() -> GraphBuilder:
    return (
        GraphBuilder("fan", version="1.0.0")
        .task("start", Echo)
        .plan("split", FanOutAll)
        .task("a", Echo)
        .task("b", Echo)
        .task("c", Echo)
        .plan("merge", Collect)
        .edge("start", "split")
        .parallel("split", "a", "b", "c")
        .join("merge", "a", "b", "c")
        .final("merge")
    )


@pytest.mark.usefixtures("worker")
async def test_parallel_fan_out_joins_all_branches(client: GraphrunnerClient) -> None:
    handle = await client.start(fan_graph().build(), "in")
    result = await handle.result()

    # The JOIN plan saw every branch's output, in the order the branches were chosen.
    assert result.output == {
        "a": {"node": "a", "iteration": 1, "data": "fanned"},
        "b": {"node": "b", "iteration": 1, "data": "fanned"},
        "c": {"node": "c", "iteration": 1, "data": "fanned"},
    }
    assert [s.node for s in result.steps] == ["start", "split", "a", "b", "c", "merge"]

    # Concurrency: all three branch activities were scheduled before any of them completed.
    history = await handle.fetch_history()
    kinds = [e.WhichOneof("attributes") for e in history.events]
    scheduled = [i for i, k in enumerate(kinds) if k == "activity_task_scheduled_event_attributes"]
    completed = [i for i, k in enumerate(kinds) if k == "activity_task_completed_event_attributes"]
    branch_scheduled = scheduled[2:5]
    first_branch_done = completed[2]
    assert max(branch_scheduled) < first_branch_done
    assert await activity_summaries(handle) == [
        "start · 1",
        "split · 1",
        "a · 1",
        "b · 1",
        "c · 1",
        "merge · 1",
    ]
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_iteration_cap_stops_a_runaway_loop(client: GraphrunnerClient) -> None:
    graph = (
        GraphBuilder("runaway", version="1.0.0", defaults=GraphDefaults(max_iterations=4))
        .task("work", Echo)
        .plan("again", LoopForever, local=True)
        .edge("work", "again")
        .edge("again", "work")
        .final("again")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "MaxIterationsExceeded"
    assert "node 'work'" in cause.message and "max_iterations=4" in cause.message
    assert await activity_summaries(handle) == [
        f"{node} · {i}" for i in range(1, 5) for node in ("work", "again")
    ]
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_failing_node_fails_the_lifetime_naming_node_and_cause(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("fails", version="1.0.0")
        .task("work", Echo)
        .plan("decide", LoopThenFinish, config={"loop_to": "explode", "rounds": 5})
        .task("explode", Boom, retry={"max_attempts": 2, "initial_interval_s": 0.1})
        .edge("work", "decide")
        .edge("decide", "explode")
        .edge("explode", "decide")
        .final("decide")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "NodeFailed"
    assert cause.non_retryable
    assert "node 'explode' (task, iteration 1) failed" in cause.message
    assert "boom on attempt 2" in cause.message  # retried per its policy, then gave up
    desc = await handle.describe()
    assert desc.status is not None and desc.status.name == "FAILED"
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_undeclared_successor_is_a_clear_non_retryable_error(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("undeclared", version="1.0.0")
        .task("work", Echo)
        .plan("chooser", ChooseUndeclared, retry={"max_attempts": 5})
        .edge("work", "chooser")
        .edge("chooser", "work")
        .final("chooser")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert "plan 'chooser'" in cause.message
    assert "'not_a_successor'" in cause.message and "UndeclaredSuccessor" in cause.message
    # Non-retryable: one attempt despite max_attempts=5.
    history = await handle.fetch_history()
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert started == [1, 1]  # work, then chooser once
    await assert_replays(client.temporal, handle)


PINNED_YAML = """
name: pinned
version: {version}
nodes:
  - name: hold
    kind: task
    impl: tests.nodes:WaitForFile
    config: {{gate: "{gate}", tag: {tag}}}
  - name: decide
    kind: plan
    impl: tests.nodes:LoopThenFinish
    config: {{rounds: 1}}
edges:
  - {{from: hold, to: decide}}
  - {{from: decide, to: hold}}
  - {{from: decide, type: FINAL}}
"""


@pytest.mark.usefixtures("worker")
async def test_pinned_definition_survives_an_edit(
    client: GraphrunnerClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    path = tmp_path / "pinned.yaml"
    path.write_text(PINNED_YAML.format(version="1.0.0", gate=gate, tag="v1"))
    original = load_graph(path)
    handle = await client.start(path, None)

    # Mid-lifetime, the file changes under it: new version, new config.
    await _wait_running(client, handle.id, "hold#1")
    path.write_text(PINNED_YAML.format(version="2.0.0", gate=gate, tag="v2"))
    gate.touch()
    result = await handle.result()

    assert result.output["last"] == {"tag": "v1"}
    assert result.graph_version == "1.0.0"
    assert result.graph_hash == original.content_hash()
    # A lifetime started now runs the edited definition.
    fresh = await (await client.start(path, None)).result()
    assert fresh.output["last"] == {"tag": "v2"} and fresh.graph_version == "2.0.0"
    # Replaying needs only the workflow code: the graph is in the history itself.
    await assert_replays(client.temporal, handle)


async def _wait_running(client: GraphrunnerClient, lifetime_id: str, step: str) -> None:
    for _ in range(200):
        info = await client.status(lifetime_id)
        if step in info.running:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{step} never started running")


@pytest.mark.usefixtures("worker")
async def test_status_reports_running_node_then_completion(
    client: GraphrunnerClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    path = tmp_path / "g.yaml"
    path.write_text(PINNED_YAML.format(version="1.0.0", gate=gate, tag="s"))
    handle = await client.start(path, None, tenant="acme")
    await _wait_running(client, handle.id, "hold#1")

    info = await client.status(handle.id)
    assert info.status == "running"
    assert info.graph_name == "pinned"
    assert info.tenant == "acme"
    assert info.ui_url.endswith(f"/namespaces/default/workflows/{handle.id}")
    gate.touch()
    await handle.result()
    done = await client.status(handle.id)
    assert done.status == "completed"
    assert [(s.node, s.status.value) for s in done.steps] == [
        ("hold", "completed"),
        ("decide", "completed"),
    ]


@pytest.mark.usefixtures("worker")
async def test_plan_as_start_node(client: GraphrunnerClient) -> None:
    graph = (
        GraphBuilder("plan-first", version="1.0.0")
        .plan("decide", LoopThenFinish, config={"rounds": 2})
        .task("work", Echo)
        .edge("decide", "work")
        .edge("work", "decide")
        .final("decide")
        .build()
    )
    handle = await client.start(graph, {"topic": "x"})
    result = await handle.result()
    # The first decision sees the lifetime input as its one result; it loops once, finishes.
    assert [s.node for s in result.steps] == ["decide", "work", "decide"]
    history = await handle.fetch_history()
    first_plan_call = next(
        e.activity_task_scheduled_event_attributes.input
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    )
    assert b'"node":"__input__"' in first_plan_call.payloads[0].data
    assert b'"output":{"topic":"x"}' in first_plan_call.payloads[0].data
    await assert_replays(client.temporal, handle)


async def test_status_needs_no_worker(env: WorkflowEnvironment, client: GraphrunnerClient) -> None:
    async with build_worker(env.client, task_queue=client.settings.task_queue, recorder=None):
        handle = await client.start(fan_graph().build(), None)
        result = await handle.result()
    # The worker is gone; the path comes from the server's history alone.
    info = await client.status(handle.id)
    assert info.status == "completed" and info.running == []
    assert [(s.node, s.iteration, s.status.value) for s in info.steps] == [
        (s.node, s.iteration, "completed") for s in result.steps
    ]
    assert all(s.duration_ms is not None and s.duration_ms >= 0 for s in info.steps)
