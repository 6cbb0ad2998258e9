"""The CLI against real servers: run/status on the test server, dev and demo end to end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from graphrunner import Settings
from graphrunner.client._devserver import port_open
from graphrunner.client._runtime import open_recorder
from graphrunner.stores import RecordStore, data_converter, open_blobs
from graphrunner.worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "research.yaml")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GRAPHRUNNER_"))}
    env.update(extra)
    return env


def graphrunner(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphrunner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server_env(env: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )


@pytest.mark.usefixtures("worker")
async def test_run_wait_prints_path_and_status_shows_it(server_env: dict[str, str]) -> None:
    # The worker runs on this test's event loop, so the CLI runs in a thread.
    done = await asyncio.to_thread(
        graphrunner,
        "run",
        EXAMPLE,
        "--input",
        '{"topic": "cli"}',
        "--id",
        "cli-run-1",
        "--wait",
        "--json",
        env=server_env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["output"] == {"approved": True, "reviewers": ["critique", "fact_check", "style"]}
    assert [s["node"] for s in result["steps"]][:3] == ["gather", "review", "gather"]

    status = await asyncio.to_thread(graphrunner, "status", "cli-run-1", "--json", env=server_env)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["status"] == "completed"
    assert info["graph_name"] == "research"
    assert len(info["steps"]) == len(result["steps"])
    assert info["ui_url"].endswith("/namespaces/default/workflows/cli-run-1")


def test_run_without_wait_prints_id_and_ui_link(server_env: dict[str, str]) -> None:
    started = graphrunner("run", EXAMPLE, "--id", "cli-run-2", env=server_env)
    assert started.returncode == 0, started.stderr
    assert "cli-run-2" in started.stdout
    assert "http://localhost:8233/namespaces/default/workflows/cli-run-2" in started.stdout


def test_bad_input_json_is_one_clear_line(server_env: dict[str, str]) -> None:
    done = graphrunner("run", EXAMPLE, "--input", "{nope", env=server_env)
    assert done.returncode != 0
    assert "--input is not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_server_is_one_line_not_a_traceback() -> None:
    port = free_port()
    env = cli_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}")
    for args in (("run", EXAMPLE), ("status", "some-id")):
        done = graphrunner(*args, env=env)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"cannot reach Temporal at 127.0.0.1:{port}" in lines[0]


def test_status_of_unknown_lifetime_fails_cleanly(server_env: dict[str, str]) -> None:
    done = graphrunner("status", "no-such-lifetime", env=server_env)
    assert done.returncode != 0
    assert "no-such-lifetime" in done.stderr and "Traceback" not in done.stderr


def test_demo_runs_a_lifetime_on_an_embedded_server_and_stops_it(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    env = cli_env(
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        GRAPHRUNNER_DEV_PORT=str(port),
        GRAPHRUNNER_DEV_UI_PORT=str(ui_port),
    )
    done = graphrunner("demo", env=env, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "embedded dev server (started for the demo)" in out
    for node in ("gather", "review", "critique", "fact_check", "style", "merge", "publish"):
        assert node in out
    assert '"approved": true' in out
    assert "graphrunner dev" in out
    assert (tmp_path / "state" / "temporal.db").exists()  # graphrunner dev will show it later
    assert not port_open("127.0.0.1", port)  # the demo stopped the server it started


def test_dev_serves_until_ctrl_c_then_stops_server_and_worker(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    env = cli_env(
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        GRAPHRUNNER_DEV_PORT=str(port),
        GRAPHRUNNER_DEV_UI_PORT=str(ui_port),
    )
    log = tmp_path / "dev.log"
    with log.open("w") as sink:
        dev = subprocess.Popen(
            [sys.executable, "-m", "graphrunner", "dev"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C stops both" not in log.read_text():
            assert dev.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert port_open("127.0.0.1", ui_port)  # the Web UI is up

        client_env = cli_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}")
        done = graphrunner("run", EXAMPLE, "--id", "dev-run", "--wait", env=client_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "publish" in done.stdout

        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=30) == 0, log.read_text()
        assert "stopped worker and dev server" in log.read_text()
        assert not port_open("127.0.0.1", port)
        assert not port_open("127.0.0.1", ui_port)
    finally:
        if dev.poll() is None:
            dev.kill()


async def test_history_list_costs_and_result_from_the_cli(
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
    environ = cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return graphrunner(*args, env=environ)

    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        run = await asyncio.to_thread(
            cli, "run", EXAMPLE, "--id", "cli-rec", "--tenant", "acme", "--wait", "--json"
        )
        assert run.returncode == 0, run.stderr
        steps = json.loads(run.stdout)["steps"]

        history = await asyncio.to_thread(cli, "history", "cli-rec", "--json")
        assert history.returncode == 0, history.stderr
        shown = json.loads(history.stdout)
        assert shown["decisions"] == [], "no guardrail fired"
        records = shown["executions"]
        assert [(r["node"], r["iteration"]) for r in records] == [
            (s["node"], s["iteration"]) for s in steps
        ]
        assert all(r["status"] == "succeeded" and r["tenant"] == "acme" for r in records)

        table = await asyncio.to_thread(cli, "history", "cli-rec")
        assert "fact_check" in table.stdout and "succeeded" in table.stdout

        listed = await asyncio.to_thread(cli, "list", "--tenant", "acme", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = [r for r in json.loads(listed.stdout) if r["lifetime_id"] == "cli-rec"]
        assert row["status"] == "completed" and row["executions"] == len(steps)
        none = await asyncio.to_thread(cli, "list", "--tenant", "nobody", "--json")
        assert json.loads(none.stdout) == []

        costs = await asyncio.to_thread(cli, "costs", "--by", "graph", "--json")
        [research] = [c for c in json.loads(costs.stdout) if c["key"] == "research"]
        assert research["executions"] == len(steps) and research["lifetimes"] == 1

        published = await asyncio.to_thread(cli, "result", "cli-rec", "publish")
        assert json.loads(published.stdout) == {
            "approved": True,
            "reviewers": ["critique", "fact_check", "style"],
        }
        missing = await asyncio.to_thread(cli, "history", "no-such-lifetime")
        assert missing.returncode != 0 and "no records" in missing.stderr
    recorder.records.close()


def test_state_db_of_another_version_is_one_clear_line(tmp_path: Path) -> None:
    # (A schema *behind* needs a second migration to exist; tests/test_records.py covers it.)
    store = RecordStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    with store.engine.begin() as conn:  # pretend a newer graphrunner migrated this database
        conn.exec_driver_sql("INSERT INTO gr_schema VALUES (99, '2027-01-01')")
    store.close()
    environ = cli_env(GRAPHRUNNER_DATABASE_URL=f"sqlite:///{tmp_path / 'state.db'}")
    done = graphrunner("history", "x", env=environ)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "schema version 99" in done.stderr and "upgrade graphrunner" in done.stderr


def test_demo_runs_an_llm_example_offline_in_one_command(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    env = cli_env(
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        GRAPHRUNNER_DEV_PORT=str(port),
        GRAPHRUNNER_DEV_UI_PORT=str(ui_port),
        GRAPHRUNNER_LLM_SCRIPT=str(ROOT / "examples" / "code_review" / "offline.yaml"),
        COLUMNS="200",
    )
    done = graphrunner(
        "demo", "--graph", "examples/code_review/graph.yaml", "--input", "{}", env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for node in ("parse", "architecture", "quality", "collect", "report"):
        assert node in done.stdout
    assert "## Architecture: changes requested" in done.stdout
    assert "open to injection" in done.stdout
    bad = graphrunner("demo", "--input", "{nope", env=env, timeout=60)
    assert bad.returncode == 1 and "--input is not JSON" in bad.stderr
