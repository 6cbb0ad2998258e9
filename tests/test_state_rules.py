"""Guardrail rules read declared number fields of the lifetime state (issue 11, point 1).

``state.<field>`` in a rule reads the state an execution was called with (``call.state``).
A graph's own policy may read only fields it declares as numbers; a worker's rule over a
field a graph does not declare as a number does not apply to that graph's lifetimes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient
from graphrunner.errors import PolicyError
from graphrunner.graph import load_graph, parse_graph
from graphrunner.guardrails import PolicySource, parse_expression, parse_policy, policy_json_schema
from graphrunner.guardrails._guard import LifetimeGuard, Phase, execution_row
from graphrunner.guardrails._policy import for_state
from graphrunner.guardrails._wire import TenantReserveInput
from graphrunner.worker import build_worker
from tests.conftest import activity_summaries, assert_replays

RULES = """\
rules:
  - {name: spend-cap, when: state.spent > 10, scope: execution, action: abort_lifetime}
  - {name: peak, when: max(state.spent) >= 7, scope: lifetime, action: pause_lifetime}
"""


def row(**state: object) -> dict[str, object]:
    return execution_row(node="work", kind="task", iteration=1, status="scheduled", state=state)


def test_a_rule_reads_a_number_field_of_the_state_the_execution_was_called_with() -> None:
    guard = LifetimeGuard(parse_policy(RULES))

    assert guard.check(Phase.BEFORE, row(spent=3), execution_id="e1", elapsed_s=0) is None
    verdict = guard.check(Phase.BEFORE, row(spent=12.5), execution_id="e2", elapsed_s=0)
    assert verdict is not None and verdict.rule.name == "spend-cap"
    assert verdict.observed == {"state.spent": 12.5}


def test_inside_an_aggregate_state_is_as_each_execution_saw_it() -> None:
    guard = LifetimeGuard(parse_policy(RULES))
    guard.fold(row(spent=8), 0.0)  # an earlier execution saw 8
    verdict = guard.check(Phase.BEFORE, row(spent=2), execution_id="e", elapsed_s=0)
    assert verdict is not None and verdict.rule.name == "peak"
    assert verdict.observed == {"max(state.spent)": 8.0}


@pytest.mark.parametrize(
    "state",
    [{}, {"spent": "20"}, {"spent": True}, {"spent": None}, {"spent": [20]}, {"spent": 10**400}],
)
def test_a_missing_or_non_number_field_reads_as_zero(state: dict[str, object]) -> None:
    cap = parse_policy(RULES).rule("spend-cap")
    assert cap.fires(current=row(**state)) is False
    assert parse_expression("state.spent == 0").evaluate(current=row(**state)) is True


def test_the_tenant_ledger_activity_takes_a_row_with_state() -> None:
    # The reserve activity's input holds the row as numbers and strings: state must fit it.
    inp = TenantReserveInput.model_validate({"tenant": "t", "keys": [], "row": row(spent=3)})
    assert inp.row["state.spent"] == 3


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("state > 1", 1, "a state field is read as state.<field>"),
        ("state.a.b > 1", 1, "a state field is read as state.<field>"),
        ("state.spent == 'x'", 13, "cannot compare a number with a string"),
        ("cost_usd.total > 1", 9, "attribute access is not supported"),
    ],
)
def test_state_names_in_rules_are_checked_when_the_policy_loads(
    text: str, column: int, words: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_expression(text)
    assert words in raised.value.message
    assert raised.value.column == column


STATE_GRAPH = """\
name: stateful
version: 1.0.0
state:
  spent: {type: number, reducer: add, default: 0}
  label: {type: string}
  retries: {type: integer}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: work, type: FINAL}
"""
PLAIN_GRAPH = """\
name: plain
version: 1.0.0
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: work, type: FINAL}
"""


def test_worker_rules_apply_only_to_graphs_that_declare_their_fields_as_numbers() -> None:
    policy = parse_policy(
        RULES
        + "  - {name: labels, when: state.label > 0, scope: execution, action: abort_lifetime}\n"
        + "  - {name: plain, when: iteration > 5, scope: execution, action: abort_lifetime}\n"
    )
    declared = parse_graph(STATE_GRAPH).state

    assert [r.name for r in for_state(policy, declared).rules] == ["spend-cap", "peak", "plain"]
    assert [r.name for r in for_state(policy, None).rules] == ["plain"]


# -- on the dev server ------------------------------------------------------------------------

ALWAYS = "rules:\n  - {name: no-retries, when: state.retries >= 0, scope: execution, " + (
    "action: abort_lifetime}\n"
)


async def test_a_worker_rule_over_an_undeclared_state_field_leaves_lifetimes_alone(
    env: WorkflowEnvironment, task_queue: str, client: GraphrunnerClient
) -> None:
    # 'state.retries >= 0' holds whenever it applies (a missing value reads as 0): it
    # aborts the graph that declares 'retries' and never touches the one that does not.
    policies = PolicySource(global_policy=parse_policy(ALWAYS))
    plain = parse_graph(PLAIN_GRAPH)
    declared = parse_graph(STATE_GRAPH)
    async with build_worker(env.client, task_queue=task_queue, policies=policies, recorder=None):
        untouched = await client.start(plain, {"x": 1})
        assert (await untouched.result()).output["data"] == {"x": 1}
        stopped = await client.start(declared, {"x": 1})
        with pytest.raises(WorkflowFailureError) as failure:
            await stopped.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "GuardrailAborted"
    assert "guardrail 'no-retries'" in str(cause) and "state.retries = 0" in str(cause)
    assert await activity_summaries(stopped) == []
    await assert_replays(env.client, untouched)
    await assert_replays(env.client, stopped)


LOOP = """\
name: spender
version: 1.0.0
guardrails: cap.yaml
state:
  spent: {type: number, reducer: add, default: 0}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Update, config: {update: {spent: 5}}}
  - {name: decide, kind: plan, impl: tests.nodes:LoopThenFinish, config: {rounds: 5}}
edges:
  - {from: work, to: decide}
  - {from: decide, to: work}
  - {from: decide, type: FINAL}
"""


@pytest.mark.usefixtures("worker")
async def test_a_graph_rule_over_its_state_aborts_when_the_state_crosses_it(
    client: GraphrunnerClient, tmp_path: Path
) -> None:
    (tmp_path / "cap.yaml").write_text(
        "rules:\n  - {name: budget, when: state.spent >= 10, scope: execution, "
        "action: abort_lifetime, message: spent it all}\n"
    )
    (tmp_path / "spender.yaml").write_text(LOOP)
    handle = await client.start(load_graph(tmp_path / "spender.yaml"), None)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    # Two runs of 'work' spent 10: the next execution, decide's second, never runs.
    assert isinstance(cause, ApplicationError) and cause.type == "GuardrailAborted"
    assert "plan 'decide' (iteration 2), before it ran" in str(cause)
    assert "state.spent = 10" in str(cause)
    await assert_replays(client.temporal, handle)


def test_the_policy_schema_documents_state_fields() -> None:
    rule = policy_json_schema()["$defs"]["Rule"]["properties"]["when"]
    assert "state.<field>, a number or integer field" in rule["description"]
