"""Lifetime state: declared fields with reducers, read by nodes, updated by their results,
combined in branch order at a JOIN, recorded per execution and rebuilt after any step."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import (
    GraphBuilder,
    GraphError,
    GraphrunnerClient,
    Settings,
    StateField,
    build_worker,
    load_graph,
    open_recorder,
    reducer,
)
from graphrunner._state import StateError, apply_update, initial_state
from graphrunner.stores._open import data_converter, open_blobs
from tests.conftest import ROOT, assert_replays
from tests.state_nodes import Grow, MapInput, SeeState, SlowFirst, Tag, TwiceThenStop
from tests.test_cli_lifetimes import cli_env, graphrunner

COUNTER = ROOT / "tests" / "fixtures" / "graphs" / "valid-state.yaml"


def _fields(**fields: StateField) -> Any:
    return (
        GraphBuilder("s", version="1.0.0")
        .state(fields)
        .task("t", Tag)
        .final("t")
        .build(check_imports=False)
    )


# --- reducers ---------------------------------------------------------------------------


def test_each_reducer_combines_an_update_with_the_current_value() -> None:
    graph = _fields(
        r=StateField(),
        a=StateField(type="array", reducer="append"),
        m=StateField(type="object", reducer="merge"),
        n=StateField(type="integer", reducer="add"),
        hi=StateField(type="number", reducer="max"),
        lo=StateField(type="number", reducer="min"),
        s=StateField(type="string", reducer="tests.state_nodes:longest"),
    )
    state = initial_state(graph)
    assert state == {"r": None, "a": [], "m": {}, "n": 0, "hi": None, "lo": None, "s": None}
    for update in (
        {"r": 1, "a": 1, "m": {"x": 1}, "n": 2, "hi": 3, "lo": 3, "s": "ab"},
        {"r": 2, "a": [2, 3], "m": {"y": 2}, "n": 5, "hi": 1, "lo": 1, "s": "abc"},
        {"m": {"x": 9}, "hi": 7.5, "s": "z"},
    ):
        before = json.dumps(state)
        assert state is not None
        new = apply_update(graph, state, update)
        assert json.dumps(state) == before, "a reducer never changes the state it was given"
        state = new
    assert state == {
        "r": 2,
        "a": [1, 2, 3],
        "m": {"x": 9, "y": 2},
        "n": 7,
        "hi": 7.5,
        "lo": 1,
        "s": "abc",
    }


@pytest.mark.parametrize(
    ("update", "names"),
    [
        ({"nope": 1}, "undeclared state field 'nope'"),
        ({"n": "2"}, "state field 'n' (add) takes numbers (add); the update is a string"),
        ({"n": 1.5}, "state field 'n' must be an integer, not a number"),
        ({"n": True}, "the update is a boolean"),
        ({"m": [1]}, "state field 'm' (merge) merges objects only"),
        ({"s": 5}, "state field 's' must be a string, not an integer"),
    ],
)
def test_a_bad_update_names_its_field(update: dict[str, Any], names: str) -> None:
    graph = _fields(
        n=StateField(type="integer", reducer="add"),
        m=StateField(type="object", reducer="merge"),
        s=StateField(type="string"),
    )
    with pytest.raises(StateError, match=".*") as caught:
        apply_update(graph, initial_state(graph) or {}, update)
    assert names in str(caught.value)


def test_a_pydantic_model_declares_the_same_state_as_yaml() -> None:
    class Research(BaseModel):
        notes: Annotated[list[str], reducer("append")] = []
        rounds: Annotated[int, reducer("add")] = 0
        best: Annotated[float | None, reducer("max")] = None
        scratch: dict[str, Any] = {}
        title: Annotated[str, reducer("tests.state_nodes:longest")] = ""

    graph = GraphBuilder("s", version="1.0.0").state(Research).task("t", Tag).final("t").build()
    assert graph.state == {
        "notes": StateField(type="array", reducer="append", default=[]),
        "rounds": StateField(type="integer", reducer="add", default=0),
        "best": StateField(type="number", reducer="max"),
        "scratch": StateField(type="object", default={}),
        "title": StateField(type="string", reducer="tests.state_nodes:longest", default=""),
    }


def test_a_bad_state_section_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad-state.yaml"
    path.write_text(
        "name: bad\n"
        "version: 1.0.0\n"
        "state:\n"
        "  count: {type: integer, reducer: append}\n"  # line 4
        "  when: {type: date}\n"  # line 5
        "  ok-no: {type: string}\n"  # line 6
        "  score: {type: number, default: high}\n"  # line 7
        "  mine: {reducer: 'tests.state_nodes:nowhere'}\n"  # line 8
        "  weird: {reducer: 'rm -rf'}\n"  # line 9
        "nodes:\n"
        "  - {name: t, kind: task, impl: 'tests.state_nodes:Tag'}\n"
        "edges:\n"
        "  - {from: t, type: FINAL}\n"
    )
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    found = {(i.rule, i.line, i.where) for i in caught.value.issues}
    assert found == {
        ("state-reducer", 4, "state field 'count'"),
        ("state-type", 5, "state field 'when'"),
        ("invalid-name", 6, "state field 'ok-no'"),
        ("state-default", 7, "state field 'score'"),
        ("state-reducer", 8, "state field 'mine'"),
        ("state-reducer", 9, "state field 'weird'"),
    }
    text = str(caught.value)
    assert "needs a field of type array" in text and "cannot import reducer" in text
    assert all(i.file == str(path) for i in caught.value.issues)


# --- lifetimes on the dev server ------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, task_queue: str) -> Settings:
    return Settings(task_queue=task_queue, home=tmp_path / "state", inline_limit_bytes=150)


@pytest.fixture
async def recorded(env: WorkflowEnvironment, settings: Settings) -> Any:
    """A client and a recording worker sharing one state DB and blob store."""
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, open_blobs(settings)),
    )
    recorder = open_recorder(settings)
    assert recorder is not None
    client = GraphrunnerClient(temporal, settings=settings)
    async with build_worker(temporal, task_queue=settings.task_queue, recorder=recorder):
        yield client
    recorder.records.close()


async def test_nodes_read_the_state_and_plans_route_on_it(recorded: GraphrunnerClient) -> None:
    lid = f"counter-{uuid.uuid4().hex[:8]}"
    handle = await recorded.start(load_graph(COUNTER), None, id=lid)
    result = await handle.result()
    final = {
        "count": 3,
        "seen": [1, 2, 3],
        "best": 9.5,
        "notes": {"n1": 1, "n2": 2, "n3": 3},
        "last": "check 3",
    }
    assert result.state == final, "the lifetime's result carries its final state"
    assert result.output == {**final, "last": "work 3"}, "the plan saw the state before its own"
    assert [s.node for s in result.steps] == ["work", "check"] * 3, "it looped on the count"
    await assert_replays(recorded.temporal, handle)

    # Every step's state, rebuilt from its record alone.
    after = [await recorded.state(lid, step=n) for n in range(6)]
    assert [a.state["count"] for a in after if a.state] == [1, 1, 2, 2, 3, 3]
    assert after[4].node == "work" and after[4].iteration == 3
    assert after[4].seen is not None and after[4].seen["last"] == "check 2"
    assert after[4].update == {
        "count": 1,
        "seen": 3,
        "best": 7.0,
        "notes": {"n3": 3},
        "last": "work 3",
    }
    assert after[5].state == final
    assert (await recorded.state(lid)).state == final
    # Records past the 150-byte inline limit keep their state in the blob store.
    records = await recorded.history(lid)
    assert any(r.state_uri for r in records) and any(r.state_inline for r in records)
    with pytest.raises(Exception, match="no recorded step 6"):
        await recorded.state(lid, step=6)


async def test_the_state_command_prints_any_step(
    recorded: GraphrunnerClient, settings: Settings, env: WorkflowEnvironment
) -> None:
    lid = f"counter-cli-{uuid.uuid4().hex[:8]}"
    await (await recorded.start(load_graph(COUNTER), None, id=lid)).result()
    environ = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=settings.task_queue,
        GRAPHRUNNER_HOME=str(settings.home),
    )
    shown = await asyncio.to_thread(graphrunner, "state", lid, "--step", "2", "--json", env=environ)
    assert shown.returncode == 0, shown.stderr
    at = json.loads(shown.stdout)
    assert (at["node"], at["iteration"], at["state"]["count"]) == ("work", 2, 2)
    assert at["state"]["seen"] == [1, 2] and at["update"]["seen"] == 2
    table = await asyncio.to_thread(graphrunner, "state", lid, env=environ)
    assert table.returncode == 0, table.stderr
    assert '"check 3"' in table.stdout and "[1, 2, 3]" in table.stdout
    status = await asyncio.to_thread(graphrunner, "status", lid, env=environ)
    assert status.returncode == 0, status.stderr
    assert "state" in status.stdout and '{"n1": 1, "n2": 2, "n3": 3}' in status.stdout
    stateless = await asyncio.to_thread(graphrunner, "state", "nope-nope", env=environ)
    assert stateless.returncode != 0 and "Traceback" not in stateless.stderr


def _branches() -> Any:
    return (
        GraphBuilder("branches", version="1.0.0")
        .state(
            {
                "order": StateField(type="array", reducer="append"),
                "total": StateField(type="integer", reducer="add"),
                "tags": StateField(type="array", reducer="tests.state_nodes:unique"),
            }
        )
        .plan("split", MapInput)
        .task("branch", SlowFirst)
        .plan("join", SeeState)
        .parallel("split", "branch")
        .join("join", "branch")
        .final("join")
        .build()
    )


@pytest.mark.usefixtures("worker")
async def test_ten_parallel_updates_join_in_branch_order_and_replay_alike(
    client: GraphrunnerClient,
) -> None:
    n = 10
    handle = await client.start(_branches(), [[i, n] for i in range(n)])
    while not (await client.status(handle.id)).running:
        await asyncio.sleep(0.05)
    during = await client.state(handle.id)
    before = {"order": [], "total": 0, "tags": None}  # a named reducer starts from null
    assert during.state == before, "branches join at the JOIN"
    assert (await client.status(handle.id)).state == before, "status shows the state now"
    result = await handle.result()
    assert result.output["state"] == {
        "order": list(range(n)),
        "total": sum(range(n)),
        "tags": [f"t{i}" for i in range(n)],
    }, "updates combine in item order, not in the order the branches finished"
    assert result.output["seen"] == [before] * n, "each branch starts from the state at the fan-out"
    finished = [
        s.node + str(s.iteration) for s in sorted(result.steps, key=lambda s: s.finished_at or 0)
    ]
    assert finished[1:4] == ["branch10", "branch9", "branch8"], "the last item finished first"
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_branch_updates_that_cannot_combine_fail_the_lifetime_at_the_join(
    client: GraphrunnerClient,
) -> None:
    graph = _branches()
    # Each branch tags itself "t0": alone each update is fine; joined, unique refuses.
    handle = await client.start(graph, [[0, 2], [0, 2]])
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    failure = caught.value.cause
    assert isinstance(failure, ApplicationError) and failure.type == "BadStateUpdate"
    assert "branches joining into plan 'join'" in str(failure)
    assert "state field 'tags' (tests.state_nodes:unique)" in str(failure)
    assert "duplicate 't0'" in str(failure)
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_an_update_to_an_undeclared_field_fails_naming_node_and_field(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("tagger", version="1.0.0")
        .state({"x": StateField(type="integer")})
        .task("tag", Tag)
        .final("tag")
        .build()
    )
    handle = await client.start(graph, {"x": 1, "secret": 2})
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    text = str(caught.value.cause)
    assert "node 'tag'" in text and "BadStateUpdate" in text
    assert "undeclared state field 'secret'" in text and "declares x" in text
    # Without a state section, any update is refused the same way.
    stateless = GraphBuilder("plain", version="1.0.0").task("tag", Tag).final("tag").build()
    handle = await client.start(stateless, {"x": 1})
    with pytest.raises(WorkflowFailureError, match=".*") as caught:
        await handle.result()
    assert "declares no state" in str(caught.value.cause)
    await assert_replays(client.temporal, handle)


async def test_a_large_state_travels_by_reference(recorded: GraphrunnerClient) -> None:
    graph = (
        GraphBuilder("big-state", version="1.0.0")
        .state({"text": StateField(type="string"), "n": StateField(type="integer", reducer="add")})
        .task("grow", Grow, config={"kib": 300})
        .plan("again", TwiceThenStop)
        .edge("grow", "again")
        .edge("again", "grow")
        .final("again")
        .build()
    )
    handle = await recorded.start(graph, None)
    result = await handle.result()
    assert result.output == 300 * 1024, "every node saw the whole state"
    history = await handle.fetch_history()
    sizes = [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(sizes) == 4 and sizes[0] < 2048, "the first call carries a small state inline"
    assert all(size < 4096 for size in sizes[1:]), (
        f"calls carrying a 300 KiB state go by reference: {sizes}"
    )
    await assert_replays(recorded.temporal, handle, blobs=recorded.blobs)


def test_an_unknown_key_in_a_state_field_names_the_keys_it_takes(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\nversion: 1.0.0\nstate:\n  score: {typ: number}\n"
        "nodes:\n  - {name: t, kind: task, impl: 'tests.state_nodes:Tag'}\n"
        "edges:\n  - {from: t, type: FINAL}\n"
    )
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    [issue] = caught.value.issues
    assert issue.line == 4
    assert "expected one of: type, reducer, default, description" in issue.message
    assert "did you mean 'type'?" in issue.message
