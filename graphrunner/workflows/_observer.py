"""`LifetimeObserver`: counts lifetimes as they start and end, and annotates their spans.

A worker interceptor carried by the `GraphrunnerPlugin`. It runs outside the guardrail
interceptor, so that an abort by hand is seen as the lifetime's end, and inside
OpenTelemetry's (when tracing is on), so that the run's ``RunWorkflow:AgentLifetime`` span is
the current one. Metrics go through ``workflow.metric_meter()``: nothing is recorded while a
run replays, and nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from graphrunner._metrics import LIFETIMES_ENDED, LIFETIMES_STARTED
from graphrunner._observe import annotate_span
from graphrunner._types import LifetimeInput, LifetimeResult
from graphrunner.workflows._lifetime import LIFETIME_WORKFLOW
from graphrunner.workflows._phase import phase_of

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = ["LifetimeObserver"]


class LifetimeObserver(Interceptor):
    """Counts lifetimes as they start and end, and annotates each run's workflow span."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        """The per-workflow interceptor class."""
        return _LifetimeInbound


class _LifetimeInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        inp = input.args[0] if input.args else None
        if workflow.info().workflow_type != LIFETIME_WORKFLOW or not isinstance(inp, LifetimeInput):
            return await self.next.execute_workflow(input)
        labels = {"graph": inp.graph.name, "tenant": inp.tenant}
        annotate_span(
            {
                "graphrunner.graph": inp.graph.name,
                "graphrunner.graph_version": inp.graph.version,
                "graphrunner.tenant": inp.tenant,
                "graphrunner.lifetime_id": workflow.info().workflow_id,
            }
        )
        meter = workflow.metric_meter()
        if inp.carry is None:  # a run continued as new is the same lifetime
            LIFETIMES_STARTED.add(meter, labels)
        try:
            result = await self.next.execute_workflow(input)
        except workflow.ContinueAsNewError:
            raise
        # Not GeneratorExit: an evicted workflow's coroutine is closed outside its loop.
        except (Exception, asyncio.CancelledError) as exc:
            phase = phase_of(exc)
            if phase is not None:  # else only the workflow task failed: it is retried
                LIFETIMES_ENDED.add(meter, {**labels, "status": phase.value})
                annotate_span({"graphrunner.status": phase.value})
            raise
        LIFETIMES_ENDED.add(meter, {**labels, "status": "completed"})
        attributes: dict[str, AttributeValue] = {"graphrunner.status": "completed"}
        spent = result.telemetry if isinstance(result, LifetimeResult) else None
        if spent is not None:
            attributes.update(
                {
                    "graphrunner.tokens.input": spent.tokens_in,
                    "graphrunner.tokens.output": spent.tokens_out,
                    "graphrunner.cost_usd": spent.cost_usd,
                }
            )
        annotate_span(attributes)
        return result
