"""Scripted answers for the LLM node tests, through graphrunner's real offline provider.

`scripted_llm` scripts the offline provider (`graphrunner.llm.offline`: a litellm custom
provider the LLM runtime calls like any other) per node with a sequence of answers (the last
repeats): text, or a round of tool calls (`tool_call`). It also keeps what each call was
asked (messages, the JSON Schema of a structured answer, the tools offered), so tests can
check what the model saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from graphrunner.llm import offline
from graphrunner.llm._offline import CALL

Answer = str | list[dict[str, Any]]


class Scripts:
    """The answers of each node's model, and what each was asked."""

    def __init__(self) -> None:
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def set(self, node: str, *answers: Answer) -> None:
        """Script ``node``'s model: one answer per call, in order; the last repeats."""
        calls: list[dict[str, Any]] = []
        self.calls[node] = calls

        def respond(messages: list[dict[str, Any]]) -> offline.Answer:
            call = CALL.get()
            calls.append(
                {
                    "messages": messages,
                    "tier": call.tier if call else None,
                    "schema": call.schema if call else None,
                    "tools": call.tools if call else None,
                }
            )
            chosen = answers[min(len(calls) - 1, len(answers) - 1)]
            return chosen if isinstance(chosen, str) else offline.ToolRound(list(chosen))

        offline.script(node, fn=respond)


@pytest.fixture
def scripted_llm() -> Iterator[Scripts]:
    """Script the offline provider per node for one test (forgotten after it)."""
    offline.clear()
    try:
        yield Scripts()
    finally:
        offline.clear()


def tool_call(name: str, call_id: str = "c1", **arguments: Any) -> dict[str, Any]:
    """A tool call the scripted model asks for (in a list: one round of calls)."""
    return {"id": call_id, "name": name, "arguments": arguments}
