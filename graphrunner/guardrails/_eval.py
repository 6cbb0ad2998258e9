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

__all__ = ["EvalContext", "Tally", "Value", "contribution", "evaluate"]

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
        totals: Values of aggregates kept incrementally (see `graphrunner.guardrails.Tally`);
            an aggregate found here is read from it instead of being computed over
            ``executions``.
    """

    current: Row = field(default_factory=dict)
    executions: Sequence[Row] = ()
    elapsed_s: float = 0.0
    totals: Mapping[Aggregate, float] | None = None


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
        case Aggregate():
            if ctx.totals is not None and node in ctx.totals:
                return ctx.totals[node]
            return _aggregate(node, ctx)
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


def _aggregate(node: Aggregate, ctx: EvalContext) -> float:
    tally = Tally()
    for row in ctx.executions:
        tally.add(*contribution(node, row, ctx))
    return tally.value(node.func)


def contribution(node: Aggregate, row: Row, ctx: EvalContext) -> tuple[float, bool]:
    """What one execution adds to an aggregate: (value, whether it counts at all).

    An execution counts when it passes the ``where`` filter (and, for ``count(cond)``, the
    condition); the value is the aggregated number (unused by ``count``).
    """
    if node.where is not None and not _boolean(node.where, row, ctx):
        return 0.0, False
    if node.func == "count":
        return 0.0, node.arg is None or _boolean(node.arg, row, ctx)
    if node.arg is None:  # the type checker requires an argument; never count garbage
        return 0.0, False
    return _number(node.arg, row, ctx), True


@dataclass
class Tally:
    """A running aggregate: folds executions one at a time, in O(1) each.

    Keeping one per aggregate lets a guardrail check cost the same at the 1,000th execution
    of a lifetime as at the first; the state DB keeps the same four numbers per tenant.
    """

    total: float = 0.0
    count: int = 0
    lo: float | None = None
    hi: float | None = None

    def add(self, value: float, counts: bool = True) -> None:
        """Fold one execution's contribution (see `contribution`)."""
        if not counts:
            return
        self.total += value
        self.count += 1
        self.lo = value if self.lo is None else min(self.lo, value)
        self.hi = value if self.hi is None else max(self.hi, value)

    def value_with(self, func: str, value: float, counts: bool) -> float:
        """``value(func)`` as if ``add(value, counts)`` had been called, leaving self unchanged."""
        if not counts:
            return self.value(func)
        if func == "count":
            return float(self.count + 1)
        if func == "max":
            return value if self.hi is None else max(self.hi, value)
        if func == "min":
            return value if self.lo is None else min(self.lo, value)
        total = self.total + value
        return total / (self.count + 1) if func == "avg" else total

    def value(self, func: str) -> float:
        """The aggregate's value; 0 over no executions (see the module docstring)."""
        if func == "count":
            return float(self.count)
        if self.count == 0:
            return 0.0
        if func == "max":
            return self.hi if self.hi is not None else 0.0
        if func == "min":
            return self.lo if self.lo is not None else 0.0
        return self.total / self.count if func == "avg" else self.total


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
