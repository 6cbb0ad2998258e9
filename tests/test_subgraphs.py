"""Sub-graphs as child lifetimes, and graphs a plan generates, on a real dev server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphError, GraphrunnerClient, load_graph
from graphrunner._types import StepStatus
from graphrunner.guardrails import parse_policy
from graphrunner.worker import build_worker
from tests.conftest import assert_replays
from tests.nodes import LoopThenFinish
from tests.subgraph_nodes import first_then_finish, generate, slowly_first_then_finish
from tests.test_cli_lifetimes import cli_env
from tests.test_cli_lifetimes import graphrunner as run_cli
from tests.test_reset import recorded, settings

GRAPHS = Path(__file__).parent / "fixtures" / "graphs" / "subgraphs"

__all__ = ["recorded", "settings"]  # fixtures


async def _children(client: GraphrunnerClient, handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Ids of the child lifetimes the lifetime started, from its history."""
    history = await handle.fetch_history()
    return [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


async def _replay_all(client: GraphrunnerClient, handle: WorkflowHandle[Any, Any]) -> None:
    """Replay the lifetime and, recursively, every child lifetime it started."""
    await assert_replays(client.temporal, handle)
    for child in await _children(client, handle):
        await _replay_all(client, client.temporal.get_workflow_handle(child))


async def _wait_running(client: GraphrunnerClient, lifetime_id: str) -> None:
    for _ in range(200):
        try:
            desc = await client.temporal.get_workflow_handle(lifetime_id).describe()
            if desc.status is WorkflowExecutionStatus.RUNNING:
                return
        except Exception:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id} never ran")


async def _status(client: GraphrunnerClient, lifetime_id: str) -> WorkflowExecutionStatus | None:
    for _ in range(200):
        desc = await client.temporal.get_workflow_handle(lifetime_id).describe()
        if desc.status is not WorkflowExecutionStatus.RUNNING:
            return desc.status
        await asyncio.sleep(0.05)
    return WorkflowExecutionStatus.RUNNING


async def _first_child(client: GraphrunnerClient, handle: WorkflowHandle[Any, Any]) -> str:
    for _ in range(200):
        children = await _children(client, handle)
        if children:
            await _wait_running(client, children[0])
            return children[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no child lifetime started")


# -- loading ---------------------------------------------------------------------------


def test_a_subgraph_is_pinned_into_its_parent_and_its_hash() -> None:
    parent = load_graph(GRAPHS / "parent.yaml")
    point = load_graph(GRAPHS / "point.yaml")
    assert parent.subgraphs == {"point.yaml": point}
    lead = load_graph(GRAPHS / "lead.yaml")
    assert lead.subgraphs == {"point@1.0.0": point}, "name@version found in the same directory"
    assert parent.node("child").impl is None
    # A graph without sub-graphs dumps (and so hashes) without the new fields.
    assert "subgraphs" not in point.model_dump()
    assert "graph" not in point.model_dump()["nodes"][0]


def test_a_cycle_of_references_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(GraphError) as err:
        load_graph(GRAPHS / "cycle-a.yaml")
    cycle = [i for i in err.value.issues if i.rule == "subgraph-cycle"]
    assert len(cycle) == 1
    assert cycle[0].file is not None and cycle[0].file.endswith("cycle-b.yaml")
    assert cycle[0].line == 5
    assert "cycle-a.yaml -> cycle-b.yaml -> cycle-a.yaml" in cycle[0].message
    assert {i.rule for i in err.value.issues} == {"subgraph-cycle", "subgraph-invalid"}


def test_a_missing_reference_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(GraphError) as err:
        load_graph(GRAPHS / "missing-ref.yaml")
    (issue,) = err.value.issues
    assert issue.rule == "subgraph-missing" and issue.line == 5
    assert issue.file is not None and issue.file.endswith("missing-ref.yaml")
    assert "no-such.yaml does not exist" in issue.message


def test_a_subgraph_task_needs_no_impl_but_a_plan_cannot_run_a_graph() -> None:
    point = load_graph(GRAPHS / "point.yaml")
    with pytest.raises(GraphError) as err:
        (
            GraphBuilder("bad", version="1.0.0")
            .plan("start", first_then_finish, graph="point.yaml")
            .subgraph("child", point, impl="tests.subgraph_nodes:square")
            .edge("start", "child")
            .edge("child", "start")
            .final("start")
            .build()
        )
    rules = {i.rule for i in err.value.issues}
    assert "subgraph-kind" in rules and "subgraph-impl" in rules
    assert "impl-missing" not in rules


# -- running ----------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_child_lifetime_output_is_the_node_result(client: GraphrunnerClient) -> None:
    handle = await client.start(GRAPHS / "parent.yaml", 7)
    result = await handle.result()
    assert result.output == 49
    (child_id,) = await _children(client, handle)
    assert child_id.startswith(f"{handle.id}/child-1-")
    step = next(s for s in result.steps if s.node == "child")
    assert step.child == child_id and step.status is StepStatus.COMPLETED
    assert result.telemetry is not None and result.telemetry.tokens_in == 7, "child spend"
    info = await client.status(handle.id)
    nested = info.children[child_id]
    assert [s.node for s in nested.steps] == ["work", "done"]
    assert nested.graph_name == "point"
    # The Relationships tab: the child names its parent.
    desc = await client.temporal.get_workflow_handle(child_id).describe()
    assert desc.parent_id == handle.id
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_a_lead_agent_maps_a_point_subgraph_over_a_list(client: GraphrunnerClient) -> None:
    handle = await client.start(GRAPHS / "lead.yaml", [1, 2, 3])
    result = await handle.result()
    assert result.output == [1, 4, 9]
    assert len(await _children(client, handle)) == 3
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_a_failing_child_fails_the_parent_naming_it(client: GraphrunnerClient) -> None:
    handle = await client.start(GRAPHS / "parent-failing-point.yaml", 3)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    (child_id,) = await _children(client, handle)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "NodeFailed"
    assert f"child lifetime '{child_id}' failed" in str(cause)
    assert "point agent gave up on 3" in str(cause)
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_aborting_the_parent_ends_its_running_child(client: GraphrunnerClient) -> None:
    handle = await client.start(GRAPHS / "parent-slow-point.yaml", 2)
    child_id = await _first_child(client, handle)
    await client.abort(handle.id, reason="operator stop")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "aborted by hand" in str(failure.value.cause)
    assert await _status(client, child_id) is WorkflowExecutionStatus.CANCELED
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_cancelling_the_parent_cancels_its_child(client: GraphrunnerClient) -> None:
    handle = await client.start(GRAPHS / "parent-slow-point.yaml", 2)
    child_id = await _first_child(client, handle)
    await handle.cancel()
    assert await _status(client, handle.id) is WorkflowExecutionStatus.CANCELED
    assert await _status(client, child_id) is WorkflowExecutionStatus.CANCELED
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_a_pause_by_hand_holds_a_child_lifetime_before_it_starts(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("paused-parent", version="1.0.0")
        .plan("start", slowly_first_then_finish, config={"sleep_s": 1.0})
        .subgraph("child", GRAPHS / "point.yaml")
        .edge("start", "child")
        .edge("child", "start")
        .final("start")
        .build()
    )
    handle = await client.start(graph, 3)
    while not (await client.status(handle.id)).running:
        await asyncio.sleep(0.05)
    await client.pause(handle.id, reason="hold the child")  # while the plan decides
    await asyncio.sleep(2.0)  # the plan has finished by now and chose the child
    info = await client.status(handle.id)
    assert [s.node for s in info.steps] == ["start"] and info.paused, "the child's start waits"
    assert await _children(client, handle) == [], "no child lifetime started while paused"
    await client.resume(handle.id)
    assert (await handle.result()).output == 9
    assert len(await _children(client, handle)) == 1
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_aborting_a_child_fails_the_parent_node_naming_it(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(GRAPHS / "parent-slow-point.yaml", 2)
    child_id = await _first_child(client, handle)
    await client.abort(child_id, reason="bad child")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = str(failure.value.cause)
    assert f"node 'child' (task, iteration 1) failed: child lifetime '{child_id}' failed" in message
    assert "GuardrailAborted" in message and "bad child" in message
    await _replay_all(client, handle)


@pytest.fixture
async def other_queue(env: WorkflowEnvironment) -> AsyncIterator[str]:
    queue = f"tq-other-{uuid.uuid4().hex[:8]}"
    async with build_worker(env.client, task_queue=queue, recorder=None):
        yield queue


@pytest.mark.usefixtures("worker")
async def test_a_child_runs_on_another_task_queue(
    client: GraphrunnerClient, other_queue: str
) -> None:
    graph = (
        GraphBuilder("elsewhere", version="1.0.0")
        .plan("start", first_then_finish)
        .subgraph("child", GRAPHS / "point.yaml", task_queue=other_queue)
        .edge("start", "child")
        .edge("child", "start")
        .final("start")
        .build()
    )
    handle = await client.start(graph, 5)
    assert (await handle.result()).output == 25
    (child_id,) = await _children(client, handle)
    desc = await client.temporal.get_workflow_handle(child_id).describe()
    assert desc.task_queue == other_queue
    await _replay_all(client, handle)


# -- generated graphs ---------------------------------------------------------------------


def generating(bad: str, *, report: bool = False) -> Any:
    return (
        GraphBuilder("dog", version="1.0.0")
        .plan("gen", generate, config={"bad": bad, "report": report})
        .subgraph("run_generated", "generated")
        .edge("gen", "run_generated")
        .edge("run_generated", "gen")
        .final("gen")
        .build()
    )


@pytest.mark.usefixtures("worker")
async def test_an_invalid_generated_graph_reaches_the_plan_with_its_errors(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(generating("invalid", report=True), 3)
    result = await handle.result()
    assert result.output["rule"] == "invalid-graph"
    assert "sq -> sq2 (NORMAL): task -> task edges break tick-tock" in result.output["errors"]
    assert "[alternation]" in result.output["errors"]
    assert await _children(client, handle) == [], "nothing of the invalid graph ran"
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_a_plan_retries_after_an_invalid_graph_and_the_valid_one_runs(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(generating("invalid"), 3)
    result = await handle.result()
    assert result.output == {"result": 9, "attempts": 3}
    gen = [s for s in result.steps if s.node == "gen"]
    assert [s.status for s in gen] == [
        StepStatus.REJECTED,
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
    ]
    (child_id,) = await _children(client, handle)
    child = await client.temporal.get_workflow_handle(child_id).result()
    assert child["graph_name"] == "generated"
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_a_generated_graph_may_not_name_code_outside_trusted_modules(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(generating("foreign", report=True), 3)
    result = await handle.result()
    assert "'os:system' is not in a module a generated graph may use" in result.output["errors"]
    assert await _children(client, handle) == []


# -- budgets ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_parent_lifetime_cap_counts_what_its_children_spent(
    client: GraphrunnerClient,
) -> None:
    policy = parse_policy(
        "rules:\n"
        "  - {name: family-cap, when: sum(tokens_used) > 15, scope: lifetime,"
        " action: abort_lifetime, message: family budget}\n"
    )
    graph = (
        GraphBuilder("budgeted", version="1.0.0")
        .plan("start", LoopThenFinish, config={"rounds": 5, "loop_to": "child"})
        .subgraph("child", GRAPHS / "point.yaml")
        .edge("start", "child")
        .edge("child", "start")
        .final("start")
        .guardrails(policy)
        .build()
    )
    handle = await client.start(graph, 0)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    children = await _children(client, handle)
    assert len(children) == 2, "the first child spent 10 tokens, the second crossed 15"
    message = str(failure.value.cause)
    assert f"child lifetime '{children[1]}' failed: GuardrailAborted" in message
    assert "guardrail 'family-cap' aborted the lifetime at task 'work'" in message
    assert "observed sum(tokens_used) = 20" in message
    await _replay_all(client, handle)


@pytest.mark.usefixtures("worker")
async def test_cli_status_shows_the_child_steps_under_the_node(
    client: GraphrunnerClient, env: WorkflowEnvironment, task_queue: str
) -> None:
    handle = await client.start(GRAPHS / "parent.yaml", 3)
    await handle.result()
    (child_id,) = await _children(client, handle)
    server = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )
    done = await asyncio.to_thread(run_cli, "status", handle.id, env=server)
    assert done.returncode == 0, done.stderr
    assert f"child · 1 → child lifetime {child_id}: completed (graph point)" in done.stdout
    assert "steps of child · 1" in done.stdout
    shown = await asyncio.to_thread(run_cli, "status", handle.id, "--json", env=server)
    payload = json.loads(shown.stdout)
    assert payload["steps"][1]["child"] == child_id
    nested = payload["children"][child_id]["steps"]
    assert [s["node"] for s in nested] == ["work", "done"]
    # The child's UI link escapes the '/' in its id (raw, the UI reads it as a run id).
    assert payload["children"][child_id]["ui_url"].endswith(
        "/workflows/" + child_id.replace("/", "%2F")
    )


async def test_a_sub_graph_task_is_recorded_with_its_child_output_or_failure(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    done = await client.start(GRAPHS / "parent.yaml", 7)
    await done.result()
    (child_id,) = await _children(client, done)
    [record] = [r for r in await client.history(done.id) if r.node == "child"]
    assert (record.kind, record.status, record.child_id) == ("task", "succeeded", child_id)
    assert record.result_value() == 49 and record.tokens_in == 7, "the child's output and spend"

    failing = await client.start(GRAPHS / "parent-failing-point.yaml", 3)
    with pytest.raises(WorkflowFailureError):
        await failing.result()
    (failed_child,) = await _children(client, failing)
    [record] = [r for r in await client.history(failing.id) if r.child_id]
    assert (record.status, record.child_id) == ("failed", failed_child)
    assert record.error and "point agent gave up on 3" in record.error
