"""LLM calls from nodes: tiers, failover, shared cooldowns, the offline provider, telemetry.

A node calls ``await ctx.llm.complete(messages, tier="standard")``. The tier names an ordered
fallback chain of litellm model ids in the models file (``GRAPHRUNNER_MODELS``); a model that
fails retryably (rate limit, timeout, 5xx) cools down for every worker sharing the state DB,
and the call moves down the chain. Without provider keys (or with ``GRAPHRUNNER_LLM=offline``)
every model resolves to the offline provider, which answers deterministically and can be
scripted (`graphrunner.llm.offline`). Importing this package never imports litellm.
"""

from graphrunner.llm._config import (
    BUILTIN_TIERS,
    CooldownPolicy,
    ErrorKind,
    LlmFailure,
    ModelsConfig,
    load_models,
)
from graphrunner.llm._cooldowns import CooldownStore, MemoryCooldowns, ModelCooldown
from graphrunner.llm._runtime import AttemptLlm, LlmRuntime, provider_keys_set
from graphrunner.llm._types import LlmClient, LlmReply, LlmUsage, ToolCall

__all__ = [
    "BUILTIN_TIERS",
    "AttemptLlm",
    "CooldownPolicy",
    "CooldownStore",
    "ErrorKind",
    "LlmClient",
    "LlmFailure",
    "LlmReply",
    "LlmRuntime",
    "LlmUsage",
    "MemoryCooldowns",
    "ModelCooldown",
    "ModelsConfig",
    "ToolCall",
    "load_models",
    "provider_keys_set",
]
