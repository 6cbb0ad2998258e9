"""What one lifetime leaves in Temporal history: events and bytes per step, per side.

Not a timing: it explains timings. Every event is written to the server's database and
every payload is encoded by the worker and decoded again, so fewer, smaller ones are faster.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

__all__ = [
    "HistoryStats",
    "activity_payloads",
    "chain_events",
    "growth",
    "history_stats",
    "step_bytes",
]


@dataclass(frozen=True)
class HistoryStats:
    """History of one sequential loop lifetime of ``steps`` Task+Plan steps."""

    steps: int
    events: int
    history_bytes: int
    workflow_input_bytes: int
    activity_input_bytes: int  # mean encoded input of one activity call
    activity_result_bytes: int  # mean encoded result of one activity call

    @property
    def events_per_step(self) -> float:
        return self.events / self.steps

    @property
    def bytes_per_step(self) -> float:
        return self.history_bytes / self.steps


def _payload_bytes(payloads: object) -> int:
    return sum(p.ByteSize() for p in getattr(payloads, "payloads", []))


def history_stats(events: list[HistoryEvent], steps: int) -> HistoryStats:
    """Statistics of the history of one sequential loop lifetime of ``steps`` steps."""
    inputs: list[int] = []
    results: list[int] = []
    workflow_input = 0
    for event in events:
        kind = event.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            workflow_input = _payload_bytes(event.workflow_execution_started_event_attributes.input)
        elif kind == "activity_task_scheduled_event_attributes":
            inputs.append(_payload_bytes(event.activity_task_scheduled_event_attributes.input))
        elif kind == "activity_task_completed_event_attributes":
            results.append(_payload_bytes(event.activity_task_completed_event_attributes.result))
    return HistoryStats(
        steps=steps,
        events=len(events),
        history_bytes=sum(event.ByteSize() for event in events),
        workflow_input_bytes=workflow_input,
        activity_input_bytes=sum(inputs) // max(len(inputs), 1),
        activity_result_bytes=sum(results) // max(len(results), 1),
    )


def activity_payloads(events: list[HistoryEvent]) -> list[Payload]:
    """Every activity input and result payload of a history, in order."""
    out: list[Payload] = []
    for event in events:
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            out.extend(event.activity_task_scheduled_event_attributes.input.payloads)
        elif kind == "activity_task_completed_event_attributes":
            out.extend(event.activity_task_completed_event_attributes.result.payloads)
    return out


def step_bytes(events: list[HistoryEvent]) -> list[int]:
    """History bytes of each Task+Plan step of a sequential loop lifetime.

    A step's events end with its second activity completion (the Plan's); the first step
    also holds the workflow's start (its input), the last one its completion (its result).
    """
    out: list[int] = []
    size = completions = 0
    for event in events:
        size += event.ByteSize()
        if event.WhichOneof("attributes") == "activity_task_completed_event_attributes":
            completions += 1
            if completions % 2 == 0:
                out.append(size)
                size = 0
    if out:
        out[-1] += size
    return out


def growth(added: list[int]) -> float:
    """Bytes per step by which ``added`` (bytes per step, step 1 first) grows each step.

    The least-squares slope over the steps between the first and the last, which also hold
    the workflow's input and result.
    """
    inner = added[1:-1]
    if len(inner) < 2:
        return 0.0
    return statistics.linear_regression(range(len(inner)), inner).slope


async def chain_events(client: Client, workflow_id: str, run_id: str) -> list[list[HistoryEvent]]:
    """The events of every run of a workflow that continued as new, from ``run_id`` on.

    Follows each run's closing ``WorkflowExecutionContinuedAsNew`` event to the next run (no
    visibility query, so nothing lags).
    """
    runs: list[list[HistoryEvent]] = []
    following: str | None = run_id
    while following:
        history = await client.get_workflow_handle(workflow_id, run_id=following).fetch_history()
        events = list(history.events)
        runs.append(events)
        following = None
        if events and events[-1].HasField("workflow_execution_continued_as_new_event_attributes"):
            continued = events[-1].workflow_execution_continued_as_new_event_attributes
            following = continued.new_execution_run_id
    return runs
