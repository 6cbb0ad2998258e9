"""`graphrunner state`: a lifetime's state now, or after any step, rebuilt from its records.

Each execution record of a stateful graph keeps the state its execution saw and the update
it returned (``{"seen": ..., "update": ...}``, inline or in the blob store), so the state
after step N is that step's reducers applied once: no replay, no history scan, and the same
answer whether the lifetime still runs, finished, or its worker is gone. Inside a fan-out,
"the state after step N" is the branch's: the state the branch started from with its own
updates so far (other branches' updates join it at the JOIN, in branch order).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from graphrunner._state import apply_update
from graphrunner.client._history import _decoded
from graphrunner.codec import RecordCipher, open_blob
from graphrunner.errors import GraphrunnerError
from graphrunner.graph._model import AgentGraph
from graphrunner.stores._blobs import BlobStore
from graphrunner.stores._records import ExecutionRecord

__all__ = ["StateAt", "from_history", "state_after"]


class StateAt(BaseModel):
    """A lifetime's state at one point.

    Attributes:
        lifetime_id: The lifetime.
        step: The step (``#`` in ``history`` and ``status``) it is the state after; None for
            the lifetime's state now (or at its end).
        node: The node of that step.
        iteration: Its iteration.
        seen: The state the step's execution saw.
        update: The update it returned (None: it changed nothing).
        state: The state after it.
    """

    lifetime_id: str
    step: int | None = None
    node: str | None = None
    iteration: int | None = None
    seen: dict[str, Any] | None = None
    update: dict[str, Any] | None = None
    state: dict[str, Any] | None = Field(default=None)


async def _recorded(
    record: ExecutionRecord, blobs: BlobStore, cipher: RecordCipher | None
) -> dict[str, Any]:
    if record.state_uri is not None:
        data = b"".join([chunk async for chunk in blobs.stream(record.state_uri)])
        found = json.loads(
            open_blob(cipher, data, execution_id=record.execution_id, column="state")
        )
    else:
        found = json.loads(record.state_inline or "null")
    return found if isinstance(found, dict) else {}


async def state_after(
    lifetime_id: str,
    step: int,
    records: list[ExecutionRecord],
    blobs: BlobStore,
    graph: AgentGraph,
    *,
    cipher: RecordCipher | None = None,
) -> StateAt:
    """The state after step ``step`` (its ``seq``), from the lifetime's records.

    ``cipher`` opens an encrypted state blob (the state DB's, `RecordStore.cipher`).

    Raises:
        GraphrunnerError: No such step, or it left no state (the graph declares none, or
            its execution failed before it finished).
    """
    if graph.state is None:
        raise GraphrunnerError(
            f"graph '{graph.name}' {graph.version} of lifetime {lifetime_id} declares no state"
        )
    at = [r for r in records if r.seq == step]
    if not at:
        known = f"steps 0 to {max(r.seq for r in records)}" if records else "no steps"
        raise GraphrunnerError(f"lifetime {lifetime_id} has no recorded step {step} ({known})")
    record = max(at, key=lambda r: (r.created_at, r.attempt))  # the newest run's
    if record.state_inline is None and record.state_uri is None:
        raise GraphrunnerError(
            f"step {step} ({record.node}, iteration {record.iteration}) of {lifetime_id} "
            f"recorded no state: its execution {record.status.value}"
        )
    kept = await _recorded(record, blobs, cipher)
    seen = kept.get("seen") or {}
    update = kept.get("update")
    return StateAt(
        lifetime_id=lifetime_id,
        step=step,
        node=record.node,
        iteration=record.iteration,
        seen=seen,
        update=update,
        state=apply_update(graph, seen, update) if update else seen,
    )


async def from_history(
    history: WorkflowHistory, converter: DataConverter
) -> tuple[AgentGraph | None, bool, dict[str, Any] | None]:
    """The lifetime's pinned graph, whether it completed, and the state its result holds."""
    graph: AgentGraph | None = None
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            inp = await _decoded(converter, started.input.payloads)
            try:
                graph = AgentGraph.model_validate(inp.get("graph"))
            except ValueError:
                graph = None
        elif event.HasField("workflow_execution_completed_event_attributes"):
            completed = event.workflow_execution_completed_event_attributes
            result = await _decoded(converter, completed.result.payloads)
            state = result.get("state")
            return graph, True, state if isinstance(state, dict) else None
    return graph, False, None
