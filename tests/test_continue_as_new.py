"""Long lifetimes continue as new: bounded runs, the walk carried, status and steps across runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, Settings
from graphrunner._attributes import SEARCH_ATTRIBUTES
from graphrunner.client import temporal_binary
from graphrunner.client._devserver import TUNING_ARGS
from graphrunner.graph import AgentGraph
from graphrunner.graph._loader import parse_graph
from graphrunner.worker import build_worker
from tests.conftest import assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_guardrails import policy
from tests.test_human import review_graph
from tests.test_reset import asked, assert_records_agree, recorded, settings, settled

__all__ = ["recorded", "settings"]  # fixtures


def loop(rounds: int, *, after: int | None = None, name: str = "long-loop") -> AgentGraph:
    """A task that counts rounds in the state, and a routing plan that loops until done."""
    defaults = f"\n  continue_as_new_after: {after}" if after else ""
    return parse_graph(
        f"""
name: {name}
version: 1.0.0
defaults:
  max_iterations: {rounds + 1}{defaults}
state:
  count: {{type: integer, reducer: add}}
nodes:
  - {{name: tick, kind: task, impl: "tests.state_nodes:Tick"}}
  - {{name: route, kind: plan}}
edges:
  - {{from: tick, to: route}}
  - {{from: route, to: tick, when: "state.count < {rounds}"}}
  - {{from: route, type: FINAL}}
"""
    )


async def runs_of(client: GraphrunnerClient, lifetime_id: str) -> list[WorkflowHistory]:
    """Every run's history, oldest first (the continue-as-new chain)."""
    histories = []
    async for found in client.temporal.list_workflows(f"WorkflowId='{lifetime_id}'"):
        handle = client.temporal.get_workflow_handle(lifetime_id, run_id=found.run_id)
        histories.append((found.start_time, await handle.fetch_history()))
    return [h for _, h in sorted(histories, key=lambda x: x[0])]


async def test_a_loop_continues_as_new_and_reads_as_one_lifetime(
    recorded: GraphrunnerClient, settings: Settings, env: WorkflowEnvironment
) -> None:
    client = recorded
    lid = f"can-{uuid.uuid4().hex[:8]}"
    handle = await client.start(loop(60, after=25), {}, id=lid)
    result = await handle.result()
    assert result.state == {"count": 60}
    histories = await runs_of(client, lid)
    assert len(histories) == 5, "120 steps, 25 a run"
    for history in histories[:-1]:
        last = history.events[-1]
        assert last.HasField("workflow_execution_continued_as_new_event_attributes")
    for history in histories:
        scheduled = [
            e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert len(scheduled) <= 13, "a run holds its own steps only"

    # steps: one numbering across the runs, nothing superseded, in run order.
    steps = await client.steps(lid)
    assert len(steps.chain) == 5 and steps.chain[-1] == steps.run_id
    assert [s.seq for s in steps.live] == list(range(120))
    assert [(s.node, s.iteration) for s in steps.live[:4]] == [
        ("tick", 1),
        ("route", 1),
        ("tick", 2),
        ("route", 2),
    ]
    assert steps.live[-1].node == "route" and steps.live[-1].iteration == 60
    assert [s.history_run for s in steps.live[::25]] == steps.chain
    assert all(s.superseded_by is None for s in steps.steps)
    # records: one per step, none superseded; the state after any step, from its record.
    await assert_records_agree(client, steps)
    assert len(await client.history(lid)) == 120
    assert (await client.state(lid, step=51)).state == {"count": 26}
    # status: the current run's steps, numbered after the earlier runs'.
    info = await client.status(lid)
    assert (info.runs, info.earlier_steps) == (5, 100)
    assert [s.seq for s in info.steps] == list(range(100, 120))
    assert info.state == {"count": 60}
    first, second = (h.events[0].event_time.ToDatetime(tzinfo=UTC) for h in histories[:2])
    assert info.started_at is not None
    assert first <= datetime.fromisoformat(info.started_at) < second, "the lifetime's start"
    # the CLI: status says which run it is, steps and history list every run's steps
    environ = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        GRAPHRUNNER_DATABASE_URL=settings.database_url or "",
        GRAPHRUNNER_HOME=str(settings.home),
    )
    shown = await asyncio.to_thread(graphrunner, "status", lid, env=environ)
    assert shown.returncode == 0, shown.stderr
    assert "run 5 (continued as new 4 times); steps #0..#99 are in earlier runs" in shown.stdout
    listed = await asyncio.to_thread(graphrunner, "steps", lid, "--json", env=environ)
    assert [s["seq"] for s in json.loads(listed.stdout)["steps"]] == list(range(120))
    rows = json.loads(
        (await asyncio.to_thread(graphrunner, "history", lid, "--json", env=environ)).stdout
    )["executions"]
    assert sorted(r["seq"] for r in rows) == list(range(120))
    assert not any(r["superseded_by"] for r in rows)
    # every run replays against the current code
    for found in steps.chain:
        await assert_replays(
            client.temporal, client.temporal.get_workflow_handle(lid, run_id=found)
        )


SUGGEST_AT = 400  # events: the server's suggestion, lowered from its 4,096 for this test


@pytest.fixture(scope="module")
async def early_suggesting_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new at SUGGEST_AT events instead of 4,096.

    The same mechanism at a tenth of the scale: what held at 5,000 iterations (the bench's
    long-loop section measures that) is checked here in seconds, not minutes.
    """
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=[
            *TUNING_ARGS,
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AT}",
        ],
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.mark.timeout(300)
async def test_a_long_loop_continues_whenever_temporal_suggests_with_every_run_bounded(
    early_suggesting_server: WorkflowEnvironment,
) -> None:
    temporal = early_suggesting_server.client
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    client = GraphrunnerClient(temporal, settings=Settings(task_queue=tq, record=False))
    lid = f"can-long-{uuid.uuid4().hex[:8]}"
    iterations = 600
    async with build_worker(temporal, task_queue=tq, recorder=None):
        handle = await client.start(loop(iterations), {}, id=lid)
        result = await handle.result()
    assert result.state == {"count": iterations}
    histories = await runs_of(client, lid)
    events = [len(h.events) for h in histories]
    # 1,200 steps at ~8 events each would be ~9,600 events in one run: the server's
    # suggestion cut it into runs, each ending a few events after the suggestion.
    assert len(histories) >= 5, events
    assert max(events) < SUGGEST_AT + 50, events
    steps = await client.steps(lid)
    assert [s.seq for s in steps.live] == list(range(2 * iterations))
    assert not any(s.superseded_by for s in steps.steps)
    # The last run replays against the code (each run starts from its own carried input).
    await assert_replays(temporal, handle)


async def test_guardrail_totals_and_the_policy_go_on_across_runs(
    client: GraphrunnerClient, worker: None
) -> None:
    """A lifetime cap counts the ticks of every run: with totals forgotten it never fires."""
    cap = policy(
        '{name: forty-ticks, when: \'node == "tick" and count(where node == "tick") > 40\', '
        "scope: lifetime, action: abort_lifetime}"
    )
    graph = loop(60, after=10).model_copy(update={"guardrails": cap})
    lid = f"can-cap-{uuid.uuid4().hex[:8]}"
    handle = await client.start(graph, {}, id=lid)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "forty-ticks" in str(failed.value.cause)
    steps = await client.steps(lid)
    assert len(steps.chain) >= 8, "the cap fired in a later run"
    # Aborted before the 41st tick was scheduled: 40 ran, 5 a run.
    assert max(s.iteration for s in steps.live if s.node == "tick") == 40


async def test_a_person_in_the_loop_is_answered_across_runs(
    client: GraphrunnerClient, worker: None
) -> None:
    graph = review_graph()
    graph = graph.model_copy(
        update={"defaults": graph.defaults.model_copy(update={"continue_as_new_after": 10})}
    )
    lid = f"can-ask-{uuid.uuid4().hex[:8]}"
    await client.start(graph, {"x": 1}, id=lid)
    ids = []
    for round_ in range(1, 7):
        await asked(client, lid, round_)
        request = (await client.pending(lid))[0]
        ids.append(request.request_id)
        outcome = await client.respond(lid, "review", {"ok": True, "again": round_ < 6})
        assert outcome.request_id == request.request_id
    result = await client.result(lid)
    assert result.output["answer"] == {"ok": True, "again": False}
    assert len(result.state["answers"]) == 6, "every answer reached the state, in every run"
    assert len(set(ids)) == 6
    steps = await client.steps(lid)
    assert len(steps.chain) >= 3, "it continued as new between answers"
    assert [s.iteration for s in steps.live if s.node == "review"] == [1, 2, 3, 4, 5, 6]


ASK_AFTER_LOOP = """
name: count-then-ask
version: 1.0.0
defaults: {continue_as_new_after: 10}
state:
  count: {type: integer, reducer: add}
nodes:
  - {name: tick, kind: task, impl: "tests.state_nodes:Tick"}
  - {name: route, kind: plan}
  - name: confirm
    kind: task
    human: {prompt: "Counted {count}. Done?", response: {type: boolean}}
edges:
  - {from: tick, to: route}
  - {from: route, to: tick, when: "state.count < 12"}
  - {from: route, to: confirm}
  - {from: confirm, type: FINAL}
"""


async def test_start_and_ask_follows_the_lifetime_into_its_next_runs(
    client: GraphrunnerClient, worker: None
) -> None:
    lid = f"can-first-{uuid.uuid4().hex[:8]}"
    handle, first = await client.start_and_ask(parse_graph(ASK_AFTER_LOOP), {}, id=lid)
    assert first.phase == "waiting" and not first.continued
    assert first.question["node"] == "confirm"
    assert len((await client.steps(lid)).chain) == 3, "it asked in its third run"
    await client.respond(lid, "confirm", True)
    assert (await handle.result()).output is True


@pytest.mark.parametrize("step", [31, 111], ids=["in-an-earlier-run", "in-the-last-run"])
async def test_reset_to_a_step_of_a_lifetime_that_continued_as_new(
    recorded: GraphrunnerClient, step: int
) -> None:
    client = recorded
    lid = f"can-reset-{uuid.uuid4().hex[:8]}"
    await (await client.start(loop(60, after=25), {}, id=lid)).result()
    before = await client.steps(lid)
    target = before.live[step]
    planned = await client.reset(lid, step=step, dry_run=True)
    assert planned.base_run_id == target.history_run
    # A route (a local plan) is decided in the workflow task after its tick: its boundary
    # is before it and everything after.
    assert [s.seq for s in planned.rerun] == list(range(step, 120)), "exactly step.. again"

    done = await client.reset(lid, step=step, reason="test")
    result = await client.result(lid)
    assert result.state == {"count": 60}, "the walk and the state came back from the carry"
    after = await settled(client, lid, superseded=120 - step)
    assert [s.seq for s in after.live] == list(range(120))
    assert (
        after.chain[: before.chain.index(target.history_run)]
        == before.chain[: before.chain.index(target.history_run)]
    ), "the runs before the reset point stay on the path"
    assert done.new_run_id in after.chain
    gone = [s for s in after.steps if s.superseded_by]
    assert sorted(s.seq for s in gone) == list(range(step, 120))
    await assert_records_agree(client, after)


async def test_a_fork_of_a_step_in_a_later_run_starts_from_that_runs_carried_walk(
    client: GraphrunnerClient, worker: None
) -> None:
    lid = f"can-fork-{uuid.uuid4().hex[:8]}"
    parent = await (await client.start(loop(60, after=25), {}, id=lid)).result()
    steps = await client.steps(lid)
    assert steps.live[61].history_run == steps.chain[2], "step 61 is in the third run"

    forked = await client.fork(lid, 61)
    result = await client.result(forked.lifetime_id)
    assert (result.output, result.state) == (parent.output, parent.state)
    runs = await runs_of(client, forked.lifetime_id)
    first = runs[0]
    started = first.events[0].workflow_execution_started_event_attributes
    assert b'"carry"' in started.input.payloads[0].data, "it starts from the carried walk"
    # Steps 50..60 (the third run's before 61) are memos; 0..49 are in the carry: no
    # activity runs for any of them. The fork runs ticks 62, 64, ..., 118.
    scheduled = [
        e for h in runs for e in h.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(scheduled) == 29
    assert len(runs) >= 2, "the fork continued as new itself, without its memos"
    later = runs[1].events[0].workflow_execution_started_event_attributes
    assert b'"memos":[]' in later.input.payloads[0].data
    listed = await client.steps(forked.lifetime_id)
    assert [s.seq for s in listed.live] == list(range(120))
    assert all(s.forked_from == f"{lid}#61" for s in listed.live[:61])
    assert not any(s.forked_from for s in listed.live[61:])
