"""Build and run a graphrunner worker: the lifetime workflow and the node activities."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker, WorkerConfig

from graphrunner.activities import NodeActivities, Recorder
from graphrunner.activities._guardrails import GuardrailActivities
from graphrunner.guardrails._interceptor import GuardrailInterceptor
from graphrunner.guardrails._sources import PolicySource
from graphrunner.workflows import AgentLifetimeWorkflow

__all__ = ["GuardrailInterceptor", "build_worker"]

_MAX_ACTIVITIES = 100
_STICKY_TIMEOUT = timedelta(seconds=10)  # the SDK's default


def build_worker(
    client: Client,
    *,
    task_queue: str,
    recorder: Recorder | None = None,
    policies: PolicySource | None = None,
    interceptors: Sequence[Interceptor] = (),
    max_concurrent_activities: int = _MAX_ACTIVITIES,
    identity: str | None = None,
    sticky_queue_timeout: timedelta = _STICKY_TIMEOUT,
    impl_modules: Sequence[str] | None = None,
) -> Worker:
    """Return a Worker that runs AgentLifetimes and their Task and Plan activities.

    The client must use graphrunner's data converter (`graphrunner.client.connect_temporal`
    sets it). With a ``recorder`` every node execution is written to the state DB (large
    results to the blob store); without one nothing is recorded. Node implementations are
    imported by path on first use, so their modules must be importable by this process.
    ``sticky_queue_timeout`` bounds how long a lifetime cached on a crashed worker waits
    before another worker picks it up (the SDK default, 10 s). ``impl_modules``, when given,
    lists the module prefixes a graph's node ``impl`` may come from (importing a module runs
    its code); by default any importable module may be used.

    Guardrails are always on: `GuardrailInterceptor` comes first among the interceptors and
    enforces ``policies`` (the worker's global and tenant layers) together with each graph's
    own policy. Decisions and tenant totals are kept through ``recorder``.
    """
    config = worker_config(
        client,
        task_queue=task_queue,
        recorder=recorder,
        policies=policies,
        max_concurrent_activities=max_concurrent_activities,
        identity=identity,
        sticky_queue_timeout=sticky_queue_timeout,
        impl_modules=impl_modules,
    )
    config["interceptors"] = [GuardrailInterceptor(), *interceptors]
    return Worker(**config)


def worker_config(
    client: Client,
    *,
    task_queue: str,
    recorder: Recorder | None = None,
    policies: PolicySource | None = None,
    max_concurrent_activities: int = _MAX_ACTIVITIES,
    identity: str | None = None,
    sticky_queue_timeout: timedelta = _STICKY_TIMEOUT,
    impl_modules: Sequence[str] | None = None,
) -> WorkerConfig:
    """`build_worker`'s Worker options, before interceptors (the bench measures without)."""
    allowed = tuple(impl_modules) if impl_modules is not None else None
    nodes = NodeActivities(recorder, impl_modules=allowed)
    guards = GuardrailActivities(policies or PolicySource(), recorder)
    return WorkerConfig(
        client=client,
        task_queue=task_queue,
        workflows=[AgentLifetimeWorkflow],
        activities=[
            nodes.run_task,
            nodes.run_plan,
            guards.load_policy,
            guards.record_decision,
            guards.tenant_usage,
            guards.tenant_charge,
        ],
        max_concurrent_activities=max_concurrent_activities,
        # Eager dispatch lets a fan-out start its activities in the same round trip.
        max_eager_activity_reservations_per_workflow_task=10,
        identity=identity,
        sticky_queue_schedule_to_start_timeout=sticky_queue_timeout,
    )
