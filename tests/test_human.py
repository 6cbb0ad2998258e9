"""Human-input steps: ask, wait in the workflow, answer (update, signal, CLI, Python), audit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from graphrunner import (
    AgentGraph,
    GraphBuilder,
    GraphError,
    GraphrunnerClient,
    GraphrunnerError,
    HumanRequest,
    Recorder,
    Settings,
    build_worker,
    load_graph,
)
from graphrunner._attributes import STATUS_KEY
from graphrunner.client import temporal_binary
from graphrunner.graph import parse_graph
from graphrunner.graph._human import render_prompt
from graphrunner.stores import LocalBlobStore, data_converter, open_records
from tests.conftest import ROOT, assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner

APPROVAL = ROOT / "examples" / "approval.yaml"

REVIEW_YAML = """
name: review
version: 1.0.0
state:
  answers: {{type: array, reducer: append}}
nodes:
  - {{name: propose, kind: task, impl: "tests.human_nodes:propose"}}
  - {{name: ask, kind: plan, impl: "tests.human_nodes:ask", local: true}}
  - name: review
    kind: task
    human:
      prompt: "Approve {{title}} at ${{cost}}?"
      response:
        type: object
        properties: {{ok: {{type: boolean}}, again: {{type: boolean}}, note: {{type: string}}}}
        required: [ok]
        additionalProperties: false
      assignee: ops
      labels: [money]
      state: answers
{extra}
  - {{name: after, kind: plan, impl: "tests.human_nodes:after", local: true}}
edges:
  - {{from: propose, to: ask}}
  - {{from: ask, to: review}}
  - {{from: review, to: after}}
  - {{from: after, to: propose}}
  - {{from: after, type: FINAL}}
"""


def review_graph(extra: str = "") -> AgentGraph:
    return parse_graph(REVIEW_YAML.format(extra=extra), file=str(ROOT / "tests" / "r.yaml"))


async def waiting(
    client: GraphrunnerClient, lifetime_id: str, node: str, count: int = 1
) -> HumanRequest:
    """The request ``node`` waits on, once the lifetime shows it (its memo)."""
    for _ in range(400):
        found = [r for r in await client.pending(lifetime_id) if r.node == node]
        if len(found) >= count:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id} never waited at {node}")


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What the Web UI shows as the workflow's current details (its metadata query)."""
    from temporalio.api.sdk.v1 import WorkflowMetadata

    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


def update_events(history: Any) -> int:
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


# -- definitions ----------------------------------------------------------------------------


def test_a_human_task_needs_no_impl_and_pins_its_response_model() -> None:
    graph = parse_graph(
        REVIEW_YAML.format(extra="").replace(
            """      response:
        type: object
        properties: {ok: {type: boolean}, again: {type: boolean}, note: {type: string}}
        required: [ok]
        additionalProperties: false
""",
            "      model: tests.human_nodes:Verdict\n",
        ),
        file="r.yaml",
    )
    human = graph.node("review").human
    assert human is not None and human.response is not None
    assert human.response["required"] == ["ok"], "the model's JSON Schema is pinned"
    # Graphs without human tasks hash as before: the field is left out when unset.
    assert "human" not in graph.node("propose").model_dump()


@pytest.mark.parametrize(
    ("human", "message"),
    [
        ("response: {type: string, pattern: '(a+)+$'}", "'pattern' is not allowed"),
        ("response: {type: array, uniqueItems: true}", "'uniqueItems' is not allowed"),
        ("response: {$ref: 'http://example.com/s.json'}", "only references inside the schema"),
        ("response: {type: wrong}", "not a valid JSON Schema"),
        (
            "response: {type: integer}\n      timeout_s: 60\n      on_timeout: {respond: x}",
            "on_timeout.respond does not fit the response schema: $: 'x' is not of type",
        ),
        ("state: nowhere", "state field 'nowhere' is not declared"),
        ("timeout_s: 0.5", "expected greater than or equal to 1"),
    ],
)
def test_bad_human_sections_are_refused_with_the_reason(human: str, message: str) -> None:
    text = f"""
name: bad
version: 1.0.0
nodes:
  - name: ask
    kind: task
    human:
      prompt: hello
      {human}
edges:
  - {{from: ask, type: FINAL}}
"""
    with pytest.raises(GraphError) as caught:
        parse_graph(text, file="bad.yaml")
    assert message in str(caught.value)


def test_the_prompt_template_substitutes_values_and_evaluates_nothing() -> None:
    data = {"a": {"b": [1, {"c": "deep"}]}, "x": "{a}", "n": None}
    assert (
        render_prompt("{a.b.1.c} {a.b.0} {x} {n} {}", "plain") == "{a.b.1.c} {a.b.0} {x} {n} plain"
    )
    assert render_prompt("{a.b.1.c}|{x}|{{lit}}|{missing}", data) == "deep|{a}|{lit}|{missing}"
    assert render_prompt("{a.__class__}", data) == "{a.__class__}", "no attribute access"


def test_the_builder_declares_human_tasks_from_a_pydantic_model() -> None:
    from tests.human_nodes import Verdict, after, ask, propose

    graph = (
        GraphBuilder("b", version="1.0.0")
        .task("propose", propose)
        .plan("ask", ask, local=True)
        .human(
            "review",
            prompt="ok {title}?",
            response=Verdict,
            timeout_s=60,
            on_timeout={"respond": {"ok": False}},
        )
        .plan("after", after, local=True)
        .edge("propose", "ask")
        .edge("ask", "review")
        .edge("review", "after")
        .edge("after", "propose")
        .final("after")
        .build()
    )
    human = graph.node("review").human
    assert human is not None and human.model == "tests.human_nodes:Verdict"
    assert human.response is not None and "ok" in human.response["properties"]


# -- answering ------------------------------------------------------------------------------


@pytest.fixture
async def recorded(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[GraphrunnerClient]:
    """A worker recording into a SQLite state DB, and a client reading it."""
    settings = Settings(
        task_queue=task_queue, database_url=f"sqlite:///{tmp_path}/state.db", home=tmp_path
    )
    records = open_records(settings)
    blobs = LocalBlobStore(tmp_path / "blobs")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, blobs),
    )
    recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        yield GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs)
    records.close()


async def test_the_approval_example_loops_on_changes_and_records_every_answer(
    recorded: GraphrunnerClient,
) -> None:
    client = recorded
    handle = await client.start(load_graph(APPROVAL), {"topic": "release notes"})
    first = await waiting(client, handle.id, "approve")
    assert first.question.startswith('Approve draft 1 of "release notes"?')
    assert first.assignee == "editor" and first.labels == ["docs"]
    assert first.schema_["required"] == ["decision"]
    assert first.deadline is not None and first.on_timeout == "respond"
    status = await client.status(handle.id)
    assert [r.request_id for r in status.waiting] == [first.request_id], "status shows it"

    changed = await client.respond(
        handle.id, "approve", {"decision": "changes", "comment": "shorter"}, by="bob"
    )
    assert changed.by == "bob" and changed.via == "update" and not changed.duplicate
    # Idempotent: the same request answered again returns the first answer's outcome.
    again = await client.respond(
        handle.id, "approve", {"decision": "reject"}, request_id=first.request_id, by="eve"
    )
    assert again.duplicate and again.data == changed.data and again.by == "bob"

    second = await waiting(client, handle.id, "approve")
    assert second.iteration == 2 and "Revised for: shorter" in second.question
    await client.respond(handle.id, "approve", {"decision": "approve"}, by="alice")
    result = await handle.result()
    assert result.output["status"] == "approved"
    assert result.output["draft"]["version"] == 2
    assert result.state is not None
    assert [d["decision"] for d in result.state["decisions"]] == ["changes", "approve"]

    records = [r for r in await client.history(handle.id) if r.kind == "human"]
    assert [(r.node, r.iteration, r.answered_by) for r in records] == [
        ("approve", 1, "bob (update)"),
        ("approve", 2, "alice (update)"),
    ]
    assert records[0].result_value() == {"decision": "changes", "comment": "shorter"}
    assert records[0].execution_id == first.request_id
    assert all(r.latency_ms > 0 for r in records), "the wait is the latency"
    assert await client.pending(handle.id) == [], "nothing waits any more"
    steps = (await client.status(handle.id)).steps
    assert [(s.node, s.kind.value) for s in steps if s.node == "approve"] == [
        ("approve", "task"),
        ("approve", "task"),
    ], "status (from history) shows the human steps"
    await assert_replays(client.temporal, handle, blobs=client.blobs)


@pytest.mark.usefixtures("worker")
async def test_refused_updates_leave_it_waiting_and_unharmed(client: GraphrunnerClient) -> None:
    handle = await client.start(review_graph(), {"x": 1})
    request = await waiting(client, handle.id, "review")
    assert request.question == "Approve plan 1 at $12.5?"
    refusals = [
        (dict(node="review", data={"ok": "yes"}), "$.ok: 'yes' is not of type 'boolean'"),
        (dict(node="review", data={"ok": True, "extra": 1}), "Additional properties"),
        (dict(node="review", data={}), "$: 'ok' is a required property"),
        (dict(node="propose", data={"ok": True}), "node 'propose' is not waiting"),
        (dict(node="nowhere", data={"ok": True}), "node 'nowhere' is not waiting"),
        (
            dict(node="review", data={"ok": True}, request_id="0" * 32),
            "is not waiting for an answer (a stale or unknown request id)",
        ),
    ]
    for kwargs, reason in refusals:
        with pytest.raises(GraphrunnerError) as caught:
            await client.respond(handle.id, **kwargs)  # type: ignore[arg-type]
        assert reason in str(caught.value)
    assert update_events(await handle.fetch_history()) == 0, "refusals leave no trace"
    assert (await client.pending(handle.id))[0].request_id == request.request_id
    await client.respond(handle.id, "review", {"ok": True, "note": "fine"})
    result = await handle.result()
    assert result.output["answer"] == {"ok": True, "note": "fine"}
    assert result.output["state"]["answers"] == [{"ok": True, "note": "fine"}]
    # Not waiting any more: the lifetime completed.
    with pytest.raises(GraphrunnerError):
        await client.respond(handle.id, "review", {"ok": True})
    await assert_replays(client.temporal, handle)


def temporal_cli(env: WorkflowEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    address = env.client.service_client.config.target_host
    return subprocess.run(
        [temporal_binary(), *args, "--address", address, "--namespace", env.client.namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.usefixtures("worker")
async def test_a_signal_from_the_temporal_cli_answers_and_a_bad_one_is_recorded(
    env: WorkflowEnvironment, client: GraphrunnerClient
) -> None:
    handle = await client.start(review_graph(), {"x": 1})
    await waiting(client, handle.id, "review")
    bad = temporal_cli(
        env,
        "workflow",
        "signal",
        "--workflow-id",
        handle.id,
        "--name",
        "graphrunner.answer",
        "--input",
        json.dumps({"node": "review", "data": {"ok": 3}, "by": "mallory"}),
    )
    assert bad.returncode == 0, bad.stderr
    for _ in range(200):
        status = await client.status(handle.id)
        if status.refused:
            break
        await asyncio.sleep(0.05)
    assert status.refused[0].by == "mallory"
    assert "$.ok: 3 is not of type 'boolean'" in status.refused[0].reason
    assert status.waiting, "a refused signal leaves the lifetime waiting"
    details = await current_details(handle)
    assert "Approve plan 1 at $12\\.5?" in details, "the UI's current details show the question"
    assert "refused answer" in details

    good = temporal_cli(
        env,
        "workflow",
        "signal",
        "--workflow-id",
        handle.id,
        "--name",
        "graphrunner.answer",
        "--input",
        json.dumps({"node": "review", "data": {"ok": True}, "by": "carol"}),
    )
    assert good.returncode == 0, good.stderr
    result = await handle.result()
    assert result.output["answer"] == {"ok": True}
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_graphrunner_respond_and_pending_in_another_process(
    env: WorkflowEnvironment, client: GraphrunnerClient, task_queue: str, tmp_path: Path
) -> None:
    handle = await client.start(review_graph(), {"x": 1}, tenant="cli-tenant")
    request = await waiting(client, handle.id, "review")
    cli = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
        GRAPHRUNNER_HOME=str(tmp_path),
    )
    listed = graphrunner("pending", handle.id, "--json", env=cli)
    assert listed.returncode == 0, listed.stderr
    assert [r["request_id"] for r in json.loads(listed.stdout)] == [request.request_id]
    table = graphrunner("pending", handle.id, env=cli)
    assert "Approve plan 1 at $12.5?" in table.stdout and "ops" in table.stdout
    # In a thread: this process's worker must run while the CLI waits for its answer.
    refused = await asyncio.to_thread(
        graphrunner, "respond", handle.id, "--node", "review", "--data", '{"ok": 1}', env=cli
    )
    assert refused.returncode != 0
    assert "$.ok: 1 is not of type 'boolean'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, "one clear line"
    answer = tmp_path / "answer.json"
    answer.write_text('{"ok": false, "note": "[too] much"}')
    done = await asyncio.to_thread(
        graphrunner,
        "respond",
        handle.id,
        "--node",
        "review",
        "--data",
        f"@{answer}",
        "--as",
        "dana",
        env=cli,
    )
    assert done.returncode == 0, done.stderr
    assert "as dana" in done.stdout
    result = await handle.result()
    assert result.output["answer"] == {"ok": False, "note": "[too] much"}
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_cancelling_or_aborting_a_waiting_lifetime_ends_it(client: GraphrunnerClient) -> None:
    cancelled = await client.start(review_graph(), {"x": 1})
    await waiting(client, cancelled.id, "review")
    await cancelled.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await cancelled.result()
    assert "cancel" in str(caught.value.cause).lower()
    await assert_replays(client.temporal, cancelled)

    aborted = await client.start(review_graph(), {"x": 1})
    await waiting(client, aborted.id, "review")
    await client.abort(aborted.id, reason="nobody cares")
    with pytest.raises(WorkflowFailureError) as caught:
        await aborted.result()
    assert "nobody cares" in str(caught.value.cause)
    await assert_replays(client.temporal, aborted)


# -- deadlines, workers away, many waiting, guardrails --------------------------------------


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping dev server (see TEMPORAL-NOTES): deadlines pass at once."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    environment = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


TIMED = """      timeout_s: 3600
      on_timeout: {on_timeout}
"""


def timed_graph(on_timeout: str) -> AgentGraph:
    text = REVIEW_YAML.format(extra="").replace(
        "      state: answers\n", "      state: answers\n" + TIMED.format(on_timeout=on_timeout)
    )
    return parse_graph(text, file=str(ROOT / "tests" / "t.yaml"))


async def test_a_deadline_passes_and_the_declared_outcome_happens(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = GraphrunnerClient(skipping_env.client, settings=Settings(task_queue=task_queue))
    async with build_worker(skipping_env.client, task_queue=task_queue, recorder=None):
        answered = await client.start(timed_graph("{respond: {ok: false, note: late}}"), {})
        await waiting(client, answered.id, "review")
        await skipping_env.fast_forward(answered, timedelta(hours=2))  # type: ignore[attr-defined]
        result = await answered.result()
        assert result.output["answer"] == {"ok": False, "note": "late"}, "the default answered"
        await assert_replays(client.temporal, answered)

        failed = await client.start(timed_graph("fail"), {})
        await waiting(client, failed.id, "review")
        await skipping_env.fast_forward(failed, timedelta(hours=2))  # type: ignore[attr-defined]
        with pytest.raises(WorkflowFailureError) as caught:
            await failed.result()
        assert "nobody answered within timeout_s=3600" in str(caught.value.cause)
        assert "NodeFailed" in str(getattr(caught.value.cause, "type", ""))
        await assert_replays(client.temporal, failed)


async def test_an_answer_while_no_worker_runs_is_delivered_when_one_returns(
    env: WorkflowEnvironment, client: GraphrunnerClient, task_queue: str
) -> None:
    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        handle = await client.start(review_graph(), {"x": 1})
        request = await waiting(client, handle.id, "review")
    # No worker now: the signal is accepted by the server; an update waits for a worker.
    await client.answer_by_signal(handle.id, "review", {"ok": True, "note": "offline"}, by="zoe")
    pending_update = asyncio.ensure_future(
        client.respond(handle.id, "review", {"ok": False}, request_id=request.request_id)
    )
    await asyncio.sleep(1.0)
    assert not pending_update.done(), "an update waits for a worker"
    assert (await client.pending(handle.id))[0].request_id == request.request_id
    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        result = await handle.result()
        outcome = await pending_update
    assert result.output["answer"] == {"ok": True, "note": "offline"}, "the signal came first"
    assert outcome.duplicate and outcome.by == "zoe" and outcome.via == "signal"
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_pending_lists_a_tenants_requests_across_100_waiting_lifetimes(
    client: GraphrunnerClient,
) -> None:
    graph = review_graph()
    mine = await asyncio.gather(
        *(client.start(graph, {"n": i}, tenant="pending-acme") for i in range(100))
    )
    theirs = await client.start(graph, {"n": -1}, tenant="pending-other")
    found: list[HumanRequest] = []
    for _ in range(600):
        found = await client.pending(tenant="pending-acme", graph="review")
        if len(found) >= 100:
            break
        await asyncio.sleep(0.1)
    assert sorted(r.lifetime_id for r in found) == sorted(h.id for h in mine)
    assert all(r.question == "Approve plan 1 at $12.5?" and r.assignee == "ops" for r in found)
    assert theirs.id not in {r.lifetime_id for r in found}
    for handle in [*mine[:3], theirs]:
        await client.respond(handle.id, "review", {"ok": True})
    for handle in mine[:3]:
        await handle.result()
        await assert_replays(client.temporal, handle)
    for handle in mine[3:]:
        await handle.terminate("test over")


async def test_guardrail_rules_count_and_filter_human_steps(
    env: WorkflowEnvironment, client: GraphrunnerClient, task_queue: str
) -> None:
    from graphrunner.guardrails import parse_policy

    policy = parse_policy(
        "rules:\n"
        "  - {name: two-asks, when: 'count(where kind == \"human\") > 2', scope: lifetime,"
        " action: abort_lifetime, message: ask at most twice}\n"
    )
    text = REVIEW_YAML.format(extra="")
    graph = parse_graph(text, file=str(ROOT / "tests" / "g.yaml")).model_copy(
        update={"guardrails": policy}
    )
    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        handle = await client.start(graph, {})
        for round_ in (1, 2, 3):
            await waiting(client, handle.id, "review", count=1)
            await client.respond(handle.id, "review", {"ok": True, "again": True})
            if round_ < 3:
                for _ in range(200):  # the next ask
                    found = await client.pending(handle.id)
                    if found and found[0].iteration == round_ + 1:
                        break
                    await asyncio.sleep(0.05)
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert "guardrail 'two-asks' aborted the lifetime at human 'review' (iteration 3)" in str(
        caught.value.cause
    )
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_start_and_ask_returns_the_human_question_in_one_call(
    client: GraphrunnerClient,
) -> None:
    lifetime_id = f"ask-approval-{uuid.uuid4().hex[:8]}"
    handle, first = await client.start_and_ask(
        load_graph(APPROVAL), {"topic": "release notes"}, id=lifetime_id
    )
    assert first.phase == "waiting"
    assert first.question["node"] == "approve" and first.question["assignee"] == "editor"
    assert first.question["question"].startswith('Approve draft 1 of "release notes"?')
    assert first.question["schema"]["required"] == ["decision"]
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(STATUS_KEY) == "waiting"
    # Asking again with the same id starts nothing and gets the same question.
    again, second = await client.start_and_ask(
        load_graph(APPROVAL), {"topic": "release notes"}, id=lifetime_id
    )
    assert again.result_run_id == handle.result_run_id, "the same lifetime, not a new one"
    assert second.question == first.question
    await client.respond(lifetime_id, "approve", {"decision": "approve"}, by="alice")
    await handle.result()
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(STATUS_KEY) == "completed"
    await assert_replays(client.temporal, handle)


PARALLEL_ASKS = """
name: two-editors
version: 1.0.0
nodes:
  - {name: split, kind: plan, impl: "tests.human_nodes:ask_both"}
  - name: ask_a
    kind: task
    human: {prompt: "a?", response: {type: object}}
  - name: ask_b
    kind: task
    human: {prompt: "b?", response: {type: object}}
  - {name: both, kind: plan, impl: "tests.human_nodes:outputs"}
  - {name: linger, kind: task, impl: "tests.human_nodes:linger"}
edges:
  - {from: split, to: ask_a, type: PARALLEL}
  - {from: split, to: ask_b, type: PARALLEL}
  - {from: ask_a, to: both, type: JOIN}
  - {from: ask_b, to: both, type: JOIN}
  - {from: both, to: linger}
  - {from: linger, type: FINAL}
"""


@pytest.mark.usefixtures("worker")
async def test_a_lifetime_stays_waiting_until_its_last_parallel_question_is_answered(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(parse_graph(PARALLEL_ASKS), None)
    await waiting(client, handle.id, "ask_a")
    await waiting(client, handle.id, "ask_b")

    async def status_attribute() -> str | None:
        for _ in range(100):  # upserts are batched: give the board its round
            found = (await handle.describe()).typed_search_attributes.get(STATUS_KEY)
            if found != "running":
                return found
            await asyncio.sleep(0.05)
        return "running"

    assert await status_attribute() == "waiting"
    await client.respond(handle.id, "ask_a", {"a": 1}, by="t")
    await asyncio.sleep(0.5)
    assert await status_attribute() == "waiting", "one question still waits"
    await client.respond(handle.id, "ask_b", {"b": 2}, by="t")
    for _ in range(20):  # while 'linger' works, nobody is asked any more
        if (await handle.describe()).typed_search_attributes.get(STATUS_KEY) == "running":
            break
        await asyncio.sleep(0.05)
    assert (await handle.describe()).typed_search_attributes.get(STATUS_KEY) == "running"
    assert (await handle.result()).output == [{"a": 1}, {"b": 2}]
    assert (await handle.describe()).typed_search_attributes.get(STATUS_KEY) == "completed"
    await assert_replays(client.temporal, handle)
