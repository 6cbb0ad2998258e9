"""Exit contracts of a lifetime: every exit path waits for message handlers.

A resume or pause that lands around the last node must complete for its caller (never
``AcceptedUpdateCompletedWorkflow``) and the lifetime must finish cleanly, on the real dev
server, with local and non-local plans, and across a few hundred resumes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from graphrunner import GraphBuilder, NodeContext, NodeOutput, Plan, PlanResult, Task
from graphrunner._types import Telemetry
from graphrunner.guardrails import PolicySource
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import RecordStore
from tests.conftest import assert_replays
from tests.swapped_workflows import LocalPlansLifetime, WallClockLifetime
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_guardrails import Harness, Spend, policy


@pytest.fixture
async def harness(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    store = RecordStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.ensure_schema()
    yield Harness(env, task_queue, store)
    store.close()


class FinishOnce(Plan):
    """Finishes at once with the tokens it saw (a plan whose decision ends the lifetime)."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        decision = PlanResult.finish({"saw": [r.node for r in results]})
        decision.telemetry = Telemetry(tokens_in=7)
        return decision


class SlowLast(Task):
    """The lifetime's last node: takes a moment, so a pause can land while it runs."""

    async def run(self, ctx: NodeContext, data: Any) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return {"last": True}


def plan_last(name: str, *, local: bool) -> Any:
    """work -> decide -> FINAL: the plan's decision ends the lifetime."""
    return (
        GraphBuilder(name, version="1.0.0")
        .task("work", Spend)
        .plan("decide", FinishOnce, local=local)
        .edge("work", "decide")
        .final("decide")
        .build()
    )


def task_last(name: str) -> Any:
    """decide -> last (FINAL): a task ends the lifetime."""
    return (
        GraphBuilder(name, version="1.0.0")
        .plan("decide", Forwarding)
        .task("last", SlowLast)
        .edge("decide", "last")
        .final("last")
        .build()
    )


class Forwarding(Plan):
    """Chooses its only successor."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto(ctx.successors[0])


# The plan's result (7 tokens, after it ran) crosses the cap: the pause lands after the
# lifetime's last node ran, and the resume releases the decision that finishes it.
AFTER_LAST = policy(
    "{name: plan-tokens, when: 'kind == \"plan\" and tokens_used > 5', scope: execution, "
    "action: pause_lifetime}"
)


@pytest.mark.parametrize("local", [False, True], ids=["activity-plan", "local-plan"])
async def test_resume_of_a_pause_after_the_last_node_completes_for_the_caller(
    harness: Harness, local: bool
) -> None:
    graph = plan_last(f"resume-last-{'local' if local else 'remote'}", local=local)
    async with harness.worker(PolicySource(global_policy=AFTER_LAST)):
        handle = await harness.start(graph)
        status = await harness.wait_paused(handle.id)
        assert [(p.rule, p.node) for p in status.paused] == [("plan-tokens", "decide")]
        resumed = await harness.client.resume(handle.id, reason="fine")
        assert resumed.resumed == ["plan-tokens"]
        result = await handle.result()
    assert result.output == {"saw": ["work"]}
    actions = [(d.rule, d.action) for d in await harness.store.decisions(handle.id)]
    assert actions == [("plan-tokens", "pause_lifetime"), ("plan-tokens", "resume")]
    await assert_replays(harness.temporal, handle)


async def test_a_pause_sent_during_the_last_node_completes_and_the_lifetime_finishes(
    harness: Harness,
) -> None:
    async with harness.worker():
        handle = await harness.start(task_last("pause-during-last"))
        async with asyncio.timeout(20):
            while not (await harness.client.status(handle.id)).running:
                await asyncio.sleep(0.02)
        # The last node is running: the pause holds nothing more, and must still complete.
        info = await harness.client.pause(handle.id, reason="too late")
        assert info.message == "too late"
        result = await handle.result()
    assert result.output == {"last": True}
    await assert_replays(harness.temporal, handle)


async def test_a_few_hundred_resumes_of_the_last_decision_all_complete(harness: Harness) -> None:
    """The race the resume handler had with the workflow's completion, run many times."""
    rounds = 150
    graphs = [plan_last("resume-many-remote", local=False), plan_last("resume-many", local=True)]
    failures: list[str] = []
    async with harness.worker(PolicySource(global_policy=AFTER_LAST)):

        async def one(i: int) -> None:
            graph = graphs[i % 2]
            handle = await harness.client.start(
                graph, None, id=f"{graph.name}-{uuid.uuid4().hex[:8]}", tenant="acme"
            )
            await harness.wait_paused(handle.id, timeout=60)
            try:
                await harness.client.resume(handle.id)
                await handle.result()
            except Exception as exc:  # collect every failure, then report them together
                failures.append(f"{handle.id}: {type(exc).__name__}: {exc}")

        limit = asyncio.Semaphore(10)

        async def bounded(i: int) -> None:
            async with limit:
                await one(i)

        await asyncio.gather(*(bounded(i) for i in range(rounds * 2)))
    assert failures == []


async def test_an_abort_after_a_running_resume_fails_the_lifetime_cleanly(
    harness: Harness,
) -> None:
    """The interceptor's own exit (abort by hand) also waits for handlers."""
    async with harness.worker(PolicySource(global_policy=AFTER_LAST)):
        handle = await harness.start(plan_last("abort-while-paused", local=True))
        await harness.wait_paused(handle.id)
        await harness.client.abort(handle.id, reason="stop")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "lifetime aborted by hand: stop" in str(failure.value.cause)
    await assert_replays(harness.temporal, handle)


# -- SDK errors stall a lifetime; they never fail it -------------------------------------------


class Count(Plan):
    """Loops to 'work' three times, then finishes."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        if ctx.iteration < 3:
            return PlanResult.goto("work")
        return PlanResult.finish({"rounds": ctx.iteration})


SECOND_WORK = policy(
    "{name: hold, when: 'node == \"work\" and iteration == 2', scope: execution, "
    "action: pause_lifetime}"
)


@pytest.mark.parametrize(
    ("swapped", "expected"),
    [
        (LocalPlansLifetime, "NON_DETERMINISTIC_ERROR"),
        (WallClockLifetime, "datetime.datetime.now"),
    ],
    ids=["routes-differently", "restricted-access"],
)
async def test_a_bad_deploy_stalls_the_lifetime_visibly_and_the_fixed_one_finishes_it(
    harness: Harness, swapped: type, expected: str
) -> None:
    graph = (
        GraphBuilder(f"bad-deploy-{swapped.__name__.lower()}", version="1.0.0")
        .task("work", Spend)
        .plan("decide", Count)
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )
    policies = PolicySource(global_policy=SECOND_WORK)
    async with harness.worker(policies):
        handle = await harness.start(graph)
        await harness.wait_paused(handle.id)
    # The same task queue, served by a worker whose lifetime code differs.
    plugin = GraphrunnerPlugin(policies=policies)
    async with Worker(
        harness.temporal, task_queue=harness.task_queue, workflows=[swapped], plugins=[plugin]
    ):
        await handle.signal("graphrunner.resume", {"reason": "go on"})
        async with asyncio.timeout(30):
            while not (info := await harness.client.status(handle.id)).stalled:
                await asyncio.sleep(0.1)
        assert info.status == "running", "an SDK error must not fail the lifetime"
        assert expected in info.stalled
        cli = cli_env(
            TEMPORAL_ADDRESS=harness.temporal.service_client.config.target_host,
            GRAPHRUNNER_TASK_QUEUE=harness.task_queue,
        )
        shown = await asyncio.to_thread(graphrunner, "status", handle.id, env=cli)
        assert shown.returncode == 0, shown.stderr
        assert "stalled: workflow task failing since" in shown.stdout
        assert expected in shown.stdout
    # The fixed deploy picks the lifetime up where it stalled.
    async with harness.worker(policies):
        result = await handle.result()
    assert result.output == {"rounds": 3}
    assert (await harness.client.status(handle.id)).stalled is None
    await assert_replays(harness.temporal, handle)


async def test_cancelling_a_lifetime_asks_its_running_node_to_cancel(
    harness: Harness, tmp_path: Path
) -> None:
    graph = (
        GraphBuilder("cancel-running", version="1.0.0")
        .plan("decide", Forwarding)
        .task(
            "wait",
            "tests.nodes:WaitForFile",
            config={"gate": str(tmp_path / "never"), "tag": "t"},
            heartbeat_timeout_s=1,
        )
        .edge("decide", "wait")
        .final("wait")
        .build()
    )
    async with harness.worker():
        handle = await harness.start(graph)
        async with asyncio.timeout(20):
            while not (await harness.client.status(handle.id)).running:
                await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    history = await handle.fetch_history()
    asked = [
        e for e in history.events if e.HasField("activity_task_cancel_requested_event_attributes")
    ]
    assert len(asked) == 1, "the running node was asked to cancel"
    assert (await harness.client.status(handle.id)).status == "canceled"
