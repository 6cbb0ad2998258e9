"""Build and run a graphrunner worker: the lifetime workflow and the node activities.

`build_worker` is `temporalio.worker.Worker` with a `GraphrunnerPlugin`: from a
`GraphrunnerClient` (or a Temporal client and `Settings`) it takes the task queue, the state
DB and blob store the records go to, the guardrail policies and the allowed impl modules,
so a client and a worker made from one settings object agree. Every other Worker option
passes through.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from graphrunner._converter import GraphrunnerPayloadConverter
from graphrunner._settings import Settings
from graphrunner._tracing import worker_tracing
from graphrunner.activities import Recorder
from graphrunner.codec import codec_from_settings
from graphrunner.guardrails._interceptor import GuardrailInterceptor
from graphrunner.guardrails._sources import PolicySource
from graphrunner.llm._cooldowns import CooldownStore, MemoryCooldowns
from graphrunner.llm._runtime import LlmRuntime
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import open_blobs, open_records
from graphrunner.stores._blobs import BlobStore
from graphrunner.stores._cooldowns import SqlCooldowns

if TYPE_CHECKING:
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

    from graphrunner.client import GraphrunnerClient

__all__ = [
    "FROM_SETTINGS",
    "GuardrailInterceptor",
    "build_worker",
    "load_policies",
    "open_llm",
    "open_recorder",
]

_MAX_ACTIVITIES = 100
_STICKY_TIMEOUT = timedelta(seconds=10)  # the SDK's default
# How often a node without a heartbeat timeout reports (and so learns of a cancellation);
# the SDK's default is 30 s.
_HEARTBEAT_THROTTLE = timedelta(seconds=10)


class _FromSettings:
    def __repr__(self) -> str:
        return "FROM_SETTINGS"


FROM_SETTINGS: Final = _FromSettings()
"""`build_worker`'s default ``recorder``: record as the settings say (on unless
``GRAPHRUNNER_RECORD=0``), into the settings' state DB and blob store."""


def open_recorder(settings: Settings, *, blobs: BlobStore | None = None) -> Recorder | None:
    """The recorder a worker writes execution records with, or None if recording is off."""
    if not settings.record:
        return None
    return Recorder(
        open_records(settings),
        blobs or open_blobs(settings),
        inline_limit=settings.inline_limit_bytes,
        encrypt=settings.encrypt_records,
    )


def open_llm(settings: Settings, recorder: Recorder | None) -> LlmRuntime:
    """The worker's LLM runtime: the settings' models file, offline mode and script.

    Cooldowns go to the recorder's state DB, shared by every worker on it; without one
    (``GRAPHRUNNER_RECORD=0``) they stay in this process.

    Raises:
        GraphrunnerError: The models file or the offline script is invalid.
    """
    cooldowns: CooldownStore = (
        SqlCooldowns(recorder.records) if recorder is not None else MemoryCooldowns()
    )
    return LlmRuntime.from_settings(
        models=settings.models, mode=settings.llm, script=settings.llm_script, cooldowns=cooldowns
    )


def load_policies(settings: Settings) -> PolicySource:
    """The worker's global and tenant guardrail policies (PolicyError if one is invalid)."""
    return PolicySource.load(settings.policy, settings.tenant_policies)


def build_worker(
    client: Client | GraphrunnerClient,
    *,
    task_queue: str | None = None,
    settings: Settings | None = None,
    recorder: Recorder | None | _FromSettings = FROM_SETTINGS,
    policies: PolicySource | None = None,
    llm: LlmRuntime | None = None,
    interceptors: Sequence[Interceptor] = (),
    impl_modules: Sequence[str] | None = None,
    max_concurrent_activities: int = _MAX_ACTIVITIES,
    identity: str | None = None,
    sticky_queue_timeout: timedelta = _STICKY_TIMEOUT,
    tracer_provider: ReplaySafeTracerProvider | None = None,
    **options: Any,
) -> Worker:
    """Return a Worker that runs AgentLifetimes and their Task and Plan activities.

    Args:
        client: A `GraphrunnerClient` (its settings, state DB and blob store are used), or a
            Temporal client connected with graphrunner's converter
            (`graphrunner.client.connect_temporal` or ``plugins=[GraphrunnerPlugin(...)]``).
        task_queue: Default: the settings' (``GRAPHRUNNER_TASK_QUEUE``; a tenant-bound
            worker with ``GRAPHRUNNER_TENANT_TASK_QUEUES`` polls its tenant's own queue).
        settings: Default: the GraphrunnerClient's, else from the environment.
        recorder: Where execution records go; by default as the settings say (on, into
            their state DB); None records nothing.
        policies: The worker's global and tenant guardrail layers; default: the settings'
            files (``GRAPHRUNNER_POLICY``, ``GRAPHRUNNER_TENANT_POLICIES``).
        llm: The LLM runtime behind ``ctx.llm``; default: the settings' (`open_llm`), with
            cooldowns in the recorder's state DB.
        interceptors: More worker interceptors (the guardrail interceptor is always on).
        impl_modules: Module prefixes a graph's node ``impl`` may come from (importing a
            module runs its code); default: the settings' ``GRAPHRUNNER_IMPL_MODULES``, else
            any importable module.
        max_concurrent_activities: Activity slots.
        identity: Worker identity shown in the Temporal UI.
        sticky_queue_timeout: How long a lifetime cached on a crashed worker waits before
            another worker picks it up (the SDK default, 10 s).
        tracer_provider: Trace lifetimes and node executions to this provider (from
            ``temporalio.contrib.opentelemetry.create_tracer_provider()``); default: as
            ``settings.tracing`` says. A client from `connect_temporal` that traces already
            brings its tracing to the worker.
        **options: Any other `temporalio.worker.Worker` option, e.g. ``max_cached_workflows``,
            ``max_concurrent_workflow_tasks``, ``max_concurrent_local_activities``.
    """
    temporal, settings, blobs = _unpack(client, settings)
    opened: Recorder | None = None  # what this call opens, it closes at shutdown
    if isinstance(recorder, _FromSettings):
        recorder = opened = open_recorder(settings, blobs=blobs)
    if policies is None:
        policies = load_policies(settings)
    if impl_modules is None:
        impl_modules = settings.impl_prefixes()
    if llm is None:
        llm = open_llm(settings, recorder)
    codec = codec_from_settings(settings)
    plugin = GraphrunnerPlugin(
        recorder=recorder,
        policies=policies,
        impl_modules=impl_modules,
        llm=llm,
        codec=codec,
        # On its tenant's own queue, a bound worker runs that tenant's node code only (on a
        # shared queue it would fail the others' lifetimes instead of leaving them be).
        tenant=settings.tenant if settings.tenant_task_queues else None,
    )
    if opened is not None:
        plugin.on_shutdown(opened.records.close)
    if not issubclass(
        temporal.data_converter.payload_converter_class, GraphrunnerPayloadConverter
    ) or (codec is not None and not isinstance(temporal.data_converter.payload_codec, type(codec))):
        # A worker's converter is its client's: share the connection under graphrunner's
        # converter (keeping the client's codec, failure converter and external storage;
        # with codec keys, encrypting with them) rather than trust whoever connected it to
        # have set it. From the initial config, so
        # the client's plugins configure it once, as they did the first time.
        config = temporal.config()
        config["data_converter"] = plugin.converter_for(temporal.data_converter)
        temporal = Client(**config)
    if settings.eager_activities:
        options.setdefault("max_eager_activity_reservations_per_workflow_task", 10)
    else:  # every node through the task queue, so fair dispatch by tenant applies to it
        options.setdefault("disable_eager_activity_execution", True)
    options.setdefault("default_heartbeat_throttle_interval", _HEARTBEAT_THROTTLE)
    with warnings.catch_warnings():
        # A client connected with the plugin hands it to the worker too; the worker's own
        # plugin (with its recorder and policies) replaces its parts, by design.
        warnings.filterwarnings("ignore", message="The same plugin type")
        return Worker(
            temporal,
            task_queue=task_queue or settings.task_queue_for(settings.tenant),
            # Tracing first: graphrunner's interceptors run inside its spans and annotate them.
            interceptors=[*worker_tracing(temporal, settings, tracer_provider), *interceptors],
            plugins=[plugin],
            max_concurrent_activities=max_concurrent_activities,
            identity=identity,
            sticky_queue_schedule_to_start_timeout=sticky_queue_timeout,
            **options,
        )


def _unpack(
    client: Client | GraphrunnerClient, settings: Settings | None
) -> tuple[Client, Settings, BlobStore | None]:
    if isinstance(client, Client):
        return client, settings or Settings.from_env(), None
    return client.temporal, settings or client.settings, client.blobs
