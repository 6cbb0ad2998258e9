"""Evaluate checked expression trees, each compiled once into Python closures.

This is the one evaluator of the expression language. The interceptor checks every rule
twice per execution, so a tree is turned once (per policy) into nested closures: the
``match`` on each node, its type and the lookup of aggregate totals all happen at compile
time, and a call does only the arithmetic and the field reads (a walk of the tree per call
cost about 31 µs per rule per Task+Plan step; a closure call costs well under 1 µs). Nothing
here is ``eval`` or generated source: the closures are fixed Python functions composed by
tree shape.

Evaluation is total: a closure never raises on a tree that `parse_expression` produced,
whatever the row holds, so a guardrail check can never fail a workflow task. Three rules make
it so, each chosen so that a rule over missing data does not fire by accident:

* ``x / 0`` and ``x % 0`` are ``0``. A ratio over nothing (``sum(cost_usd) / count()`` before
  any execution) is then "nothing consumed", which keeps ``>`` budget caps quiet; NaN would
  instead make ``not (x < 1)`` true, and raising would break the check.
* sum, count, max, min and avg over no executions are ``0``.
* A field missing from an execution (or not a number where a number is expected) reads as
  ``0`` or ``""``; ``tokens_used`` defaults to ``tokens_in + tokens_out``. A `Name`
  (``state.retries``, ``output.label``) that is missing, or holds a value of another type,
  reads as ``0``, ``""`` or ``false``: a boolean is not a number, a number not a string.

Numbers are evaluated as floats (token counts stay exact up to 2**53).

Aggregates compile one of two ways. Given ``slots`` (aggregate -> index), an aggregate reads
``frame.totals[index]``, a value the caller keeps as a running `Tally`. Without a slot, it is
computed over ``frame.executions``, as execution-scope rules need.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from graphrunner.guardrails._ast import (
    EQUALITY,
    ORDERING,
    STATE,
    Aggregate,
    Binary,
    Boolean,
    Expr,
    ExprType,
    Field,
    Name,
    Number,
    String,
    Unary,
    type_of,
    unparse,
    walk,
)

__all__ = [
    "BoolFn",
    "Compiler",
    "ContributionFn",
    "Frame",
    "ObserveFn",
    "Row",
    "Tally",
    "Value",
    "evaluate",
    "state_row",
]

#: What an expression evaluates to: a boolean, a number or a string.
Value = bool | float | str

#: One execution: field names to values (numbers for the numeric fields, strings or string
#: enums for ``node``, ``kind``, ``model`` and ``status``), e.g. ``ExecutionRecord.model_dump()``,
#: and the lifetime state it saw under ``"state.<field>"`` keys (see `Name`).
Row = Mapping[str, object]


@dataclass(slots=True)
class Frame:
    """What a compiled expression reads besides the execution row it is given.

    Attributes:
        elapsed_s: Seconds since the lifetime started.
        totals: Values of the slotted aggregates, by slot.
        executions: What unslotted aggregates range over.
    """

    elapsed_s: float = 0.0
    totals: Sequence[float] = ()
    executions: Sequence[Row] = ()


BoolFn = Callable[[Row, Frame], bool]
NumberFn = Callable[[Row, Frame], float]
StringFn = Callable[[Row, Frame], str]
ValueFn = Callable[[Row, Frame], Value]
ContributionFn = Callable[[Row, Frame], tuple[float, bool]]
ObserveFn = Callable[[Row, Frame], dict[str, float | str]]

_ORDER: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PLAIN_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def state_row(state: Mapping[str, object] | None) -> dict[str, object]:
    """The lifetime state as a row holds it: ``{"state.<field>": value}`` (see `Name`)."""
    return {f"{STATE}.{name}": value for name, value in (state or {}).items()}


def evaluate(
    node: Expr,
    *,
    current: Row | None = None,
    executions: Sequence[Row] = (),
    elapsed_s: float = 0.0,
) -> Value:
    """Evaluate a tree once (compiling it first); see `Compiler` for repeated checks.

    Args:
        node: A tree from `parse_expression`.
        current: The execution bare fields read (none: every field is 0 or "").
        executions: What aggregates range over.
        elapsed_s: Seconds since the lifetime started.

    Returns:
        A bool, float or str, according to `type_of(node)`.
    """
    frame = Frame(elapsed_s=elapsed_s, executions=executions)
    return Compiler().value(node)(current or {}, frame)


class Compiler:
    """Turns checked trees into closures of ``(row, frame)``.

    Args:
        slots: Aggregates read from ``Frame.totals`` (aggregate -> index); any other
            aggregate is computed over ``Frame.executions``.
    """

    def __init__(self, slots: Mapping[Aggregate, int] | None = None) -> None:
        self._slots = dict(slots or {})

    def value(self, node: Expr) -> ValueFn:
        """The closure of any node, dispatched on the node's type once."""
        kind = type_of(node)
        if kind is ExprType.BOOLEAN:
            return self.boolean(node)
        if kind is ExprType.NUMBER:
            return self.number(node)
        return self.string(node)

    def boolean(self, node: Expr) -> BoolFn:
        """The closure of a boolean node."""
        match node:
            case Boolean(value):
                const = bool(value)
                return lambda row, frame: const
            case Unary(_, operand):
                inner = self.boolean(operand)
                return lambda row, frame: not inner(row, frame)
            case Binary("and", left, right):
                a, b = self.boolean(left), self.boolean(right)
                return lambda row, frame: a(row, frame) and b(row, frame)
            case Binary("or", left, right):
                a, b = self.boolean(left), self.boolean(right)
                return lambda row, frame: a(row, frame) or b(row, frame)
            case Name(path):
                get = _reader(path)
                return lambda row, frame: get(row) is True
            case Binary(op, left, right) if op in ORDERING:
                compare, x, y = _ORDER[op], self.number(left), self.number(right)
                return lambda row, frame: compare(x(row, frame), y(row, frame))
            case Binary(op, left, right):
                p, q = self.value(left), self.value(right)
                if op == "==":
                    return lambda row, frame: p(row, frame) == q(row, frame)
                return lambda row, frame: p(row, frame) != q(row, frame)
        return _false

    def number(self, node: Expr) -> NumberFn:
        """The closure of a numeric node."""
        match node:
            case Number(value):
                const = float(value)
                return lambda row, frame: const
            case Field("elapsed_s"):
                return _elapsed
            case Field(name):
                return lambda row, frame: _read_number(row, name)
            case Name(path):
                get = _reader(path)
                return lambda row, frame: _as_number(get(row))
            case Unary(_, operand):
                inner = self.number(operand)
                return lambda row, frame: -inner(row, frame)
            case Binary(op, left, right):
                x, y = self.number(left), self.number(right)
                plain = _PLAIN_ARITHMETIC.get(op)
                if plain is not None:
                    return lambda row, frame: plain(x(row, frame), y(row, frame))
                if op == "/":
                    return lambda row, frame: _divide(x(row, frame), y(row, frame))
                return lambda row, frame: _modulo(x(row, frame), y(row, frame))
            case Aggregate():
                return self._aggregate(node)
        return _zero

    def string(self, node: Expr) -> StringFn:
        """The closure of a string node."""
        match node:
            case String(value):
                return lambda row, frame: value
            case Field(name):

                def read(row: Row, frame: Frame) -> str:
                    found = row.get(name)
                    if isinstance(found, str):
                        return found
                    return "" if found is None else str(found)

                return read
            case Name(path):
                get = _reader(path)

                def read_name(row: Row, frame: Frame) -> str:
                    found = get(row)
                    return found if isinstance(found, str) else ""

                return read_name
        return _empty

    def contribution(self, node: Aggregate) -> ContributionFn:
        """What one execution adds to ``node``: (value, whether it counts at all).

        An execution counts when it passes the ``where`` filter (and, for ``count(cond)``,
        the condition); the value is the aggregated number (unused by ``count``).
        """
        where = self.boolean(node.where) if node.where is not None else None
        if node.func == "count":
            arg: BoolFn | None = self.boolean(node.arg) if node.arg is not None else None

            def counted(row: Row, frame: Frame) -> tuple[float, bool]:
                if where is not None and not where(row, frame):
                    return 0.0, False
                return 0.0, arg is None or arg(row, frame)

            return counted
        if node.arg is None:  # the type checker requires an argument; never count garbage
            return lambda row, frame: (0.0, False)
        value = self.number(node.arg)

        def valued(row: Row, frame: Frame) -> tuple[float, bool]:
            if where is not None and not where(row, frame):
                return 0.0, False
            return value(row, frame), True

        return valued

    def observer(self, node: Expr) -> ObserveFn:
        """The closure reporting what a fired condition saw, by sub-expression text.

        It gives the value of every non-literal side of every comparison in ``node``, e.g.
        ``{"sum(tokens_used)": 10500.0}`` for ``sum(tokens_used) > 10000``. Comparisons
        inside an aggregate (its filter) are per execution and are not reported. Numbers are
        floats; NaN and infinity become text, which JSON (so the state DB) can hold.
        """
        sides: dict[str, ValueFn] = {}
        for part in walk(node, into_aggregates=False):
            if isinstance(part, Binary) and part.op in (*ORDERING, *EQUALITY):
                for side in (part.left, part.right):
                    if isinstance(side, Aggregate | Binary | Unary | Field | Name):
                        sides[unparse(side)] = self.value(side)
        pairs = list(sides.items())

        def observe(row: Row, frame: Frame) -> dict[str, float | str]:
            return {text: _reportable(read(row, frame)) for text, read in pairs}

        return observe

    def _aggregate(self, node: Aggregate) -> NumberFn:
        slot = self._slots.get(node)
        if slot is not None:
            return lambda row, frame: frame.totals[slot]
        contribute, func = self.contribution(node), node.func

        def over_executions(row: Row, frame: Frame) -> float:
            tally = Tally()
            for each in frame.executions:
                tally.add(*contribute(each, frame))
            return tally.value(func)

        return over_executions


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
        """Fold one execution's contribution (see `Compiler.contribution`)."""
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


def _false(row: Row, frame: Frame) -> bool:
    return False


def _zero(row: Row, frame: Frame) -> float:
    return 0.0


def _empty(row: Row, frame: Frame) -> str:
    return ""


def _elapsed(row: Row, frame: Frame) -> float:
    return float(frame.elapsed_s)


def _divide(a: float, b: float) -> float:
    return 0.0 if b == 0 else a / b


def _modulo(a: float, b: float) -> float:
    return 0.0 if b == 0 else a % b


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


def _reader(path: tuple[str, ...]) -> Callable[[Row], object]:
    """How a `Name` is read from a row: a state field by its key, anything else by its path."""
    if path[0] == STATE:
        key = ".".join(path)
        return lambda row: row.get(key)
    head, rest = path[0], path[1:]

    def walk_path(row: Row) -> object:
        found = row.get(head)
        for part in rest:
            if not isinstance(found, Mapping):
                return None
            found = found.get(part)
        return found

    return walk_path


def _as_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return 0.0
    try:
        return float(value)
    except (OverflowError, ValueError):
        return 0.0


def _reportable(value: Value) -> float | str:
    if isinstance(value, str):
        return value
    number = float(value)
    return number if math.isfinite(number) else str(number)
