"""What crosses Temporal for a human-input step: the request, an answer, its outcome.

A human task's wait happens in the lifetime workflow. A person answers through the
``graphrunner.respond`` update (validated: a refused answer leaves no trace in history) or the
``graphrunner.answer`` signal (same payload; a refused one is recorded in the lifetime and
shown in ``status`` and the Web UI). The answer is then written as the step's execution
record by the ``graphrunner.record_human`` local activity (kind ``human``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphrunner._types import TaskCall

__all__ = [
    "ANSWER_SIGNAL",
    "PENDING_QUERY",
    "RECORD_HUMAN",
    "RESPOND_UPDATE",
    "HumanAnswer",
    "HumanCall",
    "HumanOutcome",
    "HumanRequest",
    "RefusedAnswer",
]

RESPOND_UPDATE = "graphrunner.respond"
ANSWER_SIGNAL = "graphrunner.answer"
PENDING_QUERY = "graphrunner.pending"
RECORD_HUMAN = "graphrunner.record_human"
MAX_BY = 255


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HumanAnswer(_Model):
    """An answer to a human-input step (the update's and the signal's payload).

    Attributes:
        node: The human task that asked.
        request_id: The request answered (`HumanRequest.request_id`); needed only when
            several requests of one node wait at once (a fan-out). A request already
            answered returns its first outcome.
        data: The answer; it must fit the task's response schema.
        by: Who answers (an identity string kept in the execution record).
    """

    node: str = Field(min_length=1, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    data: Any = None
    by: str = Field(default="", max_length=MAX_BY)


class HumanRequest(_Model):
    """A question a lifetime is waiting on (the ``graphrunner.pending`` query, the memo).

    Attributes:
        lifetime_id: The lifetime that asks.
        request_id: The request's id (the step's execution id).
        node: The human task.
        iteration: Its iteration.
        question: The rendered prompt.
        schema_: The JSON Schema an answer must fit (``schema`` in JSON).
        since: When the lifetime started waiting.
        deadline: When ``timeout_s`` passes (None: never).
        on_timeout: What happens then: ``fail`` or ``respond``.
        assignee: Who should answer.
        labels: The task's labels.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    lifetime_id: str = ""
    request_id: str
    node: str
    iteration: int
    question: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    since: datetime
    deadline: datetime | None = None
    on_timeout: str = "fail"
    assignee: str | None = None
    labels: list[str] = Field(default_factory=list)


class HumanOutcome(_Model):
    """What became of a request: answered (by whom, when, with what) or timed out.

    Attributes:
        request_id: The request.
        node: The human task.
        iteration: Its iteration.
        data: The answer the lifetime went on with (the default on a timeout).
        by: Who answered (``timeout`` when the deadline answered).
        via: ``update``, ``signal`` or ``timeout``.
        answered_at: When (workflow time).
        waited_ms: How long the lifetime waited.
        duplicate: True when this answer came after the request was settled; ``data``,
            ``by`` and ``answered_at`` are then the first answer's.
    """

    request_id: str
    node: str
    iteration: int
    data: Any = None
    by: str = ""
    via: str = "update"
    answered_at: datetime
    waited_ms: float = 0.0
    duplicate: bool = False


class RefusedAnswer(_Model):
    """A signalled answer the lifetime refused (an update's refusal goes to its caller)."""

    node: str = ""
    request_id: str | None = None
    by: str = ""
    reason: str
    at: datetime


class HumanCall(TaskCall):
    """Input of the ``graphrunner.record_human`` local activity: the step and its answer."""

    by: str = ""
    via: str = "update"
    asked_at: datetime | None = None
    answered_at: datetime | None = None
    waited_ms: float = 0.0

    @property
    def record_kind(self) -> str:
        """``human``: what execution records and guardrail rules call this step."""
        return "human"
