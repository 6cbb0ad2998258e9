"""graphrunner's Prometheus metrics: what they are, and the endpoint that serves them.

The metrics go through the Temporal SDK's metric meter, so they share the worker's
Prometheus endpoint with Temporal's own runtime metrics (``temporal_*``): `metrics_runtime`
builds the `temporalio.runtime.Runtime` that serves it, for the worker's client
(``Client.connect(runtime=...)``). Activity code records through
``activity.metric_meter()``, workflow code through ``workflow.metric_meter()``, which records
nothing while a workflow replays, so counts stay exact across cache evictions and restarts.

Labels are bounded on purpose: a graph, node, tenant, rule or model name is bounded by the
deployed graphs, policies, tenants and models file. A lifetime id, execution id or request
id is never a label (one series per lifetime would grow without end); find a lifetime by its
trace, its records or the Temporal UI instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from graphrunner._settings import Settings
from graphrunner.errors import GraphrunnerError

__all__ = [
    "COST",
    "GUARDRAIL_ACTIONS",
    "HUMAN_WAITS_ENDED",
    "HUMAN_WAITS_STARTED",
    "HUMAN_WAIT_DURATION",
    "LIFETIMES_ENDED",
    "LIFETIMES_STARTED",
    "METRICS",
    "NODE_DURATION",
    "NODE_EXECUTIONS",
    "TOKENS",
    "Metric",
    "metrics_runtime",
]

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Metric:
    """One graphrunner metric family: its name, kind, labels and meaning.

    Attributes:
        name: The Prometheus name (counters end in ``_total``).
        kind: ``counter`` or ``histogram`` (a histogram's ``_sum`` is the total).
        description: What one increment or observation means.
        labels: graphrunner's labels (Temporal adds ``namespace``, ``task_queue``,
            ``activity_type`` or ``workflow_type``, and ``service_name``).
        buckets: A histogram's bucket bounds, in its unit.
    """

    name: str
    kind: Literal["counter", "histogram"]
    description: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    def add(self, meter: MetricMeter, labels: Labels, value: int = 1) -> None:
        """Add ``value`` to this counter, for ``labels``."""
        meter.create_counter(self.name, self.description).add(value, self._checked(labels))

    def observe(self, meter: MetricMeter, labels: Labels, value: float) -> None:
        """Record one observation of this histogram, for ``labels``."""
        histogram = meter.create_histogram_float(self.name, self.description)
        histogram.record(value, self._checked(labels))

    def _checked(self, labels: Labels) -> dict[str, str | int | float | bool]:
        # A label set other than the declared one would make a second, differently shaped
        # series family under the same name: a bug here, never in the caller's data.
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, not {tuple(labels)}")
        return dict(labels)


_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_WAIT_SECONDS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)
_USD = (0.0001, 0.001, 0.01, 0.1, 1, 10)

LIFETIMES_STARTED = Metric(
    "graphrunner_lifetimes_started_total",
    "counter",
    "Lifetimes started (forks and child lifetimes included; a continue-as-new run is the "
    "same lifetime and does not count).",
    ("graph", "tenant"),
)
LIFETIMES_ENDED = Metric(
    "graphrunner_lifetimes_ended_total",
    "counter",
    "Lifetimes that ended, by status: completed, failed, aborted (by a guardrail or by "
    "hand) or cancelled.",
    ("graph", "tenant", "status"),
)
NODE_EXECUTIONS = Metric(
    "graphrunner_node_executions_total",
    "counter",
    "Task and Plan node attempts that finished, by outcome: ok, error (Temporal may retry "
    "it) or cancelled.",
    ("graph", "tenant", "node", "kind", "outcome"),
)
NODE_DURATION = Metric(
    "graphrunner_node_duration_seconds",
    "histogram",
    "How long a Task or Plan node attempt ran, in seconds.",
    ("graph", "node", "kind", "outcome"),
    _SECONDS,
)
TOKENS = Metric(
    "graphrunner_tokens_total",
    "counter",
    "Model tokens node attempts used (failed attempts included), by direction: input "
    "(prompt) or output (completion).",
    ("graph", "tenant", "model", "direction"),
)
COST = Metric(
    "graphrunner_node_cost_usd",
    "histogram",
    "What a node attempt's model calls cost, in US dollars; _sum is the total spent.",
    ("graph", "tenant", "model"),
    _USD,
)
GUARDRAIL_ACTIONS = Metric(
    "graphrunner_guardrail_actions_total",
    "counter",
    "Guardrail decisions: a rule that fired (reject_execution, pause_lifetime, "
    "abort_lifetime) or an operator's pause, resume, abort or cancel.",
    ("graph", "tenant", "rule", "action", "phase"),
)
HUMAN_WAITS_STARTED = Metric(
    "graphrunner_human_waits_started_total",
    "counter",
    "Human-input steps that started waiting for an answer.",
    ("graph", "tenant", "node"),
)
HUMAN_WAITS_ENDED = Metric(
    "graphrunner_human_waits_ended_total",
    "counter",
    "Human-input steps that stopped waiting, by how: update, signal, timeout (the default "
    "answer or a failure) or cancelled.",
    ("graph", "tenant", "node", "via"),
)
HUMAN_WAIT_DURATION = Metric(
    "graphrunner_human_wait_seconds",
    "histogram",
    "How long a human-input step waited, in seconds.",
    ("graph", "node", "via"),
    _WAIT_SECONDS,
)

METRICS = (
    LIFETIMES_STARTED,
    LIFETIMES_ENDED,
    NODE_EXECUTIONS,
    NODE_DURATION,
    TOKENS,
    COST,
    GUARDRAIL_ACTIONS,
    HUMAN_WAITS_STARTED,
    HUMAN_WAITS_ENDED,
    HUMAN_WAIT_DURATION,
)
"""Every graphrunner metric family."""


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving ``/metrics`` on ``settings.metrics_bind`` (None: not set).

    Give it to the worker's client (``connect_temporal(settings, runtime=...)``): Temporal's
    worker metrics and graphrunner's are then served together. Create one per process.

    Raises:
        GraphrunnerError: The address is not ``host:port``, or cannot be bound.
    """
    bind = settings.metrics_bind
    if bind is None:
        return None
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GraphrunnerError(
            f"bad setting GRAPHRUNNER_METRICS_BIND: {bind!r} is not host:port (e.g. 0.0.0.0:9464)"
        )
    if host == "localhost":  # the endpoint takes IP addresses only
        bind = f"127.0.0.1:{port}"
    config = PrometheusConfig(
        bind_address=bind,
        histogram_bucket_overrides={m.name: m.buckets for m in METRICS if m.buckets},
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config))
    except ValueError as exc:  # "Invalid Prometheus address", "Address already in use"
        raise GraphrunnerError(
            f"bad setting GRAPHRUNNER_METRICS_BIND: cannot serve metrics on {bind}: {exc}"
        ) from None
