"""Steps across runs and reset to a step: records and history agree after every reset."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from graphrunner import (
    GraphrunnerClient,
    GraphrunnerError,
    Recorder,
    Settings,
    build_worker,
    load_graph,
)
from graphrunner.client import temporal_binary
from graphrunner.client._steps import LifetimeSteps
from graphrunner.stores import LocalBlobStore, data_converter, open_records
from tests.conftest import ROOT, assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_human import review_graph

COUNTER = ROOT / "tests" / "fixtures" / "graphs" / "valid-state.yaml"
REVIEWED = [
    ("propose", 1),
    ("ask", 1),
    ("review", 1),
    ("after", 1),
    ("propose", 2),
    ("ask", 2),
    ("review", 2),
    ("after", 2),
]


@pytest.fixture
def settings(tmp_path: Path, task_queue: str) -> Settings:
    return Settings(
        task_queue=task_queue, database_url=f"sqlite:///{tmp_path}/state.db", home=tmp_path
    )


@pytest.fixture
async def recorded(
    env: WorkflowEnvironment, settings: Settings
) -> AsyncIterator[GraphrunnerClient]:
    """A worker recording into a SQLite state DB, and a client reading it."""
    records = open_records(settings)
    blobs = LocalBlobStore(settings.home / "blobs")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, blobs),
    )
    recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
    async with build_worker(temporal, task_queue=settings.task_queue, recorder=recorder):
        yield GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs)
    records.close()


async def asked(client: GraphrunnerClient, lifetime_id: str, iteration: int) -> None:
    """Wait until the lifetime asks ``review`` for this iteration."""
    for _ in range(400):
        if any(r.iteration == iteration for r in await client.pending(lifetime_id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id} never asked review #{iteration}")


async def settled(client: GraphrunnerClient, lifetime_id: str, superseded: int) -> LifetimeSteps:
    """The steps once visibility lists the abandoned run (it lags a reset a little)."""
    for _ in range(200):
        found = await client.steps(lifetime_id)
        if sum(s.superseded_by is not None for s in found.steps) >= superseded:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id}: no {superseded} superseded steps")


async def assert_records_agree(client: GraphrunnerClient, steps: LifetimeSteps) -> None:
    """Records on the current path are exactly the live steps; the rest are superseded."""
    records = await client.history(steps.lifetime_id)
    marks = await client.superseded(steps.lifetime_id, records)
    live = {s.execution_id for s in steps.live}
    assert {r.execution_id for r in records if r.execution_id not in marks} == live
    gone = {s.execution_id: s.superseded_by for s in steps.steps if s.superseded_by}
    assert marks == gone, "records and history agree on what a reset abandoned"


async def answered_review(client: GraphrunnerClient, lifetime_id: str) -> str:
    await client.start(review_graph(), {"x": 1}, id=lifetime_id)
    await asked(client, lifetime_id, 1)
    await client.respond(lifetime_id, "review", {"ok": True, "again": True}, by="bob")
    await asked(client, lifetime_id, 2)
    await client.respond(lifetime_id, "review", {"ok": True, "note": "fine"}, by="carol")
    await client.result(lifetime_id)
    return (await client.steps(lifetime_id)).run_id


@pytest.mark.parametrize("drop", [False, True], ids=["answers-kept", "answers-dropped"])
async def test_reset_to_a_step_reruns_exactly_the_steps_from_it(
    recorded: GraphrunnerClient, drop: bool
) -> None:
    client = recorded
    lid = f"reset-{uuid.uuid4().hex[:8]}"
    old = await answered_review(client, lid)
    before = await client.steps(lid)
    assert [(s.node, s.iteration) for s in before.live] == REVIEWED
    assert [s.seq for s in before.live] == list(range(8))
    assert all(s.reset_point for s in before.live), "every step has a reset point"

    with pytest.raises(GraphrunnerError, match="no step #8 on its current run"):
        await client.reset(lid, step=8)
    # Bob's answer, its record (review #1), the local plan after it and propose #2 were all
    # decided in one workflow task: its boundary is before all four, so they all run again
    # (and bob's answer is re-applied, or dropped).
    planned = await client.reset(lid, step=4, dry_run=True)
    assert [(s.node, s.iteration) for s in planned.rerun] == REVIEWED[2:]
    assert planned.answers == 2
    assert planned.new_run_id == "" and (await client.steps(lid)).run_id == old

    await assert_replays(client.temporal, client.temporal.get_workflow_handle(lid, run_id=old))
    done = await client.reset(lid, step=5, drop_answers=drop, reason="test")
    assert [(s.node, s.iteration) for s in done.rerun] == REVIEWED[5:], "exactly 5.."
    assert done.base_run_id == old and done.new_run_id not in ("", old)
    assert done.event_id == before.live[5].reset_point
    assert done.answers == 1, "carol's answer came after the reset point; bob's before"
    if drop:
        await asked(client, lid, 2)  # the new run asks again
        await client.respond(lid, "review", {"ok": False}, by="dave")
    result = await client.result(lid)
    assert result.output["answer"] == ({"ok": False} if drop else {"ok": True, "note": "fine"})

    after = await settled(client, lid, superseded=3)
    new = done.new_run_id
    assert after.run_id == new and after.runs == [old, new]
    assert [(s.node, s.iteration) for s in after.live] == REVIEWED
    assert [s.run_id for s in after.live] == [old] * 5 + [new] * 3
    gone = [s for s in after.steps if s.superseded_by]
    assert [(s.node, s.iteration) for s in gone] == REVIEWED[5:]
    assert {(s.run_id, s.superseded_by) for s in gone} == {(old, new)}
    await assert_records_agree(client, after)

    humans = [r for r in await client.history(lid) if r.kind == "human" and r.run_id == new]
    assert [(r.node, r.iteration, r.answered_by) for r in humans] == [
        ("review", 2, "dave (update)" if drop else "carol (update)")
    ]
    await assert_replays(client.temporal, client.temporal.get_workflow_handle(lid))
    await assert_replays(client.temporal, client.temporal.get_workflow_handle(lid, run_id=old))


async def test_a_reset_by_the_temporal_cli_keeps_steps_and_records_consistent(
    env: WorkflowEnvironment, recorded: GraphrunnerClient, settings: Settings
) -> None:
    client = recorded
    lid = f"treset-{uuid.uuid4().hex[:8]}"
    handle = await client.start(load_graph(COUNTER), None, id=lid)
    first = await handle.result()
    old = (await client.steps(lid)).run_id
    # A mid-lifetime workflow-task event, found in history as an operator would find it.
    history = await client.temporal.get_workflow_handle(lid).fetch_history()
    scheduled = [
        e.event_id for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    event = max(
        e.event_id
        for e in history.events
        if e.HasField("workflow_task_completed_event_attributes") and e.event_id < scheduled[2]
    )
    assert (await client.steps(lid)).live[2].reset_point == event, "steps names it too"
    address = env.client.service_client.config.target_host
    done = subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "reset",
            "-w",
            lid,
            "--event-id",
            str(event),
            "--reason",
            "operator",
            "--address",
            address,
            "--namespace",
            env.client.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = await client.result(lid)
    assert result.state == first.state, "the state is rebuilt by replay, then the rest re-runs"

    steps = await settled(client, lid, superseded=4)
    new = steps.run_id
    assert new != old and steps.runs == [old, new]
    assert [(s.node, s.iteration) for s in steps.live] == [("work", 1), ("check", 1)] + [
        (n, i) for i in (2, 3) for n in ("work", "check")
    ]
    assert [s.run_id for s in steps.live] == [old] * 2 + [new] * 4
    assert all(s.reset_point for s in steps.live), "the new run's own event ids"
    assert [s.seq for s in steps.steps if s.superseded_by] == [2, 3, 4, 5]
    await assert_records_agree(client, steps)
    status = await client.status(lid)
    assert [s.execution_id for s in status.steps] == [s.execution_id for s in steps.live]
    assert [s.execution_id for s in result.steps] == [s.execution_id for s in steps.live]
    await assert_replays(client.temporal, client.temporal.get_workflow_handle(lid))

    # The CLI shows the same: steps (JSON and table), history's superseded marks, a dry run.
    environ = cli_env(
        TEMPORAL_ADDRESS=address,
        TEMPORAL_NAMESPACE=env.client.namespace,
        GRAPHRUNNER_DATABASE_URL=settings.database_url or "",
        GRAPHRUNNER_HOME=str(settings.home),
    )
    shown = await asyncio.to_thread(graphrunner, "steps", lid, "--json", env=environ)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(steps.model_dump_json())
    table = await asyncio.to_thread(graphrunner, "steps", lid, env=environ)
    assert "superseded by" in table.stdout and new[:8] in table.stdout
    listed = await asyncio.to_thread(graphrunner, "history", lid, "--json", env=environ)
    rows = json.loads(listed.stdout)["executions"]
    assert sorted(r["seq"] for r in rows if r["superseded_by"] == new) == [2, 3, 4, 5]
    plan = await asyncio.to_thread(
        graphrunner, "reset", lid, "--step", "4", "--dry-run", env=environ
    )
    assert plan.returncode == 0, plan.stderr
    assert "would reset" in plan.stdout and "steps that run again" in plan.stdout
    bad = await asyncio.to_thread(graphrunner, "reset", lid, "--step", "99", env=environ)
    assert bad.returncode == 2 and "no step #99" in bad.stderr


async def test_a_reset_into_a_fan_out_reruns_every_branch_begun_with_it(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    lid = f"freset-{uuid.uuid4().hex[:8]}"
    await client.start(load_graph(ROOT / "tests/fixtures/graphs/valid-fan-out.yaml"), "x", id=lid)
    first = await client.result(lid)
    before = await client.steps(lid)
    names = [s.node for s in before.live]
    assert names[:2] == ["prepare", "split"] and sorted(names[2:5]) == ["a", "b", "c"]
    # The three branches were scheduled in one workflow task: one reset point for all.
    assert len({s.reset_point for s in before.live[2:5]}) == 1

    done = await client.reset(lid, step=3)
    assert [s.seq for s in done.rerun] == [2, 3, 4, 5], "all branches and the join run again"
    result = await client.result(lid)
    assert result.output == first.output
    after = await settled(client, lid, superseded=4)
    assert [s.run_id for s in after.live] == [done.base_run_id] * 2 + [done.new_run_id] * 4
    await assert_records_agree(client, after)
    await assert_replays(client.temporal, client.temporal.get_workflow_handle(lid))


async def test_a_reset_to_a_sub_graph_step_runs_its_child_again_under_a_new_id(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    lid = f"sreset-{uuid.uuid4().hex[:8]}"
    question = {"question": "reset a child", "parts": ["a", "bb"]}
    await client.start(load_graph(ROOT / "examples" / "lead_agent.yaml"), question, id=lid)
    first = await client.result(lid)
    before = await client.steps(lid)
    solved = [s for s in before.live if s.child]
    assert len(solved) == 2
    target = solved[1]
    done = await client.reset(lid, step=target.seq, reason="child again")
    assert target.seq in [s.seq for s in done.rerun]
    result = await client.result(lid)
    assert result.output == first.output, "the same child graph and input: the same answer"
    after = await settled(client, lid, superseded=len(done.rerun))
    again = next(s for s in after.live if s.seq == target.seq)
    assert again.child and again.child != target.child, "a new child id, no collision"
    assert again.run_id == done.new_run_id
    await assert_records_agree(client, after)
    # Each sub-graph task's record names its child: the abandoned one and the new one.
    records = {r.execution_id: r for r in await client.history(lid)}
    assert records[target.execution_id].child_id == target.child
    assert records[again.execution_id].child_id == again.child
    assert records[again.execution_id].result_value()["answer"] == first.output["answers"]["bb"]
