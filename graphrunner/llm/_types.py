"""What node code and graphrunner's built-in LLM nodes see of a model call (no litellm here).

The contract between the LLM runtime (`graphrunner.llm`: tiers, failover, shared cooldowns,
the offline provider, telemetry) and the code that calls models (``ctx.llm`` in a Task or
Plan, and the built-in ``llm_task``, ``llm_plan`` and ``llm_judge`` nodes). Importing this
module never imports litellm: workflow code and clients that only start lifetimes stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["LlmClient", "LlmReply", "LlmUsage", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """One tool call a model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class LlmUsage:
    """What model calls spent: summed over every call of one node attempt."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    model: str = ""  # the model that answered last

    def add(self, reply: LlmReply) -> None:
        """Count one answered call."""
        self.calls += 1
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        self.cost_usd += reply.cost_usd
        self.latency_ms += reply.latency_ms
        self.model = reply.model


@dataclass(frozen=True)
class LlmReply:
    """A model's answer.

    Attributes:
        text: The completion's text ("" when the model only called tools).
        tool_calls: The tools it asked to call, in order.
        model: The litellm model id that answered (after failover, the one that worked).
        tokens_in: Prompt tokens.
        tokens_out: Completion tokens.
        cost_usd: From litellm's local cost map (0 for an unpriced model).
        latency_ms: Wall time of the successful call.
        skipped: ``(model, why)`` of each model of the tier's chain tried or skipped before
            the one that answered (cooling down, rate limited, timed out, ...).
    """

    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    tool_calls: list[ToolCall] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class LlmClient(Protocol):
    """``ctx.llm``: calls a model of a tier, walking its fallback chain.

    Every call's usage adds to the node attempt's telemetry (its execution record, the
    guardrails, ``graphrunner costs``), failed attempts included.
    """

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
        """Ask the first available model of ``tier``'s chain; fall back down it.

        ``messages`` are OpenAI-style (``{"role": ..., "content": ...}``); ``response_format``
        a JSON Schema the answer must match (checked by the caller); ``tools`` OpenAI tool
        schemas. Retryable failures (rate limits, timeouts, 5xx) cool the model down for
        every worker and move to the next; when the whole chain is cooling or failing, a
        retryable error fails the attempt (Temporal retries it). Bad requests, auth and
        context-window errors fail it at once, non-retryable.
        """
        ...

    @property
    def usage(self) -> LlmUsage:
        """What this node attempt's calls spent so far."""
        ...
