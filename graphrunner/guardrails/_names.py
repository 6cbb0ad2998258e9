"""What the names in an expression mean: vocabularies, and the one of guardrail rules.

The expression language is one (lexer, parser, type checker, evaluator); what its names mean
depends on where an expression is used. Guardrail rules read the telemetry fields of
executions (`graphrunner.guardrails._ast.FIELDS`) and ``state.<field>``, a number field of the
lifetime state (`RULES`). Edge conditions read the results a plan got and the graph's
declared state (`graphrunner.graph._routing` makes their vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from graphrunner.guardrails._ast import FIELDS, STATE, ExprType

__all__ = ["RULES", "UnknownName", "Vocabulary"]


class UnknownName(Exception):
    """A name the vocabulary does not know; ``offset`` is where in the name the problem is."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, kw_only=True)
class Vocabulary:
    """The names one kind of expression may use.

    Attributes:
        fields: Plain names read as telemetry fields of an execution (`Field` nodes).
        resolve: The type of any other name, plain or dotted (a `Name` node): None when the
            name takes the type its use needs (``output.score > 3`` reads a number); raises
            `UnknownName` for a name that means nothing here.
    """

    fields: Mapping[str, ExprType]
    resolve: Callable[[str], ExprType | None]


def _rule_name(text: str) -> ExprType | None:
    root, dot, rest = text.partition(".")
    if root == STATE:
        if not rest or "." in rest:
            raise UnknownName("a state field is read as state.<field>, e.g. state.retries")
        # Rules read number fields only; a graph's own policy is checked against its
        # declared state when the graph is validated.
        return ExprType.NUMBER
    if dot and root in FIELDS:
        raise UnknownName(
            "attribute access is not supported: fields are plain names (only "
            "state.<field> has a dot)",
            len(root),
        )
    known = ", ".join([*sorted(FIELDS), "state.<field>"])
    hint = " (fields are plain names; a.b is not supported)" if dot else ""
    raise UnknownName(f"unknown field {root!r}{hint}; expected one of: {known}")


#: Guardrail rules: telemetry fields, and ``state.<field>`` (a number).
RULES = Vocabulary(fields=FIELDS, resolve=_rule_name)
