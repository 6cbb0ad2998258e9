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
from temporalio.testing import WorkflowEnvironment

from graphrunner.client._devserver import port_open

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
