"""Record the golden histories in ``tests/histories`` from the examples and the current code.

Run ``.venv/bin/python -m tests.record_examples`` after a deliberate change to what a lifetime
records (a new command, a new patch), review the diff and commit the files:
``tests/test_golden_histories.py`` replays every one of them, so a change that would break the
lifetimes running in the field fails CI instead. ``tests/histories/patches/`` holds histories
recorded by older graphrunners (one per ``workflow.patched`` id): never re-record those.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, Settings, load_graph
from graphrunner._attributes import SEARCH_ATTRIBUTES
from graphrunner.client import temporal_binary
from graphrunner.client._devserver import TUNING_ARGS
from graphrunner.llm import offline
from graphrunner.worker import build_worker
from tests.test_human import waiting

FOLDER = Path(__file__).parent / "histories"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Recording = Callable[[GraphrunnerClient], Awaitable[list[WorkflowHandle[Any, Any]]]]


async def research(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """A gather/review loop, a PARALLEL fan-out to three reviewers, a JOIN, a report."""
    handle = await client.start(
        load_graph(EXAMPLES / "research.yaml"), {"topic": "golden"}, id="research"
    )
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


async def parallel_edits(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """A map over files, each branch with its validate loop (one lints twice)."""
    request = {"request": "rename fetch to load", "files": ["api.py", "cli2.py", "docs.md"]}
    handle = await client.start(
        load_graph(EXAMPLES / "parallel_edits.yaml"), request, id="parallel-edits"
    )
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


async def lead_agent(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """A lead lifetime and its point-agent children (sub-graphs as child workflows)."""
    question = {"question": "is it durable", "parts": ["storage", "io"]}
    handle = await client.start(load_graph(EXAMPLES / "lead_agent.yaml"), question, id="lead-agent")
    await handle.result()
    info = await client.status(handle.id)
    children = [s.child for s in info.steps if s.child]
    return [client.temporal.get_workflow_handle(i) for i in [handle.id, *children]]


async def approval(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """Human input: asked, answered 'changes' by Update, asked again, approved."""
    handle = await client.start(
        load_graph(EXAMPLES / "approval.yaml"), {"topic": "golden"}, id="approval"
    )
    await waiting(client, handle.id, "approve")
    await client.respond(handle.id, "approve", {"decision": "changes", "comment": "shorter"})
    for _ in range(400):  # the second question, once the rewrite ran
        if [r for r in await client.pending(handle.id) if r.iteration == 2]:
            break
        await asyncio.sleep(0.05)
    await client.respond(handle.id, "approve", {"decision": "approve"}, by="alice")
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


def _scripted(example: str) -> None:
    """Script the offline model from the example's offline.yaml (the worker is in-process)."""
    offline.SCRIPTS.load_file(EXAMPLES / example / "offline.yaml")


async def coding_agent(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """Human input, a clarify round, a map of LLM writers with tools and a judge loop."""
    _scripted("coding_agent")
    # The sandbox the tool writes into: a temporary GRAPHRUNNER_HOME, not the repository's.
    os.environ["GRAPHRUNNER_HOME"] = tempfile.mkdtemp(prefix="graphrunner-golden-")
    graph = load_graph(EXAMPLES / "coding_agent" / "graph.yaml")
    handle = await client.start(graph, {"question": "What app should I build?"}, id="coding-agent")
    for node, iteration, answer in [
        ("describe", 1, {"answer": "a todo list for the terminal"}),
        ("describe", 2, {"answer": "in a JSON file in my home folder"}),
        ("accept", 1, {"decision": "accept"}),
    ]:
        for _ in range(600):
            if [
                r
                for r in await client.pending(handle.id)
                if r.iteration == iteration and r.node == node
            ]:
                break
            await asyncio.sleep(0.05)
        await client.respond(handle.id, node, answer)
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


async def code_review(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """Two llm_tasks in PARALLEL over a parsed diff, JOINed into an LLM-written report."""
    _scripted("code_review")
    graph = load_graph(EXAMPLES / "code_review" / "graph.yaml")
    handle = await client.start(graph, {}, id="code-review")
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


async def iterative_review(client: GraphrunnerClient) -> list[WorkflowHandle[Any, Any]]:
    """Write, judge, revise until the llm_judge passes (third draft), routed by `when`."""
    _scripted("iterative_review")
    graph = load_graph(EXAMPLES / "iterative_review" / "graph.yaml")
    topic = {"topic": "How durable execution survives crashes"}
    handle = await client.start(graph, topic, id="iterative-review")
    await handle.result()
    return [client.temporal.get_workflow_handle(handle.id)]


def file_name(workflow_id: str) -> str:
    """The file of a lifetime's history: its id (a child's ``/`` as ``__``), which replay needs.

    A lifetime's commands derive from its id (a child's workflow id, for one), so a history
    replays only under the id it was recorded with.
    """
    return workflow_id.replace("/", "__") + ".json"


def workflow_id(path: Path) -> str:
    """Inverse of `file_name`."""
    return path.stem.replace("__", "/")


RECORDINGS: dict[str, Recording] = {
    "research": research,
    "parallel-edits": parallel_edits,
    "lead-agent": lead_agent,
    "approval": approval,
    "coding-agent": coding_agent,
    "code-review": code_review,
    "iterative-review": iterative_review,
}


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=list(TUNING_ARGS),
    )
    try:
        task_queue = f"tq-golden-{uuid.uuid4().hex[:6]}"
        client = GraphrunnerClient(env.client, settings=Settings(task_queue=task_queue))
        async with build_worker(env.client, task_queue=task_queue, recorder=None):
            for name, record in RECORDINGS.items():
                for old in FOLDER.glob(f"{name}*.json"):
                    old.unlink()
                for handle in await record(client):
                    history = await handle.fetch_history()
                    file = file_name(history.workflow_id)
                    (FOLDER / file).write_text(history.to_json() + "\n")
                    print(f"recorded {file}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
