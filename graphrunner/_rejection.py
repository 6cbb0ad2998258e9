"""Why a guardrail rejected an execution: a leaf module that imports only pydantic.

`graphrunner.errors.GuardrailRejected` carries a `Rejection`, and `graphrunner._types`
re-exports it with the other values that cross into history. It lives apart from both because
`_types` imports the graph model, which imports `errors`: defined in either, the other could
not import it without a cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Rejection"]


class Rejection(BaseModel):
    """Why a guardrail rejected an execution; a plan sees it in place of the result.

    Attributes:
        rule: The guardrail rule that fired.
        message: The rule's message.
        condition: The rule's condition.
        observed: The values that made it fire, by sub-expression.
        phase: ``before`` (the execution never ran) or ``after`` (its result was discarded).
    """

    model_config = ConfigDict(extra="forbid")

    rule: str
    message: str = ""
    condition: str = ""
    observed: dict[str, float | str] = Field(default_factory=dict)
    phase: str = "after"
