"""What a worker tells operators about lifetimes and node executions: metrics and spans.

The few places that know something call in here: the node activities (`NodeObservation`),
the lifetime's human-input wait (`human_wait_started`, `human_wait_ended`), the guardrails'
decisions (`guardrail_action`); `graphrunner.workflows._observer.LifetimeObserver`, a worker
interceptor carried by the `GraphrunnerPlugin`, watches each lifetime run start and end.
Metrics are defined in `graphrunner._metrics`; spans exist only when tracing is on
(`graphrunner._tracing`), and then the current one (``RunActivity:…``,
``RunWorkflow:AgentLifetime``) gets graphrunner's attributes:

- node attempts: ``graphrunner.node``, ``.kind``, ``.iteration``, ``.tenant``,
  ``.lifetime_id``, ``.graph``, ``.graph_version``, ``.execution_id``; when it ends
  ``.outcome``, ``.tokens.input``, ``.tokens.output``, ``.cost_usd``, ``.model``;
- lifetime runs: ``graphrunner.graph``, ``.graph_version``, ``.tenant``, ``.lifetime_id``,
  and when it ends ``.status`` (and the lifetime's tokens and cost when it completes).

Workflow code records through ``workflow.metric_meter()``, which records nothing while a
workflow replays, and does no I/O: the lifetime stays deterministic.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from temporalio import activity, workflow

from graphrunner._metrics import (
    COST,
    GUARDRAIL_ACTIONS,
    HUMAN_WAIT_DURATION,
    HUMAN_WAITS_ENDED,
    HUMAN_WAITS_STARTED,
    NODE_DURATION,
    NODE_EXECUTIONS,
    TOKENS,
)
from graphrunner._types import ExecutionHeader, Telemetry

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "NodeObservation",
    "annotate_span",
    "guardrail_action",
    "human_wait_ended",
    "human_wait_started",
    "outcome_of",
]

_NO_MODEL = "none"  # the model label of spend no model was named for


def _current_span() -> Span | None:
    """The span being recorded here, if tracing is on."""
    # Tracing is on only through temporalio.contrib.opentelemetry, which imports the
    # OpenTelemetry API: without it in the process there is no span, and a worker that does
    # not trace is spared the import.
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    span: Span = otel.get_current_span()
    return span if span.is_recording() else None


def annotate_span(attributes: dict[str, AttributeValue]) -> None:
    """Set ``attributes`` on the span being recorded here (nothing when tracing is off)."""
    span = _current_span()
    if span is not None:
        span.set_attributes(attributes)


class NodeObservation:
    """One Task or Plan attempt, observed from its start (inside its activity) to its end.

    Args:
        header: The execution's record header (graph, node, iteration, tenant, lifetime).
    """

    def __init__(self, header: ExecutionHeader) -> None:
        self._header = header
        self._clock = time.monotonic()
        annotate_span(
            {
                "graphrunner.node": header.node,
                "graphrunner.kind": header.kind,
                "graphrunner.iteration": header.iteration,
                "graphrunner.tenant": header.tenant,
                "graphrunner.lifetime_id": header.lifetime_id,
                "graphrunner.graph": header.graph_name,
                "graphrunner.graph_version": header.graph_version,
                "graphrunner.execution_id": header.execution_id,
            }
        )

    def ended(self, outcome: str, telemetry: Telemetry | None) -> None:
        """The attempt ended: ``ok``, ``error`` or ``cancelled``, having spent ``telemetry``.

        ``telemetry`` is this attempt's own spend (not earlier attempts'), so that tokens
        and cost are counted once.
        """
        h = self._header
        seconds = time.monotonic() - self._clock
        meter = activity.metric_meter()
        NODE_EXECUTIONS.add(
            meter,
            {
                "graph": h.graph_name,
                "tenant": h.tenant,
                "node": h.node,
                "kind": h.kind,
                "outcome": outcome,
            },
        )
        NODE_DURATION.observe(
            meter,
            {"graph": h.graph_name, "node": h.node, "kind": h.kind, "outcome": outcome},
            seconds,
        )
        attributes: dict[str, AttributeValue] = {"graphrunner.outcome": outcome}
        if telemetry is not None and (
            telemetry.model or telemetry.tokens_in or telemetry.tokens_out or telemetry.cost_usd
        ):
            model = telemetry.model or _NO_MODEL
            spend = {"graph": h.graph_name, "tenant": h.tenant, "model": model}
            if telemetry.tokens_in:
                TOKENS.add(meter, {**spend, "direction": "input"}, telemetry.tokens_in)
            if telemetry.tokens_out:
                TOKENS.add(meter, {**spend, "direction": "output"}, telemetry.tokens_out)
            COST.observe(meter, spend, telemetry.cost_usd)
            attributes.update(
                {
                    "graphrunner.tokens.input": telemetry.tokens_in,
                    "graphrunner.tokens.output": telemetry.tokens_out,
                    "graphrunner.cost_usd": telemetry.cost_usd,
                    "graphrunner.model": model,
                }
            )
        annotate_span(attributes)


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label of an attempt that raised ``exc``."""
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"


# -- workflow side: replay-safe, no I/O ---------------------------------------------------


def human_wait_started(graph: str, tenant: str, node: str) -> None:
    """A human-input step started waiting (workflow code)."""
    HUMAN_WAITS_STARTED.add(
        workflow.metric_meter(), {"graph": graph, "tenant": tenant, "node": node}
    )


def human_wait_ended(graph: str, tenant: str, node: str, via: str, waited_s: float) -> None:
    """A human-input step stopped waiting (workflow code): answered by ``via``, or not."""
    meter = workflow.metric_meter()
    HUMAN_WAITS_ENDED.add(meter, {"graph": graph, "tenant": tenant, "node": node, "via": via})
    HUMAN_WAIT_DURATION.observe(meter, {"graph": graph, "node": node, "via": via}, waited_s)


def guardrail_action(graph: str, tenant: str, rule: str, action: str, phase: str) -> None:
    """A guardrail decision was taken (workflow code)."""
    GUARDRAIL_ACTIONS.add(
        workflow.metric_meter(),
        {"graph": graph, "tenant": tenant, "rule": rule, "action": action, "phase": phase},
    )
