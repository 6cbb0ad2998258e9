"""The CLI shows user and server text verbatim: square brackets are text, not Rich markup.

Also: a failure's type is named once, and a lifetime id with markup-like text survives.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from graphrunner.stores import SCHEMA_VERSION
from tests.test_cli_lifetimes import cli_env, graphrunner

pytestmark = pytest.mark.usefixtures("worker")

GRAPH = """\
name: verbatim
version: 1.0.0
guardrails: policy.yaml
nodes:
  - {name: work, kind: task, impl: "tests.test_guardrails:Spend"}
  - {name: decide, kind: plan, impl: "tests.test_guardrails:Loop", config: {rounds: 3}}
edges:
  - {from: work, to: decide}
  - {from: decide, to: work}
  - {from: decide, type: FINAL}
"""

POLICY = """\
rules:
  - name: token-cap
    when: sum(tokens_used) > 100
    scope: lifetime
    action: abort_lifetime
    message: "[bold]over[/bold] budget [see runbook]"
"""

UNDECLARED = """\
name: undeclared
version: 1.0.0
nodes:
  - {name: choose, kind: plan, impl: "tests.nodes:ChooseUndeclared", local: LOCAL}
  - {name: work, kind: task, impl: "tests.nodes:Echo"}
edges:
  - {from: choose, to: work}
  - {from: work, to: choose}
  - {from: choose, type: FINAL}
"""


@pytest.fixture
def server_env(env: WorkflowEnvironment, task_queue: str) -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        GRAPHRUNNER_TASK_QUEUE=task_queue,
    )


async def test_a_guardrail_abort_is_printed_with_its_brackets(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "graph.yaml").write_text(GRAPH)
    (tmp_path / "policy.yaml").write_text(POLICY)
    lifetime = "[red]id[/red]-1"
    done = await asyncio.to_thread(
        graphrunner,
        "run",
        str(tmp_path / "graph.yaml"),
        "--id",
        lifetime,
        "--wait",
        env=server_env,
    )
    assert done.returncode == 1
    assert f"started lifetime {lifetime}" in done.stdout
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: lifetime {lifetime} failed: GuardrailAborted: ")
    assert "[bold]over[/bold] budget [see runbook] " in line
    assert "[sum(tokens_used) > 100; observed sum(tokens_used) = 1500]" in line

    status = await asyncio.to_thread(graphrunner, "status", lifetime, env=server_env)
    assert status.returncode == 0, status.stderr
    assert f"lifetime {lifetime}: failed" in status.stdout
    assert "[sum(tokens_used) > 100; observed sum(tokens_used) = 1500]" in status.stdout


@pytest.mark.parametrize("local", ["false", "true"])
async def test_a_failure_names_its_type_once(
    server_env: dict[str, str], tmp_path: Path, local: str
) -> None:
    (tmp_path / "graph.yaml").write_text(UNDECLARED.replace("LOCAL", local))
    done = await asyncio.to_thread(
        graphrunner,
        "run",
        str(tmp_path / "graph.yaml"),
        "--id",
        f"undeclared-{local}",
        "--wait",
        env=server_env,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.count("UndeclaredSuccessor") == 1, line
    assert "chose 'not_a_successor', which is not among its declared successors (work)" in line
    status = await asyncio.to_thread(graphrunner, "status", f"undeclared-{local}", env=server_env)
    [failed] = [row for row in status.stdout.splitlines() if row.startswith("failed:")]
    assert failed.count("UndeclaredSuccessor") == 1, failed


def test_db_commands_report_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    env = cli_env(GRAPHRUNNER_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    for command in (["db", "status"], ["db", "upgrade"]):
        done = graphrunner(*command, env=env)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: cannot "), line
        assert "state DB postgresql+psycopg://nobody@127.0.0.1:1/none" in line
        assert "Connection refused Is the server running" in line


def test_db_upgrade_then_status_report_the_schema_version(tmp_path: Path) -> None:
    env = cli_env(GRAPHRUNNER_DATABASE_URL=f"sqlite:///{tmp_path / 'state.db'}")
    upgraded = graphrunner("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"state DB schema: version 0 -> {SCHEMA_VERSION}" in upgraded.stdout
    status = graphrunner("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"schema version {SCHEMA_VERSION} (this graphrunner: {SCHEMA_VERSION})" in status.stdout


def test_a_second_run_with_the_same_id_attaches_in_one_clear_line(
    server_env: dict[str, str],
) -> None:
    example = str(Path(__file__).resolve().parent.parent / "examples" / "research.yaml")
    first = graphrunner("run", example, "--id", "same-id-twice", env=server_env)
    assert first.returncode == 0, first.stderr
    second = graphrunner("run", example, "--id", "same-id-twice", env=server_env)
    assert second.returncode == 0, second.stderr
    line = second.stdout.strip().splitlines()[0]
    assert line == "already running, attached to lifetime same-id-twice"


def test_control_characters_in_user_text_never_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    # A version that would erase the line above and print a green tick, were it sent raw.
    path.write_text(
        'name: esc\nversion: "\\e[2K\\e[1A\\e[32m✓ all good\\e[0m"\n'
        'nodes:\n  - {name: a, kind: task, impl: "tests.nodes:Echo"}\n'
        "edges:\n  - {from: a, type: FINAL}\n"
    )
    done = graphrunner("validate", str(path), env=cli_env())
    assert done.returncode == 1
    assert "\x1b" not in done.stderr + done.stdout
    assert "\\x1b[2K\\x1b[1A\\x1b[32m✓ all good\\x1b[0m" in done.stderr
