"""Fan-out over a list a plan chooses at run time (PlanResult.map), on a real dev server."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from graphrunner import GraphBuilder, GraphrunnerClient
from graphrunner.graph import GraphDefaults
from tests.conftest import activity_summaries, assert_replays
from tests.nodes import Double, MapOver, Outputs


def map_graph(*, limit: int | None = None, sleep_s: float = 0, cap: int | None = None) -> Any:
    return (
        GraphBuilder(
            "mapper", version="1.0.0", defaults=GraphDefaults(max_map_items=cap) if cap else None
        )
        .plan("split", MapOver, config={"limit": limit} if limit else {})
        .task("review", Double, config={"sleep_s": sleep_s})
        .plan("merge", Outputs)
        .parallel("split", "review")
        .join("merge", "review")
        .final("merge")
        .build()
    )


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("n", [0, 1, 50])
async def test_a_plan_maps_a_task_over_a_list_it_chose(client: GraphrunnerClient, n: int) -> None:
    handle = await client.start(map_graph(), n)
    result = await handle.result()
    assert result.output == [2 * i for i in range(n)], "the JOIN gets results in item order"
    reviews = [s for s in await activity_summaries(handle) if s.startswith("review")]
    assert reviews == [f"review · {i} [{i}/{n}]" for i in range(1, n + 1)]
    assert [s.node for s in result.steps] == ["split", *["review"] * n, "merge"]
    await assert_replays(client.temporal, handle)


async def _running_at_once(temporal: Client, lifetime_id: str) -> int:
    """Most node activities of the lifetime that ran at the same time (server times)."""
    started: dict[int, float] = {}
    spans: list[tuple[float, float]] = []
    async for event in temporal.get_workflow_handle(lifetime_id).fetch_history_events():
        when = event.event_time.ToDatetime().timestamp()
        if event.HasField("activity_task_started_event_attributes"):
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        elif event.HasField("activity_task_completed_event_attributes"):
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            spans.append((started[scheduled], when))
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


@pytest.mark.usefixtures("worker")
async def test_max_concurrency_bounds_the_branches_running_at_once(
    client: GraphrunnerClient,
) -> None:
    handle = await client.start(map_graph(limit=2, sleep_s=0.3), 6)
    result = await handle.result()
    assert result.output == [0, 2, 4, 6, 8, 10]
    assert await _running_at_once(client.temporal, handle.id) == 2
    unbounded = await client.start(map_graph(sleep_s=0.3), 6)
    await unbounded.result()
    assert await _running_at_once(client.temporal, unbounded.id) > 2
    await assert_replays(client.temporal, handle)


@pytest.mark.usefixtures("worker")
async def test_a_map_past_its_cap_fails_naming_plan_and_cap(client: GraphrunnerClient) -> None:
    handle = await client.start(map_graph(cap=5), 6)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "MapTooLarge"
    assert "plan 'split' mapped 'review' over 6 items" in str(cause)
    assert "max_map_items=5" in str(cause)
    assert not [s for s in await activity_summaries(handle) if s.startswith("review")]
