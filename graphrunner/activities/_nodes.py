"""The two activities that run graph nodes: one for Tasks, one for Plans.

Each imports the node's implementation (a class or an @task/@plan function) by its path,
builds a `NodeContext`, calls the author's code, checks what came back and, when the worker
has a `Recorder`, writes the execution record. A plan without ``impl`` runs a built-in body
instead: it routes by the ``when`` conditions of its edges (`graphrunner.graph._routing`), and
is recorded and guarded like any plan. Failures in user code propagate so Temporal
retries them; problems no retry can fix are non-retryable `ApplicationError`s naming the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner._functions import NodeBody, node_body
from graphrunner._observe import NodeObservation, outcome_of
from graphrunner._resources import Resources
from graphrunner._sdk import NodeContext
from graphrunner._state import StateError, apply_update, initial_state
from graphrunner._types import (
    MAX_COST_USD,
    MAX_TOKENS,
    RUN_PLAN,
    RUN_TASK,
    ExecutionHeader,
    NodeOutput,
    PlanCall,
    PlanResult,
    TaskCall,
    TaskResult,
    Telemetry,
    execution_id,
)
from graphrunner._values import BadValue, check_value, clip
from graphrunner.activities._generated import check_generated
from graphrunner.activities._graphs import refuse_other_tenant, resolve_call
from graphrunner.activities._llm import LlmNodes, Notes
from graphrunner.activities._recording import Attempt, Recorder
from graphrunner.errors import FailureType
from graphrunner.graph._model import AgentGraph, EdgeType, NodeKind, NodeSpec
from graphrunner.graph._routing import Router
from graphrunner.graph._validate import import_impl
from graphrunner.llm._runtime import AttemptLlm, LlmRuntime
from graphrunner.llm._types import LlmUsage
from graphrunner.stores._records import ExecutionStatus

__all__ = ["RUN_PLAN", "RUN_TASK", "NodeActivities"]

_log = logging.getLogger("graphrunner.node")
_ERROR_LIMIT = 64 * 1024  # characters of a node's error message sent to Temporal
_ROUTERS_KEPT = 1024  # compiled routing plans kept per worker
_BEAT_WITHOUT_TIMEOUT_S = 2.0  # heartbeat calls of a node without a heartbeat timeout
R = TypeVar("R", TaskResult, PlanResult)


@functools.lru_cache(maxsize=1024)
def _load(impl: str | None, kind: NodeKind, allowed: tuple[str, ...] | None = None) -> NodeBody:
    """Import a node class or function; ``allowed`` limits the modules a graph may import.

    Importing runs the module's top-level code: a graph's ``impl`` is code the operator
    trusts, and the allow-list (``GRAPHRUNNER_IMPL_MODULES``) keeps graphs to known packages.
    """
    if impl is None:
        raise ApplicationError(
            f"this {kind.value} has no 'impl' to run",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        )
    module = impl.partition(":")[0]
    if allowed is not None and not any(
        module == prefix or module.startswith(prefix + ".") for prefix in allowed
    ):
        raise ApplicationError(
            f"'{impl}' is not in a module this worker may import (GRAPHRUNNER_IMPL_MODULES="
            f"{','.join(allowed) or '(none)'}); nothing was imported",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        )
    try:
        found = import_impl(impl)
    except Exception as exc:
        raise ApplicationError(
            f"cannot import '{impl}': {exc}",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        ) from exc
    try:
        return node_body(found, kind)
    except TypeError as exc:
        raise ApplicationError(
            f"'{impl}' {exc}", type=FailureType.IMPL_NOT_FOUND, non_retryable=True
        ) from None


def _identified(result: NodeOutput, header: ExecutionHeader) -> NodeOutput:
    """``result`` with its execution id, which the workflow leaves out of the call."""
    if result.execution_id or result.iteration < 1:  # iteration 0: the lifetime's input
        return result
    found = execution_id(header.lifetime_id, header.run_id, result.node, result.iteration)
    return result.model_copy(update={"execution_id": found})


def _spec(graph: AgentGraph, header: ExecutionHeader) -> NodeSpec:
    try:
        return graph.node(header.node)
    except KeyError:
        raise ApplicationError(
            f"graph '{graph.name}' has no node '{header.node}'",
            type=FailureType.GRAPH_MISMATCH,
            non_retryable=True,
        ) from None


def _context(header: ExecutionHeader, spec: NodeSpec, successors: list[str]) -> NodeContext:
    extra = {"lifetime_id": header.lifetime_id, "node": header.node, "iteration": header.iteration}
    return NodeContext(
        lifetime_id=header.lifetime_id,
        graph_name=header.graph_name,
        graph_version=header.graph_version,
        node=header.node,
        iteration=header.iteration,
        attempt=activity.info().attempt,
        tenant=header.tenant,
        config=dict(spec.config),
        logger=logging.LoggerAdapter(_log, extra),
        successors=successors,
        idempotency_key=f"{header.lifetime_id}/{header.execution_id}",
    )


def _spent(usage: LlmUsage) -> Telemetry:
    """The telemetry of what an attempt's model calls spent."""
    return Telemetry(
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        cost_usd=round(usage.cost_usd, 10),
        model=usage.model,
    )


class _Spend(Protocol):
    tokens_in: int
    tokens_out: int
    cost_usd: float


def _added(telemetry: Telemetry, usage: _Spend) -> Telemetry:
    """``telemetry`` with ``usage``'s tokens and cost added (bounded as `Telemetry` is)."""
    return telemetry.model_copy(
        update={
            "tokens_in": min(telemetry.tokens_in + usage.tokens_in, MAX_TOKENS),
            "tokens_out": min(telemetry.tokens_out + usage.tokens_out, MAX_TOKENS),
            "cost_usd": min(telemetry.cost_usd + usage.cost_usd, MAX_COST_USD),
        }
    )


def _with_spend(telemetry: Telemetry, usage: LlmUsage) -> Telemetry:
    """``telemetry``, or what ``ctx.llm`` spent when the node reported nothing itself."""
    if usage.calls == 0 or telemetry.tokens_in or telemetry.tokens_out or telemetry.cost_usd:
        return telemetry
    if telemetry.model:
        return telemetry
    return telemetry.model_copy(
        update=_spent(usage).model_dump(include={"tokens_in", "tokens_out", "cost_usd", "model"})
    )


def _state(call: TaskCall | PlanCall) -> Mapping[str, Any]:
    """The lifetime state the node reads: a read-only view of what the workflow sent."""
    return MappingProxyType(call.state or {})


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while the node runs.

    Node authors need not heartbeat themselves. With a heartbeat timeout, a crashed worker
    is noticed within it instead of the (usually much longer) start-to-close timeout.
    Without one the node heartbeats anyway, as often as the worker's heartbeat throttle lets
    it (``build_worker`` sets 10 s): a heartbeat's answer is how a running node learns that
    its lifetime was cancelled (``graphrunner cancel``), and the body is then cancelled.
    Local activities (local plans) need none: their worker cancels them directly.
    """
    if activity.info().is_local:
        yield
        return
    timeout = activity.info().heartbeat_timeout
    # The SDK sends at most one heartbeat per throttle interval; beating more often only
    # keeps the latest one fresh.
    every = timeout.total_seconds() / 3 if timeout else _BEAT_WITHOUT_TIMEOUT_S

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    pulse = asyncio.create_task(beat())
    try:
        yield
    finally:
        pulse.cancel()


def _check_carried(where: str, **values: Any) -> None:
    """Fail the node, for good, when it returns a value the lifetime could not decode."""
    for name, value in values.items():
        try:
            check_value(value, f"{where} returned {name} that a lifetime cannot carry")
        except BadValue as exc:
            raise ApplicationError(
                str(exc), type=FailureType.BAD_NODE_RESULT, non_retryable=True
            ) from None


def _check_decision(
    header: ExecutionHeader, successors: list[str], can_finish: bool, decision: Any
) -> PlanResult:
    where = f"plan '{header.node}' (iteration {header.iteration})"
    if not isinstance(decision, PlanResult):
        raise ApplicationError(
            f"{where} returned {type(decision).__name__}, not a PlanResult",
            type=FailureType.BAD_NODE_RESULT,
            non_retryable=True,
        )
    _check_carried(where, data=decision.data, output=decision.output, items=decision.items)
    decision.data = to_jsonable_python(decision.data)  # plain JSON (see WireModel)
    decision.output = to_jsonable_python(decision.output)
    if decision.items is not None:
        decision.items = to_jsonable_python(decision.items)
        if len(decision.next_task_names) != 1:
            raise ApplicationError(
                f"{where} mapped over {len(decision.items)} items but chose "
                f"{len(decision.next_task_names)} tasks; a map runs exactly one task "
                "(PlanResult.map)",
                type=FailureType.BAD_NODE_RESULT,
                non_retryable=True,
            )
    unknown = [name for name in decision.next_task_names if name not in successors]
    if unknown:
        raise ApplicationError(
            f"{where} chose {', '.join(repr(n) for n in unknown)}, which is not among its "
            f"declared successors ({', '.join(successors) or 'none'})",
            type=FailureType.UNDECLARED_SUCCESSOR,
            non_retryable=True,
        )
    if not decision.next_task_names and not can_finish:
        raise ApplicationError(
            f"{where} chose no successor, which would finish the lifetime, but it has no "
            "FINAL edge",
            type=FailureType.UNDECLARED_SUCCESSOR,
            non_retryable=True,
        )
    return decision


def _check_update(
    where: str, graph: AgentGraph, call: TaskCall | PlanCall, result: TaskResult | PlanResult
) -> None:
    """Fail the node, for good, when its state update could not be applied.

    The workflow applies the update (and checks it again); failing here names the node and
    field before the update ever reaches history.
    """
    if result.update is None:
        return
    _check_carried(where, update=result.update)
    result.update = to_jsonable_python(result.update)
    try:
        apply_update(graph, call.state or initial_state(graph) or {}, result.update)
    except StateError as exc:
        raise ApplicationError(
            f"{where} {exc}", type=FailureType.BAD_STATE_UPDATE, non_retryable=True
        ) from None


class NodeActivities:
    """The node activities of one worker, sharing its recorder (None: records are off)."""

    def __init__(
        self,
        recorder: Recorder | None = None,
        *,
        impl_modules: tuple[str, ...] | None = None,
        llm: LlmRuntime | None = None,
        tenant: str | None = None,
    ) -> None:
        self.recorder = recorder
        self.tenant = tenant  # a worker bound to a tenant runs its node code only
        self.impl_modules = impl_modules
        self.resources = Resources()
        # Default: offline, cooldowns in this process (build_worker passes the settings').
        self.llm = llm or LlmRuntime()
        self._routers: dict[tuple[str, str], Router] = {}
        self.llm_nodes = LlmNodes(recorder.blobs if recorder is not None else None)

    def _router(self, graph: AgentGraph, graph_hash: str, plan: str) -> Router:
        """The compiled routing of a plan without impl, once per worker, graph and plan."""
        key = (graph_hash, plan)
        router = self._routers.get(key)
        if router is None:
            try:
                router = Router(graph, plan)
            except ValueError as exc:  # validation refuses such a graph; never guess a route
                raise ApplicationError(
                    f"plan '{plan}' cannot route by its conditions: {exc}",
                    type=FailureType.INVALID_GRAPH,
                    non_retryable=True,
                ) from None
            if len(self._routers) >= _ROUTERS_KEPT:
                self._routers.pop(next(iter(self._routers)))
            self._routers[key] = router
        return router

    async def aclose(self) -> None:
        """Close the resources (`graphrunner.resource`) nodes created on this worker.

        And litellm's cached HTTP clients, if a node ever called a model here.
        """
        try:
            await self.resources.aclose()
        finally:
            await self.llm.aclose()

    async def _execute(
        self,
        header: ExecutionHeader,
        body: Callable[[], Awaitable[R]],
        describe: Callable[[R], tuple[Any, Telemetry, list[str]]],
        seen: dict[str, Any] | None = None,
        llm: AttemptLlm | None = None,
        *,
        notes: Notes | None = None,
        attempts_before: int = 0,
    ) -> R:
        # A later round of an LLM task that calls tools counts its attempts on from the
        # earlier rounds': the task's one record keeps its newest round.
        number = attempts_before + activity.info().attempt if attempts_before else None
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        observed = NodeObservation(header)
        try:
            async with _heartbeating():
                result = await body()
        except BaseException as exc:
            observed.ended(outcome_of(exc), _spent(llm.usage) if llm is not None else None)
            if self.recorder is not None:
                failed = Attempt(
                    status=ExecutionStatus.FAILED,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                    latency_ms=(time.monotonic() - clock) * 1000,
                    error=f"{type(exc).__name__}: {exc}",
                    # What its model calls spent is spent, though the attempt failed.
                    telemetry=_spent(llm.usage) if llm is not None else None,
                    notes=notes or None,
                    attempt=number,
                )
                await self.recorder.write(header, failed)
            if isinstance(exc, Exception):
                message = str(exc)
                if len(message) > _ERROR_LIMIT:
                    # Temporal would refuse a failure this large (2 MiB per payload) and the
                    # attempt would end only at its timeout: send it cut, same type.
                    raise ApplicationError(
                        clip(message, _ERROR_LIMIT),
                        type=getattr(exc, "type", None) or type(exc).__name__,
                        non_retryable=bool(getattr(exc, "non_retryable", False)),
                    ) from None
            raise
        latency_ms = (time.monotonic() - clock) * 1000
        # Guardrails read these from the result: the workflow cannot measure them itself.
        telemetry = result.telemetry if llm is None else _with_spend(result.telemetry, llm.usage)
        result.telemetry = telemetry.model_copy(
            update={"latency_ms": round(latency_ms, 3), "attempt": activity.info().attempt}
        )
        observed.ended("ok", result.telemetry)  # this attempt's spend, before earlier ones'
        if self.recorder is not None:
            output, telemetry, nxt = describe(result)
            done = Attempt(
                status=ExecutionStatus.SUCCEEDED,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                latency_ms=latency_ms,
                output=output,
                telemetry=telemetry,
                next=nxt,
                state=None
                if seen is None and result.update is None
                else {"seen": seen, "update": result.update},
                notes=notes or None,
                attempt=number,
            )
            await self.recorder.write(header, done)
            # What this activity's earlier, failed attempts' model calls spent reaches the
            # workflow with this result, so the lifetime's totals and the guardrails count
            # it too (the record keeps this attempt's; `costs` adds gr_attempts' failed ones).
            if activity.info().attempt > 1:
                earlier = await self._failed_before(
                    header.execution_id, attempts_before, number or activity.info().attempt
                )
                if earlier is not None:
                    result.telemetry = _added(result.telemetry, earlier)
        return result

    async def _failed_before(self, execution_id: str, after: int, before: int) -> LlmUsage | None:
        """What the failed attempts numbered between ``after`` and ``before`` spent, if any."""
        if self.recorder is None:
            return None
        spent = LlmUsage()
        for row in await self.recorder.records.attempts(execution_id):
            if row["status"] == "failed" and after < row["attempt"] < before:
                spent.tokens_in += int(row.get("tokens_in") or 0)
                spent.tokens_out += int(row.get("tokens_out") or 0)
                spent.cost_usd += float(row.get("cost_usd") or 0)
        return spent if spent.tokens_in or spent.tokens_out or spent.cost_usd else None

    @activity.defn(name=RUN_TASK)
    async def run_task(self, call: TaskCall) -> TaskResult:
        """Run one Task node execution."""
        header, graph = await resolve_call(call, "task")
        refuse_other_tenant(header, self.tenant)
        spec = _spec(graph, header)
        nxt = graph.task_next(spec.name)
        llm = self.llm.client(node=header.node, lifetime_id=header.lifetime_id)

        notes: Notes = {}

        async def body() -> TaskResult:
            ctx = replace(
                _context(header, spec, []), resources=self.resources, state=_state(call), llm=llm
            )
            if spec.impl is None and spec.llm is not None:
                notes.clear()
                return await self.llm_nodes.task(ctx, spec.llm, call.data, call.turn, notes)
            run = _load(spec.impl, NodeKind.TASK, self.impl_modules)
            returned: Any = await run(ctx, call.data)
            result = returned if isinstance(returned, TaskResult) else TaskResult(output=returned)
            where = f"task '{header.node}' (iteration {header.iteration})"
            _check_carried(where, output=result.output)
            result.output = to_jsonable_python(result.output)  # plain JSON (see WireModel)
            _check_update(where, graph, call, result)
            return result

        def describe(result: TaskResult) -> tuple[Any, Telemetry, list[str]]:
            telemetry = result.telemetry
            before = call.turn.spent_before if call.turn is not None else None
            if before is not None:  # the task's record: every round's model calls so far
                telemetry = _added(telemetry, before)
            if result.tools is not None:  # a round that asked for tools: the lifetime goes on
                calls = [c.model_dump(mode="json") for c in result.tools.calls]
                return {"tool_calls": calls}, telemetry, []
            return result.output, telemetry, nxt

        return await self._execute(
            header,
            body,
            describe,
            call.state,
            llm,
            notes=notes,
            attempts_before=call.turn.attempts_before if call.turn is not None else 0,
        )

    @activity.defn(name=RUN_PLAN)
    async def run_plan(self, call: PlanCall) -> PlanResult:
        """Run one Plan node execution and check its choice against the declared successors."""
        header, graph = await resolve_call(call, "plan")
        refuse_other_tenant(header, self.tenant)
        spec = _spec(graph, header)
        out = graph.out_edges(spec.name)
        successors = [e.target for e in out if e.target is not None]
        can_finish = any(e.type is EdgeType.FINAL for e in out)
        llm = self.llm.client(node=header.node, lifetime_id=header.lifetime_id)

        notes: Notes = {}

        async def body() -> PlanResult:
            results = [_identified(r, header) for r in call.results]
            if spec.impl is None and spec.llm is not None:
                notes.clear()
                ctx = replace(
                    _context(header, spec, list(successors)),
                    resources=self.resources,
                    state=_state(call),
                    llm=llm,
                )
                decision = await self.llm_nodes.plan(
                    ctx,
                    spec.llm,
                    results,
                    joined=call.edge == EdgeType.JOIN.value,
                    can_finish=can_finish,
                    described={n.name: n.description for n in graph.nodes if n.description},
                    notes=notes,
                )
                return _check_decision(header, successors, can_finish, decision)
            if spec.impl is None:
                route = self._router(graph, header.graph_hash, spec.name).decide(
                    results, call.state
                )
                decision = PlanResult(
                    next_task_names=route.targets,
                    data=route.data if route.targets else None,
                    output=None if route.targets else route.data,
                )
                return _check_decision(header, successors, can_finish, decision)
            decide = _load(spec.impl, NodeKind.PLAN, self.impl_modules)
            ctx = replace(
                _context(header, spec, list(successors)),
                resources=self.resources,
                state=_state(call),
                llm=llm,
            )
            decision = _check_decision(header, successors, can_finish, await decide(ctx, results))
            where = f"plan '{header.node}' (iteration {header.iteration})"
            _check_update(where, graph, call, decision)
            return check_generated(header, graph, decision, self.impl_modules)

        def describe(result: PlanResult) -> tuple[Any, Telemetry, list[str]]:
            shown = result.model_dump(mode="json", exclude={"telemetry"})
            fields = ("items", "max_concurrency", "update", "graph", "graph_hash", "graph_errors")
            for field in fields:  # a map's, an update, a generated graph's: shown when set
                if shown.get(field) is None:
                    shown.pop(field, None)
            if result.graph is not None:  # pinned by hash: the child lifetime's input has it
                shown["graph"] = {
                    "name": result.graph.get("name"),
                    "version": result.graph.get("version"),
                    "hash": result.graph_hash,
                }
            return shown, result.telemetry, result.next_task_names or ["END"]

        return await self._execute(header, body, describe, call.state, llm, notes=notes)
