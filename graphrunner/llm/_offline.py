"""The offline provider: a litellm ``CustomLLM`` that answers deterministically.

Registered as litellm provider ``offline`` (`graphrunner.llm._litellm`), so an offline call
goes through ``litellm.acompletion`` like a real one: cost map, exceptions, response types.
Its answer is a function of the messages (or of the node's script, `graphrunner.llm.offline`);
token counts are ~4 characters a token; structured output fits the requested JSON Schema.
Only imported once litellm is.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphrunner.llm._litellm import prepare_import
from graphrunner.llm.offline import SCRIPTS, Failure, ToolRound

prepare_import()  # before the import: no cost-map fetch, no .env loading
# Any: litellm exports its names without __all__; this module only builds its objects.
litellm: Any = importlib.import_module("litellm")

__all__ = ["CALL", "OfflineCall", "example", "offline_handler"]

_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class OfflineCall:
    """Who is calling, set by the runtime around each ``acompletion``."""

    node: str
    lifetime: str
    tier: str
    schema: dict[str, Any] | None
    tools: list[dict[str, Any]] | None


CALL: ContextVar[OfflineCall | None] = ContextVar("graphrunner_offline_call", default=None)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN))


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content, default=str))
    return "\n".join(parts)


def _default_answer(model: str, messages: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    last = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    quoted = " ".join(last.split())[:200]
    return f"Offline answer {digest[:12]} from {model} to: {quoted}"


def example(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value that fits the JSON Schema ``schema``, built deterministically from it."""
    root = schema if root is None else root
    if depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if options:
            chosen = next((o for o in options if o.get("type") != "null"), options[0])
            return example(chosen, root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = str(schema.get("title") or schema.get("description") or "text")
    return text.ljust(int(schema.get("minLength", 0)), "x")[: schema.get("maxLength") or None]


def _raise(failure: Failure, model: str) -> None:
    message = f"offline provider: injected {failure.error} for {model}"
    provider = "offline"
    error: Exception
    if failure.error == "rate_limit":
        error = litellm.RateLimitError(message, llm_provider=provider, model=model)
    elif failure.error == "timeout":
        error = litellm.Timeout(message, model=model, llm_provider=provider)
    elif failure.error == "server_error":
        error = litellm.InternalServerError(message, llm_provider=provider, model=model)
    elif failure.error == "auth":
        error = litellm.AuthenticationError(message, llm_provider=provider, model=model)
    elif failure.error == "not_found":
        error = litellm.NotFoundError(message, model=model, llm_provider=provider)
    elif failure.error == "context_window":
        error = litellm.ContextWindowExceededError(message, model=model, llm_provider=provider)
    elif failure.error == "content_policy":
        error = litellm.ContentPolicyViolationError(message, model=model, llm_provider=provider)
    else:
        error = litellm.BadRequestError(message, model=model, llm_provider=provider)
    raise error


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or {}
        schema = inner.get("schema")
        return schema if isinstance(schema, dict) else None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def _tool_calls(wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style tool calls; ids given, or derived from the call (deterministic)."""
    calls = []
    for index, one in enumerate(wanted):
        arguments = json.dumps(one.get("arguments", {}), sort_keys=True)
        digest = hashlib.sha256(f"{index}:{one.get('name')}:{arguments}".encode())
        calls.append(
            {
                "id": str(one.get("id") or f"call_{digest.hexdigest()[:16]}"),
                "type": "function",
                "function": {"name": str(one.get("name", "")), "arguments": arguments},
            }
        )
    return calls


def answer(model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> Any:
    """The offline provider's `litellm.ModelResponse` to one call (or its injected failure)."""
    call = CALL.get()
    full = "offline/" + model
    script = SCRIPTS.match(call.node, call.lifetime, call.tier) if call else None
    if script is not None:
        failure = script.failure_for(full)
        if failure is not None:
            _raise(failure, full)
    tools = optional_params.get("tools") or (call.tools if call else None)
    schema = _schema_of(optional_params.get("response_format")) or (call.schema if call else None)
    tool_calls: list[dict[str, Any]] = []
    content: str | None
    if (
        script is not None
        and script.tool_calls
        and tools
        and not any(m.get("role") == "tool" for m in messages)
    ):
        tool_calls = _tool_calls(script.tool_calls)
        content = None
    else:
        scripted = script.next_answer(messages) if script is not None else None
        if isinstance(scripted, ToolRound):
            tool_calls = _tool_calls(scripted.calls)
            scripted = ""
        if scripted is None:
            scripted = example(schema) if schema is not None else _default_answer(full, messages)
        content = scripted if isinstance(scripted, str) else json.dumps(scripted)
    out_text = (content or "") + "".join(json.dumps(t) for t in tool_calls)
    prompt_tokens = _tokens(_prompt_text(messages)) + 4 * len(messages)
    completion_tokens = _tokens(out_text)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return litellm.ModelResponse(
        model=full,
        choices=[
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        usage=litellm.Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )


def offline_handler() -> Any:
    """A new instance of the offline provider's `litellm.CustomLLM`."""

    class OfflineLLM(litellm.CustomLLM):  # type: ignore[misc]
        """Answers every call deterministically, or as the node's script says."""

        def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
            return answer(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(
            self, model: str, messages: list[Any], *args: Any, **kwargs: Any
        ) -> Any:
            return answer(model, messages, kwargs.get("optional_params") or {})

    return OfflineLLM()
