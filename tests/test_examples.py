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
