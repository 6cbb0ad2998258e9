"""LifetimeGuard without a server: running tallies, severity, waivers and replaced rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from graphrunner.guardrails import parse_policy
from graphrunner.guardrails._eval import Tally
from graphrunner.guardrails._guard import LifetimeGuard, Phase, execution_row

AGGREGATE_RULES = [
    "sum(tokens_used) > 900",
    'count(where node == "a") >= 3',
    'avg(cost_usd where kind == "task") > 0.5',
    "max(latency_ms) - min(latency_ms) > 100",
    'sum(tokens_in where node != "b") / count() > 40',
    "count(tokens_out > 10) > 2 and not (max(iteration) > 6)",
]


def guard_for(
    *whens: str, scope: str = "lifetime", action: str = "abort_lifetime"
) -> LifetimeGuard:
    rules = "".join(
        f"  - {{name: r{i}, when: '{w}', scope: {scope}, action: {action}}}\n"
        for i, w in enumerate(whens)
    )
    return LifetimeGuard(parse_policy("rules:\n" + rules))


rows = st.builds(
    lambda node, kind, it, tin, tout, cost, lat: execution_row(
        node=node,
        kind=kind,
        iteration=it,
        status="succeeded",
        telemetry={"tokens_in": tin, "tokens_out": tout, "cost_usd": cost, "latency_ms": lat},
    ),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["task", "plan"]),
    st.integers(1, 9),
    st.integers(0, 400),
    st.integers(0, 40),
    st.floats(0, 2, allow_nan=False),
    st.floats(0, 300, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(history=st.lists(rows, max_size=25), current=rows)
def test_running_tallies_decide_exactly_as_evaluating_every_execution(
    history: list[dict[str, Any]], current: dict[str, Any]
) -> None:
    for when in AGGREGATE_RULES:
        guard = guard_for(when)
        for row in history:
            guard.fold(row, 0.0)
        rule = guard.policy.rules[0]
        expected = rule.fires(current=current, executions=[*history, current])
        verdict = guard.check(Phase.AFTER, current, execution_id="x", elapsed_s=0.0)
        assert (verdict is not None) == expected, when


def test_the_most_severe_action_wins_then_the_first_listed() -> None:
    policy = parse_policy(
        "rules:\n"
        "  - {name: r1, when: tokens_used > 1, scope: execution, action: reject_execution}\n"
        "  - {name: p1, when: tokens_used > 1, scope: execution, action: pause_lifetime}\n"
        "  - {name: p2, when: tokens_used > 1, scope: execution, action: pause_lifetime}\n"
    )
    guard = LifetimeGuard(policy)
    row = execution_row(
        node="a", kind="task", iteration=1, status="succeeded", telemetry={"tokens_in": 5}
    )
    verdict = guard.check(Phase.AFTER, row, execution_id="e1", elapsed_s=0)
    assert verdict is not None and verdict.rule.name == "p1"
    assert verdict.observed == {"tokens_used": 5.0}


def test_a_waiver_lets_one_execution_through_one_rule() -> None:
    guard = guard_for("tokens_used > 1", scope="execution", action="pause_lifetime")
    row = execution_row(
        node="a", kind="task", iteration=1, status="succeeded", telemetry={"tokens_in": 5}
    )
    guard.waive("r0", "e1")
    assert guard.check(Phase.AFTER, row, execution_id="e1", elapsed_s=0) is None
    assert guard.check(Phase.AFTER, row, execution_id="e2", elapsed_s=0) is not None


def test_a_replaced_rule_is_recomputed_over_the_whole_lifetime() -> None:
    guard = guard_for("sum(tokens_used) > 100")
    for i in range(1, 4):
        guard.fold(
            execution_row(
                node="a", kind="task", iteration=i, status="succeeded", telemetry={"tokens_in": 50}
            ),
            0,
        )
    # A new aggregate (a filter the old rule did not have) must count the past executions.
    replacement = parse_policy(
        "rules:\n  - {name: r0, when: 'sum(tokens_used where node == \"a\") > 160', "
        "scope: lifetime, action: abort_lifetime}\n"
    ).rules[0]
    guard.replace_rule(replacement)
    nxt = execution_row(node="a", kind="task", iteration=4, status="scheduled")
    assert guard.check(Phase.BEFORE, nxt, execution_id="e4", elapsed_s=0) is None  # 150
    done = execution_row(
        node="a", kind="task", iteration=4, status="succeeded", telemetry={"tokens_in": 20}
    )
    verdict = guard.check(Phase.AFTER, done, execution_id="e4", elapsed_s=0)
    assert verdict is not None
    assert verdict.observed == {'sum(tokens_used where node == "a")': 170.0}


def test_before_scheduling_the_execution_counts_but_has_spent_nothing() -> None:
    guard = guard_for('count(where node == "s") > 2', "sum(tokens_used) > 100")
    for i in (1, 2):
        guard.fold(
            execution_row(
                node="s", kind="task", iteration=i, status="succeeded", telemetry={"tokens_in": 50}
            ),
            0,
        )
    third = execution_row(node="s", kind="task", iteration=3, status="scheduled")
    verdict = guard.check(Phase.BEFORE, third, execution_id="e3", elapsed_s=0)
    assert verdict is not None and verdict.rule.name == "r0"  # the count, not the tokens (100)


def test_tenant_totals_before_scheduling_include_the_execution() -> None:
    guard = guard_for("count() >= 3", scope="tenant")
    assert list(guard.tenant_keys) == ["count()"]
    row = execution_row(node="a", kind="task", iteration=1, status="scheduled")
    two = {"count()": Tally(count=2)}
    assert guard.check(Phase.BEFORE, row, execution_id="e", elapsed_s=0, tenant=two) is not None
    assert guard.check(Phase.AFTER, row, execution_id="e", elapsed_s=0, tenant=two) is None


@settings(max_examples=200, deadline=None)
@given(
    seen=st.lists(st.floats(allow_nan=True), max_size=5),
    value=st.floats(allow_nan=True),
    counts=st.booleans(),
)
def test_a_value_with_one_more_execution_equals_adding_it(
    seen: list[float], value: float, counts: bool
) -> None:
    for func in ("sum", "count", "min", "max", "avg"):
        tally = Tally()
        for v in seen:
            tally.add(v)
        before = repr(tally)
        predicted = tally.value_with(func, value, counts)
        assert repr(tally) == before  # left unchanged
        tally.add(value, counts)
        assert repr(predicted) == repr(tally.value(func)), func


def test_fan_out_siblings_admitted_before_any_runs_count_for_each_other() -> None:
    guard = guard_for('node == "s" and count(where node == "s") > 5', action="reject_execution")
    for i in range(1, 5):
        guard.fold(execution_row(node="s", kind="task", iteration=i, status="succeeded"), 0)
    branches = {
        eid: execution_row(node="s", kind="task", iteration=5, status="scheduled")
        for eid in ("a", "b", "c")
    }
    admitted = []
    for eid, row in branches.items():  # the interceptor checks them one after another
        if guard.check(Phase.BEFORE, row, execution_id=eid, elapsed_s=0) is None:
            guard.admit(eid, row, 0)
            admitted.append(eid)
    assert admitted == ["a"]  # the 5th search fits; a 6th and 7th alongside it do not
    done = execution_row(node="s", kind="task", iteration=5, status="succeeded")
    assert guard.check(Phase.AFTER, done, execution_id="a", elapsed_s=0) is None
    guard.fold(done, 0, execution_id="a")
    nxt = execution_row(node="s", kind="task", iteration=6, status="scheduled")
    assert guard.check(Phase.BEFORE, nxt, execution_id="d", elapsed_s=0) is not None


def test_a_dropped_execution_stops_counting() -> None:
    guard = guard_for("count() > 1")
    row = execution_row(node="s", kind="task", iteration=1, status="scheduled")
    guard.admit("a", row, 0)
    assert guard.check(Phase.BEFORE, row, execution_id="b", elapsed_s=0) is not None
    guard.drop("a")
    assert guard.check(Phase.BEFORE, row, execution_id="b", elapsed_s=0) is None


def test_tenant_deltas_are_numbers_the_ledger_can_store() -> None:
    guard = guard_for(
        "sum(cost_usd * 1e308 * 10) > 1", "sum(-cost_usd * 1e308 * 10) > 1", scope="tenant"
    )
    row = execution_row(
        node="a", kind="task", iteration=1, status="succeeded", telemetry={"cost_usd": 1.0}
    )
    deltas = guard.tenant_contributions(row, 0.0)
    assert sorted(deltas.values()) == [
        (-1.7976931348623157e308, True),
        (1.7976931348623157e308, True),
    ]


def test_observed_values_come_from_the_frame_the_rule_fired_on() -> None:
    # Lifetime totals (with the execution being checked), bare fields, both sides of each
    # comparison outside aggregates; an infinite value is reported as text (JSON has none).
    guard = guard_for(
        'sum(tokens_used) + 1 > tokens_out * 2 and node == "a" and cost_usd * 1e308 * 10 > 0'
    )
    guard.fold(
        execution_row(
            node="a", kind="task", iteration=1, status="succeeded", telemetry={"tokens_in": 7}
        ),
        0,
    )
    row = execution_row(
        node="a",
        kind="task",
        iteration=2,
        status="succeeded",
        telemetry={"tokens_in": 3, "tokens_out": 2, "cost_usd": 1.0},
    )
    verdict = guard.check(Phase.AFTER, row, execution_id="e2", elapsed_s=0)
    assert verdict is not None
    assert verdict.observed == {
        "sum(tokens_used) + 1": 13.0,
        "tokens_out * 2": 4.0,
        "node": "a",
        "cost_usd * 1e+308 * 10": "inf",  # sub-expressions are named in canonical form
    }
