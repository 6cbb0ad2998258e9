"""Evaluate a checked expression tree over the executions in scope.

Evaluation is total: it never raises on a tree that `parse_expression` produced, whatever
the context holds, so a guardrail check can never fail a workflow task. Three rules make it
so, each chosen so that a rule over missing data does not fire by accident:

* ``x / 0`` and ``x % 0`` are ``0``. A ratio over nothing (``sum(cost_usd) / count()`` before
  any execution) is then "nothing consumed", which keeps ``>`` budget caps quiet; NaN would
  instead make ``not (x < 1)`` true, and raising would break the check.
* sum, count, max, min and avg over no executions are ``0``.
* A field missing from an execution (or not a number where a number is expected) reads as
  ``0`` or ``""``; ``tokens_used`` defaults to ``tokens_in + tokens_out``.

Numbers are evaluated as floats (token counts stay exact up to 2**53).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from graphrunner.guardrails._ast import (
    ORDERING,
    Aggregate,
    Binary,
    Boolean,
    Expr,
    ExprType,
    Field,
    Number,
    String,
    Unary,
    type_of,
)

__all__ = ["EvalContext", "Value", "evaluate"]

#: What an expression evaluates to: a boolean, a number or a string.
Value = bool | float | str

Row = Mapping[str, object]


@dataclass(frozen=True, kw_only=True)
class EvalContext:
    """What an expression is evaluated against.

    Each execution is a mapping of field names to values, e.g. ``ExecutionRecord.model_dump()``:
    numbers (int, float or Decimal) for the numeric fields, strings (or string enums) for
    ``node``, ``kind``, ``model`` and ``status``.

    Attributes:
        current: The execution being checked; bare fields outside aggregates read from it.
        executions: The executions in the rule's scope, which aggregates range over.
        elapsed_s: Seconds since the lifetime started.
    """

    current: Row = field(default_factory=dict)
    executions: Sequence[Row] = ()
    elapsed_s: float = 0.0


def evaluate(node: Expr, context: EvalContext) -> Value:
    """Evaluate a type-checked tree; never raises (see the module docstring for the rules).

    Args:
        node: A tree from `parse_expression`.
        context: The current execution, the executions in scope and the elapsed time.

    Returns:
        A bool, float or str, according to `type_of(node)`.
    """
    return _value(node, context.current, context)


def _value(node: Expr, row: Row, ctx: EvalContext) -> Value:
    kind = type_of(node)
    if kind is ExprType.BOOLEAN:
        return _boolean(node, row, ctx)
    if kind is ExprType.NUMBER:
        return _number(node, row, ctx)
    return _string(node, row)


def _boolean(node: Expr, row: Row, ctx: EvalContext) -> bool:
    match node:
        case Boolean(value):
            return value
        case Unary(_, operand):
            return not _boolean(operand, row, ctx)
        case Binary("and", left, right):
            return _boolean(left, row, ctx) and _boolean(right, row, ctx)
        case Binary("or", left, right):
            return _boolean(left, row, ctx) or _boolean(right, row, ctx)
        case Binary(op, left, right) if op in ORDERING:
            a, b = _number(left, row, ctx), _number(right, row, ctx)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        case Binary(op, left, right):
            equal = _value(left, row, ctx) == _value(right, row, ctx)
            return equal if op == "==" else not equal
    return False


def _number(node: Expr, row: Row, ctx: EvalContext) -> float:
    match node:
        case Number(value):
            return float(value)
        case Field("elapsed_s"):
            return float(ctx.elapsed_s)
        case Field(name):
            return _read_number(row, name)
        case Unary(_, operand):
            return -_number(operand, row, ctx)
        case Binary(op, left, right):
            return _arithmetic(op, _number(left, row, ctx), _number(right, row, ctx))
        case Aggregate(func, arg, where):
            return _aggregate(func, arg, where, ctx)
    return 0.0


def _string(node: Expr, row: Row) -> str:
    match node:
        case String(value):
            return value
        case Field(name):
            found = row.get(name)
            return found if isinstance(found, str) else "" if found is None else str(found)
    return ""


def _arithmetic(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return 0.0
    return a / b if op == "/" else a % b


def _aggregate(func: str, arg: Expr | None, where: Expr | None, ctx: EvalContext) -> float:
    rows = [row for row in ctx.executions if where is None or _boolean(where, row, ctx)]
    if func == "count":
        return float(sum(1 for row in rows if arg is None or _boolean(arg, row, ctx)))
    values = [_number(arg, row, ctx) for row in rows] if arg is not None else []
    if not values:
        return 0.0
    if func == "max":
        return max(values)
    if func == "min":
        return min(values)
    total = sum(values)
    return total / len(values) if func == "avg" else total


def _read_number(row: Row, name: str) -> float:
    if name == "tokens_used" and name not in row:
        return _read_number(row, "tokens_in") + _read_number(row, "tokens_out")
    value = row.get(name)
    if not isinstance(value, int | float | Decimal):
        return 0.0
    try:
        return float(value)
    except (OverflowError, ValueError):  # an int past float range, a signalling NaN
        return 0.0
