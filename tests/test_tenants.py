"""Tenant isolation (issue 15, point 4), tried as an outsider would, on both strengths.

Before: a caller with no credential did 8 of 8 actions on another tenant's lifetime. Now a
client or CLI bound to a tenant (``GRAPHRUNNER_TENANT`` / ``--tenant``) refuses every read
and action on another tenant's lifetimes and lists, answers and costs only its own:

- **soft**: both tenants share a namespace; the binding is what keeps them apart;
- **hard**: each tenant has its own namespace (``GRAPHRUNNER_ISOLATION=hard``); the server
  does not even find the other tenant's lifetimes there (Temporal's authorization would
  refuse the namespace itself).

After every refused attempt the owner's lifetime is unharmed: still waiting, and it finishes
with the owner's answer. The real dev server, a real state DB, the real CLI code.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from graphrunner import GraphrunnerClient, Settings
from graphrunner._types import LifetimePhase
from graphrunner.client._cli import app
from graphrunner.client._client import OtherTenant
from graphrunner.errors import GraphrunnerError
from graphrunner.worker import build_worker
from tests.tenant_nodes import loop_graph, review_graph

STRENGTHS = ["soft", "hard"]


@dataclass
class World:
    """Two tenants on one server: the owner's lifetimes, and an outsider bound to another."""

    strength: str
    owner: GraphrunnerClient  # bound to the owning tenant
    outsider: GraphrunnerClient  # bound to another tenant
    owner_tenant: str
    outsider_tenant: str
    waiting: str  # the owner's lifetime, waiting for a person
    done: str  # the owner's lifetime, completed
    cli_env: dict[str, str]  # the outsider's CLI environment (no GRAPHRUNNER_TENANT)


def _settings(strength: str, tenant: str, task_queue: str, db: str) -> Settings:
    return Settings(
        task_queue=task_queue,
        database_url=db,
        tenant=tenant,
        isolation="hard" if strength == "hard" else "soft",
        tenant_namespace="t-{tenant}",
    )


async def _client(env: WorkflowEnvironment, settings: Settings) -> GraphrunnerClient:
    if settings.isolation == "soft":
        return GraphrunnerClient(env.client, settings=settings)
    address = env.client.service_client.config.target_host
    client = await GraphrunnerClient.connect(settings, address=address)
    await client.setup()  # creates the tenant's namespace, with the search attributes
    return client


async def _until_waiting(client: GraphrunnerClient, lifetime_id: str) -> None:
    for _ in range(200):
        if (await client.status(lifetime_id)).phase == LifetimePhase.WAITING.value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{lifetime_id} never waited for a person")


@pytest.fixture(params=STRENGTHS)
async def world(
    request: pytest.FixtureRequest, env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[World]:
    strength: str = request.param
    suffix = uuid.uuid4().hex[:6]
    owner_tenant, outsider_tenant = f"globex-{suffix}", f"acme-{suffix}"
    db = f"sqlite:///{tmp_path / 'state.db'}"
    owner = await _client(env, _settings(strength, owner_tenant, task_queue, db))
    outsider = await _client(env, _settings(strength, outsider_tenant, task_queue, db))
    graph = review_graph()
    async with build_worker(owner):  # records on, into the shared state DB
        done = await owner.start(graph, "finished one", id=f"done-{suffix}")
        await _until_waiting(owner, done.id)
        await owner.respond(done.id, "review", {"fine": True})
        await done.result()
        waiting = await owner.start(graph, "waiting one", id=f"waiting-{suffix}")
        await _until_waiting(owner, waiting.id)
        cli_env = {
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": env.client.namespace,
            "GRAPHRUNNER_TASK_QUEUE": task_queue,
            "GRAPHRUNNER_DATABASE_URL": db,
            "GRAPHRUNNER_HOME": str(tmp_path / "home"),
            "GRAPHRUNNER_ISOLATION": strength,
            "GRAPHRUNNER_TENANT_NAMESPACE": "t-{tenant}",
        }
        yield World(
            strength, owner, outsider, owner_tenant, outsider_tenant, waiting.id, done.id, cli_env
        )


async def _refused(action: Awaitable[Any], world: World, lifetime_id: str) -> None:
    with pytest.raises(OtherTenant) as caught:
        await action
    # The same words whether the lifetime is another tenant's or does not exist at all.
    assert str(caught.value) == f"no lifetime '{lifetime_id}' of tenant '{world.outsider_tenant}'"


async def test_a_bound_client_refuses_every_action_on_another_tenants_lifetime(
    world: World,
) -> None:
    out, w, d = world.outsider, world.waiting, world.done
    records = await world.owner.history(d)
    assert records, "the owner reads its own records"
    attempts: list[tuple[str, Callable[[], Awaitable[Any]], str]] = [
        ("status", lambda: out.status(w), w),
        ("result", lambda: out.result(d), d),
        ("history", lambda: out.history(d), d),
        ("decisions", lambda: out.decisions(d), d),
        ("attempts", lambda: out.attempts(d), d),
        ("steps", lambda: out.steps(d), d),
        ("state", lambda: out.state(d), d),
        ("pending", lambda: out.pending(w), w),
        ("respond", lambda: out.respond(w, "review", {"evil": True}), w),
        ("answer by signal", lambda: out.answer_by_signal(w, "review", {"evil": True}), w),
        ("guardrails", lambda: out.guardrails(w), w),
        ("pause", lambda: out.pause(w, reason="outsider"), w),
        ("resume", lambda: out.resume(w), w),
        ("abort", lambda: out.abort(w, reason="outsider"), w),
        ("cancel", lambda: out.cancel(w, reason="outsider"), w),
        ("reset", lambda: out.reset(d, step=1), d),
        ("fork", lambda: out.fork(d, 1), d),
        ("stream result", lambda: _drain(out, records[0]), d),
    ]
    for name, action, lifetime_id in attempts:
        try:
            await _refused(action(), world, lifetime_id)
        except BaseException as exc:
            raise AssertionError(f"{name}: {exc!r}") from exc
    # Not found and not mine read the same.
    await _refused(out.status("no-such-lifetime"), world, "no-such-lifetime")

    # Across lifetimes: only its own (none), whatever it asks for.
    assert await out.list_lifetimes() == []
    assert await out.pending() == []
    assert await out.costs() == []
    assert await out.costs(by="graph") == []
    with pytest.raises(OtherTenant, match="bound to tenant"):
        await out.list_lifetimes(tenant=world.owner_tenant)
    with pytest.raises(OtherTenant, match="bound to tenant"):
        await out.pending(tenant=world.owner_tenant)
    bulk = await out.control_many("abort", f"WorkflowId = '{w}'", reason="outsider")
    assert bulk == [], "a query never reaches another tenant's lifetimes"
    # Start as the other tenant (spending its budget): refused, nothing started.
    with pytest.raises(OtherTenant, match="cannot start lifetimes of tenant"):
        await out.start(review_graph(), "spend", tenant=world.owner_tenant)
    if world.strength == "soft":
        # Taking over the other tenant's lifetime id: refused, not attached to it (a plain
        # start, or an update-with-start that would ask the running lifetime its question).
        with pytest.raises(GraphrunnerError, match="already exists: choose another id"):
            await out.start(review_graph(), "x", id=w)
        with pytest.raises(GraphrunnerError, match="already exists: choose another id"):
            await out.start_and_ask(review_graph(), "x", id=w)
    # A query cannot close the tenant clause's parentheses to reach other tenants.
    with pytest.raises(GraphrunnerError, match="unbalanced parentheses"):
        await out.control_many("abort", "WorkflowType = 'AgentLifetime') OR ('1' = '1")
    # A record handed in by the caller, relabelled as the outsider's: the state DB decides.
    forged = records[0].model_copy(update={"tenant": world.outsider_tenant})
    await _refused(_drain(out, forged), world, d)

    # The owner sees its own lifetimes, their records and costs ...
    listed = {row.lifetime_id for row in await world.owner.list_lifetimes()}
    assert {w, d} <= listed
    assert [r.key for r in await world.owner.costs()] == [world.owner_tenant]
    assert [r.lifetime_id for r in await world.owner.pending()] == [w]
    # ... and its waiting lifetime is unharmed: no pause, no abort, no foreign answer.
    # (The fixture's worker runs throughout: a refused update was not merely unanswered.)
    info = await world.owner.status(w)
    assert info.status == "running" and info.paused == []
    await world.owner.respond(w, "review", {"fine": True})
    result = await world.owner.result(w)
    assert result.output == {"answer": {"fine": True}}


async def _drain(client: GraphrunnerClient, record: Any) -> None:
    async for _ in client.stream_result(record):
        pass


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_the_cli_bound_to_a_tenant_refuses_every_command_on_another_tenants_lifetime(
    world: World,
) -> None:
    w, d = world.waiting, world.done
    env = dict(world.cli_env, GRAPHRUNNER_TENANT=world.outsider_tenant)
    commands: list[tuple[str, ...]] = [
        ("status", w),
        ("history", d),
        ("history", d, "--attempts", "--json"),
        ("result", d, "draft"),
        ("state", d),
        ("steps", d),
        ("pending", w),
        ("respond", w, "--node", "review", "--data", '{"evil": true}'),
        ("respond", w, "--node", "review", "--data", '{"evil": true}', "--signal"),
        ("pause", w),
        ("resume", w),
        ("abort", w),
        ("cancel", w),
        ("reset", d, "--step", "1"),
        ("fork", d, "--step", "1"),
        ("replay", d),
    ]
    for args in commands:
        code, _, err = await asyncio.to_thread(_cli, env, *args)
        lifetime_id = args[1]
        assert code != 0, f"{args}: exit {code}"
        assert f"no lifetime '{lifetime_id}' of tenant '{world.outsider_tenant}'" in err, (
            f"{args}: {err}"
        )
    # --tenant on the command line binds just as GRAPHRUNNER_TENANT does.
    code, _, err = await asyncio.to_thread(
        _cli, world.cli_env, "status", w, "--tenant", world.outsider_tenant
    )
    assert code != 0 and f"no lifetime '{w}'" in err

    # Across lifetimes: nothing of the owner's.
    code, out, _ = await asyncio.to_thread(_cli, env, "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = await asyncio.to_thread(_cli, env, "pending", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = await asyncio.to_thread(_cli, env, "costs", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = await asyncio.to_thread(
        _cli, env, "abort", "--query", f"WorkflowId = '{w}'", "--json"
    )
    assert code == 0 and json.loads(out)["matched"] == 0
    # A shell bound by GRAPHRUNNER_TENANT cannot be rebound with --tenant: not to read the
    # owner's lifetimes, nor to start lifetimes that spend the owner's budget.
    for args in [
        ("list", "--tenant", world.owner_tenant),
        ("status", w, "--tenant", world.owner_tenant),
        ("run", "examples/research.yaml", "--tenant", world.owner_tenant),
    ]:
        code, out, err = await asyncio.to_thread(_cli, env, *args)
        assert code == 2 and f"--tenant '{world.owner_tenant}' is refused" in err, args
        assert world.waiting not in out

    # The owner's CLI sees its own.
    mine = dict(world.cli_env, GRAPHRUNNER_TENANT=world.owner_tenant)
    code, out, _ = await asyncio.to_thread(_cli, mine, "list", "--json")
    assert code == 0 and {w, d} <= {row["lifetime_id"] for row in json.loads(out)}
    code, out, _ = await asyncio.to_thread(_cli, mine, "status", w, "--json")
    assert code == 0 and json.loads(out)["phase"] == "waiting"
    assert (await world.owner.status(w)).paused == []


async def test_hard_isolation_needs_a_tenant_and_keeps_namespaces_apart(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    with pytest.raises(GraphrunnerError, match="GRAPHRUNNER_ISOLATION=hard needs a tenant"):
        Settings.from_env({"GRAPHRUNNER_ISOLATION": "hard"})
    code, _, err = await asyncio.to_thread(
        _cli, {"GRAPHRUNNER_ISOLATION": "hard", "GRAPHRUNNER_HOME": str(tmp_path)}, "list"
    )
    assert code == 2 and "GRAPHRUNNER_ISOLATION=hard needs a tenant" in err
    suffix = uuid.uuid4().hex[:6]
    db = f"sqlite:///{tmp_path / 'state.db'}"
    a = await _client(env, _settings("hard", f"ns-a-{suffix}", task_queue, db))
    b = await _client(env, _settings("hard", f"ns-b-{suffix}", task_queue, db))
    assert (
        a.temporal.namespace == f"t-ns-a-{suffix}" and b.temporal.namespace != a.temporal.namespace
    )
    async with build_worker(a):
        handle = await a.start(review_graph(), "in a", id=f"same-id-{suffix}")
        await _until_waiting(a, handle.id)
    # The same id in b's namespace is another lifetime altogether: ids do not collide.
    async with build_worker(b):
        other = await b.start(review_graph(), "in b", id=f"same-id-{suffix}")
        assert other.attached is None
        await _until_waiting(b, other.id)
    # One state DB for both: each tenant reads its own records of the shared id, no more.
    mine_a, mine_b = await a.history(handle.id), await b.history(handle.id)
    assert {r.tenant for r in mine_a} == {a.tenant} and {r.tenant for r in mine_b} == {b.tenant}
    assert [r.node for r in mine_a] == [r.node for r in mine_b] == ["draft", "ask"]
    assert {x.execution_id for x in await a.attempts(handle.id)} == {r.execution_id for r in mine_a}
    [row] = [r for r in await a.list_lifetimes() if r.lifetime_id == handle.id]
    assert row.executions == 2, "totals of a's lifetime only, not b's of the same id"
    plain = await Client.connect(
        env.client.service_client.config.target_host, namespace=a.temporal.namespace
    )
    found = [wf.id async for wf in plain.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert found == [handle.id], "one lifetime with this id in a's namespace, not two"


@pytest.mark.timeout(240)
async def test_one_tenants_burst_does_not_starve_another_tenants_lifetimes(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    """Fair dispatch by tenant: a small tenant's lifetimes finish early in a big one's burst.

    One worker with few slots; tenant "burst" starts 40 lifetimes, then tenant "small" starts
    3. Dispatched in arrival order, the small tenant's tasks would wait behind the burst's at
    every step and finish with the last of them; dispatched fairly, they get half of the
    worker and finish while most of the burst is still running. (The figure the issue asks
    for, 200 against 5, is measured in bench/: `python -m bench --only fairness`.)
    """
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(task_queue=task_queue)
    burst = GraphrunnerClient(
        env.client, settings=settings.model_copy(update={"tenant": f"burst-{suffix}"})
    )
    small = GraphrunnerClient(
        env.client, settings=settings.model_copy(update={"tenant": f"small-{suffix}"})
    )
    graph = loop_graph()
    finished: list[str] = []

    async def run(client: GraphrunnerClient, lifetime_id: str) -> None:
        handle = await client.start(graph, lifetime_id, id=lifetime_id)
        await handle.result()
        finished.append(lifetime_id)

    burst_ids = [f"burst-{suffix}-{i}" for i in range(40)]
    small_ids = [f"small-{suffix}-{i}" for i in range(3)]
    burst_runs = [asyncio.create_task(run(burst, i)) for i in burst_ids]
    await asyncio.sleep(0.5)  # the burst is queued first
    small_runs = [asyncio.create_task(run(small, i)) for i in small_ids]
    async with build_worker(
        env.client,
        task_queue=task_queue,
        recorder=None,
        max_concurrent_workflow_tasks=2,
        max_concurrent_activities=2,
        max_cached_workflows=0,
    ):
        await asyncio.gather(*small_runs)
        burst_done_when_small_done = sum(1 for i in finished if i in set(burst_ids))
        await asyncio.gather(*burst_runs)
    assert len(finished) == 43
    assert burst_done_when_small_done < len(burst_ids) // 2, (
        f"the small tenant finished only after {burst_done_when_small_done} of the burst's "
        f"{len(burst_ids)} lifetimes: order {finished}"
    )


async def test_a_hard_tenant_without_its_namespace_is_told_to_run_setup(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    tenant = f"nowhere-{uuid.uuid4().hex[:6]}"
    settings = _settings("hard", tenant, task_queue, f"sqlite:///{tmp_path / 'state.db'}")
    address = env.client.service_client.config.target_host
    client = await GraphrunnerClient.connect(settings, address=address)
    with pytest.raises(GraphrunnerError, match=f"graphrunner setup --tenant {tenant}"):
        await client.status("anything")


async def test_a_tenant_can_have_its_own_task_queue_and_fairness_weight(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    tenant = f"queued-{suffix}"
    settings = Settings(
        task_queue=task_queue,
        tenant=tenant,
        tenant_task_queues=True,
        fairness_weights=f"{tenant}=2.5,other=0.5",
        record=False,
    )
    client = GraphrunnerClient(env.client, settings=settings)
    handle = await client.start(review_graph(), "x", id=f"queued-{suffix}")
    with pytest.raises(OtherTenant, match="runs on task queue"):
        await client.start(review_graph(), "x", task_queue=task_queue)  # the shared queue
    raw = (await handle.describe()).raw_description.workflow_execution_info
    assert raw.task_queue == f"{task_queue}-{tenant}"
    assert (raw.priority.fairness_key, raw.priority.fairness_weight) == (tenant, 2.5)
    # A worker of the shared queue never sees it; one bound to the tenant runs it.
    async with build_worker(env.client, settings=settings.model_copy(update={"tenant": None})):
        await asyncio.sleep(1.0)
        assert (await client.status(handle.id)).steps == []
    async with build_worker(env.client, settings=settings):
        await _until_waiting(client, handle.id)
        await client.respond(handle.id, "review", "fine")
        assert (await handle.result()).output == {"answer": "fine"}
        # Another tenant's lifetime pushed onto this queue (by an unbound client): its node
        # code never runs on this tenant's worker; the lifetime fails, saying why.
        unbound = GraphrunnerClient(
            env.client, settings=settings.model_copy(update={"tenant": None})
        )
        intruder = await unbound.start(
            review_graph(), "x", tenant="other", task_queue=f"{task_queue}-{tenant}"
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await intruder.result()
    assert "WrongTenant: this worker runs tenant" in str(failed.value.cause)
