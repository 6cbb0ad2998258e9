"""graphrunner's search attributes (issue 12, point 6) on the real dev server.

``GraphrunnerStatus`` and ``GraphrunnerCostUsd`` follow a lifetime as it runs (paused,
completed, failed, aborted), only attributes present at start are upserted, a child gets
its own, and ``graphrunner setup`` registers them idempotently. Histories are replayed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient
from graphrunner._attributes import COST_KEY, GRAPH_KEY, STATUS_KEY, TENANT_KEY, VERSION_KEY
from graphrunner.client import DevServer, temporal_binary
from graphrunner.client._devserver import TUNING_ARGS
from graphrunner.graph import AgentGraph
from graphrunner.stores import RecordStore
from tests.conftest import assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_guardrails import Harness


@pytest.fixture
def harness(env: WorkflowEnvironment, task_queue: str, tmp_path: Path) -> Any:
    store = RecordStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.ensure_schema()
    yield Harness(env, task_queue, store)
    store.close()


def costly_loop(name: str, gate: Path, rounds: int = 3) -> AgentGraph:
    """pay ($0.25 each) -> wait (for ``gate``) -> decide, ``rounds`` times."""
    return (
        GraphBuilder(name, version="2.1.0")
        .task("pay", "tests.nodes:Costly")
        .plan("go", "tests.nodes:Forward")
        .task("wait", "tests.nodes:WaitForFile", config={"gate": str(gate)})
        .plan("decide", "tests.nodes:LoopThenFinish", config={"rounds": rounds, "loop_to": "pay"})
        .edge("pay", "go")
        .edge("go", "wait")
        .edge("wait", "decide")
        .edge("decide", "pay")
        .final("decide")
        .build()
    )


async def attrs(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """graphrunner's search attributes of the lifetime now (not Temporal's own)."""
    found = (await handle.describe()).typed_search_attributes
    return {p.key.name: p.value for p in found if p.key.name.startswith("Graphrunner")}


async def until(handle: WorkflowHandle[Any, Any], key: SearchAttributeKey[Any], value: Any) -> None:
    async with asyncio.timeout(20):
        while (await attrs(handle)).get(key.name) != value:
            await asyncio.sleep(0.1)


def upserts(history: Any) -> list[dict[str, str]]:
    """The search attribute upserts in a history: name -> JSON value, in order."""
    found = []
    for event in history.events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes
            found.append(
                {k: v.data.decode() for k, v in fields.search_attributes.indexed_fields.items()}
            )
    return found


async def test_status_and_cost_follow_the_lifetime_and_only_change_when_they_change(
    harness: Harness, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with harness.worker():
        handle = await harness.start(costly_loop("follow", gate), tenant="acme")
        start = await attrs(handle)
        assert start == {
            GRAPH_KEY.name: "follow",
            VERSION_KEY.name: "2.1.0",
            TENANT_KEY.name: "acme",
            STATUS_KEY.name: "running",
            COST_KEY.name: 0.0,
        }
        await until(handle, COST_KEY, 0.25)  # the first pay reported $0.25
        await harness.client.pause(handle.id, reason="look")
        await until(handle, STATUS_KEY, "paused")
        await harness.client.resume(handle.id)
        await until(handle, STATUS_KEY, "running")
        gate.write_text("go")
        await handle.result()
    final = await attrs(handle)
    assert (final[STATUS_KEY.name], final[COST_KEY.name]) == ("completed", 0.75)
    changes = upserts(await handle.fetch_history())
    # One upsert per change, never a repeated value: three costs, paused, running, completed.
    assert [sorted(c) for c in changes].count(["GraphrunnerCostUsd"]) == 3
    assert [c.get("GraphrunnerStatus") for c in changes if "GraphrunnerStatus" in c] == [
        '"paused"',
        '"running"',
        '"completed"',
    ]
    await assert_replays(harness.temporal, handle)


async def test_a_failed_and_an_aborted_lifetime_say_so(harness: Harness, tmp_path: Path) -> None:
    boom = (
        GraphBuilder("boom", version="1.0.0")
        .task("work", "tests.nodes:Boom", retry={"max_attempts": 1})
        .final("work")
        .build()
    )
    async with harness.worker():
        failed = await harness.start(boom)
        aborted = await harness.start(costly_loop("abort-me", tmp_path / "never"))
        await until(aborted, COST_KEY, 0.25)
        await harness.client.abort(aborted.id, reason="enough")
        for handle in (failed, aborted):
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert (await attrs(failed))[STATUS_KEY.name] == "failed"
    assert (await attrs(aborted))[STATUS_KEY.name] == "aborted"
    for handle in (failed, aborted):
        await assert_replays(harness.temporal, handle)


async def test_a_lifetime_started_without_the_attributes_upserts_none(
    harness: Harness, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("go")
    async with harness.worker():
        bare = await harness.client.start(
            costly_loop("bare", gate, rounds=1), None, search_attributes=False
        )
        await bare.result()
        # An older client's lifetime: graph and tenant only (no status, no cost).
        harness.client._attrs_present = {GRAPH_KEY.name, TENANT_KEY.name}
        older = await harness.start(costly_loop("older", gate, rounds=1))
        await older.result()
    for handle in (bare, older):
        assert upserts(await handle.fetch_history()) == []
        await assert_replays(harness.temporal, handle)
    assert set(await attrs(older)) == {GRAPH_KEY.name, TENANT_KEY.name}


async def test_a_child_lifetime_has_its_own_graph_status_and_cost(
    client: GraphrunnerClient, worker: None
) -> None:
    child = (
        GraphBuilder("child", version="3.0.0")
        .task("pay", "tests.nodes:Costly", config={"cost": 0.5})
        .final("pay")
        .build()
    )
    parent = (
        GraphBuilder("parent", version="1.0.0")
        .plan("go", "tests.nodes:Forward")
        .subgraph("solve", child)
        .plan("next", "tests.nodes:Forward")
        .task("pay", "tests.nodes:Costly")
        .edge("go", "solve")
        .edge("solve", "next")
        .edge("next", "pay")
        .final("pay")
        .build()
    )
    handle = await client.start(parent, None, tenant="acme")
    await handle.result()
    [step] = [s for s in (await client.status(handle.id)).steps if s.child]
    assert step.child is not None
    child_attrs = await attrs(client.temporal.get_workflow_handle(step.child))
    assert child_attrs == {
        GRAPH_KEY.name: "child",
        VERSION_KEY.name: "3.0.0",
        TENANT_KEY.name: "acme",
        STATUS_KEY.name: "completed",
        COST_KEY.name: 0.5,
    }
    parent_attrs = await attrs(handle)
    assert (parent_attrs[STATUS_KEY.name], parent_attrs[COST_KEY.name]) == ("completed", 0.75)
    await assert_replays(client.temporal, handle)


async def test_setup_registers_the_attributes_once_and_names_a_conflicting_type() -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_extra_args=[*TUNING_ARGS, "--search-attribute", "GraphrunnerCostUsd=Keyword"],
    ) as bare:
        env = cli_env(TEMPORAL_ADDRESS=bare.client.service_client.config.target_host)
        clash = await asyncio.to_thread(graphrunner, "setup", env=env)
        assert clash.returncode == 2
        [line] = clash.stderr.strip().splitlines()
        assert "GraphrunnerCostUsd is Keyword, graphrunner needs Double" in line
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_extra_args=list(TUNING_ARGS)
    ) as bare:
        env = cli_env(TEMPORAL_ADDRESS=bare.client.service_client.config.target_host)
        first = await asyncio.to_thread(graphrunner, "setup", env=env)
        assert first.returncode == 0, first.stderr
        assert "GraphrunnerStatus (Keyword): registered" in first.stdout
        assert "GraphrunnerCostUsd (Double): registered" in first.stdout
        again = await asyncio.to_thread(graphrunner, "setup", env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already registered") == 6
        await check_listed(bare.client)


async def check_listed(temporal: Client) -> None:
    from graphrunner.client._setup import present_attributes

    present = await present_attributes(temporal)
    assert {k: present[k] for k in ("GraphrunnerStatus", "GraphrunnerCostUsd")} == {
        "GraphrunnerStatus": STATUS_KEY.indexed_value_type,
        "GraphrunnerCostUsd": COST_KEY.indexed_value_type,
    }


def test_graphrunner_dev_registers_all_six(tmp_path: Path) -> None:
    command = DevServer(home=tmp_path, port=1, ui_port=2).command()
    registered = [command[i + 1] for i, arg in enumerate(command) if arg == "--search-attribute"]
    assert registered == [
        "GraphrunnerGraph=Keyword",
        "GraphrunnerVersion=Keyword",
        "GraphrunnerTenant=Keyword",
        "GraphrunnerStatus=Keyword",
        "GraphrunnerCostUsd=Double",
        "GraphrunnerForkOf=Keyword",
    ]
