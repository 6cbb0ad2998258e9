"""The guardrail expression tree: immutable nodes, their types, walking and printing them.

A tree comes from `parse_expression`, which has already checked every type, so code that
walks it (the compiler in `graphrunner.guardrails._eval`, `unparse`) never meets a string
where it needs a number. The parser folds nothing: ``-5`` is ``Unary("-", Number(5))``, and a
`Number` it produces is never negative. The tree is private to the guardrails package (and
the graph validator): policies and operators deal in expression text and `Expression`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "AGGREGATES",
    "FIELDS",
    "STATE",
    "Aggregate",
    "Binary",
    "Boolean",
    "Expr",
    "ExprType",
    "Field",
    "Name",
    "Number",
    "String",
    "Unary",
    "type_of",
    "unparse",
    "walk",
]


class ExprType(StrEnum):
    """The three types an expression can have; they never mix implicitly."""

    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"


#: Every field an expression may name, with its type. Inside an aggregate a field is read
#: from each execution in scope; outside, from the execution being checked. ``elapsed_s``
#: belongs to the lifetime and reads the same everywhere.
FIELDS: Final[dict[str, ExprType]] = {
    "attempt": ExprType.NUMBER,
    "cost_usd": ExprType.NUMBER,
    "elapsed_s": ExprType.NUMBER,
    "iteration": ExprType.NUMBER,
    "kind": ExprType.STRING,
    "latency_ms": ExprType.NUMBER,
    "model": ExprType.STRING,
    "node": ExprType.STRING,
    "status": ExprType.STRING,
    "tokens_in": ExprType.NUMBER,
    "tokens_out": ExprType.NUMBER,
    "tokens_used": ExprType.NUMBER,
}

#: The root of the names that read a lifetime's declared state: ``state.<field>``.
STATE: Final = "state"

#: Aggregate functions over the executions in scope.
AGGREGATES: Final = ("avg", "count", "max", "min", "sum")

ARITHMETIC: Final = ("+", "-", "*", "/", "%")
ORDERING: Final = ("<", "<=", ">", ">=")
EQUALITY: Final = ("==", "!=")
LOGICAL: Final = ("and", "or")

#: Binding power of each binary operator (higher binds tighter); also used to print.
BINARY_POWER: Final[dict[str, int]] = {
    "or": 10,
    "and": 20,
    **dict.fromkeys(EQUALITY + ORDERING, 40),
    "+": 50,
    "-": 50,
    "*": 60,
    "/": 60,
    "%": 60,
}
NOT_POWER: Final = 30
NEGATE_POWER: Final = 70
_ATOM_POWER: Final = 100


# Nodes take positional fields (unlike graphrunner's public models) so that they work as
# `match` patterns, as Python's own ast nodes do.


@dataclass(frozen=True)
class Number:
    """A number literal (int or float; evaluation is in float)."""

    value: int | float


@dataclass(frozen=True)
class String:
    """A string literal."""

    value: str


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True)
class Field:
    """A documented field (see `FIELDS`) of an execution, or ``elapsed_s``."""

    name: str


@dataclass(frozen=True)
class Name:
    """A name of the expression's vocabulary other than a telemetry `Field`, with its type.

    ``path`` is the dotted name split at its dots: ``("state", "retries")`` for a lifetime
    state field, ``("output", "label")`` for a key of a result's output (edge conditions).
    A row holds a state field under the key ``"state.<field>"``; any other path is read from
    the row by walking its parts through nested mappings.

    ``type`` is None only while the parser has not yet seen where the name is used (a name
    such as ``output.score`` takes the type its operator needs); a checked tree never holds
    an untyped name.
    """

    path: tuple[str, ...]
    type: ExprType | None = None

    @property
    def text(self) -> str:
        """The name as written, e.g. ``state.retries``."""
        return ".".join(self.path)


@dataclass(frozen=True)
class Unary:
    """``-operand`` (a number) or ``not operand`` (a boolean)."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary:
    """Arithmetic, comparison, ``and`` or ``or``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Aggregate:
    """``func(arg where where)`` over the executions in scope.

    ``arg`` is a number for sum/max/min/avg and an optional boolean for count; ``where``
    is an optional boolean filter applied first.
    """

    func: str
    arg: Expr | None = None
    where: Expr | None = None


Expr = Number | String | Boolean | Field | Name | Unary | Binary | Aggregate


def type_of(node: Expr) -> ExprType:
    """The type of a node, read from the node alone (children are already checked)."""
    match node:
        case Number() | Aggregate():
            return ExprType.NUMBER
        case String():
            return ExprType.STRING
        case Boolean():
            return ExprType.BOOLEAN
        case Field(name):
            return FIELDS.get(name, ExprType.NUMBER)
        case Name(_, kind):
            # Untyped only inside the parser, which settles it before anything reads this.
            return kind if kind is not None else ExprType.STRING
        case Unary(op):
            return ExprType.BOOLEAN if op == "not" else ExprType.NUMBER
        case Binary(op):
            return ExprType.NUMBER if op in ARITHMETIC else ExprType.BOOLEAN


def walk(node: Expr, *, into_aggregates: bool = True) -> Iterator[Expr]:
    """Every node of a tree, parents before children.

    Args:
        node: The root.
        into_aggregates: Also visit an aggregate's argument and filter (False: stop at it).
    """
    yield node
    match node:
        case Unary(_, operand):
            yield from walk(operand, into_aggregates=into_aggregates)
        case Binary(_, left, right):
            yield from walk(left, into_aggregates=into_aggregates)
            yield from walk(right, into_aggregates=into_aggregates)
        case Aggregate(_, arg, where) if into_aggregates:
            if arg is not None:
                yield from walk(arg)
            if where is not None:
                yield from walk(where)


def unparse(node: Expr) -> str:
    """Print a tree as expression text; parsing the text gives back an equal tree.

    Parentheses appear only where precedence needs them, and strings always use double
    quotes, so the output is a canonical form of the expression.
    """
    match node:
        case Number(value):
            return repr(float(value)) if isinstance(value, float) else str(value)
        case String(value):
            return _quote(value)
        case Boolean(value):
            return "true" if value else "false"
        case Field(name):
            return name
        case Name():
            return node.text
        case Unary("not", operand):
            return "not " + _wrap(operand, NOT_POWER)
        case Unary(op, operand):
            return op + _wrap(operand, NEGATE_POWER)
        case Binary(op, left, right):
            power = BINARY_POWER[op]
            # Left-associative operators may repeat on the left without parentheses;
            # comparisons do not chain, so a comparison operand is always wrapped.
            left_min = power + 1 if op in EQUALITY + ORDERING else power
            return f"{_wrap(left, left_min)} {op} {_wrap(right, power + 1)}"
        case Aggregate(func, arg, where):
            inner = unparse(arg) if arg is not None else ""
            if where is not None:
                inner = f"{inner} where {unparse(where)}".lstrip()
            return f"{func}({inner})"


def _power(node: Expr) -> int:
    match node:
        case Binary(op):
            return BINARY_POWER[op]
        case Unary("not"):
            return NOT_POWER
        case Unary():
            return NEGATE_POWER
        case _:
            return _ATOM_POWER


def _wrap(node: Expr, minimum: int) -> str:
    text = unparse(node)
    return f"({text})" if _power(node) < minimum else text


_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: str) -> str:
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'
