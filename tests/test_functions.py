"""Function nodes (@task, @plan), shared resources, and impls no worker could import."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphError, GraphrunnerClient, Resources, resource
from graphrunner.worker import build_worker
from tests import fn_nodes
from tests.conftest import activity_summaries, assert_replays

ROOT = Path(__file__).resolve().parent.parent


def fetch_graph(**fetch_options: object) -> GraphBuilder:
    return (
        GraphBuilder("functions", version="1.0.0")
        .task("fetch", fn_nodes.fetch, **fetch_options)
        .plan("route", fn_nodes.route)
        .task("shout", fn_nodes.shout)
        .plan("finish", fn_nodes.finish, local=True)
        .edge("fetch", "route")
        .edge("route", "fetch")
        .edge("route", "shout")
        .edge("shout", "finish")
        .final("finish")
    )


@pytest.mark.usefixtures("worker")
async def test_function_task_and_plan_run_a_lifetime(client: GraphrunnerClient) -> None:
    graph = fetch_graph().build()
    assert [n.impl for n in graph.nodes] == [
        "tests.fn_nodes:fetch",
        "tests.fn_nodes:route",
        "tests.fn_nodes:shout",
        "tests.fn_nodes:finish",
    ]
    handle = await client.start(graph, {"text": "q", "limit": 1})
    result = await handle.result()

    # fetch took its input as a Query (limit defaulted, then counted up), shout got no ctx
    assert result.output == ["AGAIN #0 AGAIN #1"]
    assert await activity_summaries(handle) == [
        "fetch · 1",
        "route · 1",
        "fetch · 2",
        "route · 2",
        "shout · 1",
        "finish · 1",
    ]
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_bad_input_names_node_and_field_and_is_not_retried(
    client: GraphrunnerClient,
) -> None:
    graph = fetch_graph(retry={"max_attempts": 5, "initial_interval_s": 0.01}).build()
    handle = await client.start(graph, {"text": "q", "limit": "many"})
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    message = str(cause)
    assert "node 'fetch' (task, iteration 1) failed" in message
    inner = cause.__cause__
    while inner is not None and inner.__cause__ is not None:
        inner = inner.__cause__
    assert inner is not None
    assert getattr(inner, "type", None) == "BadNodeInput"
    assert "task 'fetch' (iteration 1) cannot take its input as Query" in str(inner)
    assert "field 'limit'" in str(inner) and "'many'" in str(inner)
    history = await handle.fetch_history()
    starts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert starts == [1]  # five attempts allowed; one made


async def test_resource_is_created_once_per_worker_and_closed_on_shutdown(
    env: WorkflowEnvironment, client: GraphrunnerClient, task_queue: str
) -> None:
    fn_nodes.Pool.opened = fn_nodes.Pool.closed = 0
    worker = build_worker(env.client, task_queue=task_queue, recorder=None)
    activities = worker.config(active_config=True).get("activities", [])
    nodes = next(fn.__self__ for fn in activities if fn.__name__ == "run_task")  # type: ignore[attr-defined]
    graph = (
        GraphBuilder("pooled", version="1.0.0")
        .task("start", fn_nodes.use_pool)
        .plan("fan", fn_nodes.fan)
        .task("a", fn_nodes.use_pool)
        .task("b", fn_nodes.use_pool)
        .task("c", fn_nodes.use_pool)
        .plan("again", fn_nodes.fan_again)
        .edge("start", "fan")
        .parallel("fan", "a", "b", "c")
        .join("again", "a", "b", "c")
        .edge("again", "start")
        .final("again")
        .build()
    )
    async with worker:
        handles = [await client.start(graph, None) for _ in range(3)]
        outputs = await asyncio.gather(*(h.result() for h in handles))
        assert fn_nodes.Pool.closed == 0
    # 3 lifetimes x 3 rounds x 4 tasks, the first three branches racing the slow connect
    assert fn_nodes.Pool.opened == 1
    assert len({pool_id for out in outputs for pool_id in out.output}) == 1
    assert fn_nodes.Pool.closed == 1, "the worker's shutdown closes its resources"
    with pytest.raises(RuntimeError, match="closed"):
        await nodes.resources.get(fn_nodes.pool)


async def test_resource_creation_that_fails_is_tried_again() -> None:
    attempts: list[int] = []

    @resource
    async def flaky():  # type: ignore[no-untyped-def]
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("down")
        yield "up"

    held = Resources()
    with pytest.raises(ConnectionError):
        await held.get(flaky)
    assert await asyncio.gather(*(held.get(flaky) for _ in range(5))) == ["up"] * 5
    assert len(attempts) == 2
    await held.aclose()


def test_validation_accepts_decorated_functions_and_refuses_others() -> None:
    with pytest.raises(GraphError) as info:
        (
            GraphBuilder("wrong", version="1.0.0")
            .task("plain", "tests.fn_nodes:undecorated")
            .plan("swapped", fn_nodes.fetch)
            .task("as_task", fn_nodes.route)
            .edge("plain", "swapped")
            .edge("swapped", "as_task")
            .edge("as_task", "swapped")
            .final("swapped")
            .build()
        )
    shown = {i.where: (i.rule, i.message) for i in info.value.issues}
    assert shown == {
        "node 'plain'": (
            "impl-kind",
            "'tests.fn_nodes:undecorated' is a function not decorated with "
            "@graphrunner.task; decorate it (a task node needs a subclass of "
            "graphrunner.Task or an @task function)",
        ),
        "node 'swapped'": (
            "impl-kind",
            "'tests.fn_nodes:fetch' is an @task function; a plan node needs a subclass of "
            "graphrunner.Plan or an @plan function",
        ),
        "node 'as_task'": (
            "impl-kind",
            "'tests.fn_nodes:route' is an @plan function; a task node needs a subclass of "
            "graphrunner.Task or an @task function",
        ),
    }


def test_decorators_refuse_what_cannot_be_a_node() -> None:
    from graphrunner import task

    def sync(data: object) -> object:
        return data

    with pytest.raises(TypeError, match="needs an 'async def' function"):
        task(sync)

    async def three(ctx: object, data: object, more: object) -> None:
        return None

    with pytest.raises(TypeError, match=r"must take \(ctx, data\), \(data\) or \(ctx\)"):
        task(three)


def test_impl_defined_in_the_starting_script_is_refused_at_build(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from graphrunner import GraphBuilder, GraphError, NodeContext, PlanResult, plan, task

            @task
            async def work(ctx: NodeContext, data: object) -> object:
                return data

            @plan
            async def done(ctx: NodeContext, results: list) -> PlanResult:
                return PlanResult.finish()

            try:
                GraphBuilder("script").task("work", work).plan("done", done).edge(
                    "work", "done").final("done").build()
            except GraphError as exc:
                for issue in exc.issues:
                    print(issue)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's graphrunner
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == [
        f"<builder>: node '{name}': cannot import '__main__:{name}': '{name}' is defined in the "
        "script being run (__main__), which a worker, another process, cannot import; move it "
        f"into a module and name it as 'module:{name}' [impl-import]"
        for name in ("work", "done")
    ]
