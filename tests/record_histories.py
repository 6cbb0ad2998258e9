"""Record the replay fixtures in ``tests/fixtures/histories`` from the current code.

Run ``.venv/bin/python -m tests.record_histories`` after a deliberate change to what the
guardrail interceptor records, and commit the files: ``tests/test_guardrails.py`` replays
them, so an accidental change to the interceptor's commands fails there instead of
stalling the lifetimes running in the field.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from graphrunner._attributes import SEARCH_ATTRIBUTES
from graphrunner.client import temporal_binary
from graphrunner.client._devserver import TUNING_ARGS
from graphrunner.guardrails import PolicySource
from graphrunner.stores import RecordStore
from tests.test_guardrails import TOKENS, Harness, fan_graph, loop_graph, policy

FOLDER = Path(__file__).parent / "fixtures" / "histories"

# name -> (what it covers, how to make it)
Recording = Callable[[Harness], Awaitable[WorkflowHandle[Any, Any]]]


async def tenant_rule(harness: Harness) -> WorkflowHandle[Any, Any]:
    """A worker's tenant cap rejects the third run before it runs (reserve, verdict, settle)."""
    rule = (
        f"{{name: tenant-cap, when: sum(tokens_used) > {2 * TOKENS}, scope: tenant, "
        "action: reject_execution}"
    )
    graph = loop_graph("tenant-rule", rounds=5).model_copy()
    graph = graph.model_copy(
        update={
            "nodes": [
                n.model_copy(update={"max_tokens": TOKENS}) if n.name == "work" else n
                for n in graph.nodes
            ]
        }
    )
    async with harness.worker(PolicySource(global_policy=policy(rule))):
        handle = await harness.start(graph, tenant=f"t-{uuid.uuid4().hex[:6]}")
        await handle.result()
    return handle


async def fan_count(harness: Harness) -> WorkflowHandle[Any, Any]:
    """A graph's own count rule over a fan-out: the third branch is rejected before it runs."""
    two = (
        '{name: two-tasks, when: \'kind == "task" and count(where kind == "task") > 2\', '
        "scope: lifetime, action: reject_execution}"
    )
    graph = fan_graph("fan-count").model_copy(update={"guardrails": policy(two)})
    async with harness.worker():
        handle = await harness.start(graph)
        await handle.result()
    return handle


async def pause_resume(harness: Harness) -> WorkflowHandle[Any, Any]:
    """A rule pauses the second run; a resume with a raised limit lets the lifetime finish."""
    cap = policy(
        "{name: cost-cap, when: sum(cost_usd) > 0.015, scope: lifetime, "
        "action: pause_lifetime, message: needs approval}"
    )
    async with harness.worker(PolicySource(global_policy=cap)):
        handle = await harness.start(loop_graph("pause-resume", rounds=3))
        await harness.wait_paused(handle.id)
        await harness.client.resume(handle.id, when="sum(cost_usd) > 1", reason="approved")
        await handle.result()
    return handle


RECORDINGS: dict[str, Recording] = {
    "tenant-rule-v2": tenant_rule,
    "fan-count-v2": fan_count,
    "pause-resume-v2": pause_resume,
}


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=list(TUNING_ARGS),
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = RecordStore(f"sqlite:///{tmp}/state.db")
            store.ensure_schema()
            harness = Harness(env, "tq-fixture", store)
            for name, record in RECORDINGS.items():
                handle = await record(harness)
                history = await handle.fetch_history()
                (FOLDER / f"{name}.json").write_text(history.to_json() + "\n")
                print(f"recorded {name}: {len(history.events)} events")
            store.close()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
