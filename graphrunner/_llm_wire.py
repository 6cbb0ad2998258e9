"""What crosses Temporal between the rounds of a built-in LLM task that calls tools.

The LLM activity (``graphrunner.run_task`` with a `LlmTurn`) returns the tool calls the model
asked for (`ToolRound`); the workflow runs each as a ``graphrunner.run_tool`` activity
(`ToolCallInput`) and calls the LLM activity again with their results. The conversation so
far travels as a blob reference once it is larger than `INLINE_CONVERSATION_BYTES` (when the
worker has a blob store), so a long conversation grows history by a bounded amount per round.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INLINE_CONVERSATION_BYTES",
    "MAX_TOOL_RESULT_CHARS",
    "RUN_TOOL",
    "LlmTurn",
    "ToolOutcome",
    "ToolRequest",
    "ToolRound",
]

RUN_TOOL: Final = "graphrunner.run_tool"
INLINE_CONVERSATION_BYTES: Final = 4 * 1024
"""A conversation larger than this (JSON bytes) goes to the blob store between rounds."""
MAX_TOOL_RESULT_CHARS: Final = 16 * 1024
"""Characters of one tool result the model is shown (the record keeps it whole)."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolRequest(_Wire):
    """One tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolOutcome(_Wire):
    """What one tool call gave the model: its result (or error) as JSON text."""

    id: str
    name: str
    content: str


class ToolRound(_Wire):
    """The LLM activity's answer when the model asked for tools: the calls, the conversation.

    Exactly one of ``messages`` (inline) and ``messages_ref`` (a blob URI) is set.
    """

    calls: list[ToolRequest]
    messages: list[dict[str, Any]] | None = None
    messages_ref: str | None = None


class Spent(_Wire):
    """Tokens and cost of model calls (bounded as `graphrunner.Telemetry` is)."""

    tokens_in: int = Field(default=0, ge=0, le=2**53)
    tokens_out: int = Field(default=0, ge=0, le=2**53)
    cost_usd: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)


class LlmTurn(_Wire):
    """A later round of an LLM task: the conversation so far and the tools' results.

    Attributes:
        round: This round's number (the first, which has no turn, is 1).
        attempts_before: Attempts the earlier rounds took: this round's record counts on
            from them, so the task's one execution record keeps its newest round.
        spent_before: What the earlier rounds' model calls spent: the task's record adds
            this round's to it, so it shows the whole task's tokens and cost (the workflow
            and the guardrails counted each round as it came back).
        messages: The conversation, inline; or ``messages_ref``, its blob URI.
        results: The results of the tool calls the previous round asked for, in order.
    """

    round: int = Field(ge=2)
    attempts_before: int = Field(default=0, ge=0)
    spent_before: Spent | None = None
    messages: list[dict[str, Any]] | None = None
    messages_ref: str | None = None
    results: list[ToolOutcome] = Field(default_factory=list)
