"""GraphrunnerPlugin, the slim node call, and the API a programmer reaches for first."""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner._types import RUN_PLAN, RUN_TASK
from graphrunner.client import connect_temporal
from graphrunner.guardrails._interceptor import GuardrailInterceptor
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.worker import build_worker
from graphrunner.workflows import AgentLifetimeWorkflow
from tests.nodes import Echo, ForgetGraphs, LoopThenFinish


def loop(name: str = "plug", rounds: int = 2) -> Any:
    return (
        GraphBuilder(name, version="1.0.0")
        .task("work", Echo, config={"note": "x" * 300})
        .plan("decide", LoopThenFinish, config={"rounds": rounds})
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
        .build()
    )


async def scheduled_inputs(client: Client, lifetime_id: str) -> list[tuple[str, Any]]:
    """(activity type, decoded JSON input) of every node activity the lifetime scheduled."""
    found = []
    async for event in client.get_workflow_handle(lifetime_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name in (RUN_TASK, RUN_PLAN):
                payload = attrs.input.payloads[0]
                found.append((attrs.activity_type.name, json.loads(payload.data)))
    return found


@pytest.mark.usefixtures("worker")
async def test_a_node_call_carries_only_what_the_worker_cannot_derive(
    client: GraphrunnerClient,
) -> None:
    graph = loop()
    handle = await client.start(graph, {"q": 1})
    result = await handle.result()
    assert result.output["iterations"] == 2
    calls = await scheduled_inputs(client.temporal, handle.id)
    assert [kind for kind, _ in calls] == [RUN_TASK, RUN_PLAN] * 2
    for _, call in calls:
        # Not the node spec (its impl, config, retry policy), not the graph's name, version
        # or successors: the worker finds those in the pinned graph by hash.
        # Nor execution ids (derived from lifetime, run, node and iteration), nor fields at
        # their defaults.
        assert set(call) <= {
            "graph",
            "tenant",
            "node",
            "iteration",
            "seq",
            "parents",
            "edge",
            "data",
            "results",
        }, call
        assert graph.content_hash().startswith(call["graph"]) and len(call["graph"]) == 32
        assert "x" * 300 not in json.dumps(call)
        headers = {k: v for k, v in call.items() if k not in ("data", "results")}
        assert len(json.dumps(headers)) < 140, headers


@pytest.mark.usefixtures("worker")
async def test_a_worker_that_never_saw_the_graph_reads_it_from_history(
    client: GraphrunnerClient,
) -> None:
    from graphrunner import _pinned

    graph = (
        GraphBuilder("forgetful", version="2.5.0")
        .task("forget", ForgetGraphs)
        .plan("decide", LoopThenFinish, config={"rounds": 2, "loop_to": "forget"})
        .edge("forget", "decide")
        .edge("decide", "forget")
        .final("decide")
        .build()
    )
    handle = await client.start(graph, None)
    result = await handle.result()
    # Every plan ran right after its worker forgot the graph: each read it from history.
    assert result.output == {"iterations": 2, "last": {"forgot": True}}
    assert _pinned.lookup(graph.content_hash()) == (graph, graph.content_hash())


async def test_the_plugin_is_the_whole_replay_recipe(
    client: GraphrunnerClient, env: WorkflowEnvironment, task_queue: str
) -> None:
    async with Worker(env.client, task_queue=task_queue, plugins=[GraphrunnerPlugin()]):
        handle = await client.start(loop(), None)
        await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[AgentLifetimeWorkflow], plugins=[GraphrunnerPlugin()])
    await replayer.replay_workflow(history)
    # The plugin brings the workflow when none is given, and never doubles it.
    await Replayer(workflows=[], plugins=[GraphrunnerPlugin()]).replay_workflow(history)


async def test_a_worker_from_a_plugged_client_has_each_part_once(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, task_queue=f"tq-{uuid.uuid4().hex[:8]}")
    temporal = await connect_temporal(
        settings, target_host=env.client.service_client.config.target_host
    )
    worker = build_worker(temporal, settings=settings, recorder=None, max_cached_workflows=7)
    config = worker.config(active_config=True)
    guards = [i for i in config.get("interceptors", []) if isinstance(i, GuardrailInterceptor)]
    assert len(guards) == 1
    names = [
        getattr(fn, "__temporal_activity_definition").name for fn in config.get("activities", [])
    ]
    assert sorted(names) == sorted(set(names)) and RUN_TASK in names
    assert [w.__name__ for w in config.get("workflows", [])] == ["AgentLifetimeWorkflow"]
    assert config.get("max_cached_workflows") == 7  # any Worker option passes through


async def test_one_settings_object_gives_a_client_and_a_worker_that_agree(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, task_queue=f"tq-{uuid.uuid4().hex[:8]}")
    address = env.client.service_client.config.target_host
    client = await GraphrunnerClient.connect(settings, address=address, namespace="default")
    async with build_worker(client):  # records on, as documented, into the client's state DB
        handle = await client.start(loop("agree"), {"q": 2})
        await handle.result()
    history = await client.history(handle.id)
    assert [(r.node, r.iteration) for r in history] == [
        ("work", 1),
        ("decide", 1),
        ("work", 2),
        ("decide", 2),
    ]
    assert {r.graph_name for r in history} == {"agree"}
    assert {r.graph_version for r in history} == {"1.0.0"}


class _Recorder(importlib.abc.MetaPathFinder):
    """Notes every module name the import system looks for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        self.names.append(fullname)


@pytest.mark.usefixtures("worker")
async def test_a_new_lifetime_imports_no_graphrunner_module_again(
    client: GraphrunnerClient,
) -> None:
    # The sandbox used to re-import graphrunner (and pydantic models) for every lifetime;
    # the plugin passes them through, so after the first lifetime nothing is imported.
    await (await client.start(loop("warm"), None)).result()
    finder = _Recorder()
    sys.meta_path.insert(0, finder)
    try:
        for _ in range(3):
            await (await client.start(loop("warm"), None)).result()
    finally:
        sys.meta_path.remove(finder)
    ours = sorted({n for n in finder.names if n.split(".")[0] in ("graphrunner", "pydantic")})
    assert ours == [], ours


async def test_a_server_without_the_search_attributes_gets_them_on_the_first_start(
    env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest

    from graphrunner.client._client import GRAPH_KEY, TENANT_KEY

    namespace = f"bare-{uuid.uuid4().hex[:8]}"  # a namespace nobody registered them on
    await env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    settings = Settings(home=tmp_path, task_queue=f"tq-{uuid.uuid4().hex[:8]}")
    address = env.client.service_client.config.target_host
    client = await GraphrunnerClient.connect(settings, address=address, namespace=namespace)
    async with build_worker(client, recorder=None):
        for _ in range(30):  # a new namespace takes a moment to reach every server part
            try:
                handle = await client.start(loop("tagged"), None, tenant="acme")
                break
            except Exception:  # noqa: BLE001 - namespace not yet known
                await asyncio.sleep(0.5)
        await handle.result()
        again = await client.start(loop("tagged"), None, tenant="acme")
        await again.result()
    for lifetime in (handle, again):
        attrs = (await lifetime.describe()).typed_search_attributes
        assert attrs.get(GRAPH_KEY) == "tagged" and attrs.get(TENANT_KEY) == "acme"
    assert "search attributes" not in caplog.text, "no start went without them"


async def test_build_worker_keeps_the_clients_plugins_single_and_its_failure_converter(
    env: WorkflowEnvironment,
) -> None:
    from temporalio.client import Interceptor as ClientInterceptor
    from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
    from temporalio.plugin import SimplePlugin

    class Tracing(ClientInterceptor):
        pass

    encoded = DataConverter(failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
    temporal = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=encoded,
        plugins=[SimplePlugin("tracing", interceptors=[Tracing()])],
    )
    worker = build_worker(temporal, task_queue="unused", recorder=None)
    client = worker.client
    assert (
        len(
            [i for i in client.config(active_config=True)["interceptors"] if isinstance(i, Tracing)]
        )
        == 1
    )
    converter = client.data_converter
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    from graphrunner._converter import GraphrunnerPayloadConverter

    assert converter.payload_converter_class is GraphrunnerPayloadConverter


async def test_a_handle_reads_the_path_of_its_own_run_when_the_id_is_reused(
    client: GraphrunnerClient,
) -> None:
    from graphrunner.workflows import LIFETIME_WORKFLOW

    lifetime_id = f"reused-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, recorder=None):
        first = await client.start(loop("first", rounds=1), None, id=lifetime_id)
        await first.result()
        # client.start attaches to the closed lifetime (one lifetime per id); a start by
        # other means (the temporal CLI, another SDK) may reuse the id.
        _, arg, _ = client._lifetime_input(loop("second", rounds=3), None, id=None, tenant="t")
        second = await client.temporal.start_workflow(
            LIFETIME_WORKFLOW, arg, id=lifetime_id, task_queue=client.settings.task_queue
        )
        await second.result()
        # A handle of the first run: its output and its path, not the newer run's.
        result = await first.result()
    assert result.graph_name == "first"
    assert [s.node for s in result.steps] == ["work", "decide"]


def test_a_tenant_longer_than_the_state_db_takes_is_refused_before_it_reaches_a_worker() -> None:
    from pydantic import ValidationError

    from graphrunner._types import LifetimeInput

    graph = loop()
    with pytest.raises(ValidationError, match="at most 255"):
        LifetimeInput(graph=graph, graph_hash=graph.content_hash(), tenant="t" * 256, format=2)
