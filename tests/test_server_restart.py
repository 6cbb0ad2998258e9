"""`run --wait` across a real dev server restart: it waits on, and never reports a false failure.

The server is a real ``temporal server start-dev`` with a SQLite file (so it keeps its state
across the restart); the worker and the CLI are real processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from graphrunner.client import DevServer
from tests.conftest import ROOT
from tests.test_cli_lifetimes import cli_env, free_port

GRAPH = """\
name: gated
version: 1.0.0
nodes:
  - {name: wait, kind: task, impl: "tests.nodes:WaitForFile", config: {gate: GATE, tag: t}}
  - {name: finish, kind: plan, impl: "tests.nodes:Collect"}
edges:
  - {from: wait, to: finish}
  - {from: finish, type: FINAL}
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[DevServer]:
    dev = DevServer(home=tmp_path / "server", port=free_port(), ui_port=free_port(), headless=True)
    await dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "graphrunner", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if log.suffix == ".out" else log.open("w"),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_for_gate_reader(server: DevServer, env: dict[str, str]) -> None:
    """Until the lifetime's one task is running (so it is mid-flight when the server goes)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "graphrunner", "status", "gated-1", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode == 0 and '"wait#1"' in done.stdout:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the lifetime never started its task")


@pytest.mark.timeout(180)
async def test_run_wait_survives_a_server_restart_and_prints_the_result(
    server: DevServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "graph.yaml").write_text(GRAPH.replace("GATE", str(gate)))
    env = cli_env(
        TEMPORAL_ADDRESS=server.address,
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        TEMPORAL_CONFIG_FILE=str(tmp_path / "no-temporal.toml"),
    )
    worker = spawn(["worker", "--app-dir", str(ROOT)], env, tmp_path / "worker.log")
    cli = spawn(
        ["run", str(tmp_path / "graph.yaml"), "--id", "gated-1", "--wait", "--json"],
        env,
        tmp_path / "cli.out",
    )
    try:
        await wait_for_gate_reader(server, env)
        server.stop()  # SIGTERM: the server goes away while the CLI waits
        # Longer than the SDK's own retries of one call (about 10 s), as a real restart is.
        await asyncio.sleep(12)
        await server.start()
        gate.touch()
        out, err = await asyncio.to_thread(cli.communicate, timeout=120)
    finally:
        stop(cli)
        stop(worker)
    assert cli.returncode == 0, err
    assert '"tag": "t"' in out
    assert "failed" not in err


@pytest.mark.timeout(120)
async def test_run_wait_says_lost_contact_not_failed_when_the_server_stays_away(
    server: DevServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "graph.yaml").write_text(GRAPH.replace("GATE", str(gate)))
    env = cli_env(
        TEMPORAL_ADDRESS=server.address,
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        GRAPHRUNNER_WAIT_RECONNECT_S="3",
        TEMPORAL_CONFIG_FILE=str(tmp_path / "no-temporal.toml"),
    )
    worker = spawn(["worker", "--app-dir", str(ROOT)], env, tmp_path / "worker.log")
    cli = spawn(
        ["run", str(tmp_path / "graph.yaml"), "--id", "gated-1", "--wait"],
        env,
        tmp_path / "cli.out",
    )
    try:
        await wait_for_gate_reader(server, env)
        server.stop()
        _, err = await asyncio.to_thread(cli.communicate, timeout=90)
    finally:
        stop(cli)
        stop(worker)
    assert cli.returncode == 3, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost contact with Temporal while waiting for lifetime gated-1")
    assert "graphrunner status gated-1" in last
    assert "failed" not in last
