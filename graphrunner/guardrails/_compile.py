"""Compile checked expression trees into Python closures, once per policy.

`graphrunner.guardrails.evaluate` walks a tree on every call: fine for a one-off check, but
the interceptor checks every rule twice per execution, and the walk (``match`` on each node,
the type of each node, hashing aggregate trees to find their running totals) cost about
31 µs per rule per Task+Plan step. Compiling each tree once into nested closures moves all of
that to policy load: what remains per call is the arithmetic and the field reads.

The interpreter stays the reference: a compiled expression computes exactly what `evaluate`
computes for the same tree and data (a hypothesis property in the tests checks it), including
its totality rules (division by zero is 0, missing fields read as 0 or ""). Nothing here is
`eval` or generated source: the closures are fixed Python functions composed by tree shape.

Aggregates compile one of two ways. Given ``slots`` (aggregate -> index), an aggregate reads
``frame.totals[index]``, a value the caller keeps as a running `Tally`. Without a slot, it is
computed over ``frame.executions``, as execution-scope rules need.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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
from graphrunner.guardrails._eval import Row, Tally, Value, _arithmetic, _read_number

__all__ = ["Compiler", "Frame"]


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


def _false(row: Row, frame: Frame) -> bool:
    return False


def _zero(row: Row, frame: Frame) -> float:
    return 0.0


def _empty(row: Row, frame: Frame) -> str:
    return ""


def _elapsed(row: Row, frame: Frame) -> float:
    return float(frame.elapsed_s)


class Compiler:
    """Turns trees into closures; mirrors `graphrunner.guardrails._eval` node for node.

    Args:
        slots: Aggregates read from ``Frame.totals`` (aggregate -> index); any other
            aggregate is computed over ``Frame.executions``.
    """

    def __init__(self, slots: Mapping[Aggregate, int] | None = None) -> None:
        self._slots = dict(slots or {})

    def value(self, node: Expr) -> ValueFn:
        """A closure computing ``evaluate(node, ...)``, dispatched on the node's type once."""
        kind = type_of(node)
        if kind is ExprType.BOOLEAN:
            return self.boolean(node)
        if kind is ExprType.NUMBER:
            return self.number(node)
        return self.string(node)

    def boolean(self, node: Expr) -> BoolFn:
        """The closure of a boolean node (interpreter: ``_boolean``)."""
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
        """The closure of a numeric node (interpreter: ``_number``)."""
        match node:
            case Number(value):
                const = float(value)
                return lambda row, frame: const
            case Field("elapsed_s"):
                return _elapsed
            case Field(name):
                return lambda row, frame: _read_number(row, name)
            case Unary(_, operand):
                inner = self.number(operand)
                return lambda row, frame: -inner(row, frame)
            case Binary(op, left, right):
                x, y = self.number(left), self.number(right)
                plain = _PLAIN_ARITHMETIC.get(op)
                if plain is not None:
                    return lambda row, frame: plain(x(row, frame), y(row, frame))
                return lambda row, frame: _arithmetic(op, x(row, frame), y(row, frame))
            case Aggregate():
                return self._aggregate(node)
        return _zero

    def string(self, node: Expr) -> StringFn:
        """The closure of a string node (interpreter: ``_string``)."""
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
        return _empty

    def contribution(self, node: Aggregate) -> ContributionFn:
        """What one execution adds to ``node`` (interpreter: ``contribution``)."""
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
