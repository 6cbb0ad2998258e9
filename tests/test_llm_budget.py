"""LLM lifetimes under budgets, summed costs and long tool conversations (issue 14).

Real dev server, a real SQLite state DB, the real offline provider scripted per node: its
token counts are deterministic (~4 characters a token of the prompt plus 4 a message, and of
the answer), so each test computes what every execution spends and asserts where a budget
stops a loop, what each tenant was charged, and how much history each tool round adds.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphBuilder, GraphrunnerClient, Settings
from graphrunner._llm_wire import RUN_TOOL
from graphrunner.activities import Recorder
from graphrunner.errors import GraphError
from graphrunner.graph import AgentGraph, GraphDefaults
from graphrunner.guardrails import Action, Policy, Rule, Scope
from graphrunner.stores import LocalBlobStore, RecordStore, data_converter, open_records
from graphrunner.worker import build_worker
from tests.conftest import assert_replays
from tests.llm_scripts import Scripts, scripted_llm, tool_call
from tests.test_cli_lifetimes import cli_env, graphrunner
from tests.test_llm_nodes import failure_of

__all__ = ["scripted_llm"]  # the fixture, used by name

FAST_PRICE = (Decimal("0.15e-6"), Decimal("0.60e-6"))  # offline/fast, USD per token in, out


def offline_tokens(text: str) -> int:
    """Tokens the offline provider counts for ``text``: ~4 characters a token, at least 1."""
    return max(1, math.ceil(len(text) / 4))


class Setup:
    def __init__(
        self,
        client: GraphrunnerClient,
        records: RecordStore,
        temporal: Client,
        settings: Settings,
        address: str,
    ) -> None:
        self.client = client
        self.records = records
        self.temporal = temporal
        self.settings = settings
        self.address = address


@pytest.fixture
async def setup(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path, scripted_llm: Scripts
) -> AsyncIterator[Setup]:
    """An offline worker recording into a SQLite state DB (blobs in tmp), and a client."""
    settings = Settings(
        task_queue=task_queue,
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        home=tmp_path,
        llm="offline",
    )
    records = open_records(settings)
    blobs = LocalBlobStore(tmp_path / "blobs")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, blobs),
    )
    recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
    address = env.client.service_client.config.target_host
    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        yield Setup(
            GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs),
            records,
            temporal,
            settings,
            address,
        )
    records.close()


# -- a token budget stops an LLM loop ------------------------------------------------------

PROMPT = "Improve this draft and answer with the improved draft only, please."
ANSWER = "A better draft, with every claim sourced and every sentence short."


def budget_graph(cap: int) -> AgentGraph:
    """An llm_task ``work`` and a routing plan ``loop`` sending it back, under a token cap."""
    policy = Policy(
        rules=[
            Rule(
                name="token-budget",
                when=f"sum(tokens_used) > {cap}",
                scope=Scope.LIFETIME,
                action=Action.ABORT_LIFETIME,
                message="token budget exhausted",
            )
        ]
    )
    return (
        GraphBuilder("llm-budget", version="1.0.0", defaults=GraphDefaults(max_iterations=500))
        .llm_task("work", tier="fast", prompt=PROMPT)
        .plan("loop")
        .edge("work", "loop")
        .final("loop", when="iteration >= 400")
        .edge("loop", "work")
        .guardrails(policy)
        .build()
    )


async def test_a_token_budget_aborts_the_llm_loop_at_the_execution_that_crosses_it(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("work", ANSWER)
    # Each execution of 'work' sends one user message (the prompt has no placeholder) and
    # gets the scripted answer back; the routing plan spends nothing.
    tokens_in = offline_tokens(PROMPT) + 4
    tokens_out = offline_tokens(ANSWER)
    per_execution = tokens_in + tokens_out
    cap = 7 * per_execution + per_execution // 2  # crossed during the 8th execution
    crossing = cap // per_execution + 1
    assert crossing == 8

    handle = await setup.client.start(budget_graph(cap), "first draft")
    failure = await failure_of(handle)

    assert failure.type == "GuardrailAborted"
    text = str(failure)
    assert (
        f"guardrail 'token-budget' aborted the lifetime at task 'work' (iteration {crossing}), "
        "after it ran: token budget exhausted" in text
    ), text
    assert f"observed sum(tokens_used) = {crossing * per_execution}" in text
    records = await setup.client.history(handle.id)
    works = [r for r in records if r.node == "work"]
    assert [r.iteration for r in works] == list(range(1, crossing + 1))
    assert all((r.tokens_in, r.tokens_out) == (tokens_in, tokens_out) for r in works)
    # No execution ran after the one that crossed: the plan after it never did.
    loops = [r for r in records if r.node == "loop"]
    assert [r.iteration for r in loops] == list(range(1, crossing))
    assert max(r.created_at for r in records) == works[-1].created_at
    assert len(scripted_llm.calls["work"]) == crossing
    await assert_replays(setup.temporal, handle)


# -- costs per tenant ----------------------------------------------------------------------


def ask_graph() -> AgentGraph:
    return (
        GraphBuilder("llm-costs", version="1.0.0")
        .llm_task("ask", tier="fast", prompt="{}")
        .plan("done", "tests.llm_tools:FinishWithLast")
        .edge("ask", "done")
        .final("done")
        .build()
    )


async def test_costs_are_summed_per_tenant_from_the_records(
    setup: Setup, scripted_llm: Scripts
) -> None:
    scripted_llm.set("ask", "x" * 120)
    runs = {"acme": ["short", "a much longer question " * 20], "globex": ["q " * 300]}
    handles = {
        tenant: [await setup.client.start(ask_graph(), q, tenant=tenant) for q in questions]
        for tenant, questions in runs.items()
    }
    for started in handles.values():
        await asyncio.gather(*(h.result() for h in started))

    records = {
        tenant: [r for h in started for r in await setup.client.history(h.id)]
        for tenant, started in handles.items()
    }
    expected = {}
    for tenant, rows in records.items():
        asks = [r for r in rows if r.node == "ask"]
        assert len(asks) == len(runs[tenant]) and all(r.tenant == tenant for r in rows)
        tokens_in = sum(r.tokens_in for r in rows)
        tokens_out = sum(r.tokens_out for r in rows)
        cost = sum((r.cost_usd for r in rows), Decimal(0))
        # Priced as offline/fast: the tokens the offline provider counted, at its prices.
        assert tokens_out == offline_tokens("x" * 120) * len(asks)
        priced = tokens_in * FAST_PRICE[0] + tokens_out * FAST_PRICE[1]
        assert cost == pytest.approx(priced, abs=Decimal("1e-9"))
        expected[tenant] = {
            "lifetimes": len(runs[tenant]),
            "executions": len(rows),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost,
        }
    assert expected["acme"]["tokens_in"] != expected["globex"]["tokens_in"]

    by_client = {
        row.key: {
            "lifetimes": row.lifetimes,
            "executions": row.executions,
            "tokens_in": row.tokens_in,
            "tokens_out": row.tokens_out,
            "cost_usd": row.cost_usd,
        }
        for row in await setup.client.costs("tenant")
    }
    assert by_client == expected

    environ = cli_env(
        TEMPORAL_ADDRESS=setup.address,
        GRAPHRUNNER_TASK_QUEUE=setup.settings.task_queue,
        GRAPHRUNNER_HOME=str(setup.settings.home),
        GRAPHRUNNER_DATABASE_URL=setup.settings.state_db_url(),
    )
    done = await asyncio.to_thread(graphrunner, "costs", "--by", "tenant", "--json", env=environ)
    assert done.returncode == 0, done.stderr
    shown = {row.pop("key"): row for row in json.loads(done.stdout)}
    assert set(shown) == {"acme", "globex"}
    for tenant, row in shown.items():
        assert {**row, "cost_usd": Decimal(str(row["cost_usd"]))} == expected[tenant]


# -- a long tool conversation adds a bounded amount of history per round -------------------


def round_bytes(events: list[HistoryEvent]) -> list[int]:
    """History bytes each tool round adds: from the model's call to its tool's completion.

    A round's events end with its tool activity's completion; the first also holds the
    workflow's start, and what follows the last tool completion (the final answer, the
    plan, the end) is left out.
    """
    tool_activities = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == RUN_TOOL
    }
    out: list[int] = []
    size = 0
    for event in events:
        size += event.ByteSize()
        completed = event.activity_task_completed_event_attributes
        if (
            event.HasField("activity_task_completed_event_attributes")
            and completed.scheduled_event_id in tool_activities
        ):
            out.append(size)
            size = 0
    return out


def talk_graph(rounds: int) -> AgentGraph:
    return (
        GraphBuilder("llm-long-talk", version="1.0.0")
        .llm_task("ask", tools=["tests.llm_tools:bulky"], max_tool_rounds=rounds)
        .plan("done", "tests.llm_tools:FinishWithLast")
        .edge("ask", "done")
        .final("done")
        .build()
    )


def test_an_llm_task_may_declare_up_to_100_tool_rounds() -> None:
    # It was capped at 20, so the 100-round conversation below could not be declared.
    spec = talk_graph(100).node("ask").llm
    assert spec is not None and spec.max_tool_rounds == 100
    with pytest.raises(GraphError) as caught:
        talk_graph(101)
    assert "max_tool_rounds" in str(caught.value)


async def test_a_100_round_tool_conversation_adds_bounded_history_per_round(
    setup: Setup, scripted_llm: Scripts
) -> None:
    rounds = 100
    scripted_llm.set(
        "ask", *[[tool_call("bulky", f"c{n}", n=n)] for n in range(rounds)], "finished"
    )
    handle = await setup.client.start(talk_graph(rounds), "x")
    assert (await handle.result()).output == "finished"

    conversation = json.dumps(scripted_llm.calls["ask"][-1]["messages"])
    assert len(conversation) > rounds * 2048, "the conversation grew ~2 KiB a round"
    per_round = round_bytes(list((await handle.fetch_history()).events))
    assert len(per_round) == rounds
    # Each round adds the newest tool result (~2 KiB, in the tool's result and the next
    # round's input) and a blob reference, whatever the conversation's length (>200 KiB).
    at_10, at_100 = per_round[9], per_round[99]
    assert at_10 < 8 * 1024 and at_100 < 8 * 1024, per_round
    assert abs(at_100 - at_10) <= 0.1 * at_10, (at_10, at_100)
    assert max(per_round[3:]) - min(per_round[3:]) < 512, per_round
    tools = [r for r in await setup.client.history(handle.id) if r.kind == "tool"]
    assert len(tools) == rounds
    await assert_replays(setup.temporal, handle, blobs=setup.client.blobs)
