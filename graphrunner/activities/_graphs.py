"""Find the pinned graph a node activity belongs to: this process's cache, else history.

Any worker may run any node activity, including one for a graph it has never seen (a
lifetime that moved workers, a worker that restarted). The graph is then read from the
lifetime's own history: the first event of the run carries the `LifetimeInput` with the whole
pinned graph, and its content hash must match the call's. One read per graph and process.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner import _pinned
from graphrunner._types import ExecutionHeader, LifetimeInput, PlanCall, TaskCall
from graphrunner.errors import FailureType
from graphrunner.graph._model import AgentGraph

__all__ = ["pinned_graph", "resolve_call"]

_locks: dict[str, asyncio.Lock] = {}


async def pinned_graph(key: str) -> tuple[AgentGraph, str]:
    """The graph the current activity's lifetime runs, and its full content hash.

    Args:
        key: The graph's content hash, or its first `GRAPH_KEY_LENGTH` hex digits.

    Raises:
        ApplicationError: (non-retryable) the lifetime's history holds another graph.
    """
    found = _pinned.lookup(key)
    if found is not None:
        return found
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        found = _pinned.lookup(key)
        if found is None:
            graph = await _from_history(key)
            found = graph, graph.content_hash()
            _pinned.pin(*found)
    _locks.pop(key, None)
    return found


async def _from_history(key: str) -> AgentGraph:
    info = activity.info()
    client = activity.client()
    handle = client.get_workflow_handle(info.workflow_id or "", run_id=info.workflow_run_id)
    async for event in handle.fetch_history_events(page_size=1):
        started = event.workflow_execution_started_event_attributes
        payloads = list(started.input.payloads)
        if payloads:
            (inp,) = await client.data_converter.decode(payloads[:1], [LifetimeInput])
            if isinstance(inp, LifetimeInput) and inp.graph.content_hash().startswith(key):
                return inp.graph
        break
    raise ApplicationError(
        f"lifetime {info.workflow_id} does not run the graph {key[:12]} this node execution names",
        type=FailureType.GRAPH_MISMATCH,
        non_retryable=True,
    )


async def resolve_call(
    call: TaskCall | PlanCall, kind: str, scheduled_at: datetime | None = None
) -> tuple[ExecutionHeader, AgentGraph]:
    """The record header of ``call`` and its pinned graph (looked up by hash).

    ``scheduled_at`` defaults to when Temporal scheduled this activity (a step the workflow
    ran itself, a human answer or a child lifetime, says when it began).
    """
    graph, graph_hash = await pinned_graph(call.graph)
    info = activity.info()
    header = call.header(
        lifetime_id=info.workflow_id or "",
        run_id=info.workflow_run_id or "",
        graph=graph,
        graph_hash=graph_hash,
        kind=kind,
        scheduled_at=scheduled_at or info.scheduled_time,
    )
    return header, graph


def refuse_other_tenant(header: ExecutionHeader, tenant: str | None) -> None:
    """Refuse, for good, a node of another tenant's lifetime on a worker bound to ``tenant``.

    A worker bound to a tenant (its own task queue, its keys, its model budget) runs only that
    tenant's node code, whatever reached its queue.

    Raises:
        ApplicationError: Non-retryable, naming both tenants.
    """
    if tenant is not None and header.tenant != tenant:
        raise ApplicationError(
            f"this worker runs tenant '{tenant}' only; lifetime {header.lifetime_id} is "
            f"tenant '{header.tenant}''s: start it on that tenant's task queue",
            type="WrongTenant",
            non_retryable=True,
        )
