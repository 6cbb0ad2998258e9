"""Built-in LLM nodes (llm_task, llm_plan, llm_judge, tools) on a real Temporal server.

The model is graphrunner's offline provider (a litellm custom provider, called by the LLM
runtime like any other), scripted per node by `tests.llm_scripts`; every assertion is about
what a user sees: outputs, failures, records, history.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, Settings
from graphrunner._llm_wire import RUN_TOOL
from graphrunner.activities import Recorder
from graphrunner.errors import GraphError
from graphrunner.graph import AgentGraph, GraphBuilder, load_graph, parse_graph
from graphrunner.guardrails import Action, Policy, Rule, Scope
from graphrunner.stores import LocalBlobStore, RecordStore, data_converter, open_records
from graphrunner.worker import build_worker
from tests.conftest import activity_summaries, assert_replays
from tests.llm_scripts import Scripts, scripted_llm, tool_call
from tests.llm_tools import Summary, lookup, search

__all__ = ["scripted_llm"]  # the fixture, used by name

SUMMARY = '{"title": "T", "points": ["a", "b"]}'

GRAPH_YAML = """\
name: llm-demo
version: 1.0.0
nodes:
  - name: summarise
    kind: task
    llm:
      tier: fast
      system: "You summarise notes about {topic}."
      prompt: "Notes: {notes}"
      output: tests.llm_tools:Summary
      max_reasks: 2
  - name: route
    kind: plan
    llm:
      prompt: "Summary: {}"
      default: judge
  - name: judge
    kind: task
    llm:
      rubric: {dimensions: [coverage, consistency], pass: B}
  - {name: gate, kind: plan}
edges:
  - {from: summarise, to: route}
  - {from: route, to: summarise}
  - {from: route, to: judge}
  - {from: route, type: FINAL}
  - {from: judge, to: gate}
  - {from: gate, type: FINAL, when: output.passed}
  - {from: gate, to: summarise}
"""


def demo_builder() -> GraphBuilder:
    return (
        GraphBuilder("llm-demo", version="1.0.0")
        .llm_task(
            "summarise",
            tier="fast",
            system="You summarise notes about {topic}.",
            prompt="Notes: {notes}",
            output=Summary,
            max_reasks=2,
        )
        .llm_plan("route", prompt="Summary: {}", default="judge")
        .llm_judge("judge", dimensions=["coverage", "consistency"], passing="B")
        .plan("gate")
        .edge("summarise", "route")
        .edge("route", "summarise")
        .edge("route", "judge")
        .final("route")
        .edge("judge", "gate")
        .final("gate", when="output.passed")
        .edge("gate", "summarise")
    )


# -- definitions ---------------------------------------------------------------------------


def test_yaml_and_builder_define_the_same_llm_graph() -> None:
    from_yaml = parse_graph(GRAPH_YAML)
    built = demo_builder().build()

    assert from_yaml.content_hash() == built.content_hash()
    route = from_yaml.node("route")
    assert route.llm is not None and route.llm.default == "judge"
    assert not route.local, "an llm plan calls a model: a regular activity, not a local one"
    judge = from_yaml.node("judge").llm
    assert judge is not None and judge.rubric is not None
    assert judge.rubric.grades == ["S", "A", "B", "C", "D", "F"]
    assert judge.rubric.pass_grade == "B"
    assert "llm" not in json.loads(from_yaml.node("gate").model_dump_json())


BAD_YAML = """\
name: bad-llm
version: 1.0.0
nodes:
  - name: both
    kind: task
    impl: tests.nodes:Echo
    llm: {prompt: hi}
  - name: choose
    kind: plan
    llm:
      default: nowhere
  - name: judged
    kind: task
    llm:
      rubric: {dimensions: [coverage, coverage], grades: [A, B, A], pass: Z}
  - name: planjudge
    kind: plan
    llm:
      rubric: {dimensions: [coverage], pass: A}
  - name: shaped
    kind: task
    llm:
      output: {type: object, properties: {n: {type: integer, minimum: nope}}}
  - name: tooled
    kind: task
    llm:
      tools: [tests.llm_tools:missing, tests.llm_tools:untyped]
      output: tests.llm_tools:NoSuchModel
  - name: hot
    kind: task
    llm:
      temperature: 3
      max_reasks: 9
edges:
  - {from: both, to: choose}
  - {from: choose, to: judged}
  - {from: judged, to: planjudge}
  - {from: planjudge, to: shaped}
  - {from: shaped, to: choose}
  - {from: planjudge, to: tooled}
  - {from: tooled, to: choose}
  - {from: planjudge, to: hot}
  - {from: hot, to: choose}
  - {from: choose, type: FINAL}
"""


def test_each_llm_rule_names_file_line_and_node(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_YAML)

    with pytest.raises(GraphError) as caught:
        load_graph(path)

    found = {(i.rule, i.line, i.where) for i in caught.value.issues}
    text = str(caught.value)
    assert ("llm-conflict", 7, "node 'both'") in found
    assert ("llm-default", 11, "node 'choose'") in found
    assert "default 'nowhere' is not a successor of this plan (allowed: judged, finish)" in text
    judged = {(i.message) for i in caught.value.issues if i.where == "node 'judged'"}
    assert "rubric.grades has duplicates" in judged
    assert "rubric.dimensions has duplicates" in judged
    assert any("rubric.pass 'Z' is not one of the grades" in m for m in judged)
    assert ("llm-rubric", 19, "node 'planjudge'") in found
    assert any(i.rule == "llm-output" and i.where == "node 'shaped'" for i in caught.value.issues)
    tooled = [i for i in caught.value.issues if i.where == "node 'tooled'"]
    assert {i.rule for i in tooled} == {"llm-tools", "llm-output"}
    assert any("tests.llm_tools:missing" in i.message for i in tooled)
    assert any("'x' has no type annotation" in i.message for i in tooled)
    hot = [i for i in caught.value.issues if i.where == "node 'hot'"]
    assert {i.rule for i in hot} == {"llm"} and len(hot) == 2
    assert all(i.file == str(path) for i in caught.value.issues)
    # Without imports, the import rules are not checked.
    with pytest.raises(GraphError) as again:
        load_graph(path, check_imports=False)
    assert not any(i.where == "node 'tooled'" for i in again.value.issues)


def test_builder_reports_llm_rules_too() -> None:
    builder = (
        GraphBuilder("b", version="1.0.0")
        .llm_task("ask", tools=[search, "tests.llm_tools:nothing"])
        .llm_plan("route", default="elsewhere")
        .edge("ask", "route")
        .edge("route", "ask")
        .final("route")
    )
    with pytest.raises(GraphError) as caught:
        builder.build()

    assert {i.rule for i in caught.value.issues} == {"llm-tools", "llm-default"}


# -- running them --------------------------------------------------------------------------


class Setup:
    def __init__(self, client: GraphrunnerClient, records: RecordStore, temporal: Client) -> None:
        self.client = client
        self.records = records
        self.temporal = temporal


@pytest.fixture
async def setup(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path, scripted_llm: Scripts
) -> AsyncIterator[Setup]:
    """A worker recording into a SQLite state DB with blobs in tmp, and a client."""
    settings = Settings(
        task_queue=task_queue, database_url=f"sqlite:///{tmp_path / 'state.db'}", home=tmp_path
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
        yield Setup(
            GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs),
            records,
            temporal,
        )
    records.close()


def one_task(**llm: Any) -> AgentGraph:
    return (
        GraphBuilder("one-llm", version="1.0.0")
        .llm_task("ask", **llm)
        .plan("done", "tests.llm_tools:FinishWithLast")
        .edge("ask", "done")
        .final("done")
        .build()
    )


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_llm_task_answers_text_rendered_from_its_input(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("ask", "Paris")
    graph = one_task(system="Answer about {topic}.", prompt="Capital of {country}?")

    handle = await setup.client.start(graph, {"topic": "geography", "country": "France"})

    assert (await handle.result()).output == "Paris"
    asked = scripted_llm.calls["ask"][0]
    assert asked["messages"] == [
        {"role": "system", "content": "Answer about geography."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert asked["schema"] is None


async def test_structured_output_is_re_asked_with_the_errors_and_recorded(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("ask", "not json", '{"title": "T"}', SUMMARY)
    graph = one_task(output=Summary, prompt="{}")

    handle = await setup.client.start(graph, {"notes": "x"})

    assert (await handle.result()).output == {"title": "T", "points": ["a", "b"]}
    calls = scripted_llm.calls["ask"]
    assert len(calls) == 3
    assert calls[0]["schema"]["properties"]["points"]["type"] == "array"
    assert "not JSON" in calls[1]["messages"][-1]["content"]
    assert "points" in calls[2]["messages"][-1]["content"]
    (record,) = [r for r in await setup.client.history(handle.id) if r.node == "ask"]
    assert record.result_value() == {"title": "T", "points": ["a", "b"]}
    assert record.notes is not None
    assert [r["answer"] for r in record.notes["reasks"]] == ["not json", '{"title": "T"}']
    assert any("points" in e for e in record.notes["reasks"][1]["errors"])
    await assert_replays(setup.temporal, handle)


async def test_re_asks_stop_at_max_reasks_with_a_clear_failure(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("ask", '{"title": 1}')
    graph = one_task(
        output={"type": "object", "required": ["title"]}
        | {"properties": {"title": {"type": "string"}}},
        max_reasks=1,
    )

    handle = await setup.client.start(graph, {})
    failure = await failure_of(handle)

    assert failure.type == "NodeFailed"
    assert "node 'ask' (task, iteration 1) failed: LlmBadAnswer" in str(failure)
    assert "after 1 re-ask (max_reasks=1)" in str(failure)
    assert "$.title: 1 is not of type 'string'" in str(failure)
    assert len(scripted_llm.calls["ask"]) == 2, "asked once, re-asked once, not retried"


def plan_graph(default: str | None) -> AgentGraph:
    return (
        GraphBuilder("llm-plan", version="1.0.0")
        .task("draft", "tests.llm_tools:Same")
        .llm_plan("route", prompt="Draft: {}", default=default, max_reasks=1)
        .task("publish", "tests.llm_tools:Same", description="publish the draft")
        .task("revise", "tests.llm_tools:Same")
        .plan("done", "tests.llm_tools:FinishWithLast")
        .edge("draft", "route")
        .edge("route", "publish")
        .edge("route", "revise")
        .edge("publish", "done")
        .edge("revise", "done")
        .final("done")
        .build()
    )


async def test_llm_plan_choice_is_constrained_and_re_asked(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set(
        "route", '{"next": "delete_everything"}', '{"next": "publish", "reason": "ok"}'
    )

    handle = await setup.client.start(plan_graph(None), "my draft")
    result = await handle.result()

    assert result.output == "my draft", "the chosen task got the plan's input"
    assert [s.node for s in result.steps] == ["draft", "route", "publish", "done"]
    schema = scripted_llm.calls["route"][0]["schema"]
    assert schema["properties"]["next"]["enum"] == ["publish", "revise"]
    assert "publish: publish the draft" in scripted_llm.calls["route"][0]["messages"][0]["content"]
    (record,) = [r for r in await setup.client.history(handle.id) if r.node == "route"]
    assert record.next == ["publish"]
    assert record.notes is not None and len(record.notes["reasks"]) == 1
    await assert_replays(setup.temporal, handle)


async def test_llm_plan_takes_its_default_when_the_model_keeps_choosing_badly(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("route", '{"next": "delete_everything"}')

    handle = await setup.client.start(plan_graph("revise"), "d")
    result = await handle.result()

    assert [s.node for s in result.steps] == ["draft", "route", "revise", "done"]
    (record,) = [r for r in await setup.client.history(handle.id) if r.node == "route"]
    assert record.notes is not None and record.notes["default_taken"] == "revise"


async def test_llm_plan_without_default_fails_naming_plan_and_choice(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("route", '{"next": "delete_everything"}')

    failure = await failure_of(await setup.client.start(plan_graph(None), "d"))

    text = str(failure)
    assert "plan 'route' (iteration 1): the model did not choose one of its successors" in text
    assert "(publish, revise)" in text and "'delete_everything'" in text
    assert "the plan has no 'default'" in text
    assert len(scripted_llm.calls["route"]) == 2


def gate_graph() -> AgentGraph:
    return (
        GraphBuilder("judge-gate", version="1.0.0")
        .task("write", "tests.llm_tools:Same")
        .plan("next", "tests.llm_tools:PassOn")
        .llm_judge("review", dimensions=["coverage", "verifiability"], passing="B", prompt="{}")
        .plan("gate")
        .edge("write", "next")
        .edge("next", "review")
        .edge("review", "gate")
        .final("gate", when="output.passed")
        .edge("gate", "write")
        .build()
    )


async def test_judge_grades_and_a_routing_plan_gates_on_passed(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set(
        "review",
        '{"grades": {"coverage": "A", "verifiability": "D"}, "notes": "no sources"}',
        '{"grades": {"coverage": "A", "verifiability": "Q"}}',
        '{"grades": {"coverage": "S", "verifiability": "B"}, "notes": "fine"}',
    )

    handle = await setup.client.start(gate_graph(), "essay")
    result = await handle.result()

    assert result.output == {
        "grades": {"coverage": "S", "verifiability": "B"},
        "overall": "B",
        "passed": True,
        "notes": "fine",
    }
    assert [s.node for s in result.steps] == [
        *["write", "next", "review", "gate"],
        *["write", "next", "review", "gate"],
    ]
    first = [r for r in await setup.client.history(handle.id) if r.node == "review"][0]
    assert first.result_value() == {
        "grades": {"coverage": "A", "verifiability": "D"},
        "overall": "D",
        "passed": False,
        "notes": "no sources",
    }
    await assert_replays(setup.temporal, handle)


# -- tools ---------------------------------------------------------------------------------


async def test_each_tool_call_is_an_activity_and_a_record(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set(
        "ask",
        [tool_call("search", "c1", query="temporal")],
        [tool_call("lookup", "c2", key="k"), tool_call("search", "c3", query="q", limit=1)],
        "done: temporal result 1",
    )
    graph = one_task(tools=[search, lookup], prompt="find {}")

    handle = await setup.client.start(graph, "it")
    result = await handle.result()

    assert result.output == "done: temporal result 1"
    assert await activity_summaries(handle) == ["ask · 1", "done · 1"]
    history = await handle.fetch_history()
    scheduled = [
        (
            e.activity_task_scheduled_event_attributes.activity_type.name,
            e.user_metadata.summary.data.decode().strip('"'),
        )
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert [s for _, s in scheduled] == [
        "ask · 1",
        "ask · 1 · search",
        "ask · 1 · round 2",
        "ask · 1 · lookup",
        "ask · 1 · search",
        "ask · 1 · round 3",
        "done · 1",
    ]
    assert [t for t, _ in scheduled].count(RUN_TOOL) == 3
    # The model saw each result, in order, as tool messages.
    last = scripted_llm.calls["ask"][2]["messages"]
    tools_seen = [
        (m["tool_call_id"], json.loads(m["content"])) for m in last if m["role"] == "tool"
    ]
    assert tools_seen == [
        ("c1", ["temporal result 1", "temporal result 2"]),
        ("c2", {"key": "k", "value": "K"}),
        ("c3", ["q result 1"]),
    ]
    records = await setup.client.history(handle.id)
    tools = [r for r in records if r.kind == "tool"]
    assert [(r.node, r.tool) for r in tools] == [
        ("ask", "search"),
        ("ask", "lookup"),
        ("ask", "search"),
    ]
    assert tools[0].result_value() == {
        "arguments": {"query": "temporal"},
        "result": ["temporal result 1", "temporal result 2"],
    }
    (task,) = [r for r in records if r.kind == "task" and r.node == "ask"]
    assert all(r.parent_ids == [task.execution_id] for r in tools)
    assert len({r.execution_id for r in tools}) == 3
    assert task.result_value() == "done: temporal result 1" and task.attempt == 3
    # The task's record counts every round's model calls: what the lifetime spent.
    assert result.telemetry is not None and result.telemetry.tokens_in > 0
    assert (task.tokens_in, task.tokens_out) == (
        result.telemetry.tokens_in,
        result.telemetry.tokens_out,
    )
    assert float(task.cost_usd) == pytest.approx(result.telemetry.cost_usd, abs=1e-9)
    assert all(r.latency_ms >= 0 and r.status == "succeeded" for r in tools)
    steps = await setup.client.steps(handle.id)
    assert [(s.node, s.iteration) for s in steps.steps] == [("ask", 1), ("done", 1)]
    await assert_replays(setup.temporal, handle)

    # A fork after the task takes its final answer (its last round), runs no tool again.
    forked = await setup.client.fork(handle.id, 1)
    again = await setup.client.result(forked.lifetime_id)
    assert again.output == "done: temporal result 1"
    fork_history = await setup.temporal.get_workflow_handle(forked.lifetime_id).fetch_history()
    ran = [
        e.user_metadata.summary.data.decode().strip('"')
        for e in fork_history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert ran == ["done · 1"], "no round and no tool of the memoized task ran again"


async def test_bad_tool_arguments_and_unknown_tools_go_back_to_the_model(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set(
        "ask",
        [tool_call("search", "c1", limit="many"), tool_call("rm_rf", "c2")],
        "gave up",
    )

    result = await (await setup.client.start(one_task(tools=[search]), "x")).result()

    assert result.output == "gave up"
    told = [m for m in scripted_llm.calls["ask"][1]["messages"] if m["role"] == "tool"]
    assert "bad arguments for search" in told[0]["content"]
    assert "there is no tool 'rm_rf' (tools: search)" in told[1]["content"]


async def test_tool_rounds_stop_at_max_tool_rounds(setup: Setup, scripted_llm: Scripts) -> None:
    scripted_llm.set("ask", [tool_call("search", query="again")])

    failure = await failure_of(
        await setup.client.start(one_task(tools=[search], max_tool_rounds=2), "x")
    )

    assert "node 'ask' (task, iteration 1) failed: the model still asked for tools" in str(failure)
    assert "max_tool_rounds=2" in str(failure)
    assert len(scripted_llm.calls["ask"]) == 3  # the first round, then two more


async def test_history_grows_by_a_bounded_amount_per_round(
    setup: Setup, scripted_llm: Scripts
) -> None:
    rounds = 8
    scripted_llm.set(
        "ask", *[[tool_call("bulky", f"c{n}", n=n)] for n in range(rounds)], "finished"
    )
    graph = one_task(tools=["tests.llm_tools:bulky"], max_tool_rounds=rounds)

    handle = await setup.client.start(graph, "x")
    assert (await handle.result()).output == "finished"

    history = await handle.fetch_history()
    round_inputs = [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and "· round" in e.user_metadata.summary.data.decode()
    ]
    conversation = json.dumps(scripted_llm.calls["ask"][-1]["messages"])
    assert len(round_inputs) == rounds
    assert len(conversation) > rounds * 2048, "the conversation grew with every round"
    # Each round's input holds the newest tool result and the conversation inline while it
    # is under 4 KiB, then a reference: the same few KiB per round however long it grows.
    assert max(round_inputs) < 6 * 1024
    later = round_inputs[2:]
    assert max(later) - min(later) < 256, round_inputs
    await assert_replays(setup.temporal, handle, blobs=setup.client.blobs)


async def test_guardrails_see_tool_calls_as_kind_tool(setup: Setup, scripted_llm: Scripts) -> None:
    scripted_llm.set(
        "ask",
        [tool_call("search", "c1", query="a"), tool_call("search", "c2", query="b")],
        "answered",
    )
    policy = Policy(
        rules=[
            Rule(
                name="one-tool-call",
                when='count(where kind == "tool") > 1',
                scope=Scope.LIFETIME,
                action=Action.REJECT_EXECUTION,
                message="one tool call per lifetime",
            )
        ]
    )
    graph = (
        GraphBuilder("guarded-tools", version="1.0.0")
        .llm_task("ask", tools=[search])
        .plan("done", "tests.llm_tools:FinishWithLast")
        .edge("ask", "done")
        .final("done")
        .guardrails(policy)
        .build()
    )

    handle = await setup.client.start(graph, "x")

    assert (await handle.result()).output == "answered"
    told = [m for m in scripted_llm.calls["ask"][1]["messages"] if m["role"] == "tool"]
    assert json.loads(told[0]["content"]) == ["a result 1", "a result 2"]
    assert "rejected by guardrail: one tool call per lifetime" in told[1]["content"]
    tools = [r for r in await setup.client.history(handle.id) if r.kind == "tool"]
    assert [(r.tool, r.status) for r in tools] == [("search", "succeeded"), ("search", "rejected")]
    await assert_replays(setup.temporal, handle)
