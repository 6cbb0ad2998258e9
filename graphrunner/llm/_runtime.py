"""The LLM runtime: tiers, failover down a chain, shared cooldowns, telemetry.

One `LlmRuntime` per worker; each node attempt gets its own `AttemptLlm` (``ctx.llm``), whose
`usage` the node activity adds to the attempt's telemetry, failed attempts included. Every
call is ``litellm.acompletion`` with ``num_retries=0``: Temporal owns retries, so each
attempt is visible in the lifetime's history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from temporalio.exceptions import ApplicationError

from graphrunner.errors import GraphrunnerError
from graphrunner.llm._config import OFFLINE_PREFIX, LlmFailure, ModelsConfig, load_models
from graphrunner.llm._cooldowns import CooldownStore, MemoryCooldowns, ModelCooldown, now_utc
from graphrunner.llm._types import LlmReply, LlmUsage, ToolCall

__all__ = ["AttemptLlm", "LlmRuntime", "NoLlm", "provider_keys_set"]

_log = logging.getLogger("graphrunner.llm")
_MESSAGE_LIMIT = 500  # characters of a provider's error message kept in ours
_MIN_RETRY_DELAY = timedelta(seconds=1)

# API key variables of the providers litellm calls most; with none set, "auto" is offline.
PROVIDER_KEYS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "VERTEXAI_PROJECT",
    "AZURE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "GROQ_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHERAI_API_KEY",
    "FIREWORKS_AI_API_KEY",
    "OLLAMA_API_BASE",
)


def provider_keys_set(environ: Mapping[str, str] | None = None) -> list[str]:
    """The provider API key variables set in ``environ`` (default: the process's)."""
    env = os.environ if environ is None else environ
    return [key for key in PROVIDER_KEYS if env.get(key)]


class LlmRuntime:
    """A worker's model calls: its models config, cooldown store and offline switch.

    Args:
        config: Tiers, chains, cooldown policy.
        cooldowns: Shared (state DB) or this process's.
        offline: Every model resolves to the offline provider.
        script: An offline script file to load (``GRAPHRUNNER_LLM_SCRIPT``).
    """

    def __init__(
        self,
        config: ModelsConfig | None = None,
        *,
        cooldowns: CooldownStore | None = None,
        offline: bool = True,
        script: Path | None = None,
    ) -> None:
        self.config = config or ModelsConfig()
        self.cooldowns: CooldownStore = cooldowns or MemoryCooldowns()
        self.offline = offline
        self.script = script
        self._unpriced: set[str] = set()  # warned once per model per process
        if script is not None:
            from graphrunner.llm.offline import SCRIPTS

            SCRIPTS.load_file(script)

    @classmethod
    def from_settings(
        cls,
        *,
        models: Path | None,
        mode: Literal["auto", "offline", "live"],
        script: Path | None,
        cooldowns: CooldownStore | None,
        environ: Mapping[str, str] | None = None,
    ) -> LlmRuntime:
        """The runtime the settings describe (the models file is read and validated now).

        Raises:
            GraphrunnerError: The models or script file is invalid.
        """
        offline = mode == "offline" or (mode == "auto" and not provider_keys_set(environ))
        return cls(load_models(models), cooldowns=cooldowns, offline=offline, script=script)

    def resolve(self, model: str) -> str:
        """The model a call goes to: ``model``, or its offline stand-in in offline mode."""
        if self.offline and not model.startswith(OFFLINE_PREFIX):
            return OFFLINE_PREFIX + model
        return model

    def client(self, *, node: str, lifetime_id: str) -> AttemptLlm:
        """``ctx.llm`` for one node attempt."""
        return AttemptLlm(self, node=node, lifetime_id=lifetime_id)

    def cost(self, litellm: Any, response: Any, model: str) -> float:
        """The call's cost from litellm's local cost map; 0 (warned once) when unpriced.

        An offline stand-in for a real model (``offline/openai/gpt-4o-mini``) is priced as
        that model (``model`` is the configured id).
        """
        try:
            cost = float(litellm.completion_cost(completion_response=response, model=model))
        except Exception as exc:  # litellm raises a variety for a model it cannot price
            if model not in self._unpriced:
                self._unpriced.add(model)
                _log.warning("model %s has no price in litellm's cost map (%s): cost 0", model, exc)
            return 0.0
        return cost if cost >= 0 and cost == cost else 0.0

    async def aclose(self) -> None:
        """Close litellm's cached HTTP clients (if litellm was imported at all)."""
        from graphrunner.llm._litellm import close_clients

        await close_clients()


class AttemptLlm:
    """`LlmClient` of one node attempt: ``ctx.llm``."""

    def __init__(self, runtime: LlmRuntime, *, node: str, lifetime_id: str) -> None:
        self.runtime = runtime
        self.node = node
        self.lifetime_id = lifetime_id
        self._usage = LlmUsage()

    @property
    def usage(self) -> LlmUsage:
        """What this node attempt's calls spent so far."""
        return self._usage

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

        Raises:
            ApplicationError: ``LlmUnavailable`` (retryable) when every model is cooling or
                failed retryably; ``LlmRequestRejected`` (non-retryable) when a model refused
                the request (bad request, auth, not found, context window, content policy);
                ``LlmUnknownTier`` (non-retryable) for a tier the models file lacks.
        """
        from graphrunner.llm._litellm import classify, litellm

        runtime = self.runtime
        configured = runtime.config.chain(tier)
        # First: it sets litellm up before anything else imports it. The first import takes
        # seconds: in a thread, so that the worker's event loop (heartbeats) keeps running.
        lm = await asyncio.to_thread(litellm)
        from graphrunner.llm._offline import CALL, OfflineCall

        chain = [runtime.resolve(m) for m in configured]
        priced_as = dict(zip(chain, configured, strict=True))
        states = await runtime.cooldowns.get(chain)
        schema = _schema(response_format)
        options: dict[str, Any] = {}
        if schema is not None:
            options["response_format"] = _openai_format(response_format or {}, schema)
        if tools:
            options["tools"] = tools
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        skipped: list[tuple[str, str]] = []
        cooling: dict[str, ModelCooldown] = {}
        for model in chain:
            state = states.get(model)
            now = now_utc()
            if state is not None and state.cooling(now):
                cooling[model] = state
                skipped.append((model, _cooling_reason(state)))
                continue
            token = CALL.set(OfflineCall(self.node, self.lifetime_id, tier, schema, tools))
            clock = time.monotonic()
            try:
                response = await lm.acompletion(
                    model=model,
                    messages=messages,
                    num_retries=0,
                    timeout=runtime.config.timeout_s,
                    **options,
                )
            except Exception as exc:
                kind = classify(exc)
                if kind is None:
                    raise
                reason = f"{kind.value}: {_short(exc)}"
                if not kind.retryable:
                    raise ApplicationError(
                        f"model {model} (tier '{tier}') rejected the request, {reason}",
                        type=LlmFailure.REJECTED,
                        non_retryable=True,
                    ) from None
                cooled = await runtime.cooldowns.failed(
                    model, kind, _short(exc), runtime.config.cooldown
                )
                cooling[model] = cooled
                skipped.append((model, f"{reason} (cooling until {_at(cooled.cooling_until)})"))
                continue
            finally:
                CALL.reset(token)
            latency_ms = (time.monotonic() - clock) * 1000
            if state is not None and state.failures:
                await runtime.cooldowns.succeeded(model)
            reply = _reply(runtime, lm, response, model, priced_as[model], latency_ms, skipped)
            self._usage.add(reply)
            return reply
        raise _unavailable(tier, skipped, cooling)


def _schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON Schema a caller asked for: given raw, or in OpenAI's ``json_schema`` wrapper."""
    if response_format is None or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or {}
        schema = inner.get("schema")
        return schema if isinstance(schema, dict) else {}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return response_format


def _openai_format(given: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if given.get("type") in ("json_schema", "json_object"):
        return given
    name = str(schema.get("title") or "answer")
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": safe, "schema": schema}}


def _reply(
    runtime: LlmRuntime,
    lm: Any,
    response: Any,
    model: str,
    price_model: str,
    latency_ms: float,
    skipped: list[tuple[str, str]],
) -> LlmReply:
    message = response.choices[0].message
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        raw = call.function.arguments or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = {"_raw": raw}
        if not isinstance(arguments, dict):
            arguments = {"_value": arguments}
        calls.append(ToolCall(id=str(call.id), name=str(call.function.name), arguments=arguments))
    usage = getattr(response, "usage", None)
    return LlmReply(
        text=message.content or "",
        model=model,
        tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
        tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=runtime.cost(lm, response, price_model),
        latency_ms=round(latency_ms, 3),
        tool_calls=calls,
        skipped=list(skipped),
    )


def _unavailable(
    tier: str, skipped: list[tuple[str, str]], cooling: dict[str, ModelCooldown]
) -> ApplicationError:
    """Retryable: Temporal tries the attempt again when the soonest model cools down."""
    until = [s.cooling_until for s in cooling.values() if s.cooling_until is not None]
    delay: timedelta | None = None
    if until:
        delay = max(min(until) - now_utc(), _MIN_RETRY_DELAY)
    why = "; ".join(f"{model}: {reason}" for model, reason in skipped)
    return ApplicationError(
        f"no model of tier '{tier}' is available: {why}",
        type=LlmFailure.UNAVAILABLE,
        next_retry_delay=delay,
    )


def _cooling_reason(state: ModelCooldown) -> str:
    return (
        f"cooling down until {_at(state.cooling_until)} after {state.failures} "
        f"{state.last_error or 'failure'}(s) in a row"
    )


def _at(moment: datetime | None) -> str:
    return moment.isoformat(timespec="milliseconds") if moment else "-"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


class NoLlm:
    """``ctx.llm`` of a context built outside a worker: every call fails, saying why."""

    @property
    def usage(self) -> LlmUsage:
        """Nothing spent."""
        return LlmUsage()

    async def complete(self, messages: list[dict[str, Any]], **options: Any) -> LlmReply:
        """Refuse: model calls need a graphrunner worker's LLM runtime."""
        raise GraphrunnerError(
            "ctx.llm is only available in a node run by a graphrunner worker (build_worker)"
        )
