"""STAND-IN for the LLM runtime's offline provider: replace it with the real one at merge.

The LLM runtime (tiers, fallback chains, cooldowns, the offline deterministic litellm
provider, telemetry) is built on another branch; it puts ``ctx.llm`` on `NodeContext`. Until
it lands, `scripted_llm` sets ``ctx.llm`` on every node context of this process's workers
(by wrapping the ``replace`` with which ``graphrunner.activities._nodes`` completes each
context, since ``llm`` is not a field yet) to a `ScriptedLlm` that answers
from a per-node script. Tests assert only what a user notices (outputs, records, history,
failures), so they hold on the real offline provider too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from graphrunner.activities import _nodes
from graphrunner.llm._types import LlmReply, LlmUsage, ToolCall

Answer = str | list[ToolCall] | Callable[[list[dict[str, Any]]], "str | list[ToolCall]"]


@dataclass
class ScriptedLlm:
    """``ctx.llm`` of one node execution: answers the node's script in order (the last repeats).

    ``calls`` (shared by every execution of the script) keeps what each call was asked.
    """

    node: str
    script: list[Answer]
    calls: list[dict[str, Any]]
    _usage: LlmUsage = field(default_factory=LlmUsage)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tier: str = "standard",
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LlmReply:
        index = len(self.calls)
        self.calls.append(
            {"messages": messages, "tier": tier, "schema": response_format, "tools": tools}
        )
        answer = self.script[min(index, len(self.script) - 1)]
        if callable(answer):
            answer = answer(messages)
        text, calls = (answer, []) if isinstance(answer, str) else ("", list(answer))
        reply = LlmReply(
            text=text,
            model="standin/m1",
            tokens_in=len(json.dumps(messages)) // 4,
            tokens_out=len(text) // 4 + 1,
            cost_usd=0.0,
            latency_ms=1.0,
            tool_calls=calls,
        )
        self._usage.add(reply)
        return reply

    @property
    def usage(self) -> LlmUsage:
        return self._usage


class Scripts:
    """The answers of each node's model, and what each was asked."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def set(self, node: str, *answers: Answer) -> None:
        self.scripts[node] = list(answers)
        self.calls[node] = []


@pytest.fixture
def scripted_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripts]:
    """Give every node context of this process a `ScriptedLlm` for its node's script."""
    scripts = Scripts()

    def with_llm(base: Any, **changes: Any) -> Any:
        ctx = dataclasses.replace(base, **changes)
        script = scripts.scripts.get(ctx.node)
        if script is not None:
            llm = ScriptedLlm(ctx.node, script, scripts.calls[ctx.node])
            object.__setattr__(ctx, "llm", llm)  # frozen: the runtime's own field, later
        return ctx

    monkeypatch.setattr(_nodes, "replace", with_llm)
    yield scripts


def tool_call(name: str, call_id: str = "c1", **arguments: Any) -> ToolCall:
    """A tool call the scripted model asks for."""
    return ToolCall(id=call_id, name=name, arguments=arguments)
