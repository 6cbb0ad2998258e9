"""OpenTelemetry traces of lifetimes and node executions, through temporalio's plugin.

`temporalio.contrib.opentelemetry.OpenTelemetryPlugin` (with ``add_temporal_spans``) makes
the spans: the client's ``StartWorkflow:AgentLifetime``, the worker's
``RunWorkflow:AgentLifetime`` (its duration is the run's; it is exported when the run ends),
``StartActivity:…`` in the workflow and ``RunActivity:…`` around each node attempt, all in
one trace carried in Temporal headers. graphrunner adds its attributes to them
(`graphrunner._observe`).

The plugin reads OpenTelemetry's global tracer provider, which must be replay-safe (made by
``create_tracer_provider``: span ids from the workflow's seeded randomness, no span ended
while a workflow replays). OpenTelemetry lets a process set its global provider once, so
`tracer_provider` installs one the first time and reuses it after.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from graphrunner._settings import Settings
from graphrunner.errors import GraphrunnerError

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider
    from temporalio.plugin import SimplePlugin
    from temporalio.worker import Interceptor

__all__ = ["flush_traces", "is_traced", "tracer_provider", "tracing_plugin", "worker_tracing"]

_SERVICE = "graphrunner"  # the service name when OTEL_SERVICE_NAME does not give one
_FLUSH_MS = 5000  # how long a process's last spans may take to leave at exit


def tracer_provider(
    settings: Settings, given: ReplaySafeTracerProvider | None = None
) -> ReplaySafeTracerProvider | None:
    """The process's tracer provider for graphrunner's traces, installed as the global one.

    Args:
        settings: ``tracing``: ``otlp`` exports to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over
            HTTP; service name ``OTEL_SERVICE_NAME``, default ``graphrunner``), ``console``
            prints spans on stderr, ``none`` traces nothing unless ``given``.
        given: A provider the caller built (``create_tracer_provider()`` with its own span
            processors, e.g. an in-memory exporter); used whatever the settings say.

    Returns:
        The provider, or None when nothing is to be traced.

    Raises:
        GraphrunnerError: ``given`` is not replay-safe, or another provider already is the
            process's global one.
    """
    if given is None and settings.tracing == "none":
        return None
    from opentelemetry import trace
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

    current = trace.get_tracer_provider()
    if given is None:
        if isinstance(current, ReplaySafeTracerProvider):
            return current  # set up by an earlier client of this process
        given = _new_provider(settings)
    elif not isinstance(given, ReplaySafeTracerProvider):
        raise GraphrunnerError(
            f"tracer_provider is a {type(given).__name__}: graphrunner traces need a "
            "replay-safe one, from temporalio.contrib.opentelemetry.create_tracer_provider()"
        )
    if current is given:
        return given
    trace.set_tracer_provider(given)
    if trace.get_tracer_provider() is not given:
        raise GraphrunnerError(
            "OpenTelemetry's global tracer provider is already set in this process (to a "
            f"{type(current).__name__}) and can be set only once: set it to a provider from "
            "temporalio.contrib.opentelemetry.create_tracer_provider() before graphrunner "
            "connects, and pass that one"
        )
    return given


def _new_provider(settings: Settings) -> ReplaySafeTracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
    from temporalio.contrib.opentelemetry import create_tracer_provider

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: _SERVICE}))
    exporter: SpanExporter
    if settings.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS ...
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr)  # stdout may be a command's JSON
    # Flushed at exit (shutdown_on_exit), so a short CLI command's spans are sent too.
    provider = create_tracer_provider(resource=resource, shutdown_on_exit=True)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracing_plugin(
    settings: Settings, given: ReplaySafeTracerProvider | None = None
) -> SimplePlugin | None:
    """The SDK's OpenTelemetry plugin for a client, or None when nothing is traced.

    On a client it traces the client's calls and, handed on to every worker built from the
    client, the workflows and activities; see `tracer_provider` for the arguments.
    """
    if tracer_provider(settings, given) is None:
        return None
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin

    return OpenTelemetryPlugin(add_temporal_spans=True)


def is_traced(client: Client) -> bool:
    """Whether ``client`` (and so a worker built from it) already carries OpenTelemetry."""
    config = client.config()
    names = {type(p).__name__ for p in config.get("plugins") or ()}
    names |= {type(i).__name__ for i in config.get("interceptors") or ()}
    return bool(names & {"OpenTelemetryPlugin", "OpenTelemetryInterceptor", "TracingInterceptor"})


def worker_tracing(
    client: Client, settings: Settings, given: ReplaySafeTracerProvider | None = None
) -> list[Interceptor]:
    """The interceptor a worker adds to trace when its client does not already.

    Put first among the worker's interceptors: graphrunner's own then run inside its spans
    and annotate them.
    """
    if is_traced(client) or tracer_provider(settings, given) is None:
        return []
    from temporalio.contrib.opentelemetry import OpenTelemetryInterceptor

    return [OpenTelemetryInterceptor(add_temporal_spans=True)]


def flush_traces() -> None:
    """Export the spans still queued, before a process exits without running ``atexit``."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:  # nothing was ever traced here
        return
    provider = otel.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(_FLUSH_MS)
