"""A worker process SIGKILLed mid-lifetime: a new one finishes it, and no completed Task reruns.

The workers are real ``graphrunner worker`` processes; the Temporal dev server is the session's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient
from graphrunner.graph import GraphDefaults
from graphrunner.stores import RecordStore
from tests.conftest import ROOT, assert_replays
from tests.crash_nodes import LoopUntil, SlowLoggedTask

ROUNDS = 5  # task executions in the lifetime
KILL_AFTER = 2  # completed tasks before the worker is killed, while task KILL_AFTER + 1 runs
SLEEP_S = 0.5  # each task's work: long enough to be caught mid-flight
HEARTBEAT_S = 2.0  # how fast the server notices the dead worker
RUN_TASK = "graphrunner.run_task"
Execution = tuple[str, int]  # (node, iteration)


def crash_graph(log: Path) -> GraphBuilder:
    return (
        GraphBuilder(
            "crash",
            version="1.0.0",
            defaults=GraphDefaults(
                heartbeat_timeout_s=HEARTBEAT_S,
                retry={"max_attempts": 3, "initial_interval_s": 0.1},
            ),
        )
        .task("work", SlowLoggedTask, config={"sleep_s": SLEEP_S, "log": str(log)})
        .plan("decide", LoopUntil, config={"rounds": ROUNDS, "loop_to": "work"})
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
    )


def start_worker(
    env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    name: str,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """Start ``graphrunner worker`` in its own process and session; output to worker-NAME.log.

    ``settings`` are more environment variables (``GRAPHRUNNER_POLICY=...``).
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    environ.update(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        TEMPORAL_CONFIG_FILE=str(tmp_path / "no-temporal.toml"),  # ignore the user's profiles
        GRAPHRUNNER_TASK_QUEUE=task_queue,
        GRAPHRUNNER_HOME=str(tmp_path / "state"),  # both workers share this state DB
        PYTHONUNBUFFERED="1",
        **settings,
    )
    with open(tmp_path / f"worker-{name}.log", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "graphrunner", "worker", "--app-dir", str(ROOT)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def worker_output(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')}"
        for path in sorted(tmp_path.glob("worker-*.log"))
    )


async def wait_polling(
    env: WorkflowEnvironment,
    task_queue: str,
    procs: subprocess.Popen[bytes] | list[subprocess.Popen[bytes]],
    tmp_path: Path,
    timeout: float = 20,
) -> None:
    """Wait until the server sees every one of ``procs`` polling the task queue for activities."""
    waiting = procs if isinstance(procs, list) else [procs]
    request = DescribeTaskQueueRequest(
        namespace=env.client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    deadline = time.monotonic() + timeout
    while True:
        response = await env.client.workflow_service.describe_task_queue(request)
        polling = {p.identity for p in response.pollers}
        # The SDK's default worker identity is "pid@host".
        if all(any(i.startswith(f"{proc.pid}@") for i in polling) for proc in waiting):
            return
        if any(p.poll() is not None for p in waiting) or time.monotonic() > deadline:
            pids = ", ".join(str(p.pid) for p in waiting)
            raise AssertionError(f"worker {pids} is not polling:\n{worker_output(tmp_path)}")
        await asyncio.sleep(0.05)


class TaskEvents(NamedTuple):
    """Task executions in a history, found by the ``node · iteration`` activity summaries."""

    by_event_id: dict[int, Execution]  # of the ActivityTaskScheduled event
    by_activity_id: dict[str, Execution]
    completed: set[Execution]


def task_events(history: WorkflowHistory) -> TaskEvents:
    found = TaskEvents({}, {}, set())
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == RUN_TASK:
                node, iteration = event.user_metadata.summary.data.decode().strip('"').split(" · ")
                execution = (node, int(iteration))
                found.by_event_id[event.event_id] = execution
                found.by_activity_id[attrs.activity_id] = execution
        elif event.HasField("activity_task_completed_event_attributes"):
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled_id in found.by_event_id:
                found.completed.add(found.by_event_id[scheduled_id])
    return found


async def running_task(
    handle: WorkflowHandle[object, object], tasks: TaskEvents
) -> tuple[Execution, str] | None:
    """The task execution a worker is running right now, and that worker's identity."""
    desc = await handle.describe()
    for pending in desc.raw_description.pending_activities:
        started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        if started and pending.activity_id in tasks.by_activity_id:
            return tasks.by_activity_id[pending.activity_id], pending.last_worker_identity
    return None


def read_log(log: Path) -> list[tuple[Execution, int, int]]:
    """``((node, iteration), attempt, pid)`` per line of the task log."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        node, iteration, attempt, pid = line.split()
        rows.append(((node, int(iteration)), int(attempt), int(pid)))
    return rows


@pytest.mark.timeout(90)
async def test_sigkilled_worker_process_is_replaced_without_rerunning_completed_tasks(
    env: WorkflowEnvironment, client: GraphrunnerClient, task_queue: str, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    deadline = time.monotonic() + 60
    workers: list[subprocess.Popen[bytes]] = []
    try:
        worker_a = start_worker(env, task_queue, tmp_path, "a")
        workers.append(worker_a)
        await wait_polling(env, task_queue, worker_a, tmp_path)
        handle = await client.start(crash_graph(log).build(), None)

        # Wait until KILL_AFTER tasks have completed and the next one is running in worker A.
        while True:
            assert time.monotonic() < deadline, "the lifetime never got far enough to crash"
            tasks = task_events(await handle.fetch_history())
            running = await running_task(handle, tasks)
            if len(tasks.completed) >= KILL_AFTER and running is not None:
                in_flight, identity = running
                break
            await asyncio.sleep(0.05)
        assert identity.startswith(f"{worker_a.pid}@"), identity
        os.kill(worker_a.pid, signal.SIGKILL)
        assert worker_a.wait(timeout=10) == -signal.SIGKILL

        # Worker A is dead, B not started: what history shows completed now ran before the kill.
        completed_before_kill = task_events(await handle.fetch_history()).completed
        assert in_flight not in completed_before_kill
        log_at_kill = read_log(log)
        assert sorted(e for e, _, _ in log_at_kill) == sorted(completed_before_kill)

        worker_b = start_worker(env, task_queue, tmp_path, "b")
        workers.append(worker_b)
        await wait_polling(env, task_queue, worker_b, tmp_path)
        try:
            result = await asyncio.wait_for(handle.result(), timeout=deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"lifetime not finished:\n{worker_output(tmp_path)}") from None
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    assert result.output == {"rounds": ROUNDS, "last": {"node": "work", "iteration": ROUNDS}}
    assert [(s.node, s.iteration) for s in result.steps] == [
        (node, i) for i in range(1, ROUNDS + 1) for node in ("work", "decide")
    ]

    rows = read_log(log)
    runs = Counter(execution for execution, _, _ in rows)
    # Every task execution ran to completion exactly once: none completed before the kill ran
    # again, the one cut off by the kill ran again (in B, as attempt 2), and B ran the rest.
    assert runs == {("work", i): 1 for i in range(1, ROUNDS + 1)}
    pid_of = {execution: pid for execution, _, pid in rows}
    attempt_of = {execution: attempt for execution, attempt, _ in rows}
    assert {pid_of[e] for e in completed_before_kill} == {worker_a.pid}
    assert pid_of[in_flight] == worker_b.pid and attempt_of[in_flight] == 2
    assert {pid_of[e] for e in runs if e not in completed_before_kill} == {worker_b.pid}
    assert all(attempt_of[e] == 1 for e in runs if e != in_flight)

    # History agrees: the interrupted task took two attempts, every other one a single attempt.
    history = await handle.fetch_history()
    scheduled = task_events(history).by_event_id
    attempts = {
        scheduled[e.activity_task_started_event_attributes.scheduled_event_id]: (
            e.activity_task_started_event_attributes.attempt
        )
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    }
    assert attempts == {e: 2 if e == in_flight else 1 for e in runs}
    await assert_replays(client.temporal, handle)

    # The state DB both workers wrote: exactly one record per execution, each matching the
    # attempt the history completed; the attempt A never finished left no record behind.
    store = RecordStore(f"sqlite:///{tmp_path / 'state' / 'state.db'}")
    try:
        records = await store.executions(handle.id)
        interrupted = next(r for r in records if (r.node, r.iteration) == in_flight)
        attempt_log = await store.attempts(interrupted.execution_id)
    finally:
        store.close()
    assert [(r.node, r.iteration) for r in records] == [(s.node, s.iteration) for s in result.steps]
    assert len({r.execution_id for r in records}) == len(records)
    assert all(r.status.value == "succeeded" for r in records)
    assert {(r.node, r.iteration): r.attempt for r in records if r.kind == "task"} == attempts
    assert [a["attempt"] for a in attempt_log] == [2]


async def wait_running(
    handle: WorkflowHandle[object, object], completed: int, deadline: float
) -> tuple[Execution, str]:
    """Wait until ``completed`` tasks have completed and the next one is running."""
    while True:
        assert time.monotonic() < deadline, "the lifetime never got far enough to crash"
        tasks = task_events(await handle.fetch_history())
        running = await running_task(handle, tasks)
        if len(tasks.completed) >= completed and running is not None:
            return running
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_a_reservation_of_a_sigkilled_worker_is_settled_by_the_one_that_takes_over(
    env: WorkflowEnvironment,
    client: GraphrunnerClient,
    task_queue: str,
    tmp_path: Path,
    state_db_url: str,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - {name: task-budget, when: 'count(where kind == \"task\") > 100', "
        "scope: tenant, action: abort_lifetime}\n"
    )
    log = tmp_path / "tasks.log"
    deadline = time.monotonic() + 60
    workers: list[subprocess.Popen[bytes]] = []
    settings = {"GRAPHRUNNER_POLICY": str(policy), "GRAPHRUNNER_DATABASE_URL": state_db_url}
    store = RecordStore(state_db_url)
    try:
        worker_a = start_worker(env, task_queue, tmp_path, "a", **settings)
        workers.append(worker_a)
        await wait_polling(env, task_queue, worker_a, tmp_path)
        handle = await client.start(crash_graph(log).build(), None, tenant="crash")
        in_flight, identity = await wait_running(handle, KILL_AFTER, deadline)
        assert identity.startswith(f"{worker_a.pid}@"), identity
        os.kill(worker_a.pid, signal.SIGKILL)
        assert worker_a.wait(timeout=10) == -signal.SIGKILL

        # The task cut off by the kill holds its reservation: it still counts for the tenant.
        held = await store.tenant_reservations("crash")
        assert len(held) == 1, held

        worker_b = start_worker(env, task_queue, tmp_path, "b", **settings)
        workers.append(worker_b)
        await wait_polling(env, task_queue, worker_b, tmp_path)
        try:
            result = await asyncio.wait_for(handle.result(), timeout=deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"lifetime not finished:\n{worker_output(tmp_path)}") from None
        assert result.output == {"rounds": ROUNDS, "last": {"node": "work", "iteration": ROUNDS}}
        # Retried in worker B, it settled like every other execution: nothing stays reserved,
        # and every task counted once.
        assert await store.tenant_reservations("crash") == {}
        key = 'count(where kind == "task")'
        assert (await store.tenant_usage("crash", [key]))[key].count == ROUNDS
    finally:
        store.close()
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    await assert_replays(client.temporal, handle)
