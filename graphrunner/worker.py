"""Build and run a graphrunner worker: the lifetime workflow and the node activities."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from graphrunner.activities import run_plan, run_task
from graphrunner.workflows import AgentLifetimeWorkflow

__all__ = ["build_worker"]


def build_worker(
    client: Client,
    *,
    task_queue: str,
    interceptors: Sequence[Interceptor] = (),
    max_concurrent_activities: int = 100,
    identity: str | None = None,
) -> Worker:
    """Return a Worker that runs AgentLifetimes and their Task and Plan activities.

    The client must use graphrunner's data converter (`graphrunner.client.connect` sets it).
    Node implementations are imported by path on first use, so the modules they live in must
    be importable by this process.
    """
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentLifetimeWorkflow],
        activities=[run_task, run_plan],
        interceptors=list(interceptors),
        max_concurrent_activities=max_concurrent_activities,
        # Eager dispatch lets a fan-out start its activities in the same round trip.
        max_eager_activity_reservations_per_workflow_task=10,
        identity=identity,
    )
