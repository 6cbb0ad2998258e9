"""The examples in examples/ run offline, end to end, on the dev server, and replay."""

from __future__ import annotations

from typing import Any

import pytest

from graphrunner import GraphrunnerClient, load_graph
from tests.conftest import ROOT, activity_summaries, assert_replays

EXAMPLES = ROOT / "examples"


@pytest.fixture
async def example_worker(env: Any, task_queue: str) -> Any:
    from graphrunner import build_worker

    async with build_worker(env.client, task_queue=task_queue, recorder=None):
        yield


@pytest.mark.usefixtures("example_worker")
async def test_the_coding_agent_spawns_a_branch_per_file_each_with_its_validate_loop(
    client: GraphrunnerClient,
) -> None:
    request = {"request": "rename fetch to load", "files": ["api.py", "cli2.py", "docs.md"]}
    handle = await client.start(load_graph(EXAMPLES / "coding_agent.yaml"), request)
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
