"""The cloud profile's topology from local parts: three worker processes, PostgreSQL, S3.

What docker compose runs (a Temporal server, PostgreSQL for the state DB, MinIO for the
blob store, ``graphrunner worker`` scaled to three) is assembled here from the session's
Temporal dev server, the real PostgreSQL (a fresh database per test), a real S3 API (moto
in server mode, with a bucket made as the compose stack's setup makes it) and three
``graphrunner worker`` processes on one task queue, configured only through environment
variables, as the compose worker service is. The client is configured from the same
variables.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from minio import Minio
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import PendingActivityState, TimeoutType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner._types import RUN_PLAN, RUN_TASK, parse_step_summary
from graphrunner.client import LifetimeHandle
from graphrunner.codec import codec_from_settings
from graphrunner.graph import GraphDefaults
from graphrunner.stores import open_blobs
from tests.cloud_nodes import Merge, Prepare, Scale, Split, pad
from tests.conftest import ROOT, assert_replays
from tests.test_codec import from_json, running_codec_server, to_json
from tests.test_crash import wait_polling, worker_output

ACCESS_KEY = "cloud-access"
SECRET_KEY = "cloud-secret-key"
PREFIX = "graphrunner"  # key prefix of the blob store inside the bucket
WORKERS = 3
LIFETIMES = 100
ROUNDS = 2  # prepare -> split -> double + triple -> merge, this many times per lifetime
NODES = ("prepare", "split", "double", "triple", "merge")
BRANCHES = ("double", "triple")
CODEC_KEYS = f"cloud={base64.b64encode(os.urandom(32)).decode()}"
PAD = 1500  # characters of prepare's result: over the thresholds below, so it goes to S3
THRESHOLD = 1024  # GRAPHRUNNER_PAYLOAD_THRESHOLD_BYTES and GRAPHRUNNER_INLINE_LIMIT_BYTES
SLEEP_S = 0.5  # each branch's work: long enough for many to be in flight at the kill
HEARTBEAT_S = 8.0  # how soon the server notices that a dead worker's activity is gone

Execution = tuple[str, str, int]  # (lifetime, node, iteration)

# The state DB is a fresh database on the real PostgreSQL (conftest's state_db_url).
pytestmark = pytest.mark.parametrize("state_db_url", ["postgresql"], indirect=True)


# --- the topology ---------------------------------------------------------------------------


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket, made up front as the compose stack's setup makes MinIO's."""
    name = f"gr-cloud-{uuid.uuid4().hex[:10]}"
    s3(s3_endpoint).make_bucket(name)
    return name


def s3(endpoint: str) -> Minio:
    return Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


@dataclass
class Cloud:
    """The topology: the environment every process gets, and the worker processes."""

    environ: dict[str, str]
    endpoint: str
    bucket: str
    database_url: str
    tmp_path: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        """The client's settings, read from the same variables the workers get."""
        return Settings.from_env(self.environ)

    async def client(self) -> GraphrunnerClient:
        # TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE as the workers read them (temporalio's
        # envconfig reads this process's environment, which the test leaves alone).
        return await GraphrunnerClient.connect(
            self.settings,
            address=self.environ["TEMPORAL_ADDRESS"],
            namespace=self.environ["TEMPORAL_NAMESPACE"],
        )

    def keys(self, folder: str) -> list[str]:
        """Object keys under ``<prefix>/<folder>/`` in the bucket, listed through the S3 API."""
        start = f"{PREFIX}/{folder}/"
        objects = s3(self.endpoint).list_objects(self.bucket, prefix=start, recursive=True)
        return sorted(str(o.object_name) for o in objects)

    def homes(self) -> list[Path]:
        """The workers' GRAPHRUNNER_HOME directories that exist (none should)."""
        return [p for p in self.tmp_path.glob("home-*") if p.exists()]


@pytest.fixture
async def cloud(
    env: WorkflowEnvironment,
    task_queue: str,
    s3_endpoint: str,
    bucket: str,
    state_db_url: str,
    tmp_path: Path,
) -> AsyncIterator[Cloud]:
    """Three ``graphrunner worker`` processes on one task queue against PostgreSQL and S3.

    They start together on the empty database, as ``docker compose up --scale worker=3``
    starts them; the fixture waits until the server sees each one polling.
    """
    environ = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "no-temporal.toml"),  # not the user's profiles
        "GRAPHRUNNER_TASK_QUEUE": task_queue,
        "GRAPHRUNNER_DATABASE_URL": state_db_url,
        "GRAPHRUNNER_BLOB_URL": f"s3://{bucket}/{PREFIX}?endpoint={s3_endpoint}&secure=false",
        "GRAPHRUNNER_S3_ACCESS_KEY": ACCESS_KEY,
        "GRAPHRUNNER_S3_SECRET_KEY": SECRET_KEY,
        "GRAPHRUNNER_PAYLOAD_THRESHOLD_BYTES": str(THRESHOLD),
        "GRAPHRUNNER_INLINE_LIMIT_BYTES": str(THRESHOLD),
        # Encrypted at rest, as the compose stack runs: history and S3 hold ciphertext.
        "GRAPHRUNNER_CODEC_KEYS": CODEC_KEYS,
    }
    topology = Cloud(environ, s3_endpoint, bucket, state_db_url, tmp_path)
    try:
        for n in range(WORKERS):
            topology.workers.append(start_worker(topology, f"w{n + 1}"))
        # Three workers importing at once on a loaded 2-core box: up to a minute.
        await wait_polling(env, task_queue, topology.workers, tmp_path, timeout=60)
        yield topology
    finally:
        for proc in topology.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def start_worker(cloud: Cloud, name: str) -> subprocess.Popen[bytes]:
    """``graphrunner worker`` in its own process, configured only by environment variables.

    Nothing of the test's own environment reaches it but the basics (PATH and the like);
    its GRAPHRUNNER_HOME is a directory of its own, which must stay unused: all state is in
    PostgreSQL and S3. Output goes to ``worker-NAME.log``.
    """
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GRAPHRUNNER_"))
    }
    environ.update(cloud.environ)
    environ.update(GRAPHRUNNER_HOME=str(cloud.tmp_path / f"home-{name}"), PYTHONUNBUFFERED="1")
    with open(cloud.tmp_path / f"worker-{name}.log", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "graphrunner", "worker", "--app-dir", str(ROOT)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_gracefully(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM a worker, as ``docker compose stop`` does; its exit status."""
    proc.terminate()
    return proc.wait(timeout=30)


# --- the graph and what its nodes log ---------------------------------------------------------


def cloud_graph(log: Path) -> GraphBuilder:
    """``prepare -> split -> double + triple -> merge``, ROUNDS times (see tests.cloud_nodes).

    Every node logs its attempts to ``log``.
    """
    logged = {"log": str(log)}
    branch = {"sleep_s": SLEEP_S, **logged}
    return (
        GraphBuilder(
            "cloud",
            version="1.0.0",
            defaults=GraphDefaults(
                heartbeat_timeout_s=HEARTBEAT_S,
                retry={"max_attempts": 5, "initial_interval_s": 0.2},
            ),
        )
        .task("prepare", Prepare, config={"pad": PAD, **logged})
        .plan("split", Split, config=logged)
        .task("double", Scale, config={"factor": 2, **branch})
        .task("triple", Scale, config={"factor": 3, **branch})
        .plan("merge", Merge, config={"rounds": ROUNDS, **logged})
        .edge("prepare", "split")
        .parallel("split", "double", "triple")
        .join("merge", "double", "triple")
        .edge("merge", "prepare")
        .final("merge")
    )


class Run(NamedTuple):
    """One attempt of one execution, from the nodes' log."""

    execution: Execution
    attempt: int
    pid: int


def read_log(log: Path) -> tuple[set[Run], set[Run]]:
    """The attempts that started, and those whose body ended, in any worker process."""
    started: set[Run] = set()
    ended: set[Run] = set()
    if not log.exists():
        return started, ended
    # A line being written as we read may be incomplete: only whole lines count.
    for line in log.read_text().split("\n")[:-1]:
        event, lifetime, node, iteration, attempt, pid = line.split()
        run = Run((lifetime, node, int(iteration)), int(attempt), int(pid))
        (started if event == "start" else ended).add(run)
    return started, ended


# --- what history says ------------------------------------------------------------------------


class Done(NamedTuple):
    """The attempt of an execution that history completed, and the worker that ran it."""

    attempt: int
    identity: str
    result: Payload  # the first payload of its result, as history holds it
    retried_after: str  # why the attempt before it failed ("" on a first attempt)


@dataclass
class Seen:
    """One lifetime's history, read for the test."""

    completed: dict[tuple[str, int], Done] = field(default_factory=dict)
    activity_ids: dict[str, tuple[str, int]] = field(default_factory=dict)  # -> (node, iteration)
    workflow_tasks: list[str] = field(default_factory=list)  # identities, in order
    workflow_task_times: list[float] = field(default_factory=list)  # when each completed


def read_history(history: WorkflowHistory) -> Seen:
    seen = Seen()
    scheduled: dict[int, tuple[str, int]] = {}
    started: dict[int, tuple[int, str, str]] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name in (RUN_TASK, RUN_PLAN):
                step = parse_step_summary(event.user_metadata.summary.data.decode().strip('"'))
                assert step is not None
                scheduled[event.event_id] = seen.activity_ids[attrs.activity_id] = step
        elif event.HasField("activity_task_started_event_attributes"):
            began = event.activity_task_started_event_attributes
            why = ""
            if began.HasField("last_failure"):
                failure = began.last_failure
                why = failure.WhichOneof("failure_info") or "?"
                if failure.HasField("timeout_failure_info"):
                    why = TimeoutType.Name(failure.timeout_failure_info.timeout_type)
            started[began.scheduled_event_id] = (began.attempt, began.identity, why)
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            if done.scheduled_event_id in scheduled:
                attempt, identity, why = started[done.scheduled_event_id]
                seen.completed[scheduled[done.scheduled_event_id]] = Done(
                    attempt, identity, done.result.payloads[0], why
                )
        elif event.HasField("workflow_task_completed_event_attributes"):
            seen.workflow_tasks.append(event.workflow_task_completed_event_attributes.identity)
            seen.workflow_task_times.append(event.event_time.ToDatetime(UTC).timestamp())
    return seen


async def held_by(handle: LifetimeHandle, pid: int) -> set[tuple[str, str, int]]:
    """``(lifetime, activity id, attempt)`` of each activity the server sees running in ``pid``."""
    description = await handle.describe()
    return {
        (handle.id, p.activity_id, p.attempt)
        for p in description.raw_description.pending_activities
        if p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        and pid_of(p.last_worker_identity) == pid
    }


def pid_of(identity: str) -> int:
    """The process id in a worker identity (the SDK's default ``pid@host``)."""
    pid, at, _host = identity.partition("@")
    assert at and pid.isdigit(), identity
    return int(pid)


def state_db_rows(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every execution record and every attempt row, read straight from PostgreSQL."""
    with psycopg.connect(url) as conn:
        records = conn.execute(
            "SELECT execution_id, lifetime_id, node, iteration, attempt, status, result_uri "
            "FROM gr_executions"
        ).fetchall()
        attempts = conn.execute("SELECT execution_id, attempt, status FROM gr_attempts").fetchall()
    return records, attempts


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.timeout(200)
async def test_three_workers_share_100_lifetimes_and_survive_a_sigkill(cloud: Cloud) -> None:
    log = cloud.tmp_path / "nodes.log"
    graph = cloud_graph(log).build()
    total = LIFETIMES * ROUNDS * len(NODES)
    deadline = time.monotonic() + 170
    victim, survivors = cloud.workers[0], cloud.workers[1:]
    client = await cloud.client()

    slots = asyncio.Semaphore(20)

    async def start(i: int) -> LifetimeHandle:
        async with slots:
            return await client.start(graph, {"n": i}, id=f"cloud-{i:03d}-{uuid.uuid4().hex[:6]}")

    began = time.monotonic()
    handles = await asyncio.gather(*(start(i) for i in range(LIFETIMES)))

    # Midway: a third of all executions ran, and the victim is running some right now.
    while True:
        assert time.monotonic() < deadline, (
            f"no progress to kill at:\n{worker_output(cloud.tmp_path)}"
        )
        started, ended = read_log(log)
        # Branch bodies take SLEEP_S: ones running now are still running a moment later.
        in_flight = {
            r for r in started - ended if r.pid == victim.pid and r.execution[1] in BRANCHES
        }
        if len(ended) >= total // 3 and len(in_flight) >= 3:
            break
        await asyncio.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    killed_at, killed_wall = time.monotonic(), time.time()
    started, ended = read_log(log)
    # What the victim was running when it died: these attempts never finished (or finished
    # their body but Temporal never heard of it).
    cut_off = {r for r in started if r.pid == victim.pid and r not in ended}
    ended_at_kill = len(ended)
    # What the server saw running in the victim: also the attempts it had been handed but
    # had not begun (still reading their input from S3, say), which the log cannot show.
    held = set().union(*await asyncio.gather(*(held_by(h, victim.pid) for h in handles)))

    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(h.result() for h in handles)), timeout=deadline - time.monotonic()
        )
    except TimeoutError:
        raise AssertionError(f"lifetimes not finished:\n{worker_output(cloud.tmp_path)}") from None
    finished = time.monotonic()

    # Every lifetime finished with the right result along the right path.
    for i, result in enumerate(results):
        assert result.output == {"n": 5**ROUNDS * i, "rounds": ROUNDS}
        assert [(s.node, s.iteration) for s in result.steps] == [
            (node, r) for r in range(1, ROUNDS + 1) for node in NODES
        ]
        assert all(s.status.value == "completed" for s in result.steps), result.steps

    histories = {h.id: read_history(await h.fetch_history()) for h in handles}
    steps = {
        (h.id, s.node, s.iteration): s.execution_id
        for h, r in zip(handles, results, strict=True)
        for s in r.steps
    }
    completed = {
        (lifetime, node, iteration): done
        for lifetime, seen in histories.items()
        for (node, iteration), done in seen.completed.items()
    }
    assert completed.keys() == steps.keys() and len(steps) == total

    # The state DB holds exactly one record per execution (lifetime, node, iteration) and
    # none of anything else, each one the attempt whose completion history accepted.
    records, attempt_rows = state_db_rows(cloud.database_url)
    per_execution = Counter((r[1], r[2], r[3]) for r in records)
    assert [e for e, n in per_execution.items() if n > 1] == []
    assert per_execution.keys() == steps.keys()
    by_execution = {(r[1], r[2], r[3]): r for r in records}
    for execution, row in by_execution.items():
        execution_id, _, _, _, attempt, status, _ = row
        assert execution_id == steps[execution]
        assert status == "succeeded", row
        assert attempt == completed[execution].attempt, (execution, row, completed[execution])

    # Retries happened only because of the kill: every execution whose completed attempt is
    # not its first had an earlier attempt in the victim when it died, and was retried after
    # a heartbeat timeout; the ones whose body had begun there were all finished by a
    # survivor, in a later attempt.
    held_attempts = {
        ((lifetime, *histories[lifetime].activity_ids[activity_id]), attempt)
        for lifetime, activity_id, attempt in held
    }
    ran_in_victim = {(r.execution, r.attempt) for r in started if r.pid == victim.pid}
    assert {(r.execution, r.attempt) for r in cut_off} <= held_attempts
    retried = {e for e, done in completed.items() if done.attempt > 1}
    for execution in retried:
        done = completed[execution]
        earlier = {(execution, a) for a in range(1, done.attempt)}
        assert earlier & held_attempts, (execution, done)
        assert done.retried_after == "TIMEOUT_TYPE_HEARTBEAT", (execution, done)
    # (3 were in flight a moment before the kill; a loaded box may let some end meanwhile.)
    assert len(cut_off) >= 1
    survivor_pids = {p.pid for p in survivors}
    for run in cut_off:
        done = completed[run.execution]
        assert pid_of(done.identity) in survivor_pids and done.attempt > run.attempt, (run, done)

    # The attempt log keeps every attempt that finished: the one history completed for each
    # execution, and an earlier one only where the victim finished a body Temporal never
    # heard of (it ran there, then the worker died before reporting it).
    id_to_execution = {v: k for k, v in steps.items()}
    finished_attempts = {(id_to_execution[r[0]], r[1]) for r in attempt_rows}
    accepted = {(e, done.attempt) for e, done in completed.items()}
    assert accepted <= finished_attempts
    assert finished_attempts - accepted <= ran_in_victim
    assert all(r[2] == "succeeded" for r in attempt_rows)

    # The load was shared: every worker process completed activities and workflow tasks.
    pids = [p.pid for p in cloud.workers]
    activities_by = Counter(pid_of(done.identity) for done in completed.values())
    tasks_by = Counter(pid_of(i) for seen in histories.values() for i in seen.workflow_tasks)
    assert set(activities_by) == set(pids) and set(tasks_by) == set(pids), (activities_by, pids)

    # The survivors took over the victim's lifetimes: each lifetime the victim had worked on
    # was finished by another worker.
    victims_lifetimes = [
        lid for lid, seen in histories.items() if victim.pid in map(pid_of, seen.workflow_tasks)
    ]
    assert victims_lifetimes
    for lid in victims_lifetimes:
        assert pid_of(histories[lid].workflow_tasks[-1]) in survivor_pids
    # For the report: how long the lifetimes cached in the victim (its workflow task the last
    # before the kill) waited for a survivor to take them over.
    resumed = []
    for seen in histories.values():
        before = [
            i
            for i, t in zip(seen.workflow_tasks, seen.workflow_task_times, strict=True)
            if t < killed_wall
        ]
        if before and pid_of(before[-1]) == victim.pid:
            after = [t for t in seen.workflow_task_times if t >= killed_wall]
            resumed.append(after[0] - killed_wall)

    # Large payloads went to S3: history holds references for every prepare result, the
    # bucket holds the payloads, and the records point at their results there.
    for (lifetime, node, _), done in completed.items():
        if node == "prepare":
            # A reference: the stored payload's size, and where it is.
            assert [p.size_bytes for p in done.result.external_payloads] > [PAD], lifetime
            assert f"s3://{cloud.bucket}/{PREFIX}/payloads/".encode() in done.result.data
        else:
            assert not done.result.external_payloads, (lifetime, node)
    payload_keys = cloud.keys("payloads")
    assert len(payload_keys) >= LIFETIMES * ROUNDS
    prepared = {r[6] for e, r in by_execution.items() if e[1] == "prepare"}
    assert all(uri.startswith(f"s3://{cloud.bucket}/{PREFIX}/results/") for uri in prepared)
    assert len(prepared) == LIFETIMES * ROUNDS
    assert [r[6] for e, r in by_execution.items() if e[1] != "prepare"] == [None] * (
        total - LIFETIMES * ROUNDS
    )
    # Each attempt writes its result under its own key before its record: a key no record
    # names is an attempt the victim ran and Temporal never heard of.
    result_keys = {f"s3://{cloud.bucket}/{key}" for key in cloud.keys("results")}
    assert prepared <= result_keys
    for key in result_keys - prepared:
        execution_id, attempt, _json = key.rsplit("/", 1)[1].split(".")
        assert (id_to_execution[execution_id], int(attempt)) in ran_in_victim, key
    # ... and a reader with the same settings gets them back from there.
    lifetime = handles[7].id
    record = next(r for e, r in by_execution.items() if e == (lifetime, "prepare", 2))
    blob = json.loads(await open_blobs(cloud.settings).get(record[6]))
    assert blob == {"n": 5 * 7, "pad": pad(lifetime, 2, PAD)}

    # A lifetime the victim worked on, then a survivor, replays against the code.
    codec = codec_from_settings(cloud.settings)
    await assert_replays(client.temporal, handles[0], blobs=open_blobs(cloud.settings), codec=codec)
    await assert_replays(
        client.temporal,
        next(h for h in handles if h.id == victims_lifetimes[-1]),
        blobs=open_blobs(cloud.settings),
        codec=codec,
    )

    # The survivors stop cleanly; no worker kept anything on its local disk.
    assert [stop_gracefully(p) for p in survivors] == [0, 0]
    assert cloud.homes() == []

    print(
        f"\n{LIFETIMES} lifetimes, {total} executions in {finished - began:.1f} s "
        f"({total / (finished - began):.0f}/s); killed after {killed_at - began:.1f} s at "
        f"{ended_at_kill} ended bodies with {len(cut_off)} in flight on the victim; last "
        f"lifetime done {finished - killed_at:.1f} s after the kill; the {len(resumed)} "
        f"lifetimes cached in the victim resumed {min(resumed):.1f}-{max(resumed):.1f} s "
        f"(median {statistics.median(resumed):.1f} s) after it; {len(retried)} executions "
        f"retried; activities by worker {dict(activities_by)}, workflow tasks "
        f"{dict(tasks_by)}; {len(payload_keys)} payload blobs, {len(result_keys)} result blobs"
    )


CLI_GRAPH = f"""\
name: cloud-cli
version: 1.0.0
start: prepare
defaults:
  heartbeat_timeout_s: {HEARTBEAT_S}
  retry: {{max_attempts: 5, initial_interval_s: 0.2}}
nodes:
  - {{name: prepare, kind: task, impl: "tests.cloud_nodes:Prepare", config: {{pad: {PAD}}}}}
  - {{name: split, kind: plan, impl: "tests.cloud_nodes:Split"}}
  - name: double
    kind: task
    impl: "tests.cloud_nodes:Scale"
    config: {{factor: 2, tokens: 100, cost: 0.01}}
  - name: triple
    kind: task
    impl: "tests.cloud_nodes:Scale"
    config: {{factor: 3, tokens: 200, cost: 0.02}}
  - {{name: merge, kind: plan, impl: "tests.cloud_nodes:Merge", config: {{rounds: {ROUNDS}}}}}
edges:
  - {{from: prepare, to: split}}
  - {{from: split, to: double, type: PARALLEL}}
  - {{from: split, to: triple, type: PARALLEL}}
  - {{from: double, to: merge, type: JOIN}}
  - {{from: triple, to: merge, type: JOIN}}
  - {{from: merge, to: prepare}}
  - {{from: merge, type: FINAL}}
"""


def cli(cloud: Cloud, *args: str) -> Any:
    """Run ``graphrunner ARGS --json`` with the topology's environment; its parsed output."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GRAPHRUNNER_"))
    }
    environ.update(cloud.environ, GRAPHRUNNER_HOME=str(cloud.tmp_path / "home-cli"))
    done = subprocess.run(
        [sys.executable, "-m", "graphrunner", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"graphrunner {' '.join(args)}:\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(180)
async def test_an_operator_runs_and_inspects_lifetimes_through_the_cli(cloud: Cloud) -> None:
    graph = cloud.tmp_path / "cloud.yaml"
    graph.write_text(CLI_GRAPH)
    suffix = uuid.uuid4().hex[:6]
    lifetimes = {"acme": (f"acme-{suffix}", 7), "globex": (f"globex-{suffix}", 3)}

    def run(tenant: str) -> Any:
        lifetime, n = lifetimes[tenant]
        out = cli(
            cloud,
            *("run", str(graph), "--input", json.dumps({"n": n}), "--id", lifetime),
            *("--tenant", tenant, "--wait", "--json", "--app-dir", str(ROOT)),
        )
        return json.loads(out)

    results = await asyncio.gather(*(asyncio.to_thread(run, t) for t in lifetimes))
    path = [(node, r) for r in range(1, ROUNDS + 1) for node in NODES]
    for result, (_lifetime, n) in zip(results, lifetimes.values(), strict=True):
        assert result["output"] == {"n": 5**ROUNDS * n, "rounds": ROUNDS}
        assert [(s["node"], s["iteration"]) for s in result["steps"]] == path

    acme, _ = lifetimes["acme"]
    status = json.loads(await asyncio.to_thread(cli, cloud, "status", acme, "--json"))
    assert status["status"] == "completed" and status["graph_name"] == "cloud-cli"
    assert status["tenant"] == "acme"
    assert [(s["node"], s["iteration"]) for s in status["steps"]] == path

    # The records are in PostgreSQL; prepare's results are large, so they are in S3.
    history = json.loads(await asyncio.to_thread(cli, cloud, "history", acme, "--json"))
    executions = history["executions"]
    assert [(e["node"], e["iteration"]) for e in executions] == path
    assert {e["status"] for e in executions} == {"succeeded"}
    for e in executions:
        if e["node"] == "prepare":
            assert e["result_uri"].startswith(f"s3://{cloud.bucket}/{PREFIX}/results/{acme}/")
            assert e["result_size"] > PAD
        else:
            assert e["result_uri"] is None and e["result_inline"] is not None
    assert sum(e["tokens_in"] for e in executions) == ROUNDS * 300

    # `result` streams a stored result back from the bucket.
    out = await asyncio.to_thread(cli, cloud, "result", acme, "prepare", "--iteration", "2")
    assert json.loads(out) == {"n": 5 * 7, "pad": pad(acme, 2, PAD)}

    # `list` reads Temporal's visibility (eventually consistent: a moment after the end a
    # lifetime may still show as running) and the records' totals.
    deadline = time.monotonic() + 30
    while True:
        rows = json.loads(
            await asyncio.to_thread(cli, cloud, "list", "--graph", "cloud-cli", "--json")
        )
        mine = {r["lifetime_id"]: r for r in rows if r["lifetime_id"].endswith(suffix)}
        if {r["status"] for r in mine.values()} == {"completed"} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert {
        lid: (r["status"], r["tenant"], r["executions"], r["tokens"]) for lid, r in mine.items()
    } == {
        lid: ("completed", tenant, ROUNDS * len(NODES), ROUNDS * 300)
        for tenant, (lid, _) in lifetimes.items()
    }

    # `costs` totals each tenant from the records: 2 branches x ROUNDS, priced per branch.
    costs = json.loads(await asyncio.to_thread(cli, cloud, "costs", "--json"))
    assert {
        c["key"]: (c["lifetimes"], c["executions"], c["tokens_in"], float(c["cost_usd"]))
        for c in costs
    } == {t: (1, ROUNDS * len(NODES), ROUNDS * 300, ROUNDS * 0.03) for t in lifetimes}

    # The payloads in S3 are ciphertext; the codec server (what the Web UI and `temporal
    # --codec-endpoint` call) reads them back from the bucket in clear.
    await payloads_are_sealed_and_the_codec_server_opens_them(cloud, acme)

    # Nothing went to a local directory: not the workers', not the CLI's.
    assert cloud.homes() == []


async def payloads_are_sealed_and_the_codec_server_opens_them(cloud: Cloud, lifetime: str) -> None:
    import aiohttp  # the codec server's own dependency

    secrets = [pad(lifetime, r, PAD)[:40] for r in range(1, ROUNDS + 1)]
    stored = [
        s3(cloud.endpoint).get_object(cloud.bucket, key).read() for key in cloud.keys("payloads")
    ]
    assert stored and not any(s.encode() in blob for s in secrets for blob in stored)
    for blob in stored:
        sealed = Payload()
        sealed.ParseFromString(blob)
        assert sealed.metadata["encoding"] == b"binary/encrypted"
    client = await cloud.client()
    history = await client.temporal.get_workflow_handle(lifetime).fetch_history()
    references = [
        p
        for e in history.events
        if e.HasField("activity_task_completed_event_attributes")
        for p in e.activity_task_completed_event_attributes.result.payloads
        if p.external_payloads
    ]
    assert references, "prepare's results left history for S3"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GRAPHRUNNER_"))
    }
    environ.update(cloud.environ, GRAPHRUNNER_HOME=str(cloud.tmp_path / "home-codec"))
    with running_codec_server(environ) as url:
        body = to_json(references[:1])
        async with aiohttp.ClientSession() as http, http.post(f"{url}/download", json=body) as r:
            assert r.status == 200, await r.text()
            [opened] = from_json(await r.json())
        assert any(s in opened.data.decode() for s in secrets)
