"""Replay lifetimes' histories against this process's workflow code: would a deploy break them?

``graphrunner replay`` fetches each history from the server and replays it with the current
`AgentLifetimeWorkflow`, data converter and interceptors (all through `GraphrunnerPlugin`, as a
worker would run it). A lifetime that would break is reported with the event the code no longer
matches, the step (``node · iteration``) that event belongs to, and what to do about it.
Running lifetimes replay their history so far: that is what a new worker would do with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import PayloadCodec
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Replayer

from graphrunner._types import parse_step_summary
from graphrunner.stores import BlobStore
from graphrunner.workflows import LIFETIME_WORKFLOW

__all__ = [
    "ReplayVerdict",
    "fetch_histories",
    "lifetimes_to_replay",
    "parse_since",
    "replay_histories",
]

_CLOSED = (
    "workflow_execution_completed_event_attributes",
    "workflow_execution_failed_event_attributes",
    "workflow_execution_canceled_event_attributes",
    "workflow_execution_terminated_event_attributes",
    "workflow_execution_timed_out_event_attributes",
    "workflow_execution_continued_as_new_event_attributes",
)
# The SDK core names the history event it could not match in several phrasings
# ("... event 12 ...", "HistoryEvent(id: 12, ...)", "event_id: 12").
_EVENT_ID = re.compile(r"(?:event[ _]id:?\s*|HistoryEvent\(id:\s*|\bevent\s+)(\d+)", re.I)
_NAMED_ACTIVITY = re.compile(r"scheduled event '([^']+)'")
_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_TASK_SCHEDULED = "workflow_task_scheduled_event_attributes"
_TASK_COMPLETED = "workflow_task_completed_event_attributes"
_ACTIVITY_SCHEDULED = "activity_task_scheduled_event_attributes"
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ReplayVerdict(BaseModel):
    """Whether one lifetime's history replays on the current code, and where it breaks."""

    model_config = ConfigDict(frozen=True)

    lifetime_id: str
    run_id: str
    running: bool
    events: int
    ok: bool
    error: str | None = None
    event_id: int | None = None
    event_type: str | None = None
    step: str | None = None
    step_number: int | None = None
    hint: str | None = None


def parse_since(when: str, *, now: datetime | None = None) -> datetime:
    """``2h``, ``3d``, ``45m``, ``1w`` ago, or an ISO 8601 time (UTC if it names no zone).

    Raises:
        ValueError: Neither form, with both forms in the message.
    """
    found = _SINCE.match(when.strip())
    if found:
        ago = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        return (now or datetime.now(UTC)) - ago
    try:
        moment = datetime.fromisoformat(when.strip())
    except ValueError:
        raise ValueError(
            f"--since {when!r}: give a duration ago (30m, 2h, 3d, 1w) or an ISO time "
            "(2026-12-01T09:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def replay_query(graph: str | None, since: datetime | None) -> str:
    """The visibility query for lifetimes of ``graph`` started after ``since``."""
    clauses = [f"WorkflowType = '{LIFETIME_WORKFLOW}'"]
    if graph is not None:
        clauses.append("GraphrunnerGraph = '{}'".format(graph.replace("'", "\\'")))
    if since is not None:
        clauses.append(f"StartTime > '{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    return " AND ".join(clauses)


async def lifetimes_to_replay(
    temporal: Client, *, graph: str | None, since: datetime | None, limit: int
) -> list[str]:
    """Ids of at most ``limit`` lifetimes (newest first) of ``graph`` started after ``since``.

    Each lifetime once, however many runs it has (visibility lists every run of a lifetime
    that continued as new or was reset); its current run is the one replayed.
    """
    ids: dict[str, None] = {}
    async for wf in temporal.list_workflows(replay_query(graph, since)):
        ids.setdefault(wf.id)
        if len(ids) >= limit:
            break
    return list(ids)


def _summary(event: HistoryEvent) -> str | None:
    if not event.user_metadata.HasField("summary"):
        return None
    text = event.user_metadata.summary.data.decode(errors="replace").strip('"')
    return text if parse_step_summary(text) is not None else None


def _event_type(event: HistoryEvent) -> str:
    name = event.WhichOneof("attributes") or "event"
    return "".join(part.title() for part in name.removesuffix("_event_attributes").split("_"))


def _where(history: WorkflowHistory, event_id: int | None) -> tuple[str | None, int | None, str]:
    """The step (summary, 1-based number) ``event_id`` belongs to, and the event's type.

    An event that is not a step's own (a timer, a marker, a completion) belongs to the last
    step scheduled before it.
    """
    step: str | None = None
    number = 0
    kind = ""
    for event in history.events:
        if event_id is not None and event.event_id > event_id:
            break
        summary = _summary(event)
        if summary is not None:
            step, number = summary, number + 1
        kind = _event_type(event)
    return step, (number or None), kind


def _hint(lifetime_id: str, event_id: int | None, step: str | None, number: int | None) -> str:
    where = f"at event {event_id}" if event_id is not None else "in its history"
    what = f" (step {number}: {step})" if step is not None else ""
    before = f" to before step {number}" if number is not None else ""
    return (
        f"the current code no longer makes the decisions lifetime {lifetime_id} recorded "
        f"{where}{what}. Guard the change with workflow.patched (old histories take the old "
        "branch), keep workers of the old build for these lifetimes (Worker Versioning), or "
        f"reset the lifetime{before} once the new code is deployed"
    )


def _verdict(
    history: WorkflowHistory, run_id: str, failure: Exception | None, event_id: int | None
) -> ReplayVerdict:
    last = history.events[-1] if history.events else None
    running = last is None or last.WhichOneof("attributes") not in _CLOSED
    base: dict[str, Any] = {
        "lifetime_id": history.workflow_id,
        "run_id": run_id,
        "running": running,
        "events": len(history.events),
    }
    if failure is None:
        return ReplayVerdict(ok=True, **base)
    error = str(failure) or type(failure).__name__
    # The core's message wraps the one line that matters in Rust debug output.
    said = _MESSAGE.search(error)
    error = said.group(1) if said else error
    step, number, kind = _where(history, event_id)
    return ReplayVerdict(
        ok=False,
        error=error,
        event_id=event_id,
        event_type=kind if event_id is not None else None,
        step=step,
        step_number=number,
        hint=_hint(history.workflow_id, event_id, step, number),
        **base,
    )


def _run_id(history: WorkflowHistory) -> str:
    for event in history.events[:1]:
        if event.HasField("workflow_execution_started_event_attributes"):
            return event.workflow_execution_started_event_attributes.original_execution_run_id
    return ""


async def replay_histories(
    histories: Sequence[WorkflowHistory],
    *,
    blobs: BlobStore | None = None,
    workflows: Sequence[type] | None = None,
    quiet: bool = False,
    codec: PayloadCodec | None = None,
) -> list[ReplayVerdict]:
    """Replay each history with the current code, the way a worker would take it over.

    Args:
        histories: Lifetimes' histories (complete, or so far for running ones).
        blobs: The blob store payloads over the threshold went to.
        workflows: The lifetime workflow class to replay with (default: this graphrunner's).
        quiet: Keep the SDK core from logging each failing workflow task to stdout (the CLI's
            report says it once, and ``--json`` output must stay JSON).
        codec: The payload codec the histories were written with (encryption: the client's,
            ``client.data_converter.payload_codec``).
    """
    from graphrunner.plugin import GraphrunnerPlugin  # the plugin imports the activities
    from graphrunner.workflows import AgentLifetimeWorkflow

    replayer = Replayer(
        workflows=list(workflows or [AgentLifetimeWorkflow]),
        plugins=[GraphrunnerPlugin(blobs=blobs, codec=codec)],
        runtime=Runtime(telemetry=TelemetryConfig(logging=None)) if quiet else None,
    )
    verdicts = []
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        failure = result.replay_failure
        event_id = None if failure is None else await _first_mismatch(replayer, history, failure)
        verdicts.append(_verdict(history, _run_id(history), failure, event_id))
    return verdicts


async def _fails(replayer: Replayer, history: WorkflowHistory, end: int) -> bool:
    part = WorkflowHistory(history.workflow_id, list(history.events[:end]))
    result = await replayer.replay_workflow(part, raise_on_replay_failure=False)
    return result.replay_failure is not None


async def _first_mismatch(
    replayer: Replayer, history: WorkflowHistory, failure: Exception
) -> int | None:
    """The id of the first event the code no longer matches.

    The SDK core seldom names it ("Activity type of scheduled event 'x' does not match ..."),
    so replay ever longer prefixes (bisection over workflow tasks: a prefix that fails makes
    every longer one fail) to find the first workflow task that breaks, then take its first
    command event, or the first one of the activity type the message names.
    """
    found = _EVENT_ID.search(str(failure))
    if found:
        return int(found.group(1))
    events = history.events
    # Cut just before each WorkflowTaskScheduled: a prefix then ends with a task's commands.
    kinds = [e.WhichOneof("attributes") for e in events]
    cuts = [i for i, kind in enumerate(kinds) if kind == _TASK_SCHEDULED] + [len(events)]
    low, high = 0, len(cuts) - 1  # cuts[high] fails (the whole history did)
    while low < high:
        mid = (low + high) // 2
        if await _fails(replayer, history, cuts[mid]):
            high = mid
        else:
            low = mid + 1
    end = cuts[high]
    completed = [i for i in range(end) if kinds[i] == _TASK_COMPLETED]
    if not completed:
        return None
    commands = events[completed[-1] + 1 : end] or events[completed[-1] : completed[-1] + 1]
    named = _NAMED_ACTIVITY.search(str(failure))
    for event in commands:
        attrs = event.activity_task_scheduled_event_attributes
        if named and event.WhichOneof("attributes") == _ACTIVITY_SCHEDULED:
            if attrs.activity_type.name == named.group(1):
                return event.event_id
    return commands[0].event_id


async def fetch_histories(
    temporal: Client, lifetime_ids: Sequence[str], *, children: bool = True
) -> list[WorkflowHistory]:
    """The current run's history of each lifetime, in order, then its child lifetimes'.

    Only the current run: it is the one a worker replays again (the runs before a
    continue-as-new or a reset are closed, and each starts from its own input). With
    ``children``, the child lifetimes a history started (sub-graph tasks) follow their
    parent, recursively (children run the same workflow code, so a deploy affects them
    alike); each lifetime once.
    """
    histories: list[WorkflowHistory] = []
    seen: set[str] = set()
    todo = list(lifetime_ids)
    while todo:
        lifetime_id = todo.pop(0)
        if lifetime_id in seen:
            continue
        seen.add(lifetime_id)
        try:
            history = await temporal.get_workflow_handle(lifetime_id).fetch_history()
        except RPCError:
            if lifetime_id in lifetime_ids:
                raise
            continue  # a child never started, or gone past retention
        histories.append(history)
        if children:
            todo.extend(_children(history))
    return histories


def _children(history: WorkflowHistory) -> list[str]:
    return [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
