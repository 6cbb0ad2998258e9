"""Control of lifetimes (issue 12, points 5 and 7) on the real dev server and CLIs.

Bulk pause/resume/abort/cancel by a visibility query, cancellation reaching running nodes
and being recorded, a repeated ``run --id`` attaching to the one lifetime, and
start-and-wait-for-the-first-question in one call (Update-with-Start). Every history is
replayed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner._types import LifetimePhase
from graphrunner.client import temporal_binary
from graphrunner.errors import GraphrunnerError
from graphrunner.graph import AgentGraph
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import RecordStore
from graphrunner.worker import build_worker
from tests.asking_workflow import AskingLifetime
from tests.conftest import assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_guardrails import Harness

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
async def harness(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    store = RecordStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.ensure_schema()
    yield Harness(env, task_queue, store)
    store.close()


@pytest.fixture
def server_env(env: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )


def gated(name: str, gate: Path) -> AgentGraph:
    """work (waits for ``gate``) -> decide (finishes): a pause lands while work runs."""
    return (
        GraphBuilder(name, version="1.0.0")
        .task("work", "tests.nodes:WaitForFile", config={"gate": str(gate), "tag": name})
        .plan("decide", "tests.nodes:LoopThenFinish", config={"rounds": 1})
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )


def count(temporal: Client, query: str) -> int:
    """How many executions ``temporal workflow count --query`` finds (the real CLI)."""
    target = temporal.service_client.config.target_host
    done = subprocess.run(
        [temporal_binary(), "workflow", "count", "--address", target, "--query", query],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.split("Total:")[1].split()[0])


async def until_counted(temporal: Client, query: str, expected: int) -> None:
    """Wait until visibility (eventually consistent) counts ``expected`` for ``query``."""
    async with asyncio.timeout(20):
        while await asyncio.to_thread(count, temporal, query) != expected:
            await asyncio.sleep(0.2)


async def test_bulk_pause_and_resume_act_on_every_lifetime_the_query_matches(
    harness: Harness, server_env: dict[str, str], tmp_path: Path
) -> None:
    tenant, other = f"acme-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    gate = tmp_path / "gate"
    query = f"GraphrunnerTenant='{tenant}'"
    async with harness.worker():
        handles = [await harness.start(gated(f"bulk{i}", gate), tenant=tenant) for i in range(3)]
        bystander = await harness.start(gated("bystander", gate), tenant=other)
        await until_counted(harness.temporal, f"{query} AND GraphrunnerStatus='running'", 3)
        paused = await asyncio.to_thread(graphrunner, "pause", "--query", query, env=server_env)
        assert paused.returncode == 0, paused.stderr
        for handle in handles:
            assert f"{handle.id}: ok: paused" in paused.stdout
        assert f"pause: 3 of 3 running lifetimes matching {query} paused" in paused.stdout
        assert bystander.id not in paused.stdout
        # What `temporal workflow list --query` finds: the three, paused; the bystander not.
        await until_counted(harness.temporal, f"{query} AND GraphrunnerStatus='paused'", 3)
        assert (
            await asyncio.to_thread(
                count,
                harness.temporal,
                f"GraphrunnerStatus='paused' AND GraphrunnerTenant='{other}'",
            )
            == 0
        )
        # Pausing again: each lifetime refuses, and says why; the exit code says so.
        again = await asyncio.to_thread(
            graphrunner, "pause", "--query", query, "--json", env=server_env
        )
        assert again.returncode == 1
        report = json.loads(again.stdout)
        assert (report["matched"], report["ok"], report["refused"]) == (3, 0, 3)
        assert {o["detail"] for o in report["outcomes"]} == {
            "the lifetime is already paused by hand"
        }
        gate.write_text("go")  # work finishes; decide waits for the resume
        await asyncio.sleep(0.5)
        for handle in handles:  # held before decide, not finished
            info = await harness.client.status(handle.id)
            assert (info.status, info.phase) == ("running", "paused")
        resumed = await asyncio.to_thread(
            graphrunner, "resume", "--query", query, "--reason", "go on", env=server_env
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "resume: 3 of 3 running lifetimes matching" in resumed.stdout
        for handle in [*handles, bystander]:
            await handle.result()
    await until_counted(harness.temporal, f"{query} AND GraphrunnerStatus='completed'", 3)
    for handle in [*handles, bystander]:
        await assert_replays(harness.temporal, handle)


async def test_bulk_control_is_bounded_and_refuses_an_id_with_a_query(
    harness: Harness, server_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = f"bound-{uuid.uuid4().hex[:6]}"
    query = f"GraphrunnerTenant='{tenant}'"
    async with harness.worker():
        handles = [
            await harness.start(gated(f"b{i}", tmp_path / "g"), tenant=tenant) for i in (1, 2)
        ]
        await until_counted(harness.temporal, query, 2)
        over = await asyncio.to_thread(
            graphrunner, "abort", "--query", query, "--limit", "1", env=server_env
        )
        assert over.returncode == 2
        assert "more than 1 running lifetimes match" in over.stderr
        assert "nothing was done" in over.stderr
        both = await asyncio.to_thread(
            graphrunner, "cancel", handles[0].id, "--query", query, env=server_env
        )
        assert both.returncode == 1 and "give a lifetime ID or --query, not both" in both.stderr
        bad = await asyncio.to_thread(graphrunner, "pause", "--query", "Nope ==", env=server_env)
        assert bad.returncode == 2 and "invalid --query" in bad.stderr
        # Nothing was touched: both still run, unpaused; abort them all for real.
        with pytest.raises(GraphrunnerError, match="not paused"):
            await harness.client.resume(handles[0].id)
        outcomes = await harness.client.control_many("abort", query, reason="bulk")
        assert sorted(o.lifetime_id for o in outcomes) == sorted(h.id for h in handles)
        assert all(o.ok and o.detail == "aborted" for o in outcomes)
        for handle in handles:
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    await until_counted(harness.temporal, f"{query} AND GraphrunnerStatus='aborted'", 2)
    for handle in handles:
        await assert_replays(harness.temporal, handle)


@pytest.mark.parametrize("heartbeat", [1.0, None], ids=["heartbeat-timeout", "no-timeout"])
async def test_cancel_reaches_the_running_node_is_recorded_and_ends_cancelled(
    harness: Harness, server_env: dict[str, str], tmp_path: Path, heartbeat: float | None
) -> None:
    seen = tmp_path / "seen"
    graph = (
        GraphBuilder("cancel-me", version="1.0.0")
        .task(
            "wait",
            "tests.nodes:WaitForCancel",
            config={"seen": str(seen)},
            heartbeat_timeout_s=heartbeat,
            timeout_s=120,
        )
        .final("wait")
        .build()
    )
    async with harness.worker():
        handle = await harness.start(graph)
        async with asyncio.timeout(20):
            while not (await harness.client.status(handle.id)).running:
                await asyncio.sleep(0.05)
        done = await asyncio.to_thread(
            graphrunner, "cancel", handle.id, "--reason", "not needed", env=server_env
        )
        assert done.returncode == 0, done.stderr
        assert f"cancel requested for {handle.id}" in done.stdout
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        # The node hears it at its next heartbeat: with no heartbeat timeout, within the
        # worker's 10 s heartbeat throttle.
        async with asyncio.timeout(15):
            while not seen.exists():
                await asyncio.sleep(0.1)
    info = await harness.client.status(handle.id)
    assert (info.status, info.phase) == ("canceled", "cancelled")
    decisions = await harness.store.decisions(handle.id)
    assert [(d.rule, d.action, d.message) for d in decisions] == [
        ("cancel", "cancel_lifetime", "not needed")
    ]
    again = await asyncio.to_thread(graphrunner, "cancel", handle.id, env=server_env)
    assert again.returncode == 2
    assert f"cannot cancel {handle.id}: the lifetime is canceled" in again.stderr
    await assert_replays(harness.temporal, handle)


async def test_run_with_the_same_id_twice_gives_one_lifetime_and_says_so(
    client: GraphrunnerClient, server_env: dict[str, str], env: WorkflowEnvironment, tmp_path: Path
) -> None:
    lifetime_id = f"once-{uuid.uuid4().hex[:8]}"
    gate = tmp_path / "gate"
    path = tmp_path / "gated.yaml"
    path.write_text(
        "name: gated\nversion: 1.0.0\nnodes:\n"
        "  - {name: work, kind: task, impl: 'tests.nodes:WaitForFile', config: {gate: "
        f"'{gate}'}}}}\nedges:\n  - {{from: work, type: FINAL}}\n"
    )
    async with build_worker(client, recorder=None):
        first = await asyncio.to_thread(
            graphrunner, "run", str(path), "--id", lifetime_id, env=server_env
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith(f"started lifetime {lifetime_id}")
        second = await asyncio.to_thread(
            graphrunner, "run", str(path), "--id", lifetime_id, env=server_env
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith(f"already running, attached to lifetime {lifetime_id}")
        waiting = asyncio.create_task(
            asyncio.to_thread(
                graphrunner,
                "run",
                str(path),
                "--id",
                lifetime_id,
                "--wait",
                "--json",
                env=server_env,
            )
        )
        await asyncio.sleep(1)
        gate.write_text("go")
        waited = await waiting
        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout)["output"] == {"tag": None}
        closed = await asyncio.to_thread(
            graphrunner, "run", str(path), "--id", lifetime_id, "--json", env=server_env
        )
        assert json.loads(closed.stdout)["attached"] == "completed"
        other = await asyncio.to_thread(
            graphrunner, "run", str(EXAMPLES / "research.yaml"), "--id", lifetime_id, env=server_env
        )
        assert other.returncode == 2
        assert "already exists and runs graph 'gated' 1.0.0, not 'research'" in other.stderr
    assert await asyncio.to_thread(count, env.client, f"WorkflowId='{lifetime_id}'") == 1
    await assert_replays(env.client, client.temporal.get_workflow_handle(lifetime_id))


def asking_graph(name: str, *asks: str) -> AgentGraph:
    """start -> the ``ask*`` tasks in parallel -> merge -> FINAL."""
    builder = (
        GraphBuilder(name, version="1.0.0")
        .plan("start", "tests.nodes:FanOutAll")
        .plan("merge", "tests.nodes:Collect")
    )
    for ask in asks:
        builder = builder.task(ask, "tests.nodes:Echo")
    return builder.parallel("start", *asks).join("merge", *asks).final("merge").build()


async def replay_asking(temporal: Client, handle: WorkflowHandle[Any, Any]) -> None:
    replayer = Replayer(workflows=[AskingLifetime], plugins=[GraphrunnerPlugin()])
    await replayer.replay_workflow(await handle.fetch_history())


async def test_start_and_ask_returns_the_first_question_in_one_call(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    client = GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))
    lifetime_id = f"ask-{uuid.uuid4().hex[:8]}"
    graph = asking_graph("asks", "ask_a", "ask_b")
    async with Worker(
        env.client, task_queue=task_queue, workflows=[AskingLifetime], plugins=[GraphrunnerPlugin()]
    ):
        handle, first = await client.start_and_ask(graph, {"q": 1}, id=lifetime_id)
        assert first.phase is LifetimePhase.WAITING
        assert first.question is not None and first.question["asking"]
        # Asking again starts nothing: the same lifetime, still waiting.
        again_handle, again = await client.start_and_ask(graph, {"q": 1}, id=lifetime_id)
        assert again.phase is LifetimePhase.WAITING and again_handle.id == handle.id
        await until_counted(
            env.client, f"WorkflowId='{lifetime_id}' AND GraphrunnerStatus='waiting'", 1
        )
        await handle.signal("test.answer", "ask_a")
        await asyncio.sleep(0.5)  # one of two answered: it still waits for a person
        assert (
            await asyncio.to_thread(
                count, env.client, f"WorkflowId='{lifetime_id}' AND GraphrunnerStatus='waiting'"
            )
            == 1
        )
        await handle.signal("test.answer", "ask_b")
        await handle.result()
        _, ended = await client.start_and_ask(graph, {"q": 1}, id=lifetime_id)
        assert ended.phase is LifetimePhase.COMPLETED
    await until_counted(
        env.client, f"WorkflowId='{lifetime_id}' AND GraphrunnerStatus='completed'", 1
    )
    await replay_asking(env.client, handle)


async def test_start_and_ask_returns_when_the_lifetime_ends_without_asking(
    client: GraphrunnerClient, worker: None
) -> None:
    done = (
        GraphBuilder("no-question", version="1.0.0")
        .task("work", "tests.nodes:Echo")
        .final("work")
        .build()
    )
    handle, answer = await client.start_and_ask(done, 1, id=f"nq-{uuid.uuid4().hex[:8]}")
    assert (answer.phase, answer.question) == (LifetimePhase.COMPLETED, None)
    assert (await handle.result()).output["data"] == 1
    broken = (
        GraphBuilder("fails", version="1.0.0")
        .task("work", "tests.nodes:Boom", retry={"max_attempts": 1})
        .final("work")
        .build()
    )
    failed, answer = await client.start_and_ask(broken, 1, id=f"f-{uuid.uuid4().hex[:8]}")
    assert answer.phase is LifetimePhase.FAILED
    for h in (handle, failed):
        await assert_replays(client.temporal, h)
