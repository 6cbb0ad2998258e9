"""Guardrails enforced by the worker interceptor, on the real dev server and a real state DB.

Every action (reject, pause, abort) at every scope (execution, lifetime, tenant); pause then
resume, with and without a raised limit; tenant caps under concurrency; bad resume input; the
decisions in the state DB; and replay of every guardrail-laden history.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from graphrunner import (
    AgentGraph,
    GraphBuilder,
    GraphrunnerClient,
    NodeContext,
    NodeOutput,
    Plan,
    PlanResult,
    Settings,
    Task,
    TaskResult,
)
from graphrunner._types import LifetimeResult, Telemetry
from graphrunner.activities import Recorder
from graphrunner.errors import GraphrunnerError
from graphrunner.guardrails import (
    GuardrailStatus,
    Policy,
    PolicySource,
    parse_policy,
)
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import LocalBlobStore, RecordStore
from graphrunner.worker import build_worker
from graphrunner.workflows import AgentLifetimeWorkflow
from tests.conftest import activity_summaries, assert_replays, marker_names
from tests.test_cli_lifetimes import cli_env, graphrunner

TOKENS = 1500  # what each Spend execution reports


class Spend(Task):
    """Reports TOKENS tokens and $0.01 per run, as an LLM call would."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(
            output={"node": ctx.node, "iteration": ctx.iteration, "data": data},
            telemetry=Telemetry(tokens_in=TOKENS - 500, tokens_out=500, cost_usd=0.01, model="m"),
        )


class Loop(Plan):
    """Loops to its first successor up to config.rounds times, then finishes.

    A rejected result ends the lifetime with the rejection, so tests can see what the plan saw.
    """

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        rejected = [r for r in results if r.rejected]
        if rejected:
            r = rejected[-1]
            assert r.rejection is not None
            return PlanResult.finish(
                {"rejected": r.node, "iteration": r.iteration, "rule": r.rejection.rule}
            )
        if ctx.iteration < int(ctx.config.get("rounds", 5)):
            return PlanResult.goto(ctx.successors[0], data=ctx.iteration)
        return PlanResult.finish({"rounds": ctx.iteration})


class PreferRisky(Plan):
    """Chooses 'risky' until a guardrail rejects it, then 'safe' (handing it the rejections)."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        done = [r for r in results if r.node == "safe"]
        if done:
            return PlanResult.finish({"rejections seen": done[0].output})
        if any(r.rejected for r in results):
            return PlanResult.goto("safe", data=_rejections(results))
        return PlanResult.goto("risky")


def _rejections(results: list[NodeOutput]) -> list[dict[str, Any]]:
    return [
        {"node": r.node, "rule": r.rejection.rule, "phase": r.rejection.phase}
        for r in results
        if r.rejection is not None
    ]


class Big(Task):
    """Spends 5,000 tokens."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(output="big", telemetry=Telemetry(tokens_in=5000))


class Small(Task):
    """Spends 100 tokens; hands on what it was given."""

    async def run(self, ctx: NodeContext, data: Any) -> TaskResult:
        return TaskResult(output=data, telemetry=Telemetry(tokens_in=100))


def policy(*rules: str) -> Policy:
    """A policy from flow-style rule mappings."""
    return parse_policy("rules:\n" + "".join(f"  - {rule}\n" for rule in rules))


def loop_graph(name: str, rounds: int = 5, guardrails: Policy | None = None) -> AgentGraph:
    builder = (
        GraphBuilder(name, version="1.0.0")
        .task("work", Spend)
        .plan("decide", Loop, config={"rounds": rounds})
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
    )
    if guardrails is not None:
        builder = builder.guardrails(guardrails)
    return builder.build()


def choice_graph(name: str) -> AgentGraph:
    return (
        GraphBuilder(name, version="1.0.0")
        .plan("choose", PreferRisky)
        .task("risky", Big)
        .task("safe", Small)
        .edge("choose", "risky")
        .edge("choose", "safe")
        .edge("risky", "choose")
        .edge("safe", "choose")
        .final("choose")
        .build()
    )


class FanOutOnce(Plan):
    """Fans out to every successor once, then finishes with what came back."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration == 1:
            return PlanResult.goto(*ctx.successors)
        return PlanResult.finish(
            {
                "ran": sorted(r.node for r in results if not r.rejected),
                "rejected": sorted(r.node for r in results if r.rejected),
            }
        )


def fan_graph(name: str, branches: int = 3) -> AgentGraph:
    names = [f"s{i}" for i in range(1, branches + 1)]
    builder = GraphBuilder(name, version="1.0.0").plan("fan", FanOutOnce)
    for branch in names:
        builder.task(branch, Spend)
    return builder.parallel("fan", *names).join("fan", *names).final("fan").build()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    records = RecordStore(f"sqlite:///{tmp_path / 'state.db'}")
    records.ensure_schema()
    yield records
    records.close()


class Harness:
    """A worker with a state DB and a given global/tenant policy, and a client."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        task_queue: str,
        store: RecordStore,
        *,
        blobs: Path | None = None,
    ) -> None:
        self.temporal: Client = env.client
        self.blobs = blobs
        self.task_queue = task_queue
        self.store = store
        self.client = GraphrunnerClient(
            env.client, settings=Settings(task_queue=task_queue), records=store
        )

    def worker(self, policies: PolicySource | None = None) -> Any:
        recorder = Recorder(
            self.store,
            LocalBlobStore(self.blobs or Path(self.store.url.split("///")[1]).parent / "b"),
            inline_limit=1 << 20,
        )
        return build_worker(
            self.temporal, task_queue=self.task_queue, recorder=recorder, policies=policies
        )

    async def start(
        self, graph: AgentGraph, *, tenant: str = "acme", data: Any = None
    ) -> WorkflowHandle[Any, LifetimeResult]:
        return await self.client.start(
            graph, data, id=f"{graph.name}-{uuid.uuid4().hex[:8]}", tenant=tenant
        )

    async def wait_paused(self, lifetime_id: str, timeout: float = 20) -> GuardrailStatus:
        async with asyncio.timeout(timeout):
            while True:
                status = await self.client.guardrails(lifetime_id)
                if status.paused:
                    return status
                await asyncio.sleep(0.1)


@pytest.fixture
def harness(env: WorkflowEnvironment, task_queue: str, store: RecordStore) -> Harness:
    return Harness(env, task_queue, store)


async def abort_error(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "GuardrailAborted", cause
    assert cause.non_retryable
    return cause


def task_iterations(summaries: list[str], node: str = "work") -> list[int]:
    return [int(s.split(" · ")[1]) for s in summaries if s.startswith(f"{node} · ")]


# -- the seed example -------------------------------------------------------------------------


async def test_token_cap_aborts_a_looping_graph_at_the_execution_that_crossed_it(
    harness: Harness,
) -> None:
    cap = policy(
        "{name: lifetime-token-cap, when: sum(tokens_used) > 10000, scope: lifetime, "
        "action: abort_lifetime, message: token budget exhausted}"
    )
    graph = loop_graph("seed", rounds=50, guardrails=cap)
    async with harness.worker():
        handle = await harness.start(graph)
        error = await abort_error(handle)
    # 1,500 tokens a run: the 7th run makes 10,500, the first total over 10,000.
    assert task_iterations(await activity_summaries(handle)) == [1, 2, 3, 4, 5, 6, 7]
    assert "lifetime-token-cap" in str(error)
    assert "sum(tokens_used) = 10500" in str(error)
    assert "task 'work' (iteration 7)" in str(error)
    decisions = await harness.store.decisions(handle.id)
    assert [(d.rule, d.action, d.phase, d.iteration) for d in decisions] == [
        ("lifetime-token-cap", "abort_lifetime", "after", 7)
    ]
    assert decisions[0].observed == {"sum(tokens_used)": 10500.0}
    info = await harness.client.status(handle.id)
    assert info.status == "failed"
    assert info.failure is not None and "lifetime-token-cap" in info.failure
    await assert_replays(harness.temporal, handle)


# -- each action at each scope ----------------------------------------------------------------

# Each condition first holds before the third run of 'work': the run is in scope, unrun.
THIRD_RUN = {
    "execution": 'kind == "task" and iteration >= 3',
    "lifetime": 'kind == "task" and count(where kind == "task") >= 3',
    "tenant": 'kind == "task" and count(where kind == "task") >= 3',
}


@pytest.mark.parametrize("scope", ["execution", "lifetime", "tenant"])
@pytest.mark.parametrize("action", ["reject_execution", "pause_lifetime", "abort_lifetime"])
async def test_each_action_at_each_scope_stops_the_third_run_before_it_runs(
    harness: Harness, scope: str, action: str
) -> None:
    rule = f"{{name: third, when: '{THIRD_RUN[scope]}', scope: {scope}, action: {action}}}"
    graph = loop_graph(f"{scope}-{action}".replace("_", "-"), rounds=5)
    tenant = f"t-{uuid.uuid4().hex[:6]}"  # a fresh tenant ledger
    async with harness.worker(PolicySource(global_policy=policy(rule))):
        handle = await harness.start(graph, tenant=tenant)
        if action == "abort_lifetime":
            error = await abort_error(handle)
            assert "guardrail 'third'" in str(error)
            assert "task 'work' (iteration 3), before it ran" in str(error)
        elif action == "reject_execution":
            result = await handle.result()
            # The plan that chose the third run saw the rejection and chose again (to finish).
            assert result.output == {"rejected": "work", "iteration": 3, "rule": "third"}
        else:
            status = await harness.wait_paused(handle.id)
            assert [(p.rule, p.node, p.iteration) for p in status.paused] == [("third", "work", 3)]
            assert task_iterations(await activity_summaries(handle)) == [1, 2]
            # A raised limit lets it go on to the end.
            resumed = await harness.client.resume(
                handle.id, when=THIRD_RUN[scope].replace(">= 3", ">= 100")
            )
            assert resumed.resumed == ["third"]
            result = await handle.result()
            assert result.output == {"rounds": 5}
    ran = task_iterations(await activity_summaries(handle))
    assert ran == ([1, 2, 3, 4, 5] if action == "pause_lifetime" else [1, 2])
    decisions = await harness.store.decisions(handle.id)
    assert (decisions[0].rule, decisions[0].action, decisions[0].phase) == (
        "third",
        action,
        "before",
    )
    assert decisions[0].scope == scope
    records = await harness.store.executions(handle.id)
    statuses = [(r.node, r.iteration, r.status.value) for r in records if r.node == "work"]
    if action == "reject_execution":
        assert statuses[-1] == ("work", 3, "rejected")  # recorded, though it never ran
    await assert_replays(harness.temporal, handle)


# -- reject: the plan chooses again -----------------------------------------------------------


async def test_a_rejected_result_is_discarded_and_the_plan_chooses_again(harness: Harness) -> None:
    per_call = policy(
        "{name: big-call, when: tokens_used > 2000, scope: execution, "
        "action: reject_execution, message: one call may use 2000 tokens}"
    )
    async with harness.worker(PolicySource(global_policy=per_call)):
        handle = await harness.start(choice_graph("reject-after"))
        result = await handle.result()
    assert result.output == {
        "rejections seen": [{"node": "risky", "rule": "big-call", "phase": "after"}]
    }
    assert [s.status.value for s in result.steps] == [
        "completed",  # choose
        "rejected",  # risky: ran, result discarded
        "completed",  # choose, again, with the rejection in its input
        "completed",  # safe
        "completed",  # choose finishes
    ]
    records = {(r.node, r.iteration): r for r in await harness.store.executions(handle.id)}
    risky = records[("risky", 1)]
    assert risky.status.value == "rejected"
    assert risky.tokens_in == 5000, "what a rejected call spent stays on the record"
    assert "big-call" in (risky.error or "")
    [decision] = await harness.store.decisions(handle.id)
    assert decision.observed == {"tokens_used": 5000.0}
    assert decision.message == "one call may use 2000 tokens"
    await assert_replays(harness.temporal, handle)


async def test_parallel_branches_count_for_each_other_before_any_of_them_runs(
    harness: Harness,
) -> None:
    two = (
        '{name: two-tasks, when: \'kind == "task" and count(where kind == "task") > 2\', '
        "scope: lifetime, action: reject_execution}"
    )
    async with harness.worker(PolicySource(global_policy=policy(two))):
        handle = await harness.start(fan_graph("fan-budget"))
        result = await handle.result()
    # Three branches were checked one after another before any ran: the third saw the two
    # admitted before it, and the two that ran are not rejected after the fact.
    assert result.output == {"ran": ["s1", "s2"], "rejected": ["s3"]}
    assert sorted(await activity_summaries(handle)) == ["fan · 1", "fan · 2", "s1 · 1", "s2 · 1"]
    decisions = await harness.store.decisions(handle.id)
    assert [(d.rule, d.node, d.phase) for d in decisions] == [("two-tasks", "s3", "before")]
    await assert_replays(harness.temporal, handle)


async def test_a_held_branch_stays_visible_while_its_siblings_start(harness: Harness) -> None:
    hold = "{name: hold-s1, when: 'node == \"s1\"', scope: execution, action: pause_lifetime}"
    async with harness.worker(PolicySource(global_policy=policy(hold))):
        handle = await harness.start(fan_graph("fan-hold"))
        status = await harness.wait_paused(handle.id)
        assert [(p.rule, p.node) for p in status.paused] == [("hold-s1", "s1")]
        # s2 and s3 started after s1 was held (each start names itself in the details); the
        # hold is shown again after them, not overwritten.
        meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert meta.current_details.startswith("**paused** by guardrail **hold-s1** at s1 · 1")
        await harness.client.resume(handle.id)
        result = await handle.result()
        meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert result.output == {"ran": ["s1", "s2", "s3"], "rejected": []}
    assert "paused" not in meta.current_details
    await assert_replays(harness.temporal, handle)


async def test_resume_with_a_new_condition_releases_holds_of_other_rules_too(
    harness: Harness,
) -> None:
    holds = [
        f"{{name: hold-{b}, when: 'node == \"{b}\"', scope: execution, action: pause_lifetime}}"
        for b in ("s1", "s2")
    ]
    async with harness.worker(PolicySource(global_policy=policy(*holds))):
        handle = await harness.start(fan_graph("fan-two-holds"))
        async with asyncio.timeout(20):
            while len((await harness.client.guardrails(handle.id)).paused) < 2:
                await asyncio.sleep(0.05)
        resumed = await harness.client.resume(
            handle.id, rule="hold-s1", when='node == "nowhere"', reason="both fine"
        )
        assert resumed.resumed == ["hold-s1", "hold-s2"]
        assert resumed.replaced == {"hold-s1": 'node == "nowhere"'}
        result = await handle.result()
    assert result.output == {"ran": ["s1", "s2", "s3"], "rejected": []}
    decisions = await harness.store.decisions(handle.id)
    assert sorted((d.rule, d.action) for d in decisions) == [
        ("hold-s1", "pause_lifetime"),
        ("hold-s1,hold-s2", "resume"),
        ("hold-s2", "pause_lifetime"),
    ], "hold-s2 was released, not paused again"
    await assert_replays(harness.temporal, handle)


async def test_a_plan_that_keeps_choosing_rejected_work_is_stopped_by_the_iteration_cap(
    harness: Harness,
) -> None:
    never = policy(
        '{name: no-work, when: node == "work", scope: execution, action: reject_execution}'
    )
    graph = (
        GraphBuilder("stubborn", version="1.0.0")
        .task("work", Spend)
        .plan("decide", StubbornPlan)
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )
    graph = graph.model_copy(
        update={"defaults": graph.defaults.model_copy(update={"max_iterations": 4})}
    )
    async with harness.worker(PolicySource(global_policy=never)):
        handle = await harness.start(graph)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "MaxIterationsExceeded"
    assert task_iterations(await activity_summaries(handle)) == [], "work never ran"
    assert len(await harness.store.decisions(handle.id)) == 4
    await assert_replays(harness.temporal, handle)


class StubbornPlan(Plan):
    """Chooses 'work' whatever happened."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto("work")


# -- pause and resume -------------------------------------------------------------------------


async def test_cost_rule_pauses_visibly_and_resume_with_a_raised_budget_continues(
    harness: Harness,
) -> None:
    budget = policy(
        "{name: cost-cap, when: sum(cost_usd) > 0.025, scope: lifetime, "
        "action: pause_lifetime, message: over budget}"
    )
    graph = loop_graph("pause-cost", rounds=6)
    async with harness.worker(PolicySource(global_policy=budget)):
        handle = await harness.start(graph)
        status = await harness.wait_paused(handle.id)
        [pause] = status.paused
        # $0.01 a run: the third run crossed $0.025.
        assert (pause.rule, pause.node, pause.iteration) == ("cost-cap", "work", 3)
        assert pause.observed == {"sum(cost_usd)": pytest.approx(0.03)}
        info = await harness.client.status(handle.id)
        assert info.status == "running"
        assert [p.rule for p in info.paused] == ["cost-cap"]
        # What the Temporal UI shows as the workflow's current details.
        meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "**paused** by guardrail **cost-cap** at work · 3: over budget" in (
            meta.current_details
        )
        assert "graphrunner resume" in meta.current_details
        await asyncio.sleep(0.5)
        assert task_iterations(await activity_summaries(handle)) == [1, 2, 3], "held"

        # Raise the budget to $0.045: run 4 goes through, run 5 (at $0.05) pauses again.
        await harness.client.resume(handle.id, when="sum(cost_usd) > 0.045", reason="approved")
        status = await harness.wait_paused(handle.id)
        assert [(p.node, p.iteration) for p in status.paused] == [("work", 5)]
        assert status.rules[0]["when"] == "sum(cost_usd) > 0.045"

        # Resuming without a new condition lets the held execution through, and only that
        # one: the plan after it is over budget too.
        await harness.client.resume(handle.id)
        status = await harness.wait_paused(handle.id)
        assert [(p.node, p.iteration) for p in status.paused] == [("decide", 5)]
        await harness.client.resume(handle.id, when="false")
        result = await handle.result()
    assert result.output == {"rounds": 6}
    actions = [(d.rule, d.action) for d in await harness.store.decisions(handle.id)]
    assert actions == [
        ("cost-cap", "pause_lifetime"),
        ("cost-cap", "resume"),
        ("cost-cap", "pause_lifetime"),
        ("cost-cap", "resume"),
        ("cost-cap", "pause_lifetime"),
        ("cost-cap", "resume"),
    ]
    await assert_replays(harness.temporal, handle)


async def test_bad_resume_input_is_refused_and_harms_nothing(harness: Harness) -> None:
    gate = policy(
        "{name: gate, when: 'node == \"work\" and iteration == 2', scope: execution, "
        "action: pause_lifetime}"
    )
    graph = loop_graph("bad-resume", rounds=3)
    async with harness.worker(PolicySource(global_policy=gate)):
        handle = await harness.start(graph)
        with pytest.raises(GraphrunnerError, match="not paused"):
            # Racing the first run: it is not paused yet (iteration 1 passes the gate).
            await harness.client.resume(handle.id)
        await harness.wait_paused(handle.id)
        with pytest.raises(GraphrunnerError, match=r"invalid condition: column 12"):
            await harness.client.resume(handle.id, when="iteration >> 3")
        with pytest.raises(GraphrunnerError, match="no guardrail rule 'nope'"):
            await harness.client.resume(handle.id, rule="nope", when="false")
        # A malformed signal (the temporal CLI can send anything) is dropped.
        await handle.signal("graphrunner.resume", {"when": 42, "surprise": True})
        await asyncio.sleep(0.5)
        still = await harness.client.guardrails(handle.id)
        assert [p.rule for p in still.paused] == ["gate"]
        # A well-formed signal resumes, like the update.
        await handle.signal("graphrunner.resume", {"reason": "from the temporal CLI"})
        result = await handle.result()
    assert result.output == {"rounds": 3}
    await assert_replays(harness.temporal, handle)


async def test_pause_by_hand_holds_the_next_node_until_resumed(harness: Harness) -> None:
    graph = loop_graph("manual", rounds=3)
    async with harness.worker():
        handle = await harness.start(graph)
        await harness.client.pause(handle.id, reason="inspecting")
        status = await harness.wait_paused(handle.id)
        assert [(p.rule, p.message) for p in status.paused] == [("manual-pause", "inspecting")]
        with pytest.raises(GraphrunnerError, match="already paused"):
            await harness.client.pause(handle.id)
        # Once the lifetime reaches its next node, the UI says it is held there (not running).
        async with asyncio.timeout(10):
            while True:
                meta = await handle.query(
                    "__temporal_workflow_metadata", result_type=WorkflowMetadata
                )
                if "**paused** by hand before " in meta.current_details:
                    break
                await asyncio.sleep(0.05)
        assert meta.current_details.endswith(
            f"inspecting\n\nResume with `graphrunner resume {handle.id}`"
        )
        [pause] = (await harness.client.guardrails(handle.id)).paused
        assert pause.node is not None, "the status names the node held"
        assert f"before {pause.node} · {pause.iteration}" in meta.current_details
        held = await activity_summaries(handle)
        await asyncio.sleep(0.3)
        assert await activity_summaries(handle) == held, "nothing runs while paused"
        cli = cli_env(
            TEMPORAL_ADDRESS=harness.temporal.service_client.config.target_host,
            GRAPHRUNNER_TASK_QUEUE=harness.task_queue,
            GRAPHRUNNER_DATABASE_URL=harness.store.url,
        )
        shown = await asyncio.to_thread(graphrunner, "status", handle.id, env=cli)
        assert shown.returncode == 0, shown.stderr
        assert f"paused by hand before {pause.node} · {pause.iteration}: inspecting" in shown.stdout
        await harness.client.resume(handle.id)
        result = await handle.result()
    assert result.output == {"rounds": 3}
    await assert_replays(harness.temporal, handle)


async def test_abort_by_hand_ends_a_running_lifetime_at_once(harness: Harness) -> None:
    async with harness.worker():
        handle = await harness.start(loop_graph("abort-running", rounds=500))
        async with asyncio.timeout(20):
            while len(task_iterations(await activity_summaries(handle))) < 3:
                await asyncio.sleep(0.05)
        decision = await harness.client.abort(handle.id, reason="budget review")
        assert (decision.rule, decision.action) == ("manual-abort", "abort_lifetime")
        error = await abort_error(handle)
        assert "lifetime aborted by hand: budget review" in str(error)
        with pytest.raises(GraphrunnerError, match="cannot abort"):
            await harness.client.abort(handle.id)
    ran = task_iterations(await activity_summaries(handle))
    assert 3 <= len(ran) < 500
    decisions = await harness.store.decisions(handle.id)
    assert [(d.rule, d.message) for d in decisions] == [("manual-abort", "budget review")]
    await assert_replays(harness.temporal, handle)


async def test_cli_aborts_a_paused_lifetime_and_status_says_why(harness: Harness) -> None:
    cli = cli_env(
        TEMPORAL_ADDRESS=harness.temporal.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=harness.task_queue,
        GRAPHRUNNER_DATABASE_URL=harness.store.url,
    )
    async with harness.worker():
        handle = await harness.start(loop_graph("abort-paused", rounds=500))
        await harness.client.pause(handle.id, reason="looks wrong")
        await harness.wait_paused(handle.id)
        done = await asyncio.to_thread(
            graphrunner, "abort", handle.id, "--reason", "runaway loop", env=cli
        )
        assert done.returncode == 0, done.stderr
        assert f"aborted {handle.id}: runaway loop" in done.stdout
        await abort_error(handle)
    shown = await asyncio.to_thread(graphrunner, "status", handle.id, env=cli)
    assert shown.returncode == 0, shown.stderr
    assert "failed: GuardrailAborted: lifetime aborted by hand: runaway loop" in " ".join(
        shown.stdout.split()
    )
    await assert_replays(harness.temporal, handle)


# -- tenant scope -----------------------------------------------------------------------------


async def test_tenant_cap_holds_across_concurrent_lifetimes(harness: Harness) -> None:
    cap = 15 * TOKENS
    rule = (
        f"{{name: tenant-cap, when: sum(tokens_used) > {cap}, scope: tenant, "
        "action: abort_lifetime}"
    )
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    lifetimes = 5
    async with harness.worker(PolicySource(global_policy=policy(rule))):
        handles = [
            await harness.start(loop_graph(f"tenant-{i}", rounds=20), tenant=tenant)
            for i in range(lifetimes)
        ]
        other = await harness.start(loop_graph("other", rounds=3), tenant="someone-else")
        outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
        assert (await other.result()).output == {"rounds": 3}, "another tenant is unaffected"
    assert all(isinstance(o, WorkflowFailureError) for o in outcomes), outcomes
    spent = 0
    for handle in handles:
        spent += sum(r.tokens_in + r.tokens_out for r in await harness.store.executions(handle.id))
    # 100 runs were wanted; the cap allows 15, plus at most one in flight per lifetime: the
    # nodes declare no ceiling, so nothing is reserved (see the tests with ceilings below).
    assert cap < spent <= cap + lifetimes * TOKENS
    usage = await harness.store.tenant_usage(tenant, ["sum(tokens_used)"])
    assert usage["sum(tokens_used)"].total == spent, "the ledger matches the records"
    for handle in handles:
        await assert_replays(harness.temporal, handle)


def ceiling_graph(name: str, rounds: int) -> AgentGraph:
    """The loop graph with declared ceilings: Spend reports TOKENS, the plan nothing."""
    graph = loop_graph(name, rounds=rounds)
    ceilings = {"work": TOKENS, "decide": 0}
    nodes = [n.model_copy(update={"max_tokens": ceilings[n.name]}) for n in graph.nodes]
    return graph.model_copy(update={"nodes": nodes})


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lifetimes", [5, 20])
async def test_a_tenant_cap_holds_exactly_under_concurrency_with_declared_ceilings(
    env: WorkflowEnvironment, task_queue: str, state_db_url: str, tmp_path: Path, lifetimes: int
) -> None:
    store = RecordStore(state_db_url)
    store.ensure_schema()
    harness = Harness(env, task_queue, store, blobs=tmp_path / "blobs")
    cap = 10 * TOKENS
    rule = (
        f"{{name: tenant-cap, when: sum(tokens_used) > {cap}, scope: tenant, "
        "action: abort_lifetime}"
    )
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    try:
        async with harness.worker(PolicySource(global_policy=policy(rule))):
            handles = [
                await harness.start(ceiling_graph(f"budget-{i}", rounds=20), tenant=tenant)
                for i in range(lifetimes)
            ]
            outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
        assert all(isinstance(o, WorkflowFailureError) for o in outcomes), outcomes
        spent = 0
        for handle in handles:
            records = await store.executions(handle.id)
            spent += sum(r.tokens_in + r.tokens_out for r in records)
        # Every execution reserved its ceiling (its actual spend) before it ran, atomically:
        # the cap is never passed, and none of it is left unused.
        assert spent == cap
        usage = await store.tenant_usage(tenant, ["sum(tokens_used)"])
        assert usage["sum(tokens_used)"].total == spent, "the ledger matches the records"
        assert await store.tenant_reservations(tenant) == {}, "every reservation was settled"
        for handle in handles[:3]:
            await assert_replays(harness.temporal, handle)
    finally:
        store.close()


async def test_an_execution_over_its_ceiling_overshoots_by_its_own_overrun_only(
    harness: Harness,
) -> None:
    cap = 10 * TOKENS - 200  # the tenth run's ceiling fits, its actual spend does not
    rule = (
        f"{{name: tenant-cap, when: sum(tokens_used) > {cap}, scope: tenant, "
        "action: abort_lifetime}"
    )
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    graph = ceiling_graph("overrun", rounds=20)
    declared = TOKENS - 500  # Spend reports TOKENS: each run overruns by 500
    nodes = [
        n.model_copy(update={"max_tokens": declared}) if n.name == "work" else n
        for n in graph.nodes
    ]
    async with harness.worker(PolicySource(global_policy=policy(rule))):
        handle = await harness.start(graph.model_copy(update={"nodes": nodes}), tenant=tenant)
        cause = await abort_error(handle)
    spent = sum(r.tokens_in + r.tokens_out for r in await harness.store.executions(handle.id))
    assert cap < spent <= cap + (TOKENS - declared), "past the cap by one run's overrun at most"
    assert "after it ran" in str(cause), "the run that crossed the cap is caught after it ran"
    assert await harness.store.tenant_reservations(tenant) == {}


@pytest.mark.parametrize("reserve", [None, TOKENS])
async def test_a_policy_reserve_stands_in_for_undeclared_ceilings(
    harness: Harness, reserve: int | None
) -> None:
    text = (
        f"rules:\n  - {{name: cap, when: sum(tokens_used) > {2 * TOKENS}, scope: tenant, "
        "action: abort_lifetime}\n"
    )
    if reserve is not None:
        text += f"reserve: {{tokens: {reserve}}}\n"
    graph = loop_graph("reserve", rounds=5)
    nodes = [
        n.model_copy(update={"max_tokens": 0}) if n.name == "decide" else n for n in graph.nodes
    ]
    async with harness.worker(PolicySource(global_policy=parse_policy(text))):
        handle = await harness.start(graph.model_copy(update={"nodes": nodes}))
        cause = await abort_error(handle)
    # With the policy's reserve the third run cannot fit and never runs; with the default
    # (nothing reserved) it runs, and the cap is caught after it.
    ran = task_iterations(await activity_summaries(handle))
    if reserve is None:
        assert ran == [1, 2, 3] and "after it ran" in str(cause)
    else:
        assert ran == [1, 2] and "before it ran" in str(cause)


@pytest.mark.parametrize("exit", ["abort", "cancel", "failure"])
async def test_every_exit_of_a_lifetime_gives_its_reservations_back(
    harness: Harness, tmp_path: Path, exit: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    roomy = "{name: cap, when: sum(tokens_used) > 1e12, scope: tenant, action: abort_lifetime}"
    impl = "tests.nodes:Boom" if exit == "failure" else "tests.nodes:WaitForFile"
    graph = (
        GraphBuilder(f"exit-{exit}", version="1.0.0")
        .task("warm", Spend, max_tokens=TOKENS)
        .plan("go", "tests.nodes:Forward")
        .task("work", impl, config={"gate": str(tmp_path / "never")}, retry={"max_attempts": 1})
        .plan("decide", Loop, config={"rounds": 1})
        .edge("warm", "go")
        .edge("go", "work")
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )
    async with harness.worker(PolicySource(global_policy=policy(roomy))):
        handle = await harness.start(graph, tenant=tenant)
        if exit != "failure":
            async with asyncio.timeout(20):  # "work" runs, holding its reservation
                while "work · 1" not in await activity_summaries(handle):
                    await asyncio.sleep(0.05)
            assert len(await harness.store.tenant_reservations(tenant)) == 1
        if exit == "abort":
            await harness.client.abort(handle.id, reason="enough")
        elif exit == "cancel":
            await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert await harness.store.tenant_reservations(tenant) == {}
    usage = await harness.store.tenant_usage(tenant, ["sum(tokens_used)"])
    assert usage["sum(tokens_used)"].total == TOKENS, "what ran was charged"
    await assert_replays(harness.temporal, handle)


async def test_a_fan_out_branch_settles_while_its_siblings_still_run(
    harness: Harness, tmp_path: Path
) -> None:
    # Its settlement used to wait for the lifetime's next reserve, after the JOIN: a long
    # sibling could outlast the branch's reservation, and its spend then counted nowhere.
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    gate = tmp_path / "gate"
    roomy = "{name: cap, when: sum(tokens_used) > 1e12, scope: tenant, action: abort_lifetime}"
    graph = (
        GraphBuilder("fan-settle", version="1.0.0")
        .plan("split", "tests.nodes:FanOutAll")
        .task("quick", Spend, max_tokens=TOKENS)
        .task("slow", "tests.nodes:WaitForFile", config={"gate": str(gate)}, max_tokens=TOKENS)
        .plan("merge", "tests.nodes:Collect")
        .parallel("split", "quick", "slow")
        .join("merge", "quick", "slow")
        .final("merge")
        .build()
    )
    async with harness.worker(PolicySource(global_policy=policy(roomy))):
        handle = await harness.start(graph, tenant=tenant)
        usage: dict[str, Any] = {}
        async with asyncio.timeout(20):  # "quick" done and settled while "slow" waits
            while not usage or usage["sum(tokens_used)"].total < TOKENS:
                await asyncio.sleep(0.05)
                usage = await harness.store.tenant_usage(tenant, ["sum(tokens_used)"])
        held = await harness.store.tenant_reservations(tenant)
        assert len(held) == 1, "only the running branch still holds a reservation"
        gate.write_text("go")
        await handle.result()
    assert await harness.store.tenant_reservations(tenant) == {}
    await assert_replays(harness.temporal, handle)


async def test_a_worker_without_a_state_db_refuses_tenant_rules_it_cannot_check(
    harness: Harness, tmp_path: Path
) -> None:
    # The lifetime pinned a ledger on a worker with a state DB; a worker without one used to
    # answer every reserve with "nothing fired" and let it spend unchecked.
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    gate = tmp_path / "gate"
    cap = "{name: cap, when: sum(tokens_used) > 1e12, scope: tenant, action: abort_lifetime}"
    policies = PolicySource(global_policy=policy(cap))
    graph = (
        GraphBuilder("no-ledger", version="1.0.0")
        .task("hold", "tests.nodes:WaitForFile", config={"gate": str(gate)})
        .plan("go", "tests.nodes:Forward")
        .task("work", Spend, max_tokens=TOKENS)
        .plan("decide", Loop, config={"rounds": 1})
        .edge("hold", "go")
        .edge("go", "work")
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )
    async with harness.worker(policies):
        handle = await harness.start(graph, tenant=tenant)
        async with asyncio.timeout(20):
            while "hold · 1" not in await activity_summaries(handle):
                await asyncio.sleep(0.05)
        await harness.client.pause(handle.id, reason="moving workers")
        gate.write_text("go")
        await harness.wait_paused(handle.id)
    bare = build_worker(
        harness.temporal, task_queue=harness.task_queue, recorder=None, policies=policies
    )
    async with bare:
        await harness.client.resume(handle.id, reason="on a worker without records")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "GRAPHRUNNER_RECORD" in str(failure.value.cause), failure.value.cause
    usage = await harness.store.tenant_usage(tenant, ["sum(tokens_used)"])
    assert usage["sum(tokens_used)"].total == 0, "nothing ran unchecked"


async def local_activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Summaries of the local activities in a lifetime's history (marker events)."""
    history = await handle.fetch_history()
    return [
        event.user_metadata.summary.data.decode().strip('"')
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        and event.user_metadata.HasField("summary")
    ]


async def test_a_tenant_rule_costs_one_local_activity_per_execution(harness: Harness) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    roomy = "{name: cap, when: sum(tokens_used) > 1e12, scope: tenant, action: abort_lifetime}"
    async with harness.worker(PolicySource(global_policy=policy(roomy))):
        handle = await harness.start(loop_graph("ledger", rounds=4), tenant=tenant)
        assert (await handle.result()).output == {"rounds": 4}
    markers = await local_activity_summaries(handle)
    # 8 executions: each reserve settles the one before it; the last is settled as the
    # lifetime ends.
    assert markers == ["guardrails · policy"] + ["guardrails · tenant reserve"] * 9
    usage = await harness.store.tenant_usage(tenant, ["sum(tokens_used)"])
    assert usage["sum(tokens_used)"].total == 4 * TOKENS  # the plans spend nothing
    assert await harness.store.tenant_reservations(tenant) == {}
    await assert_replays(harness.temporal, handle)

    # That first read is real: a new lifetime of a tenant already over a cap stops at once.
    tight = (
        f"{{name: cap, when: sum(tokens_used) > {TOKENS}, scope: tenant, action: abort_lifetime}}"
    )
    async with harness.worker(PolicySource(global_policy=policy(tight))):
        late = await harness.start(loop_graph("late", rounds=4), tenant=tenant)
        cause = await abort_error(late)
    assert "before it ran" in str(cause) and f"{4 * TOKENS}" in str(cause)
    assert await activity_summaries(late) == []
    await assert_replays(harness.temporal, late)


async def test_tenant_rules_need_a_state_db(env: WorkflowEnvironment, task_queue: str) -> None:
    rule = "{name: t, when: count() > 1, scope: tenant, action: abort_lifetime}"
    client = GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))
    policies = PolicySource(global_policy=policy(rule))
    async with build_worker(env.client, task_queue=task_queue, policies=policies, recorder=None):
        handle = await client.start(loop_graph("no-db", rounds=2))
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "GuardrailConfigError"
    assert "state DB" in str(failure.value.cause)


async def test_a_graph_tenant_rule_is_counted_with_a_state_db_and_refused_without(
    harness: Harness, env: WorkflowEnvironment, task_queue: str
) -> None:
    rule = "{name: t, when: count() > 100, scope: tenant, action: abort_lifetime}"
    graph = loop_graph("graph-tenant", rounds=2, guardrails=policy(rule))
    async with harness.worker():  # a state DB, no worker layers
        handle = await harness.start(graph)
        assert (await handle.result()).output == {"rounds": 2}
    # The ledger is pinned with the (empty) layers, so a replay anywhere agrees.
    assert (await local_activity_summaries(handle))[0] == "guardrails · policy"
    await assert_replays(harness.temporal, handle)

    client = GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))
    async with build_worker(env.client, task_queue=task_queue, recorder=None):  # no state DB
        refused = await client.start(graph)
        with pytest.raises(WorkflowFailureError) as failure:
            await refused.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "GuardrailConfigError"
    assert await _markers(refused) == [], "refused at start, before any local activity"
    await assert_replays(harness.temporal, refused)


# -- layers -----------------------------------------------------------------------------------


async def test_a_graph_policy_cannot_loosen_a_global_rule_but_a_tenant_override_can(
    harness: Harness,
) -> None:
    strict = "{name: cap, when: sum(tokens_used) > 3000, scope: lifetime, action: abort_lifetime}"
    loose = "{name: cap, when: sum(tokens_used) > 100000, scope: lifetime, action: abort_lifetime}"
    graph = loop_graph("layers", rounds=4, guardrails=policy(loose))
    policies = PolicySource(global_policy=policy(strict), tenant_policies={"vip": policy(loose)})
    async with harness.worker(policies):
        handle = await harness.start(graph, tenant="acme")
        error = await abort_error(handle)
        assert "sum(tokens_used) = 4500" in str(error), "the global rule held"
        vip = await harness.start(graph, tenant="vip")
        assert (await vip.result()).output == {"rounds": 4}, "the tenant override applied"
    await assert_replays(harness.temporal, handle)
    await assert_replays(harness.temporal, vip)


async def _markers(handle: WorkflowHandle[Any, Any]) -> list[str]:
    return marker_names(await handle.fetch_history())


ROOMY = "{name: roomy, when: sum(tokens_used) > 1e12, scope: lifetime, action: abort_lifetime}"


async def test_a_lifetime_without_layers_starts_quietly_and_replays_where_layers_were_added(
    harness: Harness,
) -> None:
    async with harness.worker():  # no global or tenant layer
        handle = await harness.start(loop_graph("quiet", rounds=2))
        assert (await handle.result()).output == {"rounds": 2}
    assert await _markers(handle) == [], "no patch marker and no local activity"
    # The worker has gained a global policy since: the lifetime still replays (the marker
    # is absent, so the layers are not asked for).
    gained = PolicySource(global_policy=policy(ROOMY))
    await _replayer(gained).replay_workflow(await handle.fetch_history())


async def test_a_lifetime_under_worker_layers_pins_them_and_replays_anywhere(
    harness: Harness,
) -> None:
    async with harness.worker(PolicySource(global_policy=policy(ROOMY))):
        handle = await harness.start(loop_graph("pinned", rounds=2))
        assert (await handle.result()).output == {"rounds": 2}
    assert await _markers(handle) == ["core_patch", "core_local_activity"]
    assert await local_activity_summaries(handle) == ["guardrails · policy"]
    history = await handle.fetch_history()
    await _replayer().replay_workflow(history)  # a worker with no layers: taken from history
    other = PolicySource(tenant_policies={"acme": policy(ROOMY)})
    await _replayer(other).replay_workflow(history)


# -- the CLI ----------------------------------------------------------------------------------


async def test_cli_shows_the_pause_resumes_with_a_raised_limit_and_lists_decisions(
    harness: Harness, env: WorkflowEnvironment, task_queue: str
) -> None:
    cap = policy(
        "{name: cost-cap, when: sum(cost_usd) > 0.015, scope: lifetime, "
        "action: pause_lifetime, message: needs approval}"
    )
    cli = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
        GRAPHRUNNER_DATABASE_URL=harness.store.url,
    )
    async with harness.worker(PolicySource(global_policy=cap)):
        handle = await harness.start(loop_graph("cli-pause", rounds=3))
        await harness.wait_paused(handle.id)
        shown = await asyncio.to_thread(graphrunner, "status", handle.id, env=cli)
        assert shown.returncode == 0, shown.stderr
        assert "paused by guardrail cost-cap at work · 2: needs approval" in shown.stdout
        assert "sum(cost_usd) = 0.02" in shown.stdout
        bad = await asyncio.to_thread(
            graphrunner, "resume", handle.id, "--when", "sum(cost_usd) >", env=cli
        )
        assert bad.returncode != 0
        assert "invalid condition" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        resumed = await asyncio.to_thread(
            graphrunner, "resume", handle.id, "--when", "sum(cost_usd) > 1", env=cli
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "rule cost-cap is now: sum(cost_usd) > 1" in resumed.stdout
        assert (await handle.result()).output == {"rounds": 3}
    listed = await asyncio.to_thread(graphrunner, "history", handle.id, "--json", env=cli)
    assert listed.returncode == 0, listed.stderr
    decisions = json.loads(listed.stdout)["decisions"]
    assert [(d["rule"], d["action"]) for d in decisions] == [
        ("cost-cap", "pause_lifetime"),
        ("cost-cap", "resume"),
    ]
    assert decisions[1]["condition"] == "cost-cap: sum(cost_usd) > 1"
    table = await asyncio.to_thread(graphrunner, "history", handle.id, env=cli)
    assert "guardrail decisions" in table.stdout and "pause_lifetime" in table.stdout


async def test_a_paused_lifetime_survives_its_worker_and_resumes_on_another(
    harness: Harness,
) -> None:
    gate = policy(
        '{name: approve-publish, when: node == "work" and iteration == 2, scope: execution, '
        "action: pause_lifetime, message: a human approves the second run}"
    )
    policies = PolicySource(global_policy=gate)
    graph = loop_graph("restart", rounds=2)
    async with harness.worker(policies):
        handle = await harness.start(graph)
        await harness.wait_paused(handle.id)
    # No worker now: the pause is durable state in Temporal, not in a process.
    info = await harness.client.status(handle.id)
    assert info.status == "running" and info.paused == [], "no worker answers the query"
    async with harness.worker(policies):  # a fresh worker rebuilds the pause by replay
        status = await harness.wait_paused(handle.id)
        assert [(p.rule, p.node, p.iteration) for p in status.paused] == [
            ("approve-publish", "work", 2)
        ]
        await harness.client.resume(handle.id, reason="approved")
        assert (await handle.result()).output == {"rounds": 2}
    assert task_iterations(await activity_summaries(handle)) == [1, 2]
    await assert_replays(harness.temporal, handle)


def test_a_worker_with_a_bad_policy_stops_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "global.yaml"
    bad.write_text(
        "rules:\n  - name: cap\n    when: sum(tokens_used) >> 3\n"
        "    scope: lifetime\n    action: abort_lifetime\n"
    )
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tenants / "acme.yaml").write_text("rules:\n  - {name: x, when: 'count() > 1', scope: team}\n")
    nowhere = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # never reached: the policy is checked first
    done = graphrunner("worker", env=cli_env(GRAPHRUNNER_POLICY=str(bad), **nowhere))
    assert done.returncode == 2
    assert f"{bad}:3:29: rule 'cap': when: expected a value" in done.stderr
    done = graphrunner("worker", env=cli_env(GRAPHRUNNER_TENANT_POLICIES=str(tenants), **nowhere))
    assert done.returncode == 2
    assert str(tenants / "acme.yaml") in done.stderr
    assert "scope" in done.stderr and "action" in done.stderr, done.stderr


# -- compatibility ----------------------------------------------------------------------------


# Histories of format 1 (graphrunner before 0.2), recorded with an earlier interceptor. This
# graphrunner runs format 2 only: such a lifetime stalls, visibly, until a worker of its own
# version runs it (it is never run with different guardrail semantics).
OLD_HISTORIES = ["fan-count-v0", "tenant-rule-v0"]

# Histories recorded by the current code (tests/record_histories.py makes them): a change to
# the interceptor that changes what it records fails here, before it reaches running lifetimes.
CURRENT_HISTORIES = {
    "tenant-rule-v2": "a worker's tenant cap: a reserve per execution, a verdict, a settle",
    "fan-count-v2": "a graph's count rule over a fan-out, with no worker layers (no marker)",
    "pause-resume-v2": "a pause, then a resume with a raised limit",
    # Recorded by graphrunner before cancellations were recorded as decisions (5259227):
    # a lifetime with guardrails cancelled while its node ran.
    "cancelled-v1-before-cancel-records": "a cancellation from before it was recorded",
    # Started with the five search attributes, run by a worker from before it upserted them
    # (5259227): a new worker taking over such a lifetime must not add upserts.
    "attributes-v1-before-upserts": "a lifetime an older worker ran with the new attributes",
}


def _replayer(policies: PolicySource | None = None) -> Replayer:
    """A replayer whose worker has ``policies`` (they matter only to lifetimes it starts)."""
    return Replayer(
        workflows=[AgentLifetimeWorkflow], plugins=[GraphrunnerPlugin(policies=policies)]
    )


def _fixture(name: str) -> WorkflowHistory:
    # Histories from older graphrunners (one per workflow.patched id) live with the golden
    # histories in tests/histories/patches (tests/test_golden_histories.py checks the set).
    here = Path(__file__).parent
    found = here / "histories" / "patches" / f"{name}.json"
    if not found.exists():
        found = here / "fixtures" / "histories" / f"{name}.json"
    return WorkflowHistory.from_json(name, found.read_text())


@pytest.mark.parametrize("name", OLD_HISTORIES)
async def test_a_lifetime_of_an_older_input_format_is_refused_naming_the_format(name: str) -> None:
    result = await _replayer().replay_workflow(_fixture(name), raise_on_replay_failure=False)
    failure = str(result.replay_failure)
    assert "UnsupportedHistory" in failure or "input has format 1" in failure, failure
    assert "input has format 1" in failure and "format 2 only" in failure, failure


@pytest.mark.parametrize("name", sorted(CURRENT_HISTORIES))
async def test_a_lifetime_recorded_by_the_current_interceptor_replays(name: str) -> None:
    result = await _replayer().replay_workflow(_fixture(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, CURRENT_HISTORIES[name]
