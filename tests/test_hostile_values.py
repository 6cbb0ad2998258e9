"""Odd and hostile values at every edge: inputs, node results, graphs, CLI text.

Each case once hung a lifetime, crashed with a traceback, or printed something false.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

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
)
from graphrunner._types import LifetimeInput
from graphrunner._values import BadValue, check_value, parse_json
from graphrunner.errors import GraphError
from graphrunner.workflows import LIFETIME_WORKFLOW
from tests.conftest import ROOT, assert_replays
from tests.test_cli_lifetimes import cli_env, graphrunner

pytestmark = pytest.mark.usefixtures("worker")


class Returns(Task):
    """Returns the value named by ``config.value`` (values JSON cannot say)."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        kind = ctx.config["value"]
        values: dict[str, Any] = {
            "huge-int": {"x": 10**5000},
            "nan": {"x": float("nan")},
            "inf": [1.0, float("-inf")],
            "deep": _nested(500),
        }
        return values[kind]


class Finish(Plan):
    """Finishes with what it was given."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish([r.output for r in results])


class FinishWithNaN(Plan):
    """Finishes with a NaN in the lifetime's output."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.finish({"score": float("nan")})


class Keyed(Task):
    """Fails its first attempt; reports its idempotency key on every attempt."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        seen = Path(ctx.config["log"])
        with seen.open("a") as log:
            log.write(f"{ctx.node} {ctx.iteration} {ctx.attempt} {ctx.idempotency_key}\n")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails after its side effect")
        return ctx.idempotency_key


class Twice(Plan):
    """Runs 'work' twice, then finishes."""

    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        return PlanResult.goto("work") if ctx.iteration < 3 else PlanResult.finish("done")


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def returning(kind: str) -> AgentGraph:
    return (
        GraphBuilder(f"returns-{kind}", version="1.0.0")
        .task("make", Returns, config={"value": kind})
        .plan("finish", Finish)
        .edge("make", "finish")
        .final("finish")
        .build()
    )


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("huge-int", "the integer at $.x has more than 4,000 digits"),
        ("nan", "$.x is nan"),
        ("inf", "$[1] is -inf"),
        ("deep", "nests deeper than 100 levels"),
    ],
)
async def test_a_result_the_workflow_cannot_take_fails_the_node_at_once(
    client: GraphrunnerClient, kind: str, where: str
) -> None:
    handle = await client.start(returning(kind), None)
    with pytest.raises(WorkflowFailureError) as failure:
        async with asyncio.timeout(30):  # it used to hang: a workflow task failing forever
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "NodeFailed"
    assert "node 'make' (task, iteration 1) failed: BadNodeResult:" in str(cause)
    assert where in str(cause)
    info = await client.status(handle.id)
    assert info.status == "failed" and info.stalled is None
    await assert_replays(client.temporal, handle)


async def test_a_plan_output_with_nan_fails_the_plan_not_the_reader(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("plan-nan", version="1.0.0")
        .plan("finish", FinishWithNaN)
        .final("finish")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "plan 'finish' (iteration 1) returned output that a lifetime cannot carry" in str(
        failure.value.cause
    )
    assert "$.score is nan" in str(failure.value.cause)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "$ is nan"),
        ({"a": [1, float("inf")]}, "$.a[1] is inf"),
        (10**4001, "more than 4,000 digits"),
        (_nested(101), "nests deeper than 100 levels"),
        (object(), "$ is not JSON-serialisable"),
    ],
)
async def test_the_client_refuses_an_input_no_lifetime_could_carry(
    client: GraphrunnerClient, value: Any, message: str
) -> None:
    with pytest.raises(BadValue, match=message.replace("$", r"\$").replace("[", r"\[")):
        await client.start(returning("nan"), value, id=f"never-{uuid.uuid4().hex[:6]}")


def test_values_within_the_bounds_are_accepted() -> None:
    check_value({"n": 10**3999, "f": 1e308, "deep": _nested(99), "s": "NaN"}, "x")
    assert parse_json('{"a": [1, 2.5, null, "x"]}', "x") == {"a": [1, 2.5, None, "x"]}


# -- the CLI's --input ------------------------------------------------------------------------

EXAMPLE = str(ROOT / "examples" / "research.yaml")


@pytest.fixture
def server_env(env: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "--input: NaN is not JSON"),
        ('{"x": Infinity}', "--input: Infinity is not JSON"),
        ("1e999", "--input: $ is inf"),
        ("[" * 5000 + "]" * 5000, "--input: nests deeper than 100 levels"),
        ("{nope", "--input is not valid JSON"),
    ],
    ids=["nan", "infinity", "overflow", "deep", "malformed"],
)
def test_cli_refuses_bad_input_in_one_line(
    server_env: dict[str, str], text: str, message: str
) -> None:
    done = graphrunner("run", EXAMPLE, "--input", text, env=server_env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]


async def test_cli_reads_input_from_a_file_and_from_stdin(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    # ~200 KB: over Linux's 128 KiB limit on one argument, under the blob-store threshold
    big = {"topic": "files", "notes": ["x" * 1000] * 200}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(big))
    done = await asyncio.to_thread(
        graphrunner, "run", EXAMPLE, "--input", f"@{path}", "--wait", "--json", env=server_env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"]["approved"] is True

    import subprocess
    import sys

    piped = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "graphrunner", "run", EXAMPLE, "--input", "-", "--wait", "--json"],
        cwd=ROOT,
        env=server_env,
        input=json.dumps({"topic": "stdin"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    steps = json.loads(piped.stdout)["steps"]
    assert steps[0]["node"] == "gather"

    missing = graphrunner("run", EXAMPLE, "--input", "@/no/such/file.json", env=server_env)
    assert missing.returncode == 1
    assert "--input @/no/such/file.json: cannot read the file" in missing.stderr
    assert "Traceback" not in missing.stderr


# -- the graph that runs is the graph that was validated --------------------------------------


class Echo(Task):
    async def run(self, ctx: NodeContext, data: Any) -> Any:
        return data


def task_to_task() -> AgentGraph:
    """Two tasks in a row: breaks tick-tock alternation. Built without validation."""
    return AgentGraph.model_validate(
        {
            "name": "task-to-task",
            "version": "1.0.0",
            "nodes": [
                {"name": "a", "kind": "task", "impl": "tests.test_hostile_values:Echo"},
                {"name": "b", "kind": "task", "impl": "tests.test_hostile_values:Echo"},
            ],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "type": "FINAL"}],
        }
    )


async def test_the_client_validates_a_graph_before_starting_it(client: GraphrunnerClient) -> None:
    with pytest.raises(GraphError, match=r"\[alternation\]"):
        await client.start(task_to_task(), None)


async def test_a_worker_refuses_to_run_a_graph_that_was_never_validated(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    graph = task_to_task()
    # Started as another client (or the temporal CLI) could: no graphrunner validation.
    handle = await env.client.start_workflow(
        LIFETIME_WORKFLOW,
        LifetimeInput(graph=graph, graph_hash=graph.content_hash(), input=1, tenant="t", format=2),
        id=f"unvalidated-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidGraph"
    assert "graph 'task-to-task' 1.0.0 is invalid, so no node of it runs" in str(cause)
    assert "[alternation]" in str(cause)
    history = await handle.fetch_history()
    scheduled = [
        e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == [], "no node ran"
    await assert_replays(env.client, handle)


async def test_a_lifetime_of_another_input_format_waits_for_its_worker(
    env: WorkflowEnvironment, client: GraphrunnerClient, worker: None, task_queue: str
) -> None:
    """An input written by an older graphrunner stalls, visibly; it is never run differently."""
    graph = task_to_task()
    handle = await env.client.start_workflow(
        LIFETIME_WORKFLOW,
        LifetimeInput(graph=graph, graph_hash=graph.content_hash(), input=1, tenant="t", format=1),
        id=f"old-format-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    async with asyncio.timeout(30):
        while not (info := await client.status(handle.id)).stalled:
            await asyncio.sleep(0.1)
    assert info.status == "running", "another format must not fail the lifetime"
    assert "input has format 1" in info.stalled and "runs format 2 only" in info.stalled
    scheduled = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == [], "no node ran"
    await handle.terminate("test over")


async def test_a_graph_beyond_the_models_bounds_fails_the_lifetime_instead_of_hanging(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    """A graph JSON the worker cannot even decode (e.g. from an old or foreign client)."""
    graph = returning("nan").model_dump(mode="json", by_alias=True)
    graph["max_attempts_typo"] = 1  # an unknown key: the model forbids extras
    payload = {"graph": graph, "graph_hash": "0" * 64, "input": None, "tenant": "t"}
    handle = await env.client.start_workflow(
        LIFETIME_WORKFLOW,
        payload,
        id=f"undecodable-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        async with asyncio.timeout(30):
            await handle.result()
    assert "ValidationError" in repr(failure.value.cause) or "validation error" in str(
        failure.value.cause
    )
    assert pydantic_data_converter is not None


async def test_an_impl_outside_the_allowed_modules_is_never_imported(
    env: WorkflowEnvironment, task_queue: str, client: GraphrunnerClient
) -> None:
    from graphrunner.worker import build_worker

    graph = (
        GraphBuilder("zen", version="1.0.0")
        .task("zen", "this:Zen")  # importing 'this' prints the Zen of Python
        .plan("finish", Finish)
        .edge("zen", "finish")
        .final("finish")
        .build(check_imports=False)
    )
    other_queue = f"{task_queue}-allow"
    async with build_worker(
        env.client, task_queue=other_queue, impl_modules=["tests"], recorder=None
    ):
        handle = await client.start(graph, None, task_queue=other_queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "'this:Zen' is not in a module this worker may import" in str(failure.value.cause)
    assert "GRAPHRUNNER_IMPL_MODULES=tests" in str(failure.value.cause)


def test_the_allow_list_setting_is_read_from_the_environment() -> None:
    settings = Settings.from_env({"GRAPHRUNNER_IMPL_MODULES": "myagents, tools.safe ,"})
    assert settings.impl_prefixes() == ("myagents", "tools.safe")
    assert Settings.from_env({}).impl_prefixes() is None


# -- an idempotency key for side effects ------------------------------------------------------


async def test_every_attempt_of_an_execution_sees_the_same_idempotency_key(
    client: GraphrunnerClient, tmp_path: Path
) -> None:
    log = tmp_path / "attempts.log"
    graph = (
        GraphBuilder("keyed", version="1.0.0")
        .plan("decide", Twice)
        .task("work", Keyed, config={"log": str(log)}, retry={"initial_interval_s": 0.1})
        .edge("decide", "work")
        .edge("work", "decide")
        .final("decide")
        .build()
    )
    handle = await client.start(graph, None)
    assert (await handle.result()).output == "done"
    rows = [line.split() for line in log.read_text().splitlines()]
    by_iteration: dict[str, set[str]] = {}
    for _, iteration, _, key in rows:
        by_iteration.setdefault(iteration, set()).add(key)
    assert [len(rows), sorted(by_iteration)] == [4, ["1", "2"]]  # two attempts each
    assert all(len(keys) == 1 for keys in by_iteration.values()), "stable across attempts"
    assert by_iteration["1"] != by_iteration["2"], "distinct per execution"
    assert next(iter(by_iteration["1"])).startswith(f"{handle.id}/")


# -- operator messages are bounded too --------------------------------------------------------


async def test_an_overlong_reason_is_refused_and_harms_nothing(
    client: GraphrunnerClient, tmp_path: Path
) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from graphrunner.errors import GraphrunnerError

    gate = tmp_path / "gate"
    graph = (
        GraphBuilder("reasons", version="1.0.0")
        .task("wait", "tests.nodes:WaitForFile", config={"gate": str(gate), "tag": "t"})
        .plan("finish", Finish)
        .edge("wait", "finish")
        .final("finish")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(GraphrunnerError, match="cannot pause: reason: String should have at most"):
        await client.pause(handle.id, reason="x" * 5000)
    # The same through the raw update (the temporal CLI or the Web UI can send anything).
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("graphrunner.pause", {"reason": "x" * 5000})
    gate.touch()
    result = await handle.result()
    assert result.output == [{"tag": "t"}]
    await assert_replays(client.temporal, handle)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "x" * 1001, "a lifetime id must have 1 to 1000 characters, not 1001"),
        ("id", "a\nb", "a lifetime id may not contain control characters"),
        ("tenant", "t" * 256, "a tenant must have 1 to 255 characters, not 256"),
        ("tenant", "", "a tenant must have 1 to 255 characters, not 0"),
    ],
)
async def test_ids_and_tenants_the_server_or_state_db_would_refuse_are_refused_first(
    client: GraphrunnerClient, field: str, value: str, message: str
) -> None:
    from graphrunner.errors import GraphrunnerError

    with pytest.raises(GraphrunnerError, match=message):
        await client.start(returning("nan"), None, **{field: value})


def test_settings_the_server_would_refuse_fail_at_start_naming_the_variable() -> None:
    from graphrunner.errors import GraphrunnerError

    for var, value in [
        ("GRAPHRUNNER_PAYLOAD_THRESHOLD_BYTES", "-1"),
        ("GRAPHRUNNER_DEV_PORT", "70000"),
        ("GRAPHRUNNER_WAIT_RECONNECT_S", "nan"),
    ]:
        with pytest.raises(GraphrunnerError, match=f"bad setting {var}"):
            Settings.from_env({var: value})


# -- failures too large to report, and text JSON cannot carry ---------------------------------


class Loud(Task):
    """Fails with a message of ``config.size`` characters."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        raise RuntimeError("x" * int(ctx.config["size"]))


class Surrogate(Task):
    """Returns a string with a lone surrogate, which UTF-8 cannot encode."""

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        return {"text": "broken \ud800 text"}


async def test_a_node_failing_with_a_huge_message_fails_the_lifetime_not_the_server(
    client: GraphrunnerClient,
) -> None:
    graph = (
        GraphBuilder("loud", version="1.0.0")
        .task("loud", Loud, config={"size": 1_100_000}, retry={"max_attempts": 1})
        .plan("finish", Finish)
        .edge("loud", "finish")
        .final("finish")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as failure:
        async with asyncio.timeout(60):  # it used to stall: the failure was over 2 MiB
            await handle.result()
    message = str(failure.value.cause)
    assert "node 'loud' (task, iteration 1) failed: RuntimeError: xxx" in message
    assert "more characters cut)" in message
    assert len(message) < 10_000
    info = await client.status(handle.id)
    assert info.status == "failed" and info.stalled is None


async def test_an_invalid_graph_with_thousands_of_problems_fails_in_a_bounded_message(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    long = "n" * 60
    graph = AgentGraph.model_validate(
        {
            "name": "many-problems",
            "version": "1.0.0",
            "nodes": [{"name": "a", "kind": "task", "impl": "tests.nodes:Echo"}],
            "edges": [
                *({"from": f"{long}{i}", "to": f"{long}x{i}"} for i in range(3000)),
                {"from": "a", "type": "FINAL"},
            ],
        }
    )
    handle = await env.client.start_workflow(
        LIFETIME_WORKFLOW,
        LifetimeInput(
            graph=graph, graph_hash=graph.content_hash(), input=None, tenant="t", format=2
        ),
        id=f"many-problems-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        async with asyncio.timeout(60):
            await handle.result()
    message = str(failure.value.cause)
    assert "graph 'many-problems' 1.0.0 is invalid, so no node of it runs" in message
    assert "'graphrunner validate' lists them all" in message
    assert "more" in message and len(message) < 20_000


async def test_lone_surrogates_are_refused_at_every_edge(
    client: GraphrunnerClient, server_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(BadValue, match="lone surrogate"):
        await client.start(returning("nan"), {"x": "\udc00"})
    done = graphrunner("run", EXAMPLE, "--input", '"\\ud800"', env=server_env)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "--input: $ holds '\\ud800', a lone surrogate" in line

    graph = (
        GraphBuilder("surrogate", version="1.0.0")
        .task("make", Surrogate)
        .plan("finish", Finish)
        .edge("make", "finish")
        .final("finish")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "BadNodeResult" in str(failure.value.cause)
    assert "$.text holds '\\ud800', a lone surrogate" in str(failure.value.cause)

    path = tmp_path / "graph.yaml"
    path.write_text(
        'name: s\nversion: 1.0.0\ndescription: "\\ud800"\n'
        'nodes:\n  - {name: a, kind: task, impl: "tests.nodes:Echo", config: {x: "\\udc00"}}\n'
        "edges:\n  - {from: a, type: FINAL}\n"
    )
    checked = graphrunner("validate", str(path), env=server_env)
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert f"{path}:3: graph description: $ holds '\\ud800', a lone surrogate" in checked.stderr
    assert "config: $.x holds '\\udc00'" in checked.stderr
