"""Client side of human input: pending requests (from memos) and answers (update or signal).

Pending lists need no worker and scan no history: a waiting lifetime keeps its requests in
its memo (`graphrunner.workflows._human.HumanDesk.memo`), which ``describe`` and
``list_workflows`` return. Across lifetimes, the visibility query narrows by the
``GraphrunnerTenant`` / ``GraphrunnerGraph`` search attributes (and ``GraphrunnerStatus =
'waiting'`` where the server has it); where the server lacks one, the memo filters instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from graphrunner._answers import (
    ANSWER_SIGNAL,
    RESPOND_UPDATE,
    HumanAnswer,
    HumanOutcome,
    HumanRequest,
    RefusedAnswer,
)
from graphrunner._values import BadValue, check_value
from graphrunner.errors import GraphrunnerError
from graphrunner.workflows import LIFETIME_WORKFLOW

__all__ = ["answer", "pending_across", "pending_of", "refused_of", "requests_in", "respond"]

_log = logging.getLogger("graphrunner.client")
_STATUS_KEY = "GraphrunnerStatus"


def requests_in(memo: Mapping[str, Any], lifetime_id: str) -> list[HumanRequest]:
    """The pending requests a lifetime's memo holds (none when it holds none or garbage)."""
    found: list[HumanRequest] = []
    for item in memo.get("pending") or []:
        try:
            request = HumanRequest.model_validate(item)
        except ValidationError:
            continue
        found.append(request.model_copy(update={"lifetime_id": lifetime_id}))
    return found


def refused_of(memo: Mapping[str, Any]) -> list[RefusedAnswer]:
    """The newest refused signalled answers a lifetime's memo holds."""
    found: list[RefusedAnswer] = []
    for item in memo.get("refused") or []:
        try:
            found.append(RefusedAnswer.model_validate(item))
        except ValidationError:
            continue
    return found


async def pending_of(temporal: Client, lifetime_id: str) -> list[HumanRequest]:
    """The requests one lifetime waits on (none when it is closed)."""
    try:
        desc = await temporal.get_workflow_handle(lifetime_id).describe()
    except RPCError as exc:
        raise GraphrunnerError(f"cannot read lifetime {lifetime_id}: {exc.message}") from None
    if desc.status not in (None, WorkflowExecutionStatus.RUNNING):
        return []
    return requests_in(await desc.memo(), lifetime_id)


def _literal(value: str) -> str | None:
    """``value`` as a visibility query string literal; None when it cannot be one safely."""
    if "'" in value or "\\" in value or any(ord(c) < 32 for c in value):
        return None
    return f"'{value}'"


async def pending_across(
    temporal: Client, *, tenant: str | None, graph: str | None, limit: int
) -> list[HumanRequest]:
    """Requests waiting in running lifetimes, filtered by tenant and graph, oldest first."""
    base = [f"WorkflowType = '{LIFETIME_WORKFLOW}'", "ExecutionStatus = 'Running'"]
    narrowing: list[str] = [f"{_STATUS_KEY} = 'waiting'"]
    for key, value in (("GraphrunnerTenant", tenant), ("GraphrunnerGraph", graph)):
        literal = _literal(value) if value is not None else None
        if literal is not None:
            narrowing.append(f"{key} = {literal}")
    # The most the server understands: every clause, then without the status attribute
    # (a server where it is not registered), then the memo alone.
    attempts = [base + narrowing, base + narrowing[1:], base]
    for clauses in attempts:
        try:
            return await _collect(temporal, " AND ".join(clauses), tenant, graph, limit)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.INVALID_ARGUMENT:
                raise
            _log.debug("visibility query refused (%s); narrowing less", exc.message)
    return []


async def _collect(
    temporal: Client, query: str, tenant: str | None, graph: str | None, limit: int
) -> list[HumanRequest]:
    found: list[HumanRequest] = []
    async for wf in temporal.list_workflows(query):
        memo = await wf.memo()
        if tenant is not None and memo.get("tenant") != tenant:
            continue
        if graph is not None and memo.get("graph") != graph:
            continue
        found.extend(requests_in(memo, wf.id))
        if len(found) >= limit:
            break
    found.sort(key=lambda r: (r.since, r.lifetime_id))
    return found[:limit]


def _answer(node: str, data: Any, request_id: str | None, by: str) -> HumanAnswer:
    try:
        check_value(data, "--data")
        return HumanAnswer(node=node, data=data, request_id=request_id, by=by)
    except BadValue:
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        raise GraphrunnerError(
            f"not an answer: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


async def respond(
    temporal: Client,
    lifetime_id: str,
    node: str,
    data: Any,
    *,
    request_id: str | None,
    by: str,
) -> HumanOutcome:
    """Answer by Update; a refusal is one `GraphrunnerError` naming why."""
    if request_id is None:
        # Name the request when exactly one of the node waits: a retried call then returns
        # the first answer's outcome instead of being refused as "not waiting".
        try:
            waiting = [r for r in await pending_of(temporal, lifetime_id) if r.node == node]
        except GraphrunnerError:
            waiting = []
        if len(waiting) == 1:
            request_id = waiting[0].request_id
    payload = _answer(node, data, request_id, by)
    handle = temporal.get_workflow_handle(lifetime_id)
    try:
        outcome: HumanOutcome = await handle.execute_update(
            RESPOND_UPDATE, payload, result_type=HumanOutcome
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise GraphrunnerError(f"answer refused by {lifetime_id}: {message}") from None
    except RPCError as exc:
        raise GraphrunnerError(f"cannot answer {lifetime_id}: {exc.message}") from None
    return outcome


async def answer(
    temporal: Client,
    lifetime_id: str,
    node: str,
    data: Any,
    *,
    request_id: str | None,
    by: str,
) -> None:
    """Answer by Signal: accepted by the server even with no worker up; checked later."""
    payload = _answer(node, data, request_id, by)
    try:
        await temporal.get_workflow_handle(lifetime_id).signal(ANSWER_SIGNAL, payload)
    except RPCError as exc:
        raise GraphrunnerError(f"cannot signal {lifetime_id}: {exc.message}") from None
