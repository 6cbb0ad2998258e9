"""`GraphrunnerPlugin`: everything Temporal needs to run AgentLifetimes, in one place.

Like the SDK's own integrations, graphrunner is a `temporalio.plugin.SimplePlugin`. Give it
to a `Worker`, a `Replayer` or `Client.connect` and it brings:

- the data converter: pydantic, with payloads over a threshold kept in a blob store (history
  keeps a reference); with a ``codec`` (encryption, `graphrunner.codec.EncryptionCodec`) every
  payload is encoded by it before it goes to history or the blob store, failure messages
  and stack traces too, and a client's fetched histories come with clear step summaries and
  failure texts (`graphrunner.codec.HistoryDecoder`); without one, a payload codec already
  on the client's converter is kept;
- the `AgentLifetimeWorkflow` and the node activities (with the worker's `Recorder`, when
  records are on) and the guardrail local activities;
- the `GuardrailInterceptor`, so no lifetime runs, or replays, without its guardrails;
- the `LifetimeObserver`: lifetimes started and ended in the worker's metrics, and
  graphrunner's attributes on the lifetime's span when tracing is on;
- a workflow sandbox that passes graphrunner's modules (and pydantic) through, for any
  sandboxed workflow of the worker (the lifetime workflow itself runs unsandboxed, see
  `graphrunner.workflows._lifetime`): they are imported once per process, not per run.

A later GraphrunnerPlugin replaces an earlier one's parts (a worker built from a client
connected with the plugin takes the worker's own), so the parts are never doubled.

Replaying lifetime histories needs nothing else::

    Replayer(workflows=[AgentLifetimeWorkflow], plugins=[GraphrunnerPlugin(blobs=blobs)])
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from temporalio.client import ClientConfig
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.plugin import SimplePlugin
from temporalio.worker import ReplayerConfig, WorkerConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from graphrunner._converter import graphrunner_data_converter
from graphrunner.activities import NodeActivities, Recorder
from graphrunner.activities._children import ChildActivities
from graphrunner.activities._guardrails import GuardrailActivities
from graphrunner.activities._human import HumanActivities
from graphrunner.activities._tool_runs import ToolActivities
from graphrunner.codec._codec import EncryptionCodec, with_codec
from graphrunner.codec._history import HistoryDecoder
from graphrunner.guardrails._interceptor import GuardrailInterceptor
from graphrunner.guardrails._sources import PolicySource
from graphrunner.llm._runtime import LlmRuntime
from graphrunner.stores._blobs import BlobStore
from graphrunner.stores._payloads import DEFAULT_PAYLOAD_THRESHOLD, with_external_storage
from graphrunner.workflows import LIFETIME_WORKFLOW, AgentLifetimeWorkflow
from graphrunner.workflows._observer import LifetimeObserver

__all__ = ["PASSTHROUGH_MODULES", "GraphrunnerPlugin"]

PASSTHROUGH_MODULES = ("graphrunner", "pydantic", "pydantic_core", "annotated_types")
"""Modules a workflow sandbox shares with the worker instead of importing per workflow run.

graphrunner's workflow code is deterministic by construction (it routes on its input and
activity results; user code runs only in activities), so sharing its modules costs no
safety the replay tests do not give; re-importing them cost every new lifetime its share of
pydantic model building.
"""

_PLUGIN_NAME = "graphrunner"
_ACTIVITY_PREFIX = "graphrunner."


def _workflow_name(cls: type) -> str | None:
    defn = getattr(cls, "__temporal_workflow_definition", None)
    return getattr(defn, "name", None)


def _activity_name(fn: Callable[..., Any]) -> str | None:
    defn = getattr(fn, "__temporal_activity_definition", None)
    return getattr(defn, "name", None)


class GraphrunnerPlugin(SimplePlugin):
    """Runs AgentLifetimes on a Temporal worker, replayer or client.

    Args:
        blobs: Where payloads of ``payload_threshold`` bytes or more go (every worker and
            client must open the same store); None keeps every payload in history.
        payload_threshold: Size in bytes from which a payload leaves history.
        recorder: Writes an execution record per node attempt; None records nothing.
        policies: The worker's global and tenant guardrail layers.
        impl_modules: Module prefixes a graph's node ``impl`` may come from; None: any.
        llm: The LLM runtime behind ``ctx.llm`` (models file, shared cooldowns, offline
            mode); default: every tier offline, cooldowns in this process.
        codec: Encodes every payload before history and the blob store see it (encryption:
            `graphrunner.codec.codec_from_settings`); failure messages are encoded too. Every
            client, worker and replayer of the lifetimes needs the same keys.
        tenant: The tenant a bound worker serves: node and tool code of another tenant's
            lifetime is refused for good (``WrongTenant``), whatever reached its queue.
    """

    def __init__(
        self,
        *,
        blobs: BlobStore | None = None,
        payload_threshold: int = DEFAULT_PAYLOAD_THRESHOLD,
        recorder: Recorder | None = None,
        policies: PolicySource | None = None,
        impl_modules: Sequence[str] | None = None,
        llm: LlmRuntime | None = None,
        codec: PayloadCodec | None = None,
        tenant: str | None = None,
    ) -> None:
        converter = with_codec(graphrunner_data_converter, codec)
        if blobs is not None:
            converter = with_external_storage(converter, blobs, threshold=payload_threshold)
        self.converter = converter
        self.recorder = recorder
        self.nodes = NodeActivities(
            recorder,
            impl_modules=tuple(impl_modules) if impl_modules is not None else None,
            llm=llm,
            tenant=tenant,
        )
        self.guards = GuardrailActivities(policies or PolicySource(), recorder)
        self.human = HumanActivities(recorder)
        self.children = ChildActivities(recorder)
        self.tools = ToolActivities(recorder, impl_modules=self.nodes.impl_modules, tenant=tenant)
        self._closers: list[Callable[[], object]] = []
        self.interceptor = GuardrailInterceptor(policies, ledger=recorder is not None)
        # Outside the guardrails, to see a lifetime aborted by hand end.
        self.observer = LifetimeObserver()
        interceptors: list[Any] = [self.observer, self.interceptor]
        if isinstance(codec, EncryptionCodec):
            interceptors.append(HistoryDecoder(codec))
        super().__init__(
            _PLUGIN_NAME,
            data_converter=self.converter_for,
            activities=self._activities,
            workflows=self._workflows,
            workflow_runner=self._runner,
            interceptors=interceptors,
            run_context=self._running,
        )

    # -- the parts ------------------------------------------------------------------------

    def converter_for(self, existing: DataConverter | None) -> DataConverter:
        """Graphrunner's converter, keeping ``existing``'s codec and external storage.

        pydantic conversion always; a codec (encryption) or external storage the caller's
        converter has and this plugin was not given stays.
        """
        ours = self.converter
        if existing is None:
            return ours
        if existing.payload_codec is not None and ours.payload_codec is None:
            ours = dataclasses.replace(ours, payload_codec=existing.payload_codec)
        if existing.external_storage is not None and ours.external_storage is None:
            ours = dataclasses.replace(ours, external_storage=existing.external_storage)
        if (
            existing.failure_converter_class is not ours.failure_converter_class
            and ours.payload_codec is existing.payload_codec
        ):
            # e.g. DefaultFailureConverterWithEncodedAttributes: failure text encrypted too
            # (a codec of this plugin's brings its own)
            ours = dataclasses.replace(
                ours, failure_converter_class=existing.failure_converter_class
            )
        return ours

    def on_shutdown(self, close: Callable[[], object]) -> None:
        """Call ``close`` when the worker (or replayer) this plugin runs in stops."""
        self._closers.append(close)

    def _activities(
        self, existing: Sequence[Callable[..., Any]] | None
    ) -> list[Callable[..., Any]]:
        ours: list[Callable[..., Any]] = [
            self.nodes.run_task,
            self.nodes.run_plan,
            self.guards.load_policy,
            self.guards.record_decision,
            self.guards.tenant_reserve,
            self.human.record_human,
            self.children.record_child,
            self.tools.run_tool,
        ]
        kept: list[Callable[..., Any]] = [
            fn
            for fn in existing or []
            if not (_activity_name(fn) or "").startswith(_ACTIVITY_PREFIX)
        ]
        return kept + ours

    @staticmethod
    def _workflows(existing: Sequence[type] | None) -> list[type]:
        # A lifetime workflow given by the caller stays (replaying histories against new
        # code: Replayer(workflows=[Candidate], plugins=[GraphrunnerPlugin()])).
        given = list(existing or [])
        if any(_workflow_name(wf) == LIFETIME_WORKFLOW for wf in given):
            return given
        return [*given, AgentLifetimeWorkflow]

    @staticmethod
    def _runner(existing: WorkflowRunner | None) -> WorkflowRunner:
        runner = existing if existing is not None else SandboxedWorkflowRunner()
        if not isinstance(runner, SandboxedWorkflowRunner):
            return runner  # an unsandboxed runner imports nothing per lifetime anyway
        restrictions = runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
        return dataclasses.replace(runner, restrictions=restrictions)

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # The node resources (@resource) this worker opened, and litellm's HTTP clients.
            await self.nodes.aclose()
            for close in self._closers:
                close()

    # -- replacing an earlier GraphrunnerPlugin's parts -------------------------------------

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        """Set graphrunner's data converter (keeping the client's payload codec)."""
        if any(isinstance(i, HistoryDecoder) for i in self.interceptors or []):
            config["interceptors"] = [  # an earlier plugin's decoder: ours replaces it
                i for i in config.get("interceptors") or [] if not isinstance(i, HistoryDecoder)
            ]
        return super().configure_client(config)

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        """Add the lifetime workflow, node activities, interceptor and sandbox pass-through."""
        config["interceptors"] = _without_guardrails(config.get("interceptors"))
        return super().configure_worker(config)

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        """Add the lifetime workflow, interceptor, converter and sandbox pass-through."""
        config["interceptors"] = _without_guardrails(config.get("interceptors"))
        return super().configure_replayer(config)


def _without_guardrails(interceptors: Sequence[Any] | None) -> list[Any]:
    return [
        i for i in interceptors or [] if not isinstance(i, GuardrailInterceptor | LifetimeObserver)
    ]
