"""Plans without code route by the `when` conditions of their edges (issue 11, point 5).

The Agentic Runtime Platform's `when` (conditional branching) and `loop_until` (iterative
review) templates run end to end on the dev server as YAML fixtures, and replay. The routing
itself is checked without a server too (`Router`), and so is the typing of conditions.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, NodeOutput
from graphrunner._types import LifetimeInput, Rejection
from graphrunner.errors import GraphError, PolicyError
from graphrunner.graph import AgentGraph, load_graph, parse_graph, to_mermaid
from graphrunner.graph._routing import Router, vocabulary
from graphrunner.guardrails import ExprType, parse_expression
from graphrunner.guardrails._ast import Name, walk
from graphrunner.workflows._lifetime import LIFETIME_WORKFLOW
from tests.conftest import activity_summaries, assert_replays
from tests.nodes import Collect, Echo

GRAPHS = Path(__file__).resolve().parent / "fixtures" / "graphs"


async def local_plan_summaries(client: GraphrunnerClient, lifetime_id: str) -> list[str]:
    """Summaries of the node executions that ran as local activities (markers)."""
    found = []
    async for event in client.temporal.get_workflow_handle(lifetime_id).fetch_history_events():
        if event.HasField("marker_recorded_event_attributes") and event.user_metadata.HasField(
            "summary"
        ):
            found.append(event.user_metadata.summary.data.decode().strip('"'))
    return found


# -- the `when` template ------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("text", "desk"),
    [("Please refund my last invoice", "billing"), ("The app crashes on start", "support")],
)
async def test_the_when_template_answers_from_the_desk_the_label_names(
    client: GraphrunnerClient, text: str, desk: str
) -> None:
    handle = await client.start(load_graph(GRAPHS / "valid-when.yaml"), {"text": text})
    result = await handle.result()

    assert result.output == {"desk": desk, "reply": f"re: {text}"}
    assert [(s.node, s.next) for s in result.steps] == [
        ("classify", ["route"]),
        ("route", [desk]),
        (desk, ["END"]),
    ]
    # A plan without impl runs as a local activity (a marker), recorded like any plan.
    assert await local_plan_summaries(client, handle.id) == ["route · 1"]
    assert await activity_summaries(handle) == ["classify · 1", "route · 1", f"{desk} · 1"]
    await assert_replays(client.temporal, handle)


# -- the `loop_until` template -------------------------------------------------------------


def reviews(rounds: int) -> list[str]:
    """The path of a review loop that ran ``rounds`` reviews."""
    path = ["draft", "route", "review", "route"]
    for _ in range(rounds - 1):
        path += ["revise", "route", "review", "route"]
    return path


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("quality", "step", "rounds", "score"),
    [
        (5, 2, 3, 9),  # 5, 7, 9: the score reaches 8 at the third review
        (1, 1, 3, 3),  # 1, 2, 3: the round count stops it
        (9, 1, 1, 9),  # good at once: no revision
        (2, 3, 3, 8),  # 2, 5, 8: score and round count both hold at the third
    ],
)
async def test_the_loop_until_template_revises_until_the_score_or_the_round_count(
    client: GraphrunnerClient, quality: int, step: int, rounds: int, score: int
) -> None:
    graph = load_graph(GRAPHS / "valid-loop-until.yaml")
    handle = await client.start(graph, {"topic": "tides", "quality": quality, "step": step})
    result = await handle.result()

    assert [s.node for s in result.steps] == reviews(rounds)
    assert result.output["score"] == score
    assert result.output["text"] == "draft on tides" + " (revised)" * (rounds - 1)
    # 'local: false' keeps this routing plan a regular activity.
    assert await local_plan_summaries(client, handle.id) == []
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_the_loop_until_template_counts_rounds_in_the_lifetime_state(
    client: GraphrunnerClient,
) -> None:
    graph = load_graph(GRAPHS / "valid-loop-until-state.yaml")
    handle = await client.start(graph, {"topic": "tides", "quality": 1, "step": 1})
    result = await handle.result()

    assert [s.node for s in result.steps] == reviews(3)
    assert result.output["score"] == 3
    await assert_replays(client.temporal, handle)


# -- PARALLEL edges, a start plan, a FINAL default -------------------------------------------


def fan_graph() -> AgentGraph:
    return (
        GraphBuilder("pick", version="1.0.0")
        .plan("route")
        .task("a", Echo)
        .task("b", Echo)
        .plan("collect", Collect)
        .parallel("route", "a", when="output.a")
        .parallel("route", "b", when="output.b > 1")
        .final("route")
        .join("collect", "a", "b")
        .final("collect")
        .build()
    )


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("data", "ran"),
    [({"a": True, "b": 2}, ["a", "b"]), ({"a": False, "b": 2}, ["b"]), ({"a": True}, ["a"])],
)
async def test_a_routing_plan_fans_out_to_every_parallel_edge_whose_condition_holds(
    client: GraphrunnerClient, data: dict[str, Any], ran: list[str]
) -> None:
    handle = await client.start(fan_graph(), data)
    result = await handle.result()

    assert sorted(result.output) == ran
    assert all(result.output[name]["data"] == data for name in ran)
    assert result.steps[0].next == ran
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_a_routing_plan_takes_its_final_default_with_the_last_output(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(fan_graph(), {"a": False, "b": 1})
    result = await handle.result()

    assert result.output == {"a": False, "b": 1}
    assert [(s.node, s.next) for s in result.steps] == [("route", ["END"])]


# -- routing without a server ------------------------------------------------------------------


def result(node: str, output: Any = None, iteration: int = 1, *, rejected: bool = False) -> Any:
    rejection = Rejection(rule="r", message="m", condition="true") if rejected else None
    return NodeOutput(node=node, iteration=iteration, output=output, rejection=rejection)


ROUTES = """\
name: routes
version: 1.0.0
state:
  tier: {type: string}
  budget: {type: number}
  extra: {type: any}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
  - {name: route, kind: plan}
  - {name: gold, kind: task, impl: tests.nodes:Echo}
  - {name: retry, kind: task, impl: tests.nodes:Echo}
  - {name: cheap, kind: task, impl: tests.nodes:Echo}
  - {name: fallback, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: work, to: route}
  - {from: route, to: retry, when: rejected}
  - {from: route, to: gold, when: 'state.tier == "gold" and state.extra'}
  - {from: route, to: cheap, when: state.budget < 1 or output.cost.usd > 5}
  - {from: route, type: FINAL, when: output.done}
  - {from: route, to: fallback}
  - {from: gold, type: FINAL}
  - {from: retry, type: FINAL}
  - {from: cheap, type: FINAL}
  - {from: fallback, type: FINAL}
"""


@pytest.mark.parametrize(
    ("results", "state", "targets", "data"),
    [
        # The first edge whose condition holds, in declared order.
        ([result("work", {"done": True})], {"tier": "gold", "extra": True}, ["gold"], None),
        ([result("work", {"done": True})], {"budget": 5}, [], {"done": True}),
        ([result("work", {"cost": {"usd": 6}})], {"budget": 5}, ["cheap"], None),
        # The last result decides; a rejected one has no output.
        ([result("work", {"done": True}), result("work", rejected=True)], {}, ["retry"], None),
        # Missing values read as 0, "" or false; a number is no boolean, a string no number.
        ([result("work", {"done": 1, "cost": "9"})], {"budget": 2}, ["fallback"], None),
        ([result("work", None)], None, ["cheap"], None),
    ],
)
def test_a_router_takes_the_first_edge_whose_condition_holds_else_its_default(
    results: list[Any], state: dict[str, Any] | None, targets: list[str], data: Any
) -> None:
    graph = parse_graph(ROUTES)
    route = Router(graph, "route").decide(results, state)

    assert route.targets == targets
    assert route.data == (data if data is not None else results[-1].output)


def test_a_router_reached_by_join_edges_hands_on_every_output_in_order() -> None:
    graph = fan_graph()
    route = Router(graph, "route").decide([result("__input__", {"a": 1}, 0)], None)
    assert route.data == {"a": 1}
    joined = (
        GraphBuilder("joined", version="1.0.0")
        .plan("split", "tests.nodes:FanOutAll")
        .task("a", Echo)
        .task("b", Echo)
        .plan("merge")
        .parallel("split", "a", "b")
        .join("merge", "a", "b")
        .edge("merge", "a", when="count(where rejected) > 0")
        .final("merge")
        .build()
    )
    router = Router(joined, "merge")
    done = router.decide([result("a", 1), result("b", 2)], None)
    assert (done.targets, done.data) == ([], [1, 2])
    again = router.decide([result("a", 1), result("b", rejected=True)], None)
    assert (again.targets, again.data) == (["a"], [1, None])


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("output.score >= 8", ExprType.BOOLEAN),
        ('output.label == "billing"', ExprType.BOOLEAN),
        ("output.approved", ExprType.BOOLEAN),
        ("not output", ExprType.BOOLEAN),
        ("min(output.score) >= 7 and count() == 3", ExprType.BOOLEAN),
        ("output.a.b.c + 1", ExprType.NUMBER),
        ('state.extra == "x" or state.budget > iteration', ExprType.BOOLEAN),
    ],
)
def test_an_output_name_takes_the_type_of_its_use(text: str, kind: ExprType) -> None:
    graph = parse_graph(ROUTES)
    parsed = parse_expression(text, expect=kind, vocabulary=vocabulary(graph.state))
    assert parsed.type is kind
    names = [node for node in walk(parsed.tree) if isinstance(node, Name)]
    assert names and all(name.type is not None for name in names)  # every name settled


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("output.a == output.b", 1, "cannot tell what type 'output.a' and 'output.b' have"),
        ("state.tier > 1", 1, "expected a number before '>', found a string"),
        ("state.rounds > 1", 7, "unknown state field 'rounds'; this graph declares: tier, budget"),
        ("state > 1", 1, "a state field is read whole, as state.<field>"),
        ("node.x == 'a'", 5, "'node' is a string; only output and state have dotted names"),
        ("tokens_used > 1", 1, "unknown name 'tokens_used'; an edge condition reads: output"),
        ("output.", 7, "a dot joins the parts of a name"),
    ],
)
def test_a_bad_condition_says_where_and_what_was_expected(
    text: str, column: int, words: str
) -> None:
    graph = parse_graph(ROUTES)
    with pytest.raises(PolicyError) as raised:
        parse_expression(text, vocabulary=vocabulary(graph.state))
    assert words in raised.value.message
    assert raised.value.column == column


def test_a_graph_without_state_has_no_state_names() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_expression("state.x > 1", vocabulary=vocabulary(None))
    assert "this graph declares no state, so there is no field 'x'" in raised.value.message


def test_when_is_left_out_of_dumps_and_a_yaml_boolean_is_its_expression() -> None:
    graph = parse_graph(ROUTES.replace("when: output.done", "when: true"))
    dumped = graph.model_dump(by_alias=True)
    assert [e.get("when") for e in dumped["edges"] if e["from"] == "route"][3] == "true"
    assert "when" not in dumped["edges"][0]
    # A plan without impl runs as a local activity unless it says otherwise.
    assert graph.node("route").local is True
    assert "impl" not in dumped["nodes"][1]


@pytest.mark.usefixtures("worker")
async def test_an_unvalidated_routing_plan_without_default_fails_its_lifetime(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    graph = fan_graph()
    broken = graph.model_copy(
        update={"edges": [e for e in graph.edges if not (e.source == "route" and not e.when)]}
    )
    # Started as another client (or the temporal CLI) could: no graphrunner validation.
    handle = await env.client.start_workflow(
        LIFETIME_WORKFLOW,
        LifetimeInput(graph=broken, graph_hash=broken.content_hash(), input={}, format=2),
        id=f"unvalidated-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidGraph"
    assert "every edge here has a 'when'" in str(cause) and "[routing]" in str(cause)
    await assert_replays(env.client, handle)


def test_the_mermaid_chart_shows_each_condition_and_the_default() -> None:
    chart = to_mermaid(load_graph(GRAPHS / "valid-when.yaml")).splitlines()
    assert '    route -->|"output.label == #quot;billing#quot;"| billing' in chart
    assert '    route -->|"else"| support' in chart
    assert "    classify --> route" in chart
    assert '    route ==>|"PARALLEL: output.b #gt; 1"| b' in to_mermaid(fan_graph()).splitlines()


def test_a_condition_a_lifetime_could_not_carry_is_refused() -> None:
    text = ROUTES.replace("when: output.done", 'when: "output.name == \\"\\ud800\\""')
    with pytest.raises(GraphError) as raised:
        parse_graph(text, file="g.yaml")
    assert [(i.rule, i.line) for i in raised.value.issues] == [("bad-value", 19)]
