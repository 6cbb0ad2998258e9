"""The LLM runtime behind ``ctx.llm``: tiers, failover, shared cooldowns, telemetry.

Every call goes through ``litellm.acompletion`` to the offline provider (a litellm
``CustomLLM``), whose scripts inject litellm's own exceptions. Real dev server, real state DB
(SQLite and PostgreSQL), and real ``graphrunner worker`` processes where cooldowns must be
shared between processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner.graph import GraphDefaults
from graphrunner.llm import ModelsConfig, load_models, offline
from graphrunner.stores import RecordStore, open_records
from graphrunner.stores._cooldowns import SqlCooldowns
from graphrunner.worker import build_worker
from tests.conftest import ROOT
from tests.llm_nodes import Ask, AskThenFail, Finish
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_crash import start_worker, wait_polling, worker_output

# Offline prices per token (USD), as documented.
STANDARD = (3e-6, 15e-6)
FAST = (0.15e-6, 0.60e-6)


def models_file(tmp_path: Path, *, rate_limit_s: float = 30.0) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tiers": {"standard": ["offline/standard", "offline/fast"]},
                "cooldown": {"base_s": {"rate_limit": rate_limit_s, "timeout": 0.5}, "cap_s": 60},
            }
        )
    )
    return path


def ask_graph(name: str, task: type = Ask, **config: Any) -> GraphBuilder:
    return (
        GraphBuilder(
            name,
            version="1.0.0",
            defaults=GraphDefaults(retry={"max_attempts": 3, "initial_interval_s": 0.1}),
        )
        .task("ask", task, config=config)
        .plan("done", Finish)
        .edge("ask", "done")
        .final("done")
    )


@pytest.fixture(autouse=True)
def no_scripts() -> Iterator[None]:
    offline.clear()
    yield
    offline.clear()


class Setup:
    def __init__(self, client: GraphrunnerClient, records: RecordStore) -> None:
        self.client = client
        self.records = records


@pytest.fixture
async def setup(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path, state_db_url: str
) -> AsyncIterator[Setup]:
    """A worker in this process, offline, recording into (and cooling models in) the state DB."""
    settings = Settings(
        task_queue=task_queue,
        database_url=state_db_url,
        home=tmp_path,
        models=models_file(tmp_path),
        llm="offline",
    )
    client = GraphrunnerClient(env.client, settings=settings)
    records = open_records(settings)
    async with build_worker(client):
        yield Setup(client, records)
    records.close()


# --- the import boundary ---------------------------------------------------------------------


def test_clients_and_workflow_code_never_import_litellm() -> None:
    code = textwrap.dedent(
        """
        import sys
        import graphrunner, graphrunner.client, graphrunner.workflows, graphrunner.worker
        import graphrunner.llm, graphrunner.llm.offline
        from graphrunner.workflows import _lifetime
        from graphrunner.client import _cli
        print(sorted(m for m in sys.modules if m.split(".")[0] == "litellm"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


# --- failover, errors, telemetry -------------------------------------------------------------


async def test_a_rate_limited_model_cools_down_and_the_call_falls_back(setup: Setup) -> None:
    offline.script("ask", fail="rate_limit", model="offline/standard")
    handle = await setup.client.start(ask_graph("fallback").build(), "go")
    result = await handle.result()

    [reply] = result.output["replies"]
    assert reply["model"] == "offline/fast"
    assert [model for model, _ in reply["skipped"]] == ["offline/standard"]
    assert reply["skipped"][0][1].startswith("rate_limit: litellm.RateLimitError")
    ask = next(r for r in await setup.client.history(handle.id) if r.node == "ask")
    assert (ask.model, ask.attempt) == ("offline/fast", 1)
    [state] = await SqlCooldowns(setup.records).all()
    assert (state.model, state.failures, state.last_error) == ("offline/standard", 1, "rate_limit")
    assert state.cooling(datetime.now(UTC))

    # Cooling down, the model is skipped without a call: no second injected failure.
    offline.clear()
    again = await (await setup.client.start(ask_graph("fallback").build(), "go")).result()
    [reply] = again.output["replies"]
    assert reply["model"] == "offline/fast"
    assert reply["skipped"][0][1].startswith("cooling down until")
    assert (await SqlCooldowns(setup.records).all())[0].failures == 1


async def test_telemetry_of_several_calls_is_summed_on_the_record(setup: Setup) -> None:
    handle = await setup.client.start(ask_graph("sum", calls=3, prompt="x" * 400).build(), "go")
    result = await handle.result()

    replies = result.output["replies"]
    assert result.output["calls"] == 3 and {r["model"] for r in replies} == {"offline/standard"}
    ask = next(r for r in await setup.client.history(handle.id) if r.node == "ask")
    assert ask.tokens_in == sum(r["tokens_in"] for r in replies) > 300  # ~4 characters a token
    assert ask.tokens_out == sum(r["tokens_out"] for r in replies) > 0
    priced = ask.tokens_in * STANDARD[0] + ask.tokens_out * STANDARD[1]
    assert ask.cost_usd == pytest.approx(Decimal(str(round(priced, 10))), abs=Decimal("1e-9"))
    assert ask.model == "offline/standard"
    costs = await setup.records.costs("graph")
    assert [(c.key, c.tokens_in) for c in costs] == [("sum", ask.tokens_in)]
    # `graphrunner history` shows the model beside the tokens and cost of each step.
    environ = cli_env(
        GRAPHRUNNER_DATABASE_URL=setup.client.settings.database_url or "",
        GRAPHRUNNER_HOME=str(setup.client.settings.home),
        COLUMNS="200",
    )
    shown = await asyncio.to_thread(graphrunner, "history", handle.id, env=environ)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if " ask " in line)
    assert "offline/standard" in row and f"{ask.tokens_in}/{ask.tokens_out}" in row


async def test_a_rejected_request_fails_the_node_at_once(setup: Setup) -> None:
    offline.script("ask", fail="context_window", model="offline/standard")
    handle = await setup.client.start(ask_graph("rejected").build(), "go")
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    chain: list[BaseException] = []
    cause: BaseException | None = failed.value
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or getattr(cause, "cause", None)
    [cause] = [c for c in chain if getattr(c, "type", None) == "LlmRequestRejected"]
    assert isinstance(cause, ApplicationError)
    assert cause.non_retryable and "offline/standard" in cause.message
    assert "context_window" in cause.message
    history = await handle.fetch_history()
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert started == [1]  # one attempt: no retry, no fallback to offline/fast
    assert await SqlCooldowns(setup.records).all() == []  # a bad request cools nothing


async def test_a_failed_attempt_keeps_what_its_calls_spent(setup: Setup) -> None:
    handle = await setup.client.start(ask_graph("spent", task=AskThenFail).build(), "go")
    result = await handle.result()

    ask = next(r for r in await setup.client.history(handle.id) if r.node == "ask")
    tried = await setup.records.attempts(ask.execution_id)
    assert [(a["attempt"], a["status"]) for a in tried] == [(1, "failed"), (2, "succeeded")]
    failed = tried[0]
    assert failed["tokens_in"] > 0 and failed["tokens_out"] > 0
    assert failed["cost_usd"] > 0 and failed["model"] == "offline/standard"
    assert (ask.attempt, ask.tokens_in, ask.model) == (2, tried[1]["tokens_in"], "offline/standard")
    # `costs` counts both attempts' model calls: the failed one's spend is not lost.
    [row] = [r for r in await setup.records.costs("graph") if r.key == "spent"]
    assert row.tokens_in == ask.tokens_in + failed["tokens_in"]
    assert row.tokens_out == ask.tokens_out + failed["tokens_out"]
    assert row.cost_usd == ask.cost_usd + Decimal(str(failed["cost_usd"]))
    # And the lifetime (what its guardrails and GraphrunnerCostUsd count) spent both too.
    assert result.telemetry is not None
    assert result.telemetry.tokens_in == row.tokens_in
    assert result.telemetry.tokens_out == row.tokens_out


async def test_a_whole_chain_failing_is_retried_by_temporal(setup: Setup, tmp_path: Path) -> None:
    # Every model times out once (0.5 s cooldown): LlmUnavailable, retryable; attempt 2 answers.
    offline.script("ask", fail="timeout", times=2)
    handle = await setup.client.start(ask_graph("unavailable").build(), "go")
    result = await handle.result()

    assert result.output["replies"][0]["model"] == "offline/standard"
    ask = next(r for r in await setup.client.history(handle.id) if r.node == "ask")
    tried = await setup.records.attempts(ask.execution_id)
    assert [a["status"] for a in tried] == ["failed", "succeeded"]
    assert tried[0]["error"].startswith(
        "ApplicationError: LlmUnavailable: no model of tier 'standard'"
    )
    states = {s.model: s for s in await SqlCooldowns(setup.records).all()}
    assert states["offline/standard"].failures == 0  # a success resets it
    assert states["offline/fast"].failures == 1


def test_an_unknown_tier_names_the_configured_ones(tmp_path: Path) -> None:
    config = load_models(models_file(tmp_path))
    with pytest.raises(ApplicationError) as unknown:
        config.chain("genius")
    assert unknown.value.non_retryable and unknown.value.type == "LlmUnknownTier"
    assert "'genius'" in unknown.value.message and "standard" in unknown.value.message
    assert ModelsConfig().tiers == {
        "fast": ["offline/fast"],
        "standard": ["offline/standard"],
        "expert": ["offline/expert"],
    }


# --- cooldowns shared by worker processes ----------------------------------------------------


def run_models_cli(tmp_path: Path, environ: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "graphrunner", "models", "--json"],
        cwd=ROOT,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


async def test_a_cooldown_is_shared_by_two_worker_processes(
    env: WorkflowEnvironment, tmp_path: Path, state_db_url: str
) -> None:
    cooldown_s = 15.0  # outlasts a lifetime and a CLI run on a loaded machine
    script = tmp_path / "script.yaml"
    script.write_text(
        yaml.safe_dump(
            {
                "scripts": [
                    {"node": "*", "fail": [{"error": "rate_limit", "model": "offline/standard"}]}
                ]
            }
        )
    )
    common = {
        "GRAPHRUNNER_DATABASE_URL": state_db_url,
        "GRAPHRUNNER_MODELS": str(models_file(tmp_path, rate_limit_s=cooldown_s)),
        "GRAPHRUNNER_LLM": "offline",
    }
    queues = {"a": "tq-llm-a-" + tmp_path.name[-8:], "b": "tq-llm-b-" + tmp_path.name[-8:]}
    # Worker a's provider rate-limits offline/standard; worker b's never does.
    a = start_worker(env, queues["a"], tmp_path, "a", GRAPHRUNNER_LLM_SCRIPT=str(script), **common)
    b = start_worker(env, queues["b"], tmp_path, "b", **common)
    try:
        await wait_polling(env, queues["a"], a, tmp_path)
        await wait_polling(env, queues["b"], b, tmp_path)
        settings = Settings(database_url=state_db_url, home=tmp_path / "state")

        async def ask(queue: str) -> dict[str, Any]:
            client = GraphrunnerClient(
                env.client, settings=settings.model_copy(update={"task_queue": queue})
            )
            handle = await client.start(ask_graph("shared").build(), "go")
            result = await asyncio.wait_for(handle.result(), 60)
            reply: dict[str, Any] = result.output["replies"][0]
            return reply

        # Worker b imports litellm on its first call (4-10 s here): before the cooldown starts.
        warm = await ask(queues["b"])
        assert (warm["model"], warm["skipped"]) == ("offline/standard", [])

        first = await ask(queues["a"])
        assert first["model"] == "offline/fast", worker_output(tmp_path)
        assert first["skipped"][0][1].startswith("rate_limit")

        second = await ask(queues["b"])  # the other process skips the cooling model
        assert second["model"] == "offline/fast"
        assert second["skipped"][0][0] == "offline/standard"
        assert second["skipped"][0][1].startswith("cooling down until")

        shown = run_models_cli(tmp_path, {**common, "GRAPHRUNNER_HOME": str(tmp_path / "state")})
        [standard, fast] = shown["tiers"]["standard"]
        assert (standard["model"], standard["cooling"], standard["failures"]) == (
            "offline/standard",
            True,
            1,
        )
        assert standard["last_error"] == "rate_limit" and not fast["cooling"]

        store = RecordStore(state_db_url)
        try:
            [state] = await SqlCooldowns(store).all()
            assert state.cooling_until is not None
            wait = (state.cooling_until - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(wait, 0) + 0.2)

            third = await ask(queues["b"])  # cooled down: back to the first of the chain
            assert (third["model"], third["skipped"]) == ("offline/standard", [])
            [state] = await SqlCooldowns(store).all()
            assert (state.failures, state.cooling_until) == (0, None)
        finally:
            store.close()
    finally:
        for proc in (a, b):
            proc.terminate()
        for proc in (a, b):
            proc.wait(timeout=30)


def test_importing_litellm_leaves_the_environment_alone(tmp_path: Path) -> None:
    """litellm loads ./.env at import (LITELLM_MODE=DEV): a worker beside a compose .env
    took its GRAPHRUNNER_* values (codec keys!) halfway through its life. Not any more."""
    (tmp_path / ".env").write_text("GRAPHRUNNER_CODEC_KEYS=leaked=x\nOPENAI_API_KEY=leaked\n")
    code = (
        "import os\n"
        "from graphrunner.llm._litellm import litellm\n"
        "litellm()\n"
        "print(os.environ.get('GRAPHRUNNER_CODEC_KEYS'), os.environ.get('OPENAI_API_KEY'))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("LITELLM_MODE", "OPENAI_API_KEY")}
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
