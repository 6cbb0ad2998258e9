"""The Python client: start lifetimes, wait for their results, ask for their status."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError

from graphrunner._settings import Settings
from graphrunner._types import LifetimeInput, LifetimeResult, StepRecord, StepStatus
from graphrunner.client._history import steps_from_history
from graphrunner.errors import ServerUnreachable
from graphrunner.graph import AgentGraph, load_graph
from graphrunner.workflows import LIFETIME_WORKFLOW

__all__ = ["GraphrunnerClient", "LifetimeInfo", "connect_temporal"]

_log = logging.getLogger("graphrunner.client")
GRAPH_KEY = SearchAttributeKey.for_keyword("GraphrunnerGraph")
TENANT_KEY = SearchAttributeKey.for_keyword("GraphrunnerTenant")


async def connect_temporal(settings: Settings, *, target_host: str | None = None) -> Client:
    """Connect to Temporal the way the ``temporal`` CLI does (env vars, then temporal.toml).

    Raises:
        ServerUnreachable: Nothing answered at the address, with the address in the message.
    """
    config = ClientConfig.load_client_connect_config()
    if target_host:
        config["target_host"] = target_host
    config.setdefault("target_host", f"localhost:{settings.dev_port}")
    try:
        return await Client.connect(
            **config,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        raise ServerUnreachable(
            f"cannot reach Temporal at {config['target_host']} "
            f"(namespace {config.get('namespace', 'default')}): start one with "
            "'graphrunner dev', or set TEMPORAL_ADDRESS"
        ) from exc


@dataclass(frozen=True, kw_only=True)
class LifetimeInfo:
    """What `GraphrunnerClient.status` reports about one lifetime."""

    lifetime_id: str
    run_id: str | None
    status: str
    graph_name: str | None
    tenant: str | None
    started_at: str | None
    closed_at: str | None
    running: list[str]
    steps: list[StepRecord]
    ui_url: str


class GraphrunnerClient:
    """Start and inspect AgentLifetimes.

    Example:
        >>> client = await GraphrunnerClient.connect()
        >>> handle = await client.start("examples/research.yaml", {"topic": "durability"})
        >>> result = await client.result(handle.id)
    """

    def __init__(self, temporal: Client, *, settings: Settings | None = None) -> None:
        self.temporal = temporal
        self.settings = settings or Settings.from_env()

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> GraphrunnerClient:
        """Connect using ``TEMPORAL_*`` settings; raises `ServerUnreachable` if none answers."""
        settings = settings or Settings.from_env()
        return cls(await connect_temporal(settings), settings=settings)

    async def start(
        self,
        graph: AgentGraph | str | Path,
        input: Any = None,
        *,
        id: str | None = None,
        tenant: str = "default",
        task_queue: str | None = None,
        search_attributes: bool = True,
    ) -> WorkflowHandle[Any, LifetimeResult]:
        """Start a lifetime of ``graph`` (a model, or a YAML path) and return its handle.

        The graph's full definition and hash travel in the workflow input, so later edits to
        the file never change this lifetime.

        Args:
            graph: The graph, or a path to its YAML.
            input: JSON-serialisable input; the start task receives it as ``data``.
            id: Lifetime id (the workflow id); generated from the graph name if omitted.
            tenant: Owner of the lifetime.
            task_queue: Task queue of the workers (default from settings).
            search_attributes: Tag the lifetime with GraphrunnerGraph/GraphrunnerTenant; the
                server must have them registered (``graphrunner dev`` does).
        """
        if not isinstance(graph, AgentGraph):
            graph = load_graph(graph)
        lifetime_id = id or f"{graph.name}-{uuid.uuid4().hex[:12]}"
        attrs = (
            TypedSearchAttributes(
                [
                    SearchAttributePair(GRAPH_KEY, graph.name),
                    SearchAttributePair(TENANT_KEY, tenant),
                ]
            )
            if search_attributes
            else None
        )
        arg = LifetimeInput(
            graph=graph, graph_hash=graph.content_hash(), input=input, tenant=tenant
        )

        async def start(attrs: TypedSearchAttributes | None) -> WorkflowHandle[Any, LifetimeResult]:
            return await self.temporal.start_workflow(
                LIFETIME_WORKFLOW,
                arg,
                id=lifetime_id,
                task_queue=task_queue or self.settings.task_queue,
                result_type=LifetimeResult,
                static_summary=f"{graph.name} {graph.version}",
                static_details=graph.description or None,
                search_attributes=attrs,
                memo={"graph": graph.name, "version": graph.version, "tenant": tenant},
            )

        try:
            return await start(attrs)
        except RPCError as exc:
            if attrs is None or "search attribute" not in str(exc).lower():
                raise
            # A server without graphrunner's search attributes still runs lifetimes.
            _log.warning("search attributes not registered on the server; starting without")
            return await start(None)

    async def result(self, lifetime_id: str) -> LifetimeResult:
        """Wait for the lifetime to finish and return its result (raises if it failed)."""
        handle = self.temporal.get_workflow_handle(lifetime_id, result_type=LifetimeResult)
        result: LifetimeResult = await handle.result()
        return result

    async def status(self, lifetime_id: str) -> LifetimeInfo:
        """Describe a lifetime: Temporal status and its path, read from history.

        Needs no worker: the steps come from the workflow's event history.
        """
        handle = self.temporal.get_workflow_handle(lifetime_id)
        desc: WorkflowExecutionDescription = await handle.describe()
        steps = steps_from_history(await handle.fetch_history())
        status = desc.status or WorkflowExecutionStatus.RUNNING
        memo = await desc.memo()
        return LifetimeInfo(
            lifetime_id=lifetime_id,
            run_id=desc.run_id,
            status=status.name.lower(),
            graph_name=str(memo["graph"]) if memo.get("graph") else None,
            tenant=str(memo["tenant"]) if memo.get("tenant") else None,
            started_at=desc.start_time.isoformat() if desc.start_time else None,
            closed_at=desc.close_time.isoformat() if desc.close_time else None,
            running=[f"{s.node}#{s.iteration}" for s in steps if s.status is StepStatus.RUNNING],
            steps=steps,
            ui_url=self.ui_url(lifetime_id),
        )

    def ui_url(self, lifetime_id: str) -> str:
        """Link to the lifetime in the Temporal Web UI."""
        return (
            f"{self.settings.web_ui()}/namespaces/{self.temporal.namespace}/workflows/{lifetime_id}"
        )
