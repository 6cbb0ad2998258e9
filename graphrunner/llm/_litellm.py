"""litellm, imported on the first model call (never by workflow code or a client).

``import litellm`` costs seconds and ~190 MiB: a process that only starts lifetimes, and the
workflow sandbox, must never pay it. This module is the only place that imports it, from
inside functions; it also classifies litellm's exceptions and registers the offline provider.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from graphrunner.llm._config import OFFLINE_PREFIX, ErrorKind

__all__ = ["classify", "close_clients", "litellm"]

# Per-token prices of the offline models (USD), registered in litellm's cost map so that
# `litellm.completion_cost` prices offline calls the way it prices real ones.
OFFLINE_PRICES: dict[str, tuple[float, float]] = {
    "fast": (0.15e-6, 0.60e-6),
    "standard": (3e-6, 15e-6),
    "expert": (15e-6, 75e-6),
}


def prepare_import() -> None:
    """What the environment must say before litellm is first imported.

    The packaged cost map, never a download at import; and no ``.env`` loading: in its
    default ``LITELLM_MODE=DEV`` litellm loads ``./.env`` into the process environment at
    import, so a worker started beside a compose ``.env`` took its ``GRAPHRUNNER_*``
    values halfway through its life (settings are read once, at start, from the real
    environment). Set ``LITELLM_MODE=DEV`` to have it back.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")


def litellm() -> ModuleType:
    """litellm, imported (offline cost map, no retries) with the offline provider registered."""
    loaded = sys.modules.get("litellm")
    if loaded is not None and getattr(loaded, "_graphrunner_ready", False):
        return loaded
    prepare_import()
    import litellm as module

    module.suppress_debug_info = True  # no "Provider List: ..." banners in worker logs
    from graphrunner.llm._offline import offline_handler

    providers = list(module.custom_provider_map or [])
    if not any(p.get("provider") == "offline" for p in providers):
        providers.append({"provider": "offline", "custom_handler": offline_handler()})
        module.custom_provider_map = providers
    for name, (cost_in, cost_out) in OFFLINE_PRICES.items():
        module.model_cost[OFFLINE_PREFIX + name] = {
            "input_cost_per_token": cost_in,
            "output_cost_per_token": cost_out,
            "litellm_provider": "offline",
            "mode": "chat",
            "max_input_tokens": 200_000,
            "max_output_tokens": 32_000,
        }
    module._graphrunner_ready = True
    return module


def classify(exc: BaseException) -> ErrorKind | None:
    """The kind of a litellm failure; None for an exception that is not a model failure."""
    lm = sys.modules.get("litellm")
    if lm is None:
        return None
    # Subclasses before their bases: a context-window error is a BadRequestError.
    ordered: list[tuple[str, ErrorKind]] = [
        ("ContextWindowExceededError", ErrorKind.CONTEXT_WINDOW),
        ("ContentPolicyViolationError", ErrorKind.CONTENT_POLICY),
        ("RateLimitError", ErrorKind.RATE_LIMIT),
        ("Timeout", ErrorKind.TIMEOUT),
        ("AuthenticationError", ErrorKind.AUTH),
        ("PermissionDeniedError", ErrorKind.AUTH),
        ("NotFoundError", ErrorKind.NOT_FOUND),
        ("BadRequestError", ErrorKind.BAD_REQUEST),
        ("UnprocessableEntityError", ErrorKind.BAD_REQUEST),
        ("InternalServerError", ErrorKind.SERVER_ERROR),
        ("ServiceUnavailableError", ErrorKind.SERVER_ERROR),
        ("BadGatewayError", ErrorKind.SERVER_ERROR),
        ("APIConnectionError", ErrorKind.SERVER_ERROR),
    ]
    for name, kind in ordered:
        cls: Any = getattr(lm, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and isinstance(exc, getattr(lm, "APIError", ())):
        if status == 429:
            return ErrorKind.RATE_LIMIT
        if status == 408:
            return ErrorKind.TIMEOUT
        if status >= 500:
            return ErrorKind.SERVER_ERROR
        if status in (401, 403):
            return ErrorKind.AUTH
        if status == 404:
            return ErrorKind.NOT_FOUND
        if 400 <= status < 500:
            return ErrorKind.BAD_REQUEST
    return None


async def close_clients() -> None:
    """Close litellm's cached async HTTP clients, if this process ever imported litellm."""
    if "litellm" not in sys.modules:
        return
    try:
        cleanup: Any = importlib.import_module("litellm.llms.custom_httpx.async_client_cleanup")
    except ImportError:  # a litellm without it (it exists in the pinned 1.110.2)
        return
    await cleanup.close_litellm_async_clients()
