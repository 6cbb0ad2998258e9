"""The LLM-turns section's parts: history bytes per turn of a growing tool conversation.

One lifetime per contestant of ``rounds`` tool rounds, each adding about 2 KiB to the
conversation: graphrunner's llm_task (`bench.sides.talk_graph`, the offline model scripted
here to call `bench.nodes.bulky` ``rounds`` times) on a worker with a blob store (the
conversation travels by reference once over 4 KiB) and on one without (the conversation
inline in every round's input and result), and the baseline `BenchToolTalk`, which passes
the whole message list to every model activity.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from temporalio.api.history.v1 import HistoryEvent

from bench.history import chain_events
from bench.sides import Side, timed
from graphrunner.llm import offline

__all__ = ["TOOL_ACTIVITIES", "Talk", "round_bytes", "script_model", "talk"]

# The activity that ends a round, by side: graphrunner's tool activity, the baseline's.
TOOL_ACTIVITIES = ("graphrunner.run_tool", "bench.tool_bulky")


@dataclass(frozen=True)
class Talk:
    """One side's conversation: history bytes each round added, and its wall time."""

    rounds: int
    per_round: list[int]  # round 1 first
    history_bytes: int  # of all its runs
    events: int
    runs: int  # 2: it continued as new after the task (its history passed 4 MiB)
    seconds: float

    def at(self, turn: int) -> int:
        return self.per_round[turn - 1]

    @property
    def growth(self) -> float:
        """Least-squares slope of the bytes per round over rounds 4 to the last, in bytes per
        round per round (the first three hold the start and a conversation still inline)."""
        tail = self.per_round[3:]
        if len(tail) < 2:
            return 0.0
        return statistics.linear_regression(range(len(tail)), tail).slope


def script_model() -> offline.Script:
    """Script the offline model of node ``chat``: as many tool calls as its prompt asks for
    (`bench.sides.TALK_PROMPT`), one a round, then an answer; a function of the messages,
    like the baseline's stand-in model, so every lifetime of a size gets the same."""

    def respond(messages: list[dict[str, Any]]) -> offline.Answer:
        asked = re.search(r"Call the tool (\d+) times", str(messages[0].get("content")))
        rounds = int(asked.group(1)) if asked else 0
        done = sum(m.get("role") == "tool" for m in messages)
        if done >= rounds:
            return "finished"
        return offline.ToolRound(
            [{"id": f"call_{done}", "name": "bulky", "arguments": {"n": done}}]
        )

    return offline.script("chat", fn=respond)


def round_bytes(events: list[HistoryEvent]) -> list[int]:
    """History bytes each round added: up to and including its tool activity's completion.

    The first round also holds the workflow's start; what follows the last tool completion
    (the final answer, the plan, the end) is left out.
    """
    tools = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name in TOOL_ACTIVITIES
    }
    out: list[int] = []
    size = 0
    for event in events:
        size += event.ByteSize()
        if (
            event.HasField("activity_task_completed_event_attributes")
            and event.activity_task_completed_event_attributes.scheduled_event_id in tools
        ):
            out.append(size)
            size = 0
    return out


async def talk(side: Side, rounds: int) -> Talk:
    """Run one conversation of ``rounds`` rounds on ``side`` and measure its history.

    Raises:
        RuntimeError: The history does not hold ``rounds`` tool rounds.
    """
    handles: list[Any] = []

    async def start() -> Any:
        handle = await side.talk(rounds)()
        handles.append(handle)
        return handle

    seconds = await timed(start)
    # From the first run: past 4 MiB of history graphrunner continues as new after the task.
    handle = handles[0]
    first = handle.first_execution_run_id or handle.result_run_id
    runs = await chain_events(side.client, handle.id, first)
    events = [event for run in runs for event in run]
    per_round = round_bytes(events)
    if len(per_round) != rounds:
        raise RuntimeError(f"{side.name}: {len(per_round)} tool rounds in history, not {rounds}")
    return Talk(
        rounds=rounds,
        per_round=per_round,
        history_bytes=sum(e.ByteSize() for e in events),
        events=len(events),
        runs=len(runs),
        seconds=seconds,
    )
