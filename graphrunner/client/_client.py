"""The Python client: start lifetimes, wait for their results, ask for their status."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    Plugin,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from graphrunner._answers import HumanOutcome, HumanRequest, RefusedAnswer
from graphrunner._attributes import (
    FORK_KEY,
    GRAPH_KEY,
    SEARCH_ATTRIBUTES,
    STATUS_KEY,
    TENANT_KEY,
    start_attributes,
)
from graphrunner._settings import TENANT_NAME, Settings, fairness_key
from graphrunner._tracing import tracing_plugin
from graphrunner._types import (
    FIRST_QUESTION,
    INPUT_FORMAT,
    FirstQuestion,
    LifetimeInput,
    LifetimePhase,
    LifetimeResult,
    QuestionRequest,
    StepRecord,
    StepStatus,
)
from graphrunner._values import BadValue, check_value
from graphrunner.client import _human as human
from graphrunner.client._control import BULK_LIMIT, BulkOutcome, matching_lifetimes, run_bulk
from graphrunner.client._fork import ForkResult, check_compatible, fork_id, plan_fork
from graphrunner.client._history import (
    carried_from,
    failure_from_history,
    run_of,
    stall_from_history,
    steps_from_history,
)
from graphrunner.client._setup import (
    AttributeSetup,
    ensure_namespace,
    present_attributes,
    setup_search_attributes,
)
from graphrunner.client._state_view import StateAt, state_after
from graphrunner.client._state_view import from_history as state_from_history
from graphrunner.client._steps import (
    LifetimeSteps,
    ResetResult,
    lifetime_steps,
    own_steps,
    reset_to_step,
    superseded_records,
)
from graphrunner.errors import GraphError, GraphrunnerError, ServerUnreachable
from graphrunner.graph import AgentGraph, load_graph
from graphrunner.guardrails._wire import (
    ABORT,
    GUARDRAIL_QUERY,
    PAUSE,
    RESUME,
    AbortRequest,
    Decision,
    GuardrailStatus,
    PauseInfo,
    PauseRequest,
    ResumeRequest,
    ResumeResult,
)
from graphrunner.stores import (
    BlobStore,
    CostRow,
    DecisionRecord,
    ExecutionRecord,
    LifetimeSummary,
    RecordStore,
    open_blobs,
    open_records,
    stream_result,
)
from graphrunner.stores._attempts import AttemptRecord, lifetime_attempts
from graphrunner.workflows import LIFETIME_WORKFLOW
from graphrunner.workflows._checks import graph_issues

if TYPE_CHECKING:
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

__all__ = [
    "GRAPH_KEY",
    "TENANT_KEY",
    "ControlRefused",
    "GraphrunnerClient",
    "LifetimeHandle",
    "LifetimeInfo",
    "LifetimeRow",
    "LostContact",
    "connect_temporal",
]

_log = logging.getLogger("graphrunner.client")

_R = TypeVar("_R")
# What a lost or restarting server looks like to a client: worth trying again.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.UNKNOWN,  # "transport error"
    RPCStatusCode.INTERNAL,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
}
_PROBE_TIMEOUT = timedelta(seconds=5)
PARENT_INPUT: Any = object()
"""`GraphrunnerClient.fork`'s default input: the parent's."""
_QUERY_TIMEOUT = timedelta(seconds=10)  # a running lifetime's queries need a worker


class OtherTenant(GraphrunnerError):
    """A tenant-bound client was asked about a lifetime that is not its tenant's.

    The message is the same whether the lifetime belongs to another tenant or does not
    exist, so a tenant cannot learn which lifetimes others have.

    Attributes:
        lifetime_id: The lifetime asked about (None: a request across lifetimes).
        tenant: The tenant the client is bound to.
    """

    def __init__(self, lifetime_id: str | None, tenant: str, message: str | None = None) -> None:
        super().__init__(message or f"no lifetime '{lifetime_id}' of tenant '{tenant}'")
        self.lifetime_id = lifetime_id
        self.tenant = tenant


class _HasTenant(Protocol):
    @property
    def tenant(self) -> str: ...


_Owned = TypeVar("_Owned", bound=_HasTenant)
_OWNERS_KEPT = 10_000


def _check_balanced(query: str) -> None:
    """Refuse a visibility query whose parentheses close a group they did not open."""
    depth, quote = 0, ""
    for ch in query:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or quote:
        raise GraphrunnerError(f"unbalanced parentheses or quotes in query: {query[:200]}")


def own_rows(tenant: str | None, lifetime_id: str, rows: list[_Owned]) -> list[_Owned]:
    """The state-DB rows (records, decisions) of ``tenant``; all of them when it is None.

    Raises:
        OtherTenant: There were rows but none of them is ``tenant``'s.
    """
    if tenant is None:
        return rows
    mine = [r for r in rows if r.tenant == tenant]
    if rows and not mine:
        raise OtherTenant(lifetime_id, tenant)
    return mine  # lifetime -> tenant answers a client remembers (a tenant never changes)


class ControlRefused(GraphrunnerError):
    """A lifetime refused (or could not take) a pause, resume, abort or cancel.

    Attributes:
        lifetime_id: The lifetime.
        reason: Its answer, e.g. "the lifetime is already paused by hand".
    """

    def __init__(self, verb: str, lifetime_id: str, reason: str) -> None:
        super().__init__(f"cannot {verb} {lifetime_id}: {reason}")
        self.lifetime_id = lifetime_id
        self.reason = reason


class LostContact(GraphrunnerError):
    """The server could not be reached for longer than the client was willing to wait.

    Says nothing about the lifetime: it may well still be running or have finished.
    """


async def connect_temporal(
    settings: Settings,
    *,
    target_host: str | None = None,
    namespace: str | None = None,
    blobs: BlobStore | None = None,
    runtime: Runtime | None = None,
    tracer_provider: ReplaySafeTracerProvider | None = None,
) -> Client:
    """Connect to Temporal the way the ``temporal`` CLI does (env vars, then temporal.toml).

    The client carries a `GraphrunnerPlugin`: its data converter keeps payloads over the
    threshold in the blob store (``blobs``, default: the one settings name), so workers and
    clients must share that store; with ``GRAPHRUNNER_CODEC_KEYS`` it encrypts every payload
    (`graphrunner.codec`). With tracing on (``GRAPHRUNNER_TRACING``, or a
    ``tracer_provider``) it also carries temporalio's OpenTelemetry plugin, and so does every
    worker built from it.

    Args:
        settings: graphrunner's settings.
        target_host: The server's ``host:port``, instead of the environment's.
        namespace: The namespace, instead of the environment's.
        blobs: The blob store large payloads go to; default: the settings'.
        runtime: The Temporal runtime (threads, telemetry) of the client and its workers,
            e.g. `graphrunner._metrics.metrics_runtime` for a Prometheus endpoint; default:
            the process's default runtime.
        tracer_provider: Trace to this provider (from
            ``temporalio.contrib.opentelemetry.create_tracer_provider()``) whatever
            ``settings.tracing`` says.

    Raises:
        ServerUnreachable: Nothing answered at the address, with the address in the message.
        GraphrunnerError: Tracing cannot be set up (see `graphrunner._tracing`).
    """
    from graphrunner.codec import codec_from_settings
    from graphrunner.plugin import GraphrunnerPlugin  # the plugin imports the activities

    config = ClientConfig.load_client_connect_config()
    if target_host:
        config["target_host"] = target_host
    if namespace:
        config["namespace"] = namespace
    elif settings.isolation == "hard" and settings.tenant is not None:
        # Hard isolation: the tenant's own namespace, whatever TEMPORAL_NAMESPACE says.
        config["namespace"] = settings.namespace_for(settings.tenant)
    config.setdefault("target_host", f"localhost:{settings.dev_port}")
    plugins: list[Plugin] = [
        GraphrunnerPlugin(
            blobs=blobs or open_blobs(settings),
            payload_threshold=settings.payload_threshold_bytes,
            codec=codec_from_settings(settings),
        )
    ]
    traced = tracing_plugin(settings, tracer_provider)
    if traced is not None:
        plugins.append(traced)
    try:
        return await Client.connect(**config, plugins=plugins, runtime=runtime)
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
    paused: list[PauseInfo] = field(default_factory=list)
    failure: str | None = None
    stalled: str | None = None
    children: dict[str, LifetimeInfo] = field(default_factory=dict)
    """The status of each sub-graph task's child lifetime, by its id (see `StepRecord.child`)."""
    state: dict[str, Any] | None = None
    """The lifetime state (graphs that declare one): at its end when it completed, else now
    if a worker answered the ``state`` query within a few seconds."""
    phase: str | None = None
    """graphrunner's own status (the ``GraphrunnerStatus`` search attribute): running,
    waiting, paused, completed, failed, aborted or cancelled; None for a lifetime started
    without it."""
    waiting: list[HumanRequest] = field(default_factory=list)
    """Human-input requests the lifetime waits on (from its memo: no worker needed)."""
    refused: list[RefusedAnswer] = field(default_factory=list)
    """The newest signalled answers it refused (from its memo)."""
    runs: int = 1
    """How many runs the lifetime has had: more than one when it continued as new."""
    earlier_steps: int = 0
    """Steps taken in earlier runs (``steps`` holds the current run's, numbered after them;
    `GraphrunnerClient.steps` lists them all)."""


@dataclass(frozen=True, kw_only=True)
class LifetimeRow:
    """One line of `GraphrunnerClient.list_lifetimes`."""

    lifetime_id: str
    status: str
    graph_name: str
    tenant: str
    started_at: str
    closed_at: str | None
    executions: int = 0
    tokens: int = 0
    cost_usd: str = "0"

    def with_totals(self, totals: LifetimeSummary | None) -> LifetimeRow:
        """This row with the record totals filled in."""
        if totals is None:
            return self
        return replace(
            self, executions=totals.executions, tokens=totals.tokens, cost_usd=str(totals.cost_usd)
        )


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


# Temporal's default workflow id limit; the state DB's tenant column.
MAX_LIFETIME_ID = 1000
MAX_TENANT = 255


def _check_label(what: str, value: str, limit: int) -> None:
    """Refuse an id or tenant the server or the state DB would refuse later, on every retry."""
    if not value or len(value) > limit:
        raise BadValue(f"a {what} must have 1 to {limit} characters, not {len(value)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise BadValue(f"a {what} may not contain control characters: {value[:100]!r}")


_M = TypeVar("_M", bound=BaseModel)


def _request(model: type[_M], verb: str, **fields: Any) -> _M:
    """An update's request, or one clear error naming the field that is out of bounds."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise BadValue(f"cannot {verb}: {field}: {first['msg']}") from None


def _status_name(status: str) -> str:
    names = {s.name.lower(): s.name for s in WorkflowExecutionStatus}
    if status.lower() not in names:
        raise GraphrunnerError(f"unknown status '{status}': use one of {', '.join(sorted(names))}")
    # Visibility spells statuses in CamelCase: Running, Completed, ContinuedAsNew ...
    return "".join(part.capitalize() for part in status.lower().split("_"))


def _completed(history: WorkflowHistory) -> bool:
    events = history.events
    return bool(events) and events[-1].HasField("workflow_execution_completed_event_attributes")


class LifetimeHandle(WorkflowHandle[Any, LifetimeResult]):
    """A lifetime's Temporal handle whose `result` also reads the lifetime's path.

    The workflow's own result leaves the path out (history has it); this handle reads it
    back from history, so ``(await handle.result()).steps`` is the path the lifetime took.

    Attributes:
        attached: None when the call that returned this handle started the lifetime; else
            the Temporal status (``running``, ``completed`` ...) of the existing lifetime
            with that id it attached to.
    """

    attached: str | None = None

    async def result(
        self,
        *,
        follow_runs: bool = True,
        rpc_metadata: Mapping[str, str | bytes] = {},
        rpc_timeout: timedelta | None = None,
    ) -> LifetimeResult:
        """Wait for the lifetime's result and read its path from history."""
        result: LifetimeResult = await super().result(
            follow_runs=follow_runs, rpc_metadata=rpc_metadata, rpc_timeout=rpc_timeout
        )
        return await _with_path(self, result)


async def _with_path(handle: WorkflowHandle[Any, Any], result: LifetimeResult) -> LifetimeResult:
    # The history's path, merged with the rejected steps the result names (see
    # steps_from_history).
    client = handle._client
    # The run this handle started, when it is the one that completed (not a later lifetime
    # that reused the id); else the newest run (the result followed a reset or a new run).
    run = handle.result_run_id or handle.run_id
    latest = client.get_workflow_handle(handle.id, run_id=run)
    history = await latest.fetch_history()
    if run is None or not _completed(history):
        latest = client.get_workflow_handle(handle.id)
        history = await latest.fetch_history()
    run_id = run_of(history) or (await latest.describe()).run_id
    steps = await steps_from_history(history, handle._client.data_converter, run_id=run_id)
    own_steps(history, run_id, steps)
    return result.model_copy(update={"steps": steps or result.steps})


class GraphrunnerClient:
    """Start and inspect AgentLifetimes.

    Example:
        >>> client = await GraphrunnerClient.connect()
        >>> handle = await client.start("examples/research.yaml", {"topic": "durability"})
        >>> result = await client.result(handle.id)
    """

    def __init__(
        self,
        temporal: Client,
        *,
        settings: Settings | None = None,
        records: RecordStore | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self.temporal = temporal
        self.settings = settings or Settings.from_env()
        self._records = records
        self._blobs = blobs
        # The attributes lifetimes start with (None: all; fewer where the server lacks some
        # and refused to register them).
        self._attrs_present: set[str] | None = None
        self._owners: dict[str, str] = {}

    @property
    def tenant(self) -> str | None:
        """The tenant this client is bound to (``GRAPHRUNNER_TENANT``), or None: any tenant."""
        return self.settings.tenant

    def _tenant_to_start(self, tenant: str | None) -> str:
        """The owner of a new lifetime: the bound tenant, else ``tenant`` or ``default``."""
        bound = self._as_bound(tenant, "start lifetimes of")
        return bound if bound is not None else "default"

    def _tenant_filter(self, tenant: str | None) -> str | None:
        """The tenant a query across lifetimes is narrowed to (the bound one, if any)."""
        return self._as_bound(tenant, "read")

    def _as_bound(self, tenant: str | None, verb: str) -> str | None:
        """``tenant``, or the bound tenant; `OtherTenant` if a bound client is asked another."""
        bound = self.settings.tenant
        if bound is None:
            return tenant
        if tenant is not None and tenant != bound:
            raise OtherTenant(
                None,
                bound,
                f"this client is bound to tenant '{bound}': it cannot {verb} tenant '{tenant}'",
            )
        return bound

    async def check_owner(self, lifetime_id: str) -> None:
        """Refuse (`OtherTenant`) a lifetime not of the bound tenant; nothing when unbound.

        The owner is the lifetime's ``GraphrunnerTenant`` search attribute, else its memo.
        """
        bound = self.settings.tenant
        if bound is None or self._owners.get(lifetime_id) == bound:
            return
        if await self._owner_of(lifetime_id) != bound:
            raise OtherTenant(lifetime_id, bound)
        if len(self._owners) >= _OWNERS_KEPT:
            self._owners.clear()
        self._owners[lifetime_id] = bound

    async def _owner_of(self, lifetime_id: str) -> str | None:
        """The tenant of the lifetime with this id; None if there is none (in this namespace).

        Raises:
            GraphrunnerError: The client's namespace does not exist.
        """
        try:
            desc = await self.temporal.get_workflow_handle(lifetime_id).describe()
        except RPCError as exc:
            details = [d.type_url for d in exc.grpc_status.details]
            if any(url.endswith("NamespaceNotFoundFailure") for url in details):
                hint = f" --tenant {self.settings.tenant}" if self.settings.tenant else ""
                raise GraphrunnerError(
                    f"namespace {self.temporal.namespace} does not exist: create it with "
                    f"'graphrunner setup{hint}' ({exc.message})"
                ) from None
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        owner = desc.typed_search_attributes.get(TENANT_KEY)
        if owner is None:
            owner = (await desc.memo()).get("tenant")
        return str(owner) if owner is not None else None

    async def owns(self, lifetime_id: str) -> bool:
        """Whether this client may act on the lifetime (always, when it is not bound)."""
        try:
            await self.check_owner(lifetime_id)
        except OtherTenant:
            return False
        return True

    def _own_records(self, lifetime_id: str, rows: list[_Owned]) -> list[_Owned]:
        return own_rows(self.settings.tenant, lifetime_id, rows)

    @property
    def records(self) -> RecordStore:
        """The state DB (opened on first use from settings)."""
        if self._records is None:
            self._records = open_records(self.settings)
        return self._records

    @property
    def blobs(self) -> BlobStore:
        """The blob store (opened on first use from settings)."""
        if self._blobs is None:
            self._blobs = open_blobs(self.settings)
        return self._blobs

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        address: str | None = None,
        namespace: str | None = None,
    ) -> GraphrunnerClient:
        """Connect to Temporal; raises `ServerUnreachable` if nothing answers.

        Args:
            settings: graphrunner's settings (default: from ``GRAPHRUNNER_*`` variables).
            address: ``host:port`` of the Temporal frontend (default: ``TEMPORAL_ADDRESS``,
                then temporal.toml, then the embedded dev server's port).
            namespace: Temporal namespace (default: ``TEMPORAL_NAMESPACE``, else
                ``default``).

        A worker built from this client (``build_worker(client)``) uses the same settings,
        state DB and blob store.
        """
        settings = settings or Settings.from_env()
        blobs = open_blobs(settings)
        temporal = await connect_temporal(
            settings, target_host=address, namespace=namespace, blobs=blobs
        )
        return cls(temporal, settings=settings, blobs=blobs)

    async def start(
        self,
        graph: AgentGraph | str | Path,
        input: Any = None,
        *,
        id: str | None = None,
        tenant: str | None = None,
        task_queue: str | None = None,
        search_attributes: bool = True,
    ) -> LifetimeHandle:
        """Start a lifetime of ``graph`` (a model, or a YAML path) and return its handle.

        The graph's full definition and hash travel in the workflow input, so later edits to
        the file never change this lifetime.

        The graph is validated first, and so is the input: a model by the rules of
        ``graphrunner validate`` without importing node implementations (workers do that), a
        path by `load_graph`, which imports them.

        Starting is safe to repeat: an ``id`` names one lifetime. If a lifetime with that id
        exists, running or closed (within the namespace's retention), nothing is started
        and the handle is that lifetime's, with ``handle.attached`` set to its Temporal
        status (Temporal's ``USE_EXISTING`` conflict policy, ``REJECT_DUPLICATE`` reuse
        policy). The input is not compared; the graph's name and version are.

        Args:
            graph: The graph, or a path to its YAML.
            input: JSON input (see `graphrunner._values`: finite numbers, integers of at most
                4,000 digits, nesting at most 100 deep); the start task receives it as ``data``.
            id: Lifetime id (the workflow id); generated from the graph name if omitted.
            tenant: Owner of the lifetime (default: the tenant the client is bound to, else
                ``default``); a bound client refuses any other (`OtherTenant`).
            task_queue: Task queue of the workers (default from settings: the tenant's own
                with ``tenant_task_queues``).
            search_attributes: Tag the lifetime with graphrunner's search attributes
                (GraphrunnerGraph, GraphrunnerVersion, GraphrunnerTenant, GraphrunnerStatus,
                GraphrunnerCostUsd); the server must have them registered (``graphrunner
                dev`` and ``graphrunner setup`` do; a dev server lets the client do it).

        Raises:
            GraphError: The graph is invalid; nothing was started.
            BadValue: The input is not JSON a lifetime can carry; nothing was started.
            BadValue: The id (1-1,000 characters) or tenant (1-255) is out of bounds or
                holds control characters; nothing was started.
            GraphrunnerError: A lifetime with this id exists and runs another graph.
        """
        tenant = self._tenant_to_start(tenant)
        graph, arg, lifetime_id = self._lifetime_input(graph, input, id=id, tenant=tenant)
        attrs = self._start_attributes(graph, tenant) if search_attributes else None

        async def start(attrs: TypedSearchAttributes | None) -> LifetimeHandle:
            started = await self.temporal.start_workflow(
                LIFETIME_WORKFLOW,
                arg,
                id=lifetime_id,
                result_type=LifetimeResult,
                **self._start_options(graph, tenant, task_queue, attrs),
            )
            handle = LifetimeHandle(
                self.temporal,
                started.id,
                run_id=started.run_id,
                result_run_id=started.result_run_id,
                first_execution_run_id=started.first_execution_run_id,
                result_type=LifetimeResult,
            )
            # USE_EXISTING answers "started: false" for the running lifetime it attached to
            # (the SDK keeps the response, it does not say it).
            response = getattr(started, "_start_workflow_response", None)
            if response is not None and not getattr(response, "started", True):
                await self._attach(handle, graph, tenant)
            return handle

        try:
            return await self._with_attributes(start, attrs)
        except WorkflowAlreadyStartedError as exc:  # a closed lifetime has this id
            handle = LifetimeHandle(
                self.temporal, lifetime_id, run_id=exc.run_id, result_type=LifetimeResult
            )
            await self._attach(handle, graph, tenant)
            return handle

    def _lifetime_input(
        self, graph: AgentGraph | str | Path, input: Any, *, id: str | None, tenant: str
    ) -> tuple[AgentGraph, LifetimeInput, str]:
        """The validated graph, the workflow input and the lifetime id of a start."""
        if not isinstance(graph, AgentGraph):
            graph = load_graph(graph)
        graph_hash = graph.content_hash()
        issues = graph_issues(graph, graph_hash)  # once per graph hash in this process
        if issues:
            raise GraphError(list(issues))
        check_value(input, "lifetime input")
        _check_label("tenant", tenant, MAX_TENANT)
        if id is not None:
            _check_label("lifetime id", id, MAX_LIFETIME_ID)
        lifetime_id = id or f"{graph.name}-{uuid.uuid4().hex[:12]}"
        arg = LifetimeInput(
            graph=graph, graph_hash=graph_hash, input=input, tenant=tenant, format=INPUT_FORMAT
        )
        return graph, arg, lifetime_id

    def _start_options(
        self,
        graph: AgentGraph,
        tenant: str,
        task_queue: str | None,
        attrs: TypedSearchAttributes | None,
    ) -> dict[str, Any]:
        """Options of every lifetime start (plain, or with an update)."""
        own = self.settings.task_queue_for(tenant)
        if (
            task_queue not in (None, own)
            and self.settings.tenant
            and self.settings.tenant_task_queues
        ):
            # A bound client with queues per tenant runs its lifetimes on its own queue only.
            raise OtherTenant(
                None,
                self.settings.tenant,
                f"tenant '{tenant}' runs on task queue '{own}', not '{task_queue}'",
            )
        return {
            "task_queue": task_queue or own,
            # Fair dispatch between tenants on a shared queue; activities and child
            # lifetimes inherit it (servers without fairness ignore it).
            "priority": Priority(
                fairness_key=fairness_key(tenant),
                fairness_weight=self.settings.fairness_weight(tenant),
            ),
            "static_summary": f"{graph.name} {graph.version}",
            "static_details": graph.description or None,
            "search_attributes": attrs,
            "memo": {"graph": graph.name, "version": graph.version, "tenant": tenant},
            # One lifetime per id: a repeated start attaches to it, running or closed.
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        }

    def _start_attributes(self, graph: AgentGraph, tenant: str) -> TypedSearchAttributes:
        return start_attributes(graph.name, graph.version, tenant, only=self._attrs_present)

    async def _with_attributes(
        self,
        start: Callable[[TypedSearchAttributes | None], Awaitable[_R]],
        attrs: TypedSearchAttributes | None,
    ) -> _R:
        """``start(attrs)``; on a server without graphrunner's attributes, register them.

        A dev server lets any client register them; where the server refuses, lifetimes
        start with those the namespace has, saying so once.
        """
        try:
            return await start(attrs)
        except RPCError as exc:
            if attrs is None or "search attribute" not in str(exc).lower():
                raise
        if await self.register_search_attributes():
            return await start(attrs)
        try:
            present = set(await present_attributes(self.temporal))
        except RPCError:
            present = set()
        self._attrs_present = {k.name for k in SEARCH_ATTRIBUTES} & present
        missing = sorted({k.name for k in SEARCH_ATTRIBUTES} - present)
        _log.warning(
            "the server has no %s search attribute(s) and refused to register them; "
            "lifetimes start without (run 'graphrunner setup' where you may)",
            ", ".join(missing),
        )
        pairs = [p for p in attrs if p.key.name in self._attrs_present]
        return await start(TypedSearchAttributes(pairs) if pairs else None)

    async def _attach(self, handle: LifetimeHandle, graph: AgentGraph, tenant: str) -> None:
        """Mark ``handle`` as attached to an existing lifetime of ``tenant`` running ``graph``."""
        desc = await handle.describe()
        memo = await desc.memo()
        if memo.get("tenant") != tenant:  # never hand out another tenant's lifetime
            raise GraphrunnerError(
                f"a lifetime with id '{handle.id}' already exists: choose another id"
            )
        found = (memo.get("graph"), memo.get("version"))
        if found != (graph.name, graph.version):
            raise GraphrunnerError(
                f"a lifetime with id '{handle.id}' already exists and runs graph "
                f"'{found[0]}' {found[1]}, not '{graph.name}' {graph.version}: choose "
                "another id"
            )
        handle.attached = (desc.status or WorkflowExecutionStatus.RUNNING).name.lower()

    async def start_and_ask(
        self,
        graph: AgentGraph | str | Path,
        input: Any = None,
        *,
        id: str,
        tenant: str | None = None,
        task_queue: str | None = None,
    ) -> tuple[LifetimeHandle, FirstQuestion]:
        """Start a lifetime and wait, in the same call, until it first waits for a person.

        For programs that serve people: one call (Temporal's Update-with-Start, update
        ``graphrunner.first_question``) starts the lifetime, or attaches to the one with
        this ``id``, and returns when a human-input step asks (``phase`` ``waiting``, with
        the question) or the lifetime ends without asking (its final phase). Repeating
        the call with the same id starts nothing new.

        Raises:
            GraphError, BadValue: As `start`; nothing was started.
            GraphrunnerError: The lifetime with this id is closed, or runs another graph.
        """
        tenant = self._tenant_to_start(tenant)
        graph, arg, lifetime_id = self._lifetime_input(graph, input, id=id, tenant=tenant)
        attrs = self._start_attributes(graph, tenant)
        # Update-with-start asks a running lifetime with this id whoever owns it: never
        # another tenant's.
        owner = await self._owner_of(lifetime_id)
        if owner is not None and owner != tenant:
            raise GraphrunnerError(
                f"a lifetime with id '{lifetime_id}' already exists: choose another id"
            )

        async def ask(attrs: TypedSearchAttributes | None) -> tuple[str | None, FirstQuestion]:
            operation: WithStartWorkflowOperation[Any, LifetimeResult]
            operation = WithStartWorkflowOperation(
                LIFETIME_WORKFLOW,
                arg,
                id=lifetime_id,
                result_type=LifetimeResult,
                **self._start_options(graph, tenant, task_queue, attrs),
            )
            answer: FirstQuestion = await self.temporal.execute_update_with_start_workflow(
                FIRST_QUESTION,
                QuestionRequest(),
                start_workflow_operation=operation,
                result_type=FirstQuestion,
            )
            started = await operation.workflow_handle()
            return started.result_run_id, answer

        try:
            run_id, answer = await self._with_attributes(ask, attrs)
        except WorkflowAlreadyStartedError as exc:
            handle = LifetimeHandle(
                self.temporal, lifetime_id, run_id=exc.run_id, result_type=LifetimeResult
            )
            await self._attach(handle, graph, tenant)
            return handle, FirstQuestion(phase=await self._final_phase(handle))
        except WorkflowUpdateFailedError as exc:
            raise GraphrunnerError(f"cannot ask {lifetime_id}: {_cause(exc)}") from None
        # A lifetime that continued as new before asking anyone: its next run is asked.
        while answer.continued:
            try:
                answer = await self.temporal.get_workflow_handle(lifetime_id).execute_update(
                    FIRST_QUESTION, QuestionRequest(), result_type=FirstQuestion
                )
            except WorkflowUpdateFailedError as exc:
                raise GraphrunnerError(f"cannot ask {lifetime_id}: {_cause(exc)}") from None
        handle = LifetimeHandle(
            self.temporal, lifetime_id, result_run_id=run_id, result_type=LifetimeResult
        )
        return handle, answer

    async def _final_phase(self, handle: LifetimeHandle) -> LifetimePhase:
        """The phase a closed lifetime ended in (its GraphrunnerStatus, else its status)."""
        desc = await handle.describe()
        said = desc.typed_search_attributes.get(STATUS_KEY)
        if said in set(LifetimePhase):
            return LifetimePhase(said)
        return {
            WorkflowExecutionStatus.COMPLETED: LifetimePhase.COMPLETED,
            WorkflowExecutionStatus.CANCELED: LifetimePhase.CANCELLED,
        }.get(desc.status or WorkflowExecutionStatus.FAILED, LifetimePhase.FAILED)

    async def register_search_attributes(self) -> bool:
        """Register graphrunner's search attributes on the namespace; False if refused."""
        try:
            await setup_search_attributes(self.temporal)
        except GraphrunnerError as exc:
            _log.debug("cannot register search attributes: %s", exc)
            return False
        return True

    async def setup(self) -> list[AttributeSetup]:
        """Register graphrunner's search attributes on the namespace (``graphrunner setup``).

        Idempotent: attributes already present with the right type are left alone.

        Raises:
            GraphrunnerError: One exists with another type, or the server refused.
        """
        if self.settings.isolation == "hard":  # the tenant's own namespace, made if missing
            await ensure_namespace(self.temporal)
        return await setup_search_attributes(self.temporal)

    async def result(self, lifetime_id: str, *, reconnect_s: float | None = None) -> LifetimeResult:
        """Wait for the lifetime to finish and return its result (raises if it failed).

        Waiting survives a server that goes away for a while (a restart, a network blip):
        the client keeps trying, with backoff, for up to ``reconnect_s`` seconds of lost
        contact (default: the ``wait_reconnect_s`` setting, 300 s).

        Raises:
            temporalio.client.WorkflowFailureError: The lifetime failed.
            LostContact: The server could not be reached for ``reconnect_s``; the lifetime
                itself may still be running.
        """
        await self.check_owner(lifetime_id)
        patience = self.settings.wait_reconnect_s if reconnect_s is None else reconnect_s
        handle = self.temporal.get_workflow_handle(lifetime_id, result_type=LifetimeResult)
        lost_since: float | None = None
        delay = 0.2
        while True:
            try:
                result: LifetimeResult = await handle.result()
                return await _with_path(handle, result)
            except RPCError as exc:
                if exc.status not in _TRANSIENT:
                    raise
                # Lost since the last proof of contact: a short call that answers resets the
                # clock (the long poll itself may have run for hours before it broke).
                now = time.monotonic()
                if lost_since is None or await self._answers(handle):
                    lost_since = now
                if now - lost_since >= patience:
                    raise LostContact(
                        f"lost contact with Temporal while waiting for lifetime {lifetime_id} "
                        f"(no answer for {now - lost_since:.0f} s: {exc}); the lifetime may "
                        f"still be running: check with 'graphrunner status {lifetime_id}'"
                    ) from exc
                _log.warning("lost contact with Temporal (%s); trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    async def _answers(handle: WorkflowHandle[Any, Any]) -> bool:
        """Whether the server answers a quick describe of ``handle`` now."""
        try:
            await handle.describe(rpc_timeout=_PROBE_TIMEOUT)
        except RPCError:
            return False
        return True

    async def status(self, lifetime_id: str, *, children: bool = True) -> LifetimeInfo:
        """Describe a lifetime: Temporal status and its path, read from history.

        Needs no worker: the steps come from the workflow's event history. With
        ``children``, the status of every child lifetime its sub-graph tasks started is in
        ``children`` (recursively).
        """
        await self.check_owner(lifetime_id)
        handle = self.temporal.get_workflow_handle(lifetime_id)
        desc: WorkflowExecutionDescription = await handle.describe()
        history = await handle.fetch_history()
        steps = await steps_from_history(history, self.temporal.data_converter, run_id=desc.run_id)
        own_steps(history, desc.run_id, steps)  # after a reset: the base run's, before it
        carry = await carried_from(history, self.temporal.data_converter)
        status = desc.status or WorkflowExecutionStatus.RUNNING
        memo = await desc.memo()
        paused: list[PauseInfo] = []
        if status is WorkflowExecutionStatus.RUNNING:
            guardrails = await self._guardrails(lifetime_id, quick=True)
            paused = guardrails.paused if guardrails else []
        graph, completed, state = await state_from_history(history, self.temporal.data_converter)
        if not completed and graph is not None and graph.state is not None:
            state = (
                await self._state_now(handle) if status is WorkflowExecutionStatus.RUNNING else None
            )
        nested: dict[str, LifetimeInfo] = {}
        for step in steps if children else ():
            if step.child is not None and step.child not in nested:
                try:
                    nested[step.child] = await self.status(step.child)
                except (RPCError, OtherTenant) as exc:  # not started yet, or gone (retention)
                    _log.debug("child lifetime %s: %s", step.child, exc)
        return LifetimeInfo(
            lifetime_id=lifetime_id,
            children=nested,
            run_id=desc.run_id,
            status=status.name.lower(),
            graph_name=str(memo["graph"]) if memo.get("graph") else None,
            tenant=str(memo["tenant"]) if memo.get("tenant") else None,
            started_at=datetime.fromisoformat(str(carry["started_at"])).isoformat()
            if carry.get("started_at")
            else desc.start_time.isoformat()
            if desc.start_time
            else None,
            closed_at=desc.close_time.isoformat() if desc.close_time else None,
            running=[f"{s.node}#{s.iteration}" for s in steps if s.status is StepStatus.RUNNING],
            steps=steps,
            ui_url=self.ui_url(lifetime_id),
            paused=paused,
            failure=failure_from_history(history),
            stalled=stall_from_history(history)
            if status is WorkflowExecutionStatus.RUNNING
            else None,
            state=state,
            phase=desc.typed_search_attributes.get(STATUS_KEY),
            waiting=human.requests_in(memo, lifetime_id)
            if status is WorkflowExecutionStatus.RUNNING
            else [],
            refused=human.refused_of(memo),
            runs=int(carry.get("runs", 0)) + 1,
            earlier_steps=int(carry.get("seq", 0)),
        )

    # -- human input ----------------------------------------------------------------------

    async def pending(
        self,
        lifetime_id: str | None = None,
        *,
        tenant: str | None = None,
        graph: str | None = None,
        limit: int = 1000,
    ) -> list[HumanRequest]:
        """Human-input requests waiting for an answer, oldest first.

        Needs no worker and reads no history: waiting lifetimes keep their requests in their
        memo, and across lifetimes a visibility query narrows by tenant and graph (search
        attributes) before the memos are read.

        Args:
            lifetime_id: Only this lifetime's requests.
            tenant: Only lifetimes of this tenant (a bound client: its own, always).
            graph: Only lifetimes of this graph.
            limit: At most this many requests.
        """
        if lifetime_id is not None:
            await self.check_owner(lifetime_id)
            return (await human.pending_of(self.temporal, lifetime_id))[:limit]
        tenant = self._tenant_filter(tenant)
        return await human.pending_across(self.temporal, tenant=tenant, graph=graph, limit=limit)

    async def respond(
        self,
        lifetime_id: str,
        node: str,
        data: Any,
        *,
        request_id: str | None = None,
        by: str | None = None,
    ) -> HumanOutcome:
        """Answer a waiting human-input step by Update (``graphrunner.respond``).

        The lifetime validates the answer before taking it: a refusal (the node is not
        waiting, a stale request id, an answer that does not fit the schema, naming the
        field) is raised here and leaves no trace in the lifetime. Answering a request that
        was already answered returns the first answer's outcome (``duplicate`` set). Needs a
        worker: with none up, the call waits for one.

        Args:
            lifetime_id: The lifetime.
            node: The human task.
            data: The answer.
            request_id: The request (`HumanRequest.request_id`); default: the one request of
                ``node`` waiting now.
            by: Who answers, kept in the execution record (default: this client's identity).

        Raises:
            GraphrunnerError: The answer was refused, or the lifetime cannot be reached.
        """
        await self.check_owner(lifetime_id)
        who = by if by is not None else self.temporal.identity
        return await human.respond(
            self.temporal, lifetime_id, node, data, request_id=request_id, by=who
        )

    async def answer_by_signal(
        self,
        lifetime_id: str,
        node: str,
        data: Any,
        *,
        request_id: str | None = None,
        by: str | None = None,
    ) -> None:
        """Answer by Signal (``graphrunner.answer``): accepted by the server with no worker up.

        The lifetime checks it when a worker runs it; a refused one is kept in the lifetime
        (``status(...).refused``, the Web UI's current details) and the lifetime keeps
        waiting. Prefer `respond`, which tells the caller.
        """
        await self.check_owner(lifetime_id)
        who = by if by is not None else self.temporal.identity
        await human.answer(self.temporal, lifetime_id, node, data, request_id=request_id, by=who)

    @staticmethod
    async def _state_now(handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
        """A running lifetime's state, if a worker answers its query soon (status needs none)."""
        try:
            now: dict[str, Any] | None = await handle.query(
                "state", result_type=dict, rpc_timeout=timedelta(seconds=3)
            )
        except (RPCError, WorkflowQueryFailedError):
            return None
        return now

    async def guardrails(self, lifetime_id: str) -> GuardrailStatus:
        """A running lifetime's guardrails: its rules, why it is paused, decisions so far.

        Needs a worker (it is a query). Decisions are also kept in the state DB
        (`RecordStore.decisions`), which needs none.
        """
        await self.check_owner(lifetime_id)
        found = await self._guardrails(lifetime_id, quick=False)
        if found is None:
            raise GraphrunnerError(f"lifetime {lifetime_id} did not answer the guardrail query")
        return found

    async def _guardrails(self, lifetime_id: str, *, quick: bool) -> GuardrailStatus | None:
        handle = self.temporal.get_workflow_handle(lifetime_id)
        try:
            found: GuardrailStatus = await handle.query(
                GUARDRAIL_QUERY,
                result_type=GuardrailStatus,
                # status works without a worker; do not wait long for one to answer
                rpc_timeout=timedelta(seconds=3) if quick else None,
            )
        except (RPCError, WorkflowQueryFailedError):
            if not quick:
                raise
            return None
        return found

    async def resume(
        self,
        lifetime_id: str,
        *,
        when: str | None = None,
        rule: str | None = None,
        reason: str = "",
    ) -> ResumeResult:
        """Resume a lifetime paused by a guardrail (or by hand).

        Args:
            lifetime_id: The lifetime.
            when: A new condition for the rule that paused it (or ``rule``), for this lifetime
                only, e.g. ``sum(cost_usd) > 5`` to raise a $1 cap. Without it, the executions
                held by the pause go on and the rule keeps applying to later ones.
            rule: The rule ``when`` replaces (default: the one that paused the lifetime).
            reason: Kept in the decision record.

        Raises:
            GraphrunnerError: The lifetime is not paused, the rule is unknown or ``when`` is
                not a valid condition; the lifetime is unaffected.
        """
        request = _request(ResumeRequest, "resume", when=when, rule=rule, reason=reason)
        return await self._update("resume", lifetime_id, RESUME, request, ResumeResult)

    async def pause(self, lifetime_id: str, *, reason: str = "") -> PauseInfo:
        """Pause a lifetime by hand: no further node is scheduled until `resume`."""
        request = _request(PauseRequest, "pause", reason=reason)
        return await self._update("pause", lifetime_id, PAUSE, request, PauseInfo)

    async def abort(self, lifetime_id: str, *, reason: str = "") -> Decision:
        """End a lifetime now as a non-retryable failure (``GuardrailAborted``), by hand.

        A node still running can no longer complete; the abort is recorded as a guardrail
        decision.
        """
        request = _request(AbortRequest, "abort", reason=reason)
        return await self._update("abort", lifetime_id, ABORT, request, Decision)

    async def cancel(self, lifetime_id: str, *, reason: str = "") -> None:
        """Cancel a lifetime: Temporal's cancellation, recorded, and it ends ``cancelled``.

        Returns once the server accepted the request. The lifetime asks its running nodes
        to cancel (a node learns it at its next heartbeat: within 0.8 x its heartbeat timeout,
        else within the worker's heartbeat throttle, 10 s; a local plan at once), records
        the cancellation as a guardrail decision (rule ``cancel``, with ``reason``), gives
        its tenant reservations back, and ends with Temporal status ``canceled``. Unlike
        `abort` it is not a failure, and unlike Temporal's terminate the lifetime's own code
        runs to the end.

        Raises:
            ControlRefused: The lifetime is closed or unknown.
        """
        await self.check_owner(lifetime_id)
        request = _request(AbortRequest, "cancel", reason=reason)  # the same bounds
        handle = self.temporal.get_workflow_handle(lifetime_id)
        try:
            # The server accepts a cancel of a closed workflow, and does nothing: say so.
            status = (await handle.describe()).status
            if status not in (None, WorkflowExecutionStatus.RUNNING):
                raise ControlRefused(
                    "cancel", lifetime_id, f"the lifetime is {status.name.lower()}"
                )
            await handle.cancel(reason=request.reason)
        except RPCError as exc:
            raise ControlRefused("cancel", lifetime_id, exc.message) from None

    async def control_many(
        self,
        action: str,
        query: str,
        *,
        reason: str = "",
        when: str | None = None,
        rule: str | None = None,
        limit: int = BULK_LIMIT,
    ) -> list[BulkOutcome]:
        """Pause, resume, abort or cancel every running lifetime a visibility query matches.

        ``query`` is a Temporal list filter (``GraphrunnerTenant = 'acme'``,
        ``GraphrunnerStatus = 'paused' AND GraphrunnerGraph = 'research'``); it is narrowed
        to running AgentLifetimes. The actions run 16 at a time; each lifetime's outcome is
        reported, in the order visibility listed them (newest first). ``when`` and ``rule``
        are `resume`'s.

        Raises:
            GraphrunnerError: An unknown action, an invalid query, or more than ``limit``
                matching lifetimes (then nothing is done).
        """
        acts: dict[str, Callable[[str], Awaitable[str]]] = {
            "pause": lambda i: self._said(self.pause(i, reason=reason), "paused"),
            "resume": lambda i: self._said(
                self.resume(i, when=when, rule=rule, reason=reason), "resumed"
            ),
            "abort": lambda i: self._said(self.abort(i, reason=reason), "aborted"),
            "cancel": lambda i: self._said(self.cancel(i, reason=reason), "cancel requested"),
        }
        act = acts.get(action)
        if act is None:
            raise GraphrunnerError(f"unknown action {action!r}: use one of {', '.join(acts)}")
        if self.settings.tenant is not None:  # a bound client acts on its tenant's only
            _check_balanced(query)  # "x') OR ('1'='1" cannot escape the tenant clause
            query = f"({query}) AND {TENANT_KEY.name} = '{self.settings.tenant}'"
        ids = await matching_lifetimes(self.temporal, query, limit=limit)
        ids = [i for i in ids if await self.owns(i)]
        return await run_bulk(ids, act)

    @staticmethod
    async def _said(done: Awaitable[object], what: str) -> str:
        await done
        return what

    async def _update(
        self, verb: str, lifetime_id: str, update: str, request: object, result: type[_R]
    ) -> _R:
        """Run one of the guardrail updates; a refusal or a closed lifetime is one clear error."""
        await self.check_owner(lifetime_id)
        handle = self.temporal.get_workflow_handle(lifetime_id)
        try:
            answer: _R = await handle.execute_update(update, request, result_type=result)
        except (WorkflowUpdateFailedError, RPCError) as exc:
            # A validator's refusal comes back as "ValueError: <why>": the why is the answer.
            reason = _cause(exc).removeprefix("ValueError: ")
            raise ControlRefused(verb, lifetime_id, reason) from None
        return answer

    async def state(self, lifetime_id: str, *, step: int | None = None) -> StateAt:
        """A lifetime's state: now (or at its end), or after step ``step``.

        The state now comes from the lifetime's result when it completed (no worker needed),
        else from its ``state`` query (a worker answers). The state after a step comes from
        that step's execution record (see `graphrunner.client.StateAt`), which needs the
        state DB the workers record into.

        Raises:
            GraphrunnerError: The graph declares no state, there is no such step, or no
                worker answered the query of a running lifetime.
        """
        await self.check_owner(lifetime_id)
        handle = self.temporal.get_workflow_handle(lifetime_id)
        try:
            history = await handle.fetch_history()
        except RPCError as exc:
            raise GraphrunnerError(f"cannot read lifetime {lifetime_id}: {_cause(exc)}") from None
        graph, completed, final = await state_from_history(history, self.temporal.data_converter)
        if graph is None:
            raise GraphrunnerError(f"{lifetime_id} is not a graphrunner lifetime")
        if graph.state is None:
            raise GraphrunnerError(
                f"graph '{graph.name}' {graph.version} of lifetime {lifetime_id} declares no state"
            )
        if step is not None:
            records = self._own_records(lifetime_id, await self.records.executions(lifetime_id))
            return await state_after(
                lifetime_id, step, records, self.blobs, graph, cipher=self.records.cipher
            )
        if completed:
            return StateAt(lifetime_id=lifetime_id, state=final)
        try:
            now = await handle.query("state", result_type=dict, rpc_timeout=_QUERY_TIMEOUT)
        except (RPCError, WorkflowQueryFailedError) as exc:
            raise GraphrunnerError(
                f"no worker answered for lifetime {lifetime_id} ({_cause(exc)}); its state "
                "after a recorded step needs none: pass step"
            ) from None
        return StateAt(lifetime_id=lifetime_id, state=now)

    async def history(self, lifetime_id: str) -> list[ExecutionRecord]:
        """Every recorded execution of a lifetime, in the order the workflow scheduled them.

        A tenant-bound client gets its tenant's records only (`OtherTenant` for another's).
        """
        return self._own_records(lifetime_id, await self.records.executions(lifetime_id))

    async def decisions(self, lifetime_id: str) -> list[DecisionRecord]:
        """The guardrail decisions taken on a lifetime (a bound client: its tenant's only)."""
        await self.history(lifetime_id)  # refuses another tenant's lifetime
        return self._own_records(lifetime_id, await self.records.decisions(lifetime_id))

    async def superseded(self, lifetime_id: str, records: list[ExecutionRecord]) -> dict[str, str]:
        """Which of ``records`` a reset abandoned: execution id -> the run that replaced it."""
        return superseded_records(records, await self.steps(lifetime_id))  # steps checks

    async def steps(self, lifetime_id: str) -> LifetimeSteps:
        """Every step of a lifetime across all its runs, with its reset point.

        Steps a reset abandoned are kept, marked ``superseded_by`` the run that replaced
        them; resets made in the Web UI or with ``temporal workflow reset`` count too.
        """
        await self.check_owner(lifetime_id)
        return await lifetime_steps(self.temporal, lifetime_id)

    async def reset(
        self,
        lifetime_id: str,
        *,
        step: int,
        drop_answers: bool = False,
        reason: str = "",
        dry_run: bool = False,
    ) -> ResetResult:
        """Reset a lifetime to the workflow-task boundary before step ``step`` (``#``).

        Steps from there on run again, in a new run, with the current code; human answers
        received after the boundary are re-applied unless ``drop_answers``. With
        ``dry_run``, only says what would run again.

        Raises:
            GraphrunnerError: The lifetime has no such step.
        """
        await self.check_owner(lifetime_id)
        return await reset_to_step(
            self.temporal,
            lifetime_id,
            step,
            drop_answers=drop_answers,
            reason=reason,
            dry_run=dry_run,
        )

    async def fork(
        self,
        lifetime_id: str,
        step: int,
        *,
        input: Any = PARENT_INPUT,
        graph: AgentGraph | str | Path | None = None,
        id: str | None = None,
        task_queue: str | None = None,
    ) -> ForkResult:
        """Start a new lifetime that takes ``lifetime_id``'s steps before ``step`` and runs on.

        DBOS's ``fork_workflow`` for graphrunner: the parent's steps numbered below ``step``
        (``#`` in `steps`) are not run again (the fork's history has no activity, marker or
        child for them); their recorded outcomes, read from the parent's history, are
        handed over in the order the parent saw them complete, so the lifetime state at
        ``step`` is rebuilt from the same updates. Human answers before ``step`` are
        carried, later ones are not (the fork asks again); a child lifetime that finished
        before it is reused, one at or after it runs again under a new id. From ``step`` on
        the fork runs with the code the workers have now, on the parent's pinned graph or on
        ``graph`` when that is compatible up to ``step``. The fork is marked
        ``<parent>#<step>``: its ``GraphrunnerForkOf`` search attribute and every record
        it writes (``forked_from``). The parent is untouched.

        Args:
            lifetime_id: The parent lifetime.
            step: The first step the fork runs.
            input: The fork's input (default: the parent's).
            graph: A new version of the graph (a model or a YAML path), validated, and
                checked to take the parent's steps before ``step``.
            id: The fork's id (default ``<parent>-fork-<step>-<6 hex>``); must be new.
            task_queue: Task queue of the workers (default from settings).

        Raises:
            GraphrunnerError: No such step; a step before it is running, failed or was
                rejected; the parent is a child lifetime; ``graph`` cannot take the parent's
                steps (naming the step); a lifetime with ``id`` exists.
            GraphError: ``graph`` is invalid.
            BadValue: ``input`` or ``id`` cannot be carried.
        """
        await self.check_owner(lifetime_id)
        plan = await plan_fork(self.temporal, lifetime_id, step)
        parent = plan.parent
        model = parent.graph
        if graph is not None:
            model = graph if isinstance(graph, AgentGraph) else load_graph(graph)
            check_compatible(model, plan.seed, f"'{model.name}' {model.version}")
        data = parent.input if input is PARENT_INPUT else input
        new_graph, arg, new_id = self._lifetime_input(
            model, data, id=id or fork_id(lifetime_id, step), tenant=parent.tenant
        )
        arg.fork = plan.seed
        arg.carry = plan.seed.forked(parent.carry)
        if arg.carry is not None and arg.carry.node not in {n.name for n in model.nodes}:
            raise GraphrunnerError(
                f"cannot fork {lifetime_id} at step #{step} with graph '{model.name}' "
                f"{model.version}: the parent's walk goes on at node '{arg.carry.node}', "
                "which that graph lacks"
            )
        mark = plan.seed.mark
        pairs = [
            *self._start_attributes(new_graph, parent.tenant),
            SearchAttributePair(FORK_KEY, mark),
        ]
        attrs = TypedSearchAttributes(
            [p for p in pairs if self._attrs_present is None or p.key.name in self._attrs_present]
        )
        options = self._start_options(new_graph, parent.tenant, task_queue, attrs)
        options["static_details"] = f"fork of {lifetime_id} from step #{step}"
        # A fork is always new: an existing id is an error, never attached to.
        options["id_conflict_policy"] = WorkflowIDConflictPolicy.FAIL

        async def start(attrs: TypedSearchAttributes | None) -> str:
            started = await self.temporal.start_workflow(
                LIFETIME_WORKFLOW,
                arg,
                id=new_id,
                result_type=LifetimeResult,
                **{**options, "search_attributes": attrs},
            )
            return started.run_id or started.result_run_id or ""

        try:
            run_id = await self._with_attributes(start, attrs)
        except WorkflowAlreadyStartedError:
            raise GraphrunnerError(
                f"a lifetime with id '{new_id}' already exists: choose another id for the fork"
            ) from None
        return ForkResult(
            lifetime_id=new_id,
            run_id=run_id,
            parent_id=lifetime_id,
            parent_run_id=plan.seed.parent_run_id,
            step=step,
            forked_from=mark,
            memoized=plan.memoized,
            first=plan.first,
            graph_changed=new_graph.content_hash() != parent.graph_hash,
            ui_url=self.ui_url(new_id),
        )

    async def attempts(self, lifetime_id: str) -> list[AttemptRecord]:
        """Every finished attempt of a lifetime's executions, failed ones with their error.

        Temporal keeps only an activity's last failure; the state DB keeps each attempt, in
        the order the workflow scheduled the executions (``seq``), then by attempt.
        """
        await self.history(lifetime_id)  # refuses another tenant's lifetime
        return await lifetime_attempts(self.records, lifetime_id, tenant=self.settings.tenant)

    async def list_lifetimes(
        self,
        *,
        graph: str | None = None,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[LifetimeRow]:
        """Lifetimes, newest first: status from Temporal, totals from the records.

        Args:
            graph: Only lifetimes of this graph.
            tenant: Only lifetimes of this tenant (a bound client: its own, always).
            status: Only lifetimes in this Temporal status (running, completed, failed, ...).
            limit: At most this many.
        """
        tenant = self._tenant_filter(tenant)
        clauses = [f"WorkflowType = '{LIFETIME_WORKFLOW}'"]
        if status:
            clauses.append(f"ExecutionStatus = '{_status_name(status)}'")
        if tenant and TENANT_NAME.match(tenant) and self._has_attribute(TENANT_KEY.name):
            clauses.append(f"{TENANT_KEY.name} = '{tenant}'")  # the server narrows, not us
        rows: list[LifetimeRow] = []
        async for wf in self.temporal.list_workflows(" AND ".join(clauses), limit=limit * 4):
            memo = await wf.memo()
            if graph and memo.get("graph") != graph or tenant and memo.get("tenant") != tenant:
                continue
            rows.append(
                LifetimeRow(
                    lifetime_id=wf.id,
                    status=(wf.status or WorkflowExecutionStatus.RUNNING).name.lower(),
                    graph_name=str(memo.get("graph", "")),
                    tenant=str(memo.get("tenant", "")),
                    started_at=wf.start_time.isoformat(),
                    closed_at=wf.close_time.isoformat() if wf.close_time else None,
                )
            )
            if len(rows) >= limit:
                break
        totals = {
            s.lifetime_id: s
            for s in await self.records.lifetimes(
                lifetime_ids=[r.lifetime_id for r in rows], tenant=self.settings.tenant
            )
        }
        return [r.with_totals(totals.get(r.lifetime_id)) for r in rows]

    async def costs(self, by: str = "tenant") -> list[CostRow]:
        """Token and cost totals per tenant or per graph, from the records.

        A tenant-bound client sees its own tenant's totals only.
        """
        return await self.records.costs(by, tenant=self.settings.tenant)

    def stream_result(self, record: ExecutionRecord) -> AsyncIterator[bytes]:
        """The JSON bytes of an execution's result; a large one is streamed from the blob store."""
        self._own_records(record.lifetime_id, [record])
        if self.settings.tenant is not None:
            return self._stream_stored(record)
        return stream_result(record, self.blobs, self.records.cipher)

    async def _stream_stored(self, record: ExecutionRecord) -> AsyncIterator[bytes]:
        # A bound client streams the record as the state DB has it, not as the caller says
        # (a record built by hand could name another tenant's blob).
        stored = [
            r
            for r in self._own_records(
                record.lifetime_id, await self.records.executions(record.lifetime_id)
            )
            if r.execution_id == record.execution_id
        ]
        if not stored:
            raise OtherTenant(record.lifetime_id, str(self.settings.tenant))
        async for chunk in stream_result(stored[0], self.blobs, self.records.cipher):
            yield chunk

    def _has_attribute(self, name: str) -> bool:
        return self._attrs_present is None or name in self._attrs_present

    def ui_url(self, lifetime_id: str) -> str:
        """Link to the lifetime in the Temporal Web UI.

        The id is escaped: a child lifetime's (``parent/solve-1-…``) holds a slash, which the
        UI would read as a run id.
        """
        namespace = quote(self.temporal.namespace, safe="")
        workflow_id = quote(lifetime_id, safe="")
        return f"{self.settings.web_ui()}/namespaces/{namespace}/workflows/{workflow_id}"
