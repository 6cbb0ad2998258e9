"""graphrunner fork: a new lifetime takes a lifetime's steps before N and runs on from N."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from graphrunner import (
    AgentGraph,
    GraphrunnerClient,
    GraphrunnerError,
    Settings,
    load_graph,
)
from graphrunner._attributes import FORK_KEY
from graphrunner._types import LifetimeInput, LifetimeResult
from graphrunner.client import ForkResult
from graphrunner.graph import parse_graph
from graphrunner.workflows import LIFETIME_WORKFLOW
from tests.conftest import ROOT, activity_summaries, assert_replays
from tests.fork_nodes import TAG
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_human import review_graph, waiting
from tests.test_reset import asked, recorded, settings

__all__ = ["recorded", "settings"]  # fixtures

GRAPHS = ROOT / "tests" / "fixtures" / "graphs"
COUNTER = GRAPHS / "valid-state.yaml"

STAMPS = """
name: stamps
version: {version}
state:
  trail: {{type: array, reducer: append}}
nodes:
  - {{name: {start}, kind: task, impl: "tests.fork_nodes:stamp"}}
  - {{name: route, kind: plan, impl: "tests.fork_nodes:relay"}}
  - {{name: second, kind: task, impl: "tests.fork_nodes:stamp", config: {{extra: {extra}}}}}
  - {{name: done, kind: plan, impl: "tests.fork_nodes:finish", local: true}}
{more}
edges:
  - {{from: {start}, to: route}}
  - {{from: route, to: {target}}}
  - {{from: second, to: done}}
  - {{from: done, type: FINAL}}
{more_edges}
"""


def stamps(
    version: str = "1.0.0",
    *,
    extra: str = "old",
    start: str = "first",
    target: str = "second",
    more: str = "",
    more_edges: str = "",
) -> AgentGraph:
    """first -> route -> second -> done (local): each task stamps its data."""
    text = STAMPS.format(
        version=version,
        extra=extra,
        start=start,
        target=target,
        more=more,
        more_edges=more_edges,
    )
    return parse_graph(text, file=str(ROOT / "tests" / "stamps.yaml"))


def handle_of(client: GraphrunnerClient, lifetime_id: str) -> WorkflowHandle[Any, Any]:
    return client.temporal.get_workflow_handle(lifetime_id)


async def ran(client: GraphrunnerClient, lifetime_id: str) -> list[tuple[str, int]]:
    """(node, iteration) of every node activity (regular or local) in the lifetime's history."""
    found = []
    for text in await activity_summaries(handle_of(client, lifetime_id)):
        node, _, iteration = text.split(" [")[0].rpartition(" · ")
        found.append((node, int(iteration)))
    return found


async def children_started(client: GraphrunnerClient, lifetime_id: str) -> list[str]:
    history = await handle_of(client, lifetime_id).fetch_history()
    return [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


async def finished(client: GraphrunnerClient, graph: AgentGraph | Path, data: Any) -> str:
    handle = await client.start(graph, data, id=f"parent-{uuid.uuid4().hex[:8]}")
    await handle.result()
    return handle.id


async def test_a_fork_takes_the_steps_before_n_and_ends_like_its_parent(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, load_graph(COUNTER), None)
    first = await client.result(parent)
    events_before = len((await handle_of(client, parent).fetch_history()).events)
    before = await client.steps(parent)
    assert [(s.node, s.iteration) for s in before.live] == [
        (n, i) for i in (1, 2, 3) for n in ("work", "check")
    ]

    fork = await client.fork(parent, 3)
    assert fork.lifetime_id.startswith(f"{parent}-fork-3-")
    assert [s.seq for s in fork.memoized] == [0, 1, 2]
    assert fork.first is not None and (fork.first.node, fork.first.iteration) == ("check", 2)
    result = await client.result(fork.lifetime_id)

    assert result.output == first.output and result.state == first.state
    # Steps before #3 ran nowhere in the fork: no activity, no marker for them.
    assert await ran(client, fork.lifetime_id) == [("check", 2), ("work", 3), ("check", 3)]
    # The path still numbers the parent's steps: taken ones first, with the parent's ids.
    assert [(s.seq, s.node, s.iteration) for s in result.steps] == [
        (s.seq, s.node, s.iteration) for s in before.live
    ]
    assert [s.execution_id for s in result.steps[:3]] == [s.execution_id for s in before.live[:3]]
    steps = await client.steps(fork.lifetime_id)
    assert [s.forked_from for s in steps.live] == [f"{parent}#3"] * 3 + [None] * 3
    assert [s.execution_id for s in steps.live[:3]] == [s.execution_id for s in before.live[:3]]

    # The state at #3 is rebuilt from the parent's updates: the fork's #3 saw what the
    # parent's #3 saw.
    mine = await client.state(fork.lifetime_id, step=3)
    theirs = await client.state(parent, step=3)
    assert mine.seen == theirs.seen and mine.seen is not None and mine.seen["count"] == 2

    # The parent is untouched.
    assert len((await handle_of(client, parent).fetch_history()).events) == events_before
    assert (await client.steps(parent)).live == before.live
    await assert_replays(client.temporal, handle_of(client, fork.lifetime_id))


async def test_a_fork_marks_its_search_attribute_and_every_record(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, stamps(), "x")
    fork = await client.fork(parent, 2, id=f"my-fork-{uuid.uuid4().hex[:6]}")
    await client.result(fork.lifetime_id)
    mark = f"{parent}#2"
    assert fork.forked_from == mark
    desc = await handle_of(client, fork.lifetime_id).describe()
    assert desc.typed_search_attributes.get(FORK_KEY) == mark
    parent_desc = await handle_of(client, parent).describe()
    assert parent_desc.typed_search_attributes.get(FORK_KEY) is None
    records = await client.history(fork.lifetime_id)
    assert [(r.node, r.iteration) for r in records] == [("second", 1), ("done", 1)]
    assert {r.forked_from for r in records} == {mark}
    assert {r.forked_from for r in await client.history(parent)} == {None}
    # Visible to a list query (visibility may lag a little).
    query = f"GraphrunnerForkOf = '{mark}'"
    for _ in range(100):
        listed = [w.id async for w in client.temporal.list_workflows(query)]
        if listed:
            break
        await asyncio.sleep(0.05)
    assert listed == [fork.lifetime_id]
    with pytest.raises(GraphrunnerError, match="already exists|choose another"):
        await client.fork(parent, 2, id=fork.lifetime_id)


async def test_a_fork_runs_from_n_with_the_nodes_code_as_it_is_now(
    recorded: GraphrunnerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = recorded
    parent = await finished(client, stamps(), "x")
    first = await client.result(parent)
    assert first.output["last"]["tag"] == "v1"

    same = await client.fork(parent, 2)
    assert (await client.result(same.lifetime_id)).output == first.output

    monkeypatch.setenv(TAG, "v2")  # the worker's node code behaves differently now
    fork = await client.fork(parent, 2)
    result = await client.result(fork.lifetime_id)
    last = result.output["last"]
    assert last["tag"] == "v2", "second ran again with today's code"
    assert last["data"]["tag"] == "v1", "first was taken from the parent, not run again"
    assert result.output["trail"] == ["first", "second"]
    assert await ran(client, fork.lifetime_id) == [("second", 1), ("done", 1)]


async def test_a_fork_runs_a_compatible_new_graph_and_refuses_others(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, stamps(), "x")
    first = await client.result(parent)

    fork = await client.fork(parent, 2, graph=stamps("1.1.0", extra="new"))
    assert fork.graph_changed
    result = await client.result(fork.lifetime_id)
    assert result.graph_version == "1.1.0"
    assert result.output["last"]["extra"] == "new" and first.output["last"]["extra"] == "old"
    assert result.output["last"]["data"] == first.output["last"]["data"]

    # route chose 'second', which this graph's route cannot.
    other = stamps(
        "2.0.0",
        target="third",
        more='  - {name: third, kind: task, impl: "tests.fork_nodes:stamp"}',
        more_edges="  - {from: third, to: done}\n  - {from: done, to: second}",
    )
    with pytest.raises(GraphrunnerError, match=r"step #1 \(route#1\).*chose second"):
        await client.fork(parent, 2, graph=other)
    gone = stamps("2.0.0", start="zero")
    with pytest.raises(GraphrunnerError, match=r"step #0 \(first#1\).*no node 'first'"):
        await client.fork(parent, 2, graph=gone)

    # A graph whose nodes all fit, but whose path before #2 is another (it starts at
    # 'intro'): the workflow checks each step as it begins and fails the fork, naming both.
    detour = stamps(
        "3.0.0",
        start="intro",
        more='  - {name: first, kind: task, impl: "tests.fork_nodes:stamp"}',
        more_edges="  - {from: route, to: first}\n  - {from: first, to: route}",
    )
    diverged = await client.fork(parent, 2, graph=detour)
    with pytest.raises(WorkflowFailureError) as failed:
        await client.result(diverged.lifetime_id)
    cause = str(failed.value.cause)
    assert "fork diverged at step #0" in cause and "ran first#1 (task)" in cause
    assert "runs intro#1 (task)" in cause
    assert await ran(client, diverged.lifetime_id) == []


async def test_a_fork_inside_and_after_a_fan_out_takes_the_branches_in_order(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, load_graph(GRAPHS / "valid-fan-out.yaml"), "x")
    first = await client.result(parent)

    after = await client.fork(parent, 5)  # every branch taken, the JOIN runs
    assert (await client.result(after.lifetime_id)).output == first.output
    assert await ran(client, after.lifetime_id) == [("collect", 1)]

    inside = await client.fork(parent, 3)  # branch #2 taken, #3 and #4 run again
    result = await client.result(inside.lifetime_id)
    assert result.output == first.output
    parent_steps = (await client.steps(parent)).live
    assert sorted(await ran(client, inside.lifetime_id)) == sorted(
        [(s.node, s.iteration) for s in parent_steps if s.seq >= 3]
    )
    assert [(s.seq, s.node) for s in result.steps] == [(s.seq, s.node) for s in parent_steps]
    await assert_replays(client.temporal, handle_of(client, inside.lifetime_id))


MAP_GRAPH = """
name: mapped
version: 1.0.0
state:
  order: {type: array, reducer: append}
  total: {type: integer, reducer: add}
  tags: {type: array, reducer: append}
nodes:
  - {name: fan, kind: plan, impl: "tests.state_nodes:MapInput"}
  - {name: slow, kind: task, impl: "tests.state_nodes:SlowFirst"}
  - {name: join, kind: plan, impl: "tests.state_nodes:SeeState"}
edges:
  - {from: fan, to: slow, type: PARALLEL}
  - {from: slow, to: join, type: JOIN}
  - {from: join, type: FINAL}
"""


async def test_a_fork_after_a_map_whose_branches_finished_out_of_order(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    graph = parse_graph(MAP_GRAPH, file=str(ROOT / "tests" / "mapped.yaml"))
    parent = await finished(client, graph, [[1, 3], [2, 3], [3, 3]])
    first = await client.result(parent)
    fork = await client.fork(parent, 4)
    result = await client.result(fork.lifetime_id)
    assert result.output == first.output and result.state == first.state
    assert await ran(client, fork.lifetime_id) == [("join", 1)]
    ranks = sorted(fork.memoized, key=lambda s: s.closed_event_id or 0)
    assert [s.node for s in ranks][1:] == ["slow"] * 3
    assert [s.seq for s in ranks][1:] != [1, 2, 3], "the parent's branches ended in reverse"


async def test_a_child_before_n_is_reused_and_one_at_n_runs_again(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, GRAPHS / "subgraphs" / "parent.yaml", 7)
    first = await client.result(parent)
    (child,) = await children_started(client, parent)

    reused = await client.fork(parent, 2)
    result = await client.result(reused.lifetime_id)
    assert result.output == first.output == 49
    assert await children_started(client, reused.lifetime_id) == [], "no child started"
    assert next(s for s in result.steps if s.node == "child").child == child

    again = await client.fork(parent, 1)
    result = await client.result(again.lifetime_id)
    assert result.output == 49
    (new_child,) = await children_started(client, again.lifetime_id)
    assert new_child != child and new_child.startswith(f"{again.lifetime_id}/child-1-")


async def test_answers_before_n_are_carried_and_a_person_is_asked_again_after(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = f"review-{uuid.uuid4().hex[:8]}"
    await client.start(review_graph(), {"x": 1}, id=parent)
    await asked(client, parent, 1)
    await client.respond(parent, "review", {"ok": True, "again": True}, by="bob")
    await asked(client, parent, 2)
    await client.answer_by_signal(parent, "review", {"ok": True, "note": "fine"}, by="carol")
    first = await client.result(parent)
    assert first.output["answer"] == {"ok": True, "note": "fine"}

    # Both answers carried (one by update, one by signal): nobody is asked.
    whole = await client.fork(parent, 7)
    assert (await client.result(whole.lifetime_id)).output == first.output

    # review #2 (step 6) runs again: bob's answer is carried, the person is asked again.
    fork = await client.fork(parent, 6)
    question = await waiting(client, fork.lifetime_id, "review")
    assert question.iteration == 2
    await client.respond(fork.lifetime_id, "review", {"ok": False}, by="dave")
    result = await client.result(fork.lifetime_id)
    assert result.output["answer"] == {"ok": False}
    assert result.output["state"]["answers"] == [{"ok": True, "again": True}, {"ok": False}]
    humans = [r for r in await client.history(fork.lifetime_id) if r.kind == "human"]
    assert [(r.iteration, r.answered_by) for r in humans] == [(2, "dave (update)")]


async def test_a_fork_refuses_a_step_it_cannot_start_from_and_forks_a_waiting_lifetime(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    parent = await finished(client, stamps(), "x")
    with pytest.raises(GraphrunnerError, match=r"no step #9 to fork from: its steps are #0..#3"):
        await client.fork(parent, 9)

    # A lifetime waiting for a person forks too: its steps before N are done. The asked
    # step is no step yet (it begins when answered), so the fork asks again.
    running = f"running-{uuid.uuid4().hex[:8]}"
    await client.start(review_graph(), {"x": 1}, id=running)
    await waiting(client, running, "review")
    with pytest.raises(GraphrunnerError, match=r"no step #2 to fork from: its steps are #0..#1"):
        await client.fork(running, 2)
    fork = await client.fork(running, 1)
    assert (await waiting(client, fork.lifetime_id, "review")).iteration == 1
    await client.respond(fork.lifetime_id, "review", {"ok": True}, by="erin")
    assert (await client.result(fork.lifetime_id)).output["answer"] == {"ok": True}
    assert await ran(client, fork.lifetime_id) == [("ask", 1), ("review", 1), ("after", 1)]
    await client.temporal.get_workflow_handle(running).terminate()


async def test_the_cli_forks_and_prints_what_it_took_and_what_runs(
    env: WorkflowEnvironment, recorded: GraphrunnerClient, settings: Settings
) -> None:
    client = recorded
    parent = await finished(client, stamps(), "x")
    first = await client.result(parent)
    environ = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        GRAPHRUNNER_DATABASE_URL=settings.database_url or "",
        GRAPHRUNNER_HOME=str(settings.home),
        GRAPHRUNNER_TASK_QUEUE=settings.task_queue,
    )
    shown = await asyncio.to_thread(graphrunner, "fork", parent, "--step", "2", env=environ)
    assert shown.returncode == 0, shown.stderr
    assert f"forked {parent} at step #2" in shown.stdout
    assert "2 step(s) taken from the parent" in shown.stdout
    assert "runs from step #2 (second#1) on" in shown.stdout

    done = await asyncio.to_thread(
        graphrunner, "fork", parent, "--step", "2", "--input", '"y"', "--wait", "--json",
        env=environ,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    fork = ForkResult.model_validate(said["fork"])
    assert [s.seq for s in fork.memoized] == [0, 1]
    assert said["result"]["output"] == first.output, "the input reaches only the start task"

    steps = await asyncio.to_thread(graphrunner, "steps", fork.lifetime_id, "--json", env=environ)
    assert [s["forked_from"] for s in json.loads(steps.stdout)["steps"]] == [
        f"{parent}#2",
        f"{parent}#2",
        None,
        None,
    ]
    bad = await asyncio.to_thread(graphrunner, "fork", parent, "--step", "99", env=environ)
    assert bad.returncode == 2 and "no step #99" in bad.stderr


async def test_a_fork_whose_next_memo_never_begins_fails_instead_of_waiting(
    recorded: GraphrunnerClient,
) -> None:
    """A seed whose completion order no path of the graph can follow (the parent finished
    route#1 before first#1): every running step waits for its turn, so none comes. The fork
    fails naming the step that never began, rather than wait for ever."""
    client = recorded
    parent = await finished(client, stamps(), "x")
    plan = await client.fork(parent, 2, id=f"ok-{uuid.uuid4().hex[:6]}")
    await client.result(plan.lifetime_id)
    history = await handle_of(client, plan.lifetime_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [inp] = await client.temporal.data_converter.decode(started.input.payloads, [LifetimeInput])
    assert inp.fork is not None and [m.rank for m in inp.fork.memos] == [0, 1]
    for memo in inp.fork.memos:  # swap the order the parent saw them finish
        memo.rank = 1 - memo.rank
    swapped = await client.temporal.start_workflow(
        LIFETIME_WORKFLOW,
        inp,
        id=f"swapped-{uuid.uuid4().hex[:6]}",
        task_queue=client.settings.task_queue,
        result_type=LifetimeResult,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(swapped.result(), 30)
    cause = str(failed.value.cause)
    assert "fork diverged before its fork point #2" in cause
    assert "finished step #1 (route#1) next, which this fork never began" in cause
