"""Failed attempts through the CLI and client; status and history number steps alike; help."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner.client._runtime import open_recorder
from graphrunner.stores import data_converter, open_blobs
from graphrunner.worker import build_worker
from tests import fn_nodes
from tests.test_cli_lifetimes import cli_env, graphrunner

GRAPH = """\
name: attempts
version: 1.0.0
defaults:
  retry: {max_attempts: 5, initial_interval_s: 0.01, backoff: 1.0}
nodes:
  - {name: work, kind: task, impl: tests.fn_nodes:flaky}
  - {name: decide, kind: plan, impl: tests.fn_nodes:twice}
  - {name: again, kind: task, impl: tests.fn_nodes:flaky}
  - {name: close, kind: plan, impl: tests.fn_nodes:twice, local: true}
edges:
  - {from: work, to: decide}
  - {from: decide, to: again}
  - {from: decide, type: FINAL}
  - {from: again, to: close}
  - {from: close, to: work}
  - {from: close, type: FINAL}
"""


def first_cells(table: str) -> list[str]:
    """The first column of each body row of a Rich table."""
    cells = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    return [c for c in cells if c.isdigit()]


async def test_attempts_status_headers_and_numbering(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    settings = Settings(task_queue=task_queue, home=tmp_path / "state")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, open_blobs(settings)),
    )
    recorder = open_recorder(settings)
    assert recorder is not None
    graph = tmp_path / "attempts.yaml"
    graph.write_text(GRAPH)
    environ = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return graphrunner(*args, env=environ)

    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        run = await asyncio.to_thread(cli, "run", str(graph), "--id", "tries", "--wait", "--json")
        assert run.returncode == 0, run.stderr
    path = [(s["node"], s["iteration"]) for s in json.loads(run.stdout)["steps"]]
    assert path == [
        ("work", 1),
        ("decide", 1),
        ("again", 1),
        ("close", 1),  # a local plan: its seq is inferred from history order
        ("work", 2),
        ("decide", 2),
    ]

    shown = json.loads(
        (await asyncio.to_thread(cli, "history", "tries", "--attempts", "--json")).stdout
    )
    records = shown["executions"]
    tries = [
        (a["node"], a["iteration"], a["attempt"], a["status"], a["error"])
        for a in shown["attempts"]
    ]
    for node, iteration in (("work", 1), ("again", 1), ("work", 2)):
        first = (node, iteration, 1, "failed", f"ValueError: flaky [attempt 1] of {node}")
        i = tries.index(first)
        assert tries[i : i + 3] == [
            (node, iteration, 1, "failed", f"ValueError: flaky [attempt 1] of {node}"),
            (node, iteration, 2, "failed", f"ValueError: flaky [attempt 2] of {node}"),
            (node, iteration, 3, "succeeded", None),
        ]
    assert len(tries) == 3 * 3 + 3  # three flaky executions, three plans
    assert [a["seq"] for a in shown["attempts"]] == sorted(a["seq"] for a in shown["attempts"])

    table = await asyncio.to_thread(cli, "history", "tries", "--attempts")
    assert table.returncode == 0, table.stderr
    assert "ValueError: flaky [attempt 2] of again" in table.stdout  # verbatim, brackets kept
    without = await asyncio.to_thread(cli, "history", "tries")
    assert "flaky [attempt 1]" not in without.stdout  # only the final attempt is a record

    client = GraphrunnerClient(temporal, settings=settings, records=recorder.records)
    assert [a.model_dump(mode="json") for a in await client.attempts("tries")] == shown["attempts"]

    # status reads history (no worker runs now) and carries the records' own headers
    status = await asyncio.to_thread(cli, "status", "tries", "--json")
    assert status.returncode == 0, status.stderr
    steps = json.loads(status.stdout)["steps"]
    assert [(s["node"], s["execution_id"], s["seq"], s["next"]) for s in steps] == [
        (r["node"], r["execution_id"], r["seq"], r["next"]) for r in records
    ]
    assert all(s["execution_id"] for s in steps)
    assert [s["next"] for s in steps][:4] == [["decide"], ["again"], ["close"], ["work"]]

    status_table = await asyncio.to_thread(cli, "status", "tries")
    assert first_cells(status_table.stdout) == first_cells(without.stdout)
    assert first_cells(without.stdout) == [str(r["seq"]) for r in records]
    recorder.records.close()


def test_help_shows_flags_as_flags_and_dev_its_configured_ports() -> None:
    run = graphrunner("run", "--help", env=cli_env())
    assert run.returncode == 0, run.stderr
    assert re.search(r"^\s*--wait\s+Wait for the result", run.stdout, re.M), run.stdout
    assert "<bool>" not in run.stdout
    history = graphrunner("history", "--help", env=cli_env())
    assert re.search(r"^\s*--attempts\s+Also every finished attempt", history.stdout, re.M)

    dev = graphrunner(
        "dev", "--help", env=cli_env(GRAPHRUNNER_DEV_PORT="17233", GRAPHRUNNER_DEV_UI_PORT="18233")
    )
    assert dev.returncode == 0, dev.stderr
    text = " ".join(dev.stdout.split())
    assert "gRPC on localhost:17233, Web UI on http://localhost:18233" in text


@pytest.mark.usefixtures("worker")
async def test_status_shows_a_failed_local_plan_as_failed(client: GraphrunnerClient) -> None:
    graph = (
        GraphBuilder("broken", version="1.0.0")
        .task("work", fn_nodes.flaky, retry={"max_attempts": 3, "initial_interval_s": 0.01})
        .plan("decide", fn_nodes.broken, local=True, retry={"max_attempts": 1})
        .edge("work", "decide")
        .final("decide")
        .build()
    )
    handle = await client.start(graph, None)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    info = await client.status(handle.id)
    assert [(s.node, s.status.value, s.seq, s.next) for s in info.steps] == [
        ("work", "completed", 0, ["decide"]),
        ("decide", "failed", 1, []),
    ]
