"""``graphrunner replay``: a changed routing is caught with its lifetime, event and step."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, load_graph
from graphrunner.client._replay import parse_since, replay_histories, replay_query
from tests.conftest import ROOT
from tests.swapped_workflows import ReroutedLifetime
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_human import waiting

EXAMPLES = ROOT / "examples"
REROUTED = "tests.swapped_workflows:ReroutedLifetime"


@pytest.fixture
def server_env(env: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )


@pytest.mark.usefixtures("worker")
async def test_replay_catches_a_changed_routing_and_passes_on_unchanged_code(
    client: GraphrunnerClient, server_env: dict[str, str]
) -> None:
    handle = await client.start(load_graph(EXAMPLES / "research.yaml"), {"topic": "replay"})
    await handle.result()
    history = await client.temporal.get_workflow_handle(handle.id).fetch_history()

    [same] = await replay_histories([history])
    assert same.ok and not same.running and same.lifetime_id == handle.id

    [changed] = await replay_histories([history], workflows=[ReroutedLifetime])
    assert not changed.ok and changed.lifetime_id == handle.id
    assert changed.error and changed.error.startswith("[TMPRL1100] Nondeterminism error")
    assert changed.event_id is not None, changed.error
    # History gathered a third time after the second review; the changed code fans out to
    # three reviewers there. The first reviewer's command matches gather · 3's event (both
    # run a task), so the first event it cannot match is the third review's.
    assert changed.step == "review · 3" and changed.step_number == 6, changed
    assert changed.event_type == "ActivityTaskScheduled"
    assert changed.hint and "workflow.patched" in changed.hint

    # The CLI, as an operator runs it (in a thread: the worker runs on this loop).
    ok = await asyncio.to_thread(graphrunner, "replay", handle.id, env=server_env)
    assert ok.returncode == 0, ok.stderr
    assert f"{handle.id}: ok (closed" in ok.stdout and "1 of 1 lifetime replay" in ok.stdout

    broken = await asyncio.to_thread(
        graphrunner, "replay", handle.id, "--workflow", REROUTED, "--json", env=server_env
    )
    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert report["broken"] == 1
    [row] = report["lifetimes"]
    assert row["lifetime_id"] == handle.id and row["event_id"] == changed.event_id
    assert row["step"] == "review · 3" and row["step_number"] == changed.step_number

    text = await asyncio.to_thread(
        graphrunner, "replay", handle.id, "--workflow", REROUTED, env=server_env
    )
    assert text.returncode == 1
    assert f"{handle.id}: breaks at event {changed.event_id}" in text.stdout
    assert "step 6: review · 3" in text.stdout and "would break" in text.stdout


@pytest.mark.usefixtures("worker")
async def test_replay_by_graph_lists_its_lifetimes_and_a_waiting_one_replays_so_far(
    client: GraphrunnerClient, server_env: dict[str, str]
) -> None:
    graph = load_graph(EXAMPLES / "approval.yaml")
    handle = await client.start(graph, {"topic": "replay"})
    await waiting(client, handle.id, "approve")
    history = await client.temporal.get_workflow_handle(handle.id).fetch_history()
    [verdict] = await replay_histories([history], blobs=client.blobs)
    assert verdict.ok and verdict.running, verdict

    found: Any = None
    for _ in range(100):  # visibility is eventually consistent
        result = await asyncio.to_thread(
            graphrunner, "replay", "--graph", "approval", "--since", "1h", "--json", env=server_env
        )
        found = json.loads(result.stdout) if result.returncode == 0 else result.stderr
        if isinstance(found, dict) and handle.id in [r["lifetime_id"] for r in found["lifetimes"]]:
            break
        await asyncio.sleep(0.1)
    assert isinstance(found, dict), found
    [row] = [r for r in found["lifetimes"] if r["lifetime_id"] == handle.id]
    assert row["ok"] and row["running"]
    await handle.cancel()


def test_replay_query_and_since() -> None:
    assert replay_query("research", None) == (
        "WorkflowType = 'AgentLifetime' AND GraphrunnerGraph = 'research'"
    )
    moment = parse_since("2026-12-01T09:00")
    assert "StartTime > '2026-12-01T09:00:00Z'" in replay_query(None, moment)
    assert (parse_since("2h", now=moment) - moment).total_seconds() == -7200
    with pytest.raises(ValueError, match="30m, 2h"):
        parse_since("yesterday")


@pytest.mark.usefixtures("worker")
async def test_replay_of_a_lifetime_replays_its_child_lifetimes_too(
    client: GraphrunnerClient, server_env: dict[str, str]
) -> None:
    question = {"question": "replay children", "parts": ["a", "bb"]}
    handle = await client.start(load_graph(EXAMPLES / "lead_agent.yaml"), question)
    await handle.result()
    shown = await asyncio.to_thread(graphrunner, "replay", handle.id, "--json", env=server_env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    ids = [row["lifetime_id"] for row in report["lifetimes"]]
    assert ids[0] == handle.id and len(ids) == 3, "the lead agent and its two point agents"
    assert all(i.startswith(f"{handle.id}/solve-") for i in ids[1:])
    assert report["broken"] == 0
