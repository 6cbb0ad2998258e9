"""The two activities that run graph nodes: one for Tasks, one for Plans.

Each imports the node's implementation class by its path, builds a `NodeContext`, calls the
author's method and checks what came back. Failures in user code propagate so Temporal
retries them; problems no retry can fix are non-retryable `ApplicationError`s naming the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner._sdk import NodeContext, Plan, Task
from graphrunner._types import PlanCall, PlanResult, TaskCall, TaskResult
from graphrunner.errors import FailureType
from graphrunner.graph._validate import import_impl

__all__ = ["RUN_PLAN", "RUN_TASK", "run_plan", "run_task"]

RUN_TASK = "graphrunner.run_task"
RUN_PLAN = "graphrunner.run_plan"

_log = logging.getLogger("graphrunner.node")


@functools.lru_cache(maxsize=1024)
def _load(impl: str, base: type) -> type:
    try:
        cls = import_impl(impl)
    except Exception as exc:
        raise ApplicationError(
            f"cannot import '{impl}': {exc}",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        ) from exc
    if not issubclass(cls, base):
        raise ApplicationError(
            f"'{impl}' is not a graphrunner.{base.__name__}",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        )
    return cls


def _context(call: TaskCall | PlanCall, successors: list[str]) -> NodeContext:
    info = activity.info()
    extra = {"lifetime_id": call.lifetime_id, "node": call.node.name, "iteration": call.iteration}
    return NodeContext(
        lifetime_id=call.lifetime_id,
        graph_name=call.graph_name,
        graph_version=call.graph_version,
        node=call.node.name,
        iteration=call.iteration,
        attempt=info.attempt,
        tenant=call.tenant,
        lifetime_input=call.lifetime_input,
        config=dict(call.node.config),
        logger=logging.LoggerAdapter(_log, extra),
        successors=successors,
    )


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while the node runs, when the node has a heartbeat timeout.

    Node authors need not heartbeat themselves: a crashed worker is then noticed within the
    heartbeat timeout instead of the (usually much longer) start-to-close timeout.
    """
    timeout = activity.info().heartbeat_timeout
    if not timeout or activity.info().is_local:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(timeout.total_seconds() / 3)

    pulse = asyncio.create_task(beat())
    try:
        yield
    finally:
        pulse.cancel()


@activity.defn(name=RUN_TASK)
async def run_task(call: TaskCall) -> TaskResult:
    """Run one Task node execution."""
    cls = _load(call.node.impl, Task)
    ctx = _context(call, [])
    async with _heartbeating():
        result: Any = await cls().run(ctx, call.data)
    return result if isinstance(result, TaskResult) else TaskResult(output=result)


@activity.defn(name=RUN_PLAN)
async def run_plan(call: PlanCall) -> PlanResult:
    """Run one Plan node execution and check its choice against the declared successors."""
    cls = _load(call.node.impl, Plan)
    ctx = _context(call, list(call.successors))
    async with _heartbeating():
        decision: Any = await cls().decide(ctx, list(call.results))
    where = f"plan '{call.node.name}' (iteration {call.iteration})"
    if not isinstance(decision, PlanResult):
        raise ApplicationError(
            f"{where} returned {type(decision).__name__}, not a PlanResult",
            type=FailureType.BAD_NODE_RESULT,
            non_retryable=True,
        )
    unknown = [name for name in decision.next_task_names if name not in call.successors]
    if unknown:
        raise ApplicationError(
            f"{where} chose {', '.join(repr(n) for n in unknown)}, which is not among its "
            f"declared successors ({', '.join(call.successors) or 'none'})",
            type=FailureType.UNDECLARED_SUCCESSOR,
            non_retryable=True,
        )
    if not decision.next_task_names and not call.can_finish:
        raise ApplicationError(
            f"{where} chose no successor, which would finish the lifetime, but it has no "
            "FINAL edge",
            type=FailureType.UNDECLARED_SUCCESSOR,
            non_retryable=True,
        )
    return decision
