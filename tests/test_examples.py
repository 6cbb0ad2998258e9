"""The examples in examples/ run offline, end to end, on the dev server, and replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, Settings, load_graph
from graphrunner.activities import Recorder
from graphrunner.llm import offline
from graphrunner.stores import LocalBlobStore, data_converter, open_records
from graphrunner.worker import build_worker
from tests.conftest import ROOT, activity_summaries, assert_replays

EXAMPLES = ROOT / "examples"


@pytest.fixture
async def example_worker(env: Any, task_queue: str) -> Any:
    from graphrunner import build_worker

    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        yield


@pytest.mark.usefixtures("example_worker")
async def test_parallel_edits_spawns_a_branch_per_file_each_with_its_validate_loop(
    client: GraphrunnerClient,
) -> None:
    request = {"request": "rename fetch to load", "files": ["api.py", "cli2.py", "docs.md"]}
    handle = await client.start(load_graph(EXAMPLES / "parallel_edits.yaml"), request)
    result = await handle.result()
    out = result.output
    assert out["edits"] == [
        "rename fetch to load in api.py",
        "rename fetch to load in cli2.py",
        "rename fetch to load in docs.md",
    ], "the branches' edits joined the shared state in file order"
    assert out["files"] == {"api.py": "ok", "cli2.py": "ok", "docs.md": "ok"}
    assert out["tool_calls"] == 4, "cli2.py failed lint once and its branch looped"
    assert [r["tries"] for r in out["reports"]] == [1, 2, 1]
    assert result.state is not None and result.state["attempts"] == 4
    summaries = await activity_summaries(handle)
    assert [s for s in summaries if s.startswith("tool_call")][:3] == [
        "tool_call · 1 [1/3]",
        "tool_call · 2 [2/3]",
        "tool_call · 3 [3/3]",
    ]
    assert summaries.count("validate · 4") == 1, "one branch validated twice"
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("example_worker")
async def test_the_lead_agent_hands_each_part_to_a_point_agent_child_lifetime(
    client: GraphrunnerClient,
) -> None:
    question = {"question": "is it durable", "parts": ["storage", "io", "replay-of-history"]}
    handle = await client.start(load_graph(EXAMPLES / "lead_agent.yaml"), question)
    result = await handle.result()
    answers = result.output["answers"]
    assert list(answers) == ["storage", "io", "replay-of-history"]
    # The point agents' loop_until: a long part scores 1.0 at once; 'storage' scores 0.7 and
    # one refinement takes it past 0.8; 'io' (0.2) stops at the 3-round limit, at 0.7.
    assert answers["replay-of-history"].endswith("first look for 'is it durable'")
    assert answers["storage"].endswith("'is it durable' (refined)")
    assert answers["io"].endswith("(refined) (refined)")
    assert result.state is not None
    assert [f["part"] for f in result.state["findings"]] == question["parts"]
    assert [f["score"] for f in result.state["findings"]] == [0.95, 0.7, 1.0]
    assert result.state["confidence"] == 0.7, "min over the reports"
    # Each part ran as a child lifetime, its steps nested under the lead's 'solve' step.
    info = await client.status(handle.id)
    solve = [s for s in info.steps if s.node == "solve"]
    assert len(solve) == 3 and all(s.child for s in solve)
    for step in solve:
        child = info.children[step.child or ""]
        assert child.status == "completed" and child.graph_name == "point-agent"
        assert child.steps[0].node == "research" and child.steps[-1].node == "gate"
    await assert_replays(client.temporal, handle)
    for step in solve:
        await assert_replays(client.temporal, client.temporal.get_workflow_handle(step.child or ""))


# -- the LLM examples: offline, scripted by each example's own offline.yaml ----------------


@pytest.fixture
def example_script(request: pytest.FixtureRequest) -> Iterator[None]:
    """Script the offline model from the example's offline.yaml (the worker is in-process)."""
    offline.SCRIPTS.load_file(EXAMPLES / request.param / "offline.yaml")
    try:
        yield
    finally:
        offline.SCRIPTS.clear(from_file=True)


@pytest.fixture
async def recording_client(
    env: WorkflowEnvironment, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GraphrunnerClient]:
    """A worker recording into a state DB under tmp (GRAPHRUNNER_HOME too), and its client."""
    monkeypatch.setenv("GRAPHRUNNER_HOME", str(tmp_path))
    settings = Settings(
        task_queue=task_queue, database_url=f"sqlite:///{tmp_path / 'state.db'}", home=tmp_path
    )
    records = open_records(settings)
    blobs = LocalBlobStore(tmp_path / "blobs")
    temporal = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(settings, blobs),
    )
    recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
    async with build_worker(temporal, task_queue=task_queue, recorder=recorder):
        yield GraphrunnerClient(temporal, settings=settings, records=records, blobs=blobs)
    records.close()


async def asked(client: GraphrunnerClient, lifetime_id: str, node: str, iteration: int) -> str:
    """The question ``node`` asks in its ``iteration``, once the lifetime waits for it."""
    for _ in range(600):
        for request in await client.pending(lifetime_id):
            if request.node == node and request.iteration == iteration:
                return request.question
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id} never asked {node} (iteration {iteration})")


@pytest.mark.parametrize("example_script", ["coding_agent"], indirect=True)
@pytest.mark.usefixtures("example_script")
async def test_the_coding_agent_clarifies_plans_writes_validates_and_asks_to_accept(
    recording_client: GraphrunnerClient, tmp_path: Path
) -> None:
    client = recording_client
    graph = load_graph(EXAMPLES / "coding_agent" / "graph.yaml")
    handle = await client.start(graph, {"question": "What app should I build?"}, id="todo-1")
    assert await asked(client, handle.id, "describe", 1) == "What app should I build?"
    await client.respond(handle.id, "describe", {"answer": "a todo list for the terminal"})
    question = await asked(client, handle.id, "describe", 2)
    assert question == "Should the todo items be kept between runs, and if so where?"
    await client.respond(handle.id, "describe", {"answer": "in a JSON file in my home folder"})
    shown = await asked(client, handle.id, "accept", 1)
    assert "- storage.py: ok (grade A, 2 tries)" in shown, "failed validation once"
    assert "- todo.py: ok (grade A, 1 tries)" in shown
    # Rejected once: the comment goes back to the designer, who adds a test file.
    await client.respond(handle.id, "accept", {"decision": "reject", "comment": "add tests"})
    shown = await asked(client, handle.id, "accept", 2)
    assert "- test_todo.py: ok" in shown
    await client.respond(handle.id, "accept", {"decision": "accept"}, by="alice")
    result = await handle.result()

    folder = tmp_path / "sandbox" / "todo-1"
    assert result.output["folder"] == str(folder.resolve())
    assert result.output["files"] == ["README.md", "storage.py", "test_todo.py", "todo.py"]
    storage = (folder / "storage.py").read_text()
    assert "if not path.exists():" in storage and "TODO" not in storage, "the fixed version"
    assert result.output["tries"]["storage.py"] == 2, "failed validation once, written again"
    assert result.state is not None
    said = [(m["role"], m["text"]) for m in result.state["conversation"]]
    assert said[:3] == [
        ("user", "a todo list for the terminal"),
        ("agent", "Should the todo items be kept between runs, and if so where?"),
        ("user", "in a JSON file in my home folder"),
    ]
    assert ("user", "reject: add tests") in said and said[-1] == ("user", "accept")

    summaries = await activity_summaries(handle)
    assert summaries[12:15] == ["write · 1 [1/3]", "write · 2 [2/3]", "write · 3 [3/3]"]
    assert "write · 4" in summaries, "storage.py written again, outside the map's count"
    assert len([s for s in summaries if s.startswith("validate")]) == 9, "3 + 1 retry, then 4 + 1"
    records = await client.history(handle.id)
    llm = [r for r in records if r.node in ("design", "write", "validate") and r.kind == "task"]
    assert llm and all(r.tokens_in > 0 and r.cost_usd > 0 for r in llm)
    assert {r.model for r in llm} == {"offline/expert", "offline/standard", "offline/fast"}
    tools = [r for r in records if r.kind == "tool"]
    assert len(tools) == 9 and {r.tool for r in tools} == {"write_file"}
    await assert_replays(client.temporal, handle)


@pytest.mark.parametrize("example_script", ["code_review"], indirect=True)
@pytest.mark.usefixtures("example_script", "example_worker")
async def test_code_review_runs_both_reviews_in_parallel_and_joins_them_into_a_report(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(load_graph(EXAMPLES / "code_review" / "graph.yaml"), {})
    result = await handle.result()
    report = result.output
    assert report.startswith("# Review\n\n## Architecture: changes requested")
    assert "- [high] unit 1 (app/orders.py): SQL built with an f-string" in report
    assert report.index("## Architecture") < report.index("## Quality"), "in the JOIN's order"
    summaries = await activity_summaries(handle)
    assert summaries[0] == "parse · 1"
    assert sorted(summaries[2:4]) == ["architecture · 1", "quality · 1"]
    assert summaries[-2:] == ["collect · 1", "report · 1"]
    await assert_replays(client.temporal, handle)


@pytest.mark.parametrize("example_script", ["iterative_review"], indirect=True)
@pytest.mark.usefixtures("example_script", "example_worker")
async def test_iterative_review_revises_until_the_judge_passes_the_draft(
    client: GraphrunnerClient,
) -> None:
    topic = {"topic": "How durable execution survives crashes"}
    handle = await client.start(load_graph(EXAMPLES / "iterative_review" / "graph.yaml"), topic)
    result = await handle.result()
    out = result.output
    assert out["passed"] is True and out["overall"] == "B" and out["rounds"] == 3
    assert "[source: Temporal docs" in out["text"] and "(as of 2025" in out["text"]
    assert result.state is not None
    assert [v["overall"] for v in result.state["verdicts"]] == ["D", "C", "B"]
    summaries = await activity_summaries(handle)
    assert summaries.count("revise · 2") == 1 and "revise · 3" not in summaries
    await assert_replays(client.temporal, handle)


@pytest.mark.parametrize("example_script", ["iterative_review"], indirect=True)
@pytest.mark.usefixtures("example_script", "example_worker")
async def test_iterative_review_stops_at_the_cap_when_the_judge_never_passes(
    client: GraphrunnerClient,
) -> None:
    harsh = {"grades": dict.fromkeys(["coverage", "source_quality"], "D"), "notes": "no"}
    harsh["grades"] |= dict.fromkeys(["consistency", "verifiability", "timeliness"], "C")
    offline.script("review", answer=harsh)  # a Python script wins over the file's
    try:
        topic = {"topic": "anything"}
        graph = load_graph(EXAMPLES / "iterative_review" / "graph.yaml")
        result = await (await client.start(graph, topic)).result()
    finally:
        offline.clear()
    assert result.output["passed"] is False and result.output["rounds"] == 4, "the cap"
    assert result.state is not None and len(result.state["verdicts"]) == 4
