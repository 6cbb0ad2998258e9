"""The models file: each tier's fallback chain of litellm model ids, and the cooldowns.

Nodes name a tier (``fast``, ``standard``, ``expert`` or one the file defines), never a
model, so switching providers is a change of this file (and the provider's API key)::

    tiers:
      fast: [openai/gpt-4o-mini]
      standard: [openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest]
      expert: [anthropic/claude-sonnet-4-20250514, openai/gpt-4o]
    cooldown:
      base_s: {rate_limit: 30, timeout: 10, server_error: 15}
      cap_s: 600
    timeout_s: 120

Without a file every tier calls the offline provider (``offline/fast``, ``offline/standard``,
``offline/expert``). No litellm import here.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from temporalio.exceptions import ApplicationError

from graphrunner.errors import GraphrunnerError

__all__ = [
    "BUILTIN_TIERS",
    "CooldownPolicy",
    "ErrorKind",
    "LlmFailure",
    "ModelsConfig",
    "load_models",
]

BUILTIN_TIERS = ("fast", "standard", "expert")
OFFLINE_PREFIX = "offline/"
MAX_TIERS = 32
MAX_CHAIN = 16


class LlmFailure(StrEnum):
    """``ApplicationError.type`` of the failures the LLM runtime raises."""

    UNAVAILABLE = "LlmUnavailable"  # retryable: every model of the chain cooling or failing
    REJECTED = "LlmRequestRejected"  # non-retryable: a model refused the request itself
    UNKNOWN_TIER = "LlmUnknownTier"  # non-retryable: the models file has no such tier


class ErrorKind(StrEnum):
    """Why a model call failed, as the runtime classifies litellm's exceptions."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"  # 5xx and connection errors
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    CONTEXT_WINDOW = "context_window"
    CONTENT_POLICY = "content_policy"

    @property
    def retryable(self) -> bool:
        """Whether another model (or a later attempt) may succeed where this one failed."""
        return self in (ErrorKind.RATE_LIMIT, ErrorKind.TIMEOUT, ErrorKind.SERVER_ERROR)


TierName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Fits gr_model_cooldowns.model (VARCHAR 255) with the "offline/" prefix offline mode adds.
ModelId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@/+-]+$", min_length=1, max_length=240)
]


class CooldownBases(BaseModel):
    """First cooldown after a failure of each retryable kind, in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limit: float = Field(default=30.0, gt=0, le=86400)
    timeout: float = Field(default=10.0, gt=0, le=86400)
    server_error: float = Field(default=15.0, gt=0, le=86400)


class CooldownPolicy(BaseModel):
    """Exponential cooldown: ``base_s[kind] * 2**(failures - 1)``, at most ``cap_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: CooldownBases = Field(default_factory=CooldownBases)
    cap_s: float = Field(default=600.0, gt=0, le=86400)

    def seconds(self, kind: ErrorKind, failures: int) -> float:
        """How long a model that failed ``failures`` times in a row (last: ``kind``) cools."""
        base: float = getattr(self.base_s, kind.value)
        return float(min(self.cap_s, base * 2 ** min(max(failures, 1) - 1, 60)))


def _default_tiers() -> dict[str, list[str]]:
    return {tier: [OFFLINE_PREFIX + tier] for tier in BUILTIN_TIERS}


class ModelsConfig(BaseModel):
    """Tiers and their fallback chains, the cooldown policy and the call timeout.

    Attributes:
        tiers: Tier name -> ordered litellm model ids (at most 32 tiers, 16 models each).
        cooldown: How long a model that failed retryably is skipped by every worker.
        timeout_s: Timeout of one model call (litellm's ``timeout``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: dict[TierName, Annotated[list[ModelId], Field(min_length=1, max_length=MAX_CHAIN)]] = (
        Field(default_factory=_default_tiers, max_length=MAX_TIERS)
    )
    cooldown: CooldownPolicy = Field(default_factory=CooldownPolicy)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a chain that names one model twice (it would be tried twice)."""
        for tier, chain in self.tiers.items():
            doubled = sorted({m for m in chain if chain.count(m) > 1})
            if doubled:
                raise ValueError(f"tier '{tier}' names {', '.join(doubled)} more than once")

    def chain(self, tier: str) -> list[str]:
        """The fallback chain of ``tier``.

        Raises:
            ApplicationError: Non-retryable ``LlmUnknownTier``, naming the configured tiers.
        """
        try:
            return list(self.tiers[tier])
        except KeyError:
            raise ApplicationError(
                f"unknown LLM tier '{tier}': the models file defines "
                f"{', '.join(sorted(self.tiers)) or 'no tiers'} (GRAPHRUNNER_MODELS)",
                type=LlmFailure.UNKNOWN_TIER,
                non_retryable=True,
            ) from None


def load_models(path: Path | None) -> ModelsConfig:
    """Read and validate the models file; None gives the default (offline) config.

    Raises:
        GraphrunnerError: The file cannot be read or does not validate (naming the field).
    """
    if path is None:
        return ModelsConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GraphrunnerError(f"cannot read models file {path}: {exc}") from None
    try:
        return ModelsConfig.model_validate(raw if raw is not None else {})
    except (ValidationError, ValueError) as exc:
        raise GraphrunnerError(f"invalid models file {path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        return f"{where}: {first['msg']}"
    return re.sub(r"\s+", " ", str(exc))
