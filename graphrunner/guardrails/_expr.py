r"""The guardrail expression language: a hand-written Pratt parser and type checker.

Tokens (`graphrunner.guardrails._lexer`) become an immutable tree
(`graphrunner.guardrails._ast`) whose types are checked as it is built; nothing is ever
handed to ``eval``. Standard library only, no I/O: it runs inside
the Temporal workflow sandbox.

Grammar, loosest binding first::

    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum]    (no chaining)
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | "true" | "false" | NAME | "(" or_expr ")"
                | AGG "(" [or_expr] ["where" or_expr] ")"

NUMBER is ``12``, ``1_000``, ``2.5`` or ``1e-3``; STRING is ``"..."`` or ``'...'`` on one
line, with the escapes ``\ " '

        ``; NAME is a name of the expression's `Vocabulary` (for guardrail
rules, `RULES`: one of `FIELDS`, or ``state.<field>``); AGG is sum, max,
min or avg (a number argument is required) or count (an optional condition). ``where``
filters the executions first: ``sum(tokens_used where node == "search")``,
``count(where kind == "task")``, ``count(status == "failed")``. Aggregates do not nest.
Types never mix: ``+`` and ``<`` take numbers, ``and``/``or``/``not`` take conditions, and
``==``/``!=`` need both sides of one type. A name whose type its vocabulary leaves open
(``output.score`` in an edge condition) takes the type of its use: a number beside ``<`` or
``+``, a condition beside ``and`` or alone, the other side's type beside ``==``.

Limits keep a hostile policy cheap to reject: `MAX_LENGTH` characters and `MAX_DEPTH`
levels of nesting (parentheses, operators and aggregates all count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from graphrunner.errors import PolicyError
from graphrunner.guardrails._ast import (
    AGGREGATES,
    ARITHMETIC,
    BINARY_POWER,
    EQUALITY,
    LOGICAL,
    NEGATE_POWER,
    NOT_POWER,
    ORDERING,
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
)
from graphrunner.guardrails._eval import Row, Value, evaluate
from graphrunner.guardrails._lexer import ParseFailure, Token, tokenize
from graphrunner.guardrails._names import RULES, UnknownName, Vocabulary

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Expression", "Locate", "parse_expression"]

MAX_LENGTH: Final = 2000
MAX_DEPTH: Final = 50

#: Maps a character offset in the expression text to a 1-based (line, column).
Locate = Callable[[int], tuple[int, int]]

_VALUE: Final = "a value (a field, number, string, true, false, an aggregate or '(')"
_A: Final = {
    ExprType.NUMBER: "a number",
    ExprType.STRING: "a string",
    ExprType.BOOLEAN: "a condition",
}


@dataclass(frozen=True, kw_only=True)
class Expression:
    """A parsed, type-checked expression.

    Two expressions are equal when their trees are, however the source was written.

    Attributes:
        tree: The expression tree.
        source: The text it was parsed from ('' when built from a tree).
    """

    tree: Expr
    source: str = field(default="", compare=False)

    @property
    def type(self) -> ExprType:
        """The expression's type; a rule's ``when`` is always `ExprType.BOOLEAN`."""
        return type_of(self.tree)

    def evaluate(
        self,
        *,
        current: Row | None = None,
        executions: Sequence[Row] = (),
        elapsed_s: float = 0.0,
    ) -> Value:
        """Evaluate once, e.g. to try a condition on sample executions.

        Args:
            current: The execution being checked, read by bare fields: a mapping of field
                names to values such as ``ExecutionRecord.model_dump()`` (none: every field
                reads as 0 or "").
            executions: What aggregates range over.
            elapsed_s: Seconds since the lifetime started.

        Returns:
            A bool, float or str, according to `type`. Evaluation never raises: division by
            zero and aggregates over nothing are 0, a missing field is 0 or "".
        """
        return evaluate(self.tree, current=current, executions=executions, elapsed_s=elapsed_s)

    def __str__(self) -> str:
        return self.source or unparse(self.tree)


def parse_expression(
    source: str,
    *,
    expect: ExprType | None = ExprType.BOOLEAN,
    file: str | None = None,
    locate: Locate | None = None,
    vocabulary: Vocabulary = RULES,
) -> Expression:
    """Parse and type-check expression text.

    Args:
        source: The expression, e.g. ``sum(tokens_used) > 10_000``.
        expect: The type the whole expression must have (None: any type).
        file: File named in errors.
        locate: Maps an offset in ``source`` to its (line, column) in ``file``; by default
            positions are counted within ``source`` itself.
        vocabulary: What names mean (default: those of guardrail rules).

    Raises:
        PolicyError: The first problem, with its line and column and what was expected.
    """
    where = locate or _counter(source)
    try:
        if len(source) > MAX_LENGTH:
            raise ParseFailure(
                MAX_LENGTH,
                f"expression is {len(source)} characters long; at most {MAX_LENGTH} are allowed",
            )
        parser = _Parser(source, where, vocabulary)
        tree = parser.parse()
        if _untyped(tree):
            if expect is None:
                raise ParseFailure(
                    parser.tokens[0].start,
                    f"cannot tell what type {unparse(tree)!r} has here; compare it, e.g. "
                    f'{unparse(tree)} == "yes"',
                )
            tree = _settle(_Parsed(tree, 0, 1), expect).node
        if expect is not None and type_of(tree) is not expect:
            hint = (
                "; compare it, e.g. sum(tokens_used) > 1000" if expect is ExprType.BOOLEAN else ""
            )
            found = _A[type_of(tree)]
            raise ParseFailure(
                parser.tokens[0].start,
                f"expected {_A[expect]}, but this expression is {found}{hint}",
            )
    except ParseFailure as fail:
        line, column = where(fail.offset)
        raise PolicyError(fail.message, file=file, line=line, column=column) from None
    return Expression(tree=tree, source=source)


class _Parsed(NamedTuple):
    node: Expr
    start: int
    depth: int


def _counter(source: str) -> Locate:
    def locate(offset: int) -> tuple[int, int]:
        line_start = source.rfind("\n", 0, offset) + 1
        return source.count("\n", 0, offset) + 1, offset - line_start + 1

    return locate


class _Parser:
    def __init__(self, source: str, locate: Locate, vocabulary: Vocabulary) -> None:
        self.source = source
        self.vocabulary = vocabulary
        self.stream = tokenize(source)
        self.tokens: list[Token] = []
        self.locate = locate
        self.pos = 0
        self.nesting = 0
        self.aggregate: Token | None = None

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise ParseFailure(self.peek().start, "expected an expression, found nothing")
        node = self.expr(0).node
        token = self.peek()
        if token.kind != "end":
            if token.text == ")":
                raise ParseFailure(token.start, "unmatched ')'")
            if token.text == "where":
                example = 'sum(tokens_used where node == "search")'
                message = f"'where' is only allowed inside an aggregate, e.g. {example}"
                raise ParseFailure(token.start, message)
            raise ParseFailure(
                token.start, f"unexpected {_show(token)}; expected an operator or the end"
            )
        return node

    def peek(self) -> Token:
        while len(self.tokens) <= self.pos:
            self.tokens.append(next(self.stream))
        return self.tokens[self.pos]

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.text == text and token.kind in ("op", "word")

    def take(self) -> Token:
        token = self.peek()
        if token.kind != "end":
            self.pos += 1
        return token

    def expect_close(self, opener: Token, after: str) -> None:
        token = self.take()
        if token.text != ")" or token.kind != "op":
            line, column = self.locate(opener.start)
            raise ParseFailure(
                token.start,
                f"expected {after}')' to close the '(' at line {line}, column {column}, "
                f"found {_show(token)}",
            )

    def expr(self, min_power: int) -> _Parsed:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise ParseFailure(self.peek().start, _too_deep())
            left = self.prefix(min_power)
            while True:
                token = self.peek()
                power = BINARY_POWER.get(token.text) if token.kind in ("op", "word") else None
                if power is None or power <= min_power:
                    return left
                self.take()
                left = self.binary(token, left, self.expr(power))
        finally:
            self.nesting -= 1

    def prefix(self, min_power: int) -> _Parsed:
        token = self.take()
        if token.kind == "number" and token.value is not None and not isinstance(token.value, str):
            return _Parsed(Number(token.value), token.start, 1)
        if token.kind == "string" and isinstance(token.value, str):
            return _Parsed(String(token.value), token.start, 1)
        if token.kind == "op" and token.text == "-":
            operand = _check(self.expr(NEGATE_POWER), ExprType.NUMBER, "after '-'")
            return _Parsed(Unary("-", operand.node), token.start, _depth(token, operand))
        if token.kind == "op" and token.text == "(":
            inner = self.expr(0)
            self.expect_close(token, "")
            return _Parsed(inner.node, token.start, inner.depth)
        if token.kind != "word" or token.text in ("and", "or", "where"):
            found = "but the expression ended" if token.kind == "end" else f"found {_show(token)}"
            raise ParseFailure(token.start, f"expected {_VALUE}, {found}")
        if token.text in ("true", "false"):
            return _Parsed(Boolean(token.text == "true"), token.start, 1)
        if token.text == "not":
            if min_power > NOT_POWER:
                raise ParseFailure(token.start, "'not' needs parentheses here, e.g. x == (not y)")
            operand = _check(self.expr(NOT_POWER), ExprType.BOOLEAN, "after 'not'")
            return _Parsed(Unary("not", operand.node), token.start, _depth(token, operand))
        if token.text in AGGREGATES:
            return self.aggregate_call(token)
        if token.text in self.vocabulary.fields:
            return _Parsed(Field(token.text), token.start, 1)
        # Look at the raw text, not the next token: that token may be bad, and this unknown
        # name comes first.
        after = self.source[token.start + len(token.text) :].lstrip(" \t\r\n")[:1]
        if after == "(":
            known = ", ".join(AGGREGATES)
            raise ParseFailure(
                token.start, f"unknown function {token.text!r}; expected one of: {known}"
            )
        try:
            kind = self.vocabulary.resolve(token.text)
        except UnknownName as unknown:
            raise ParseFailure(token.start + unknown.offset, unknown.message) from None
        return _Parsed(Name(tuple(token.text.split(".")), kind), token.start, 1)

    def aggregate_call(self, name: Token) -> _Parsed:
        func = name.text
        opener = self.take()
        if opener.text != "(":
            raise ParseFailure(opener.start, f"expected '(' after {func!r}, e.g. {func}(...)")
        if self.aggregate is not None:
            outer = self.aggregate.text
            raise ParseFailure(name.start, f"aggregates cannot be nested ({func} inside {outer})")
        self.aggregate = name
        arg: _Parsed | None = None
        where: _Parsed | None = None
        try:
            if not self.at("where") and not self.at(")"):
                arg = self.expr(0)
            if self.at("where"):
                self.take()
                where = _check(self.expr(0), ExprType.BOOLEAN, "after 'where'")
            self.expect_close(opener, "" if where else "'where' or ")
        finally:
            self.aggregate = None
        if func == "count":
            if arg is not None:
                arg = _check(arg, ExprType.BOOLEAN, "in count(...)")
        elif arg is None:
            raise ParseFailure(
                opener.start + 1, f"{func}(...) needs a number, e.g. {func}(tokens_used)"
            )
        else:
            arg = _check(arg, ExprType.NUMBER, f"in {func}(...)")
        node = Aggregate(func, arg.node if arg else None, where.node if where else None)
        parts = [part for part in (arg, where) if part is not None]
        return _Parsed(node, name.start, _depth(name, *parts))

    def binary(self, op: Token, left: _Parsed, right: _Parsed) -> _Parsed:
        name = op.text
        if name in LOGICAL:
            left = _check(left, ExprType.BOOLEAN, f"before {name!r}")
            right = _check(right, ExprType.BOOLEAN, f"after {name!r}")
        elif name in ARITHMETIC or name in ORDERING:
            left = _check(left, ExprType.NUMBER, f"before {name!r}")
            right = _check(right, ExprType.NUMBER, f"after {name!r}")
        elif _untyped(left.node) and _untyped(right.node):
            raise ParseFailure(
                left.start,
                f"cannot tell what type {unparse(left.node)!r} and {unparse(right.node)!r} "
                f'have; compare one of them with a literal, e.g. {unparse(left.node)} == "yes"',
            )
        elif _untyped(left.node) or _untyped(right.node):
            # The name takes the type of the other side.
            left = _settle(left, type_of(right.node)) if _untyped(left.node) else left
            right = _settle(right, type_of(left.node))
        elif (kind := type_of(left.node)) is not (other := type_of(right.node)):
            raise ParseFailure(
                op.start,
                f"cannot compare {_A[kind]} with {_A[other]} using {name!r}; "
                "both sides must have the same type",
            )
        following = self.peek()
        if name in EQUALITY + ORDERING and following.text in EQUALITY + ORDERING:
            raise ParseFailure(
                following.start,
                "comparisons do not chain; expected 'and' between them, e.g. 1 < x and x < 5",
            )
        node = Binary(name, left.node, right.node)
        return _Parsed(node, left.start, _depth(op, left, right))


def _depth(token: Token, *children: _Parsed) -> int:
    depth = 1 + max((child.depth for child in children), default=0)
    if depth > MAX_DEPTH:
        raise ParseFailure(token.start, _too_deep())
    return depth


def _untyped(node: Expr) -> bool:
    return isinstance(node, Name) and node.type is None


def _settle(part: _Parsed, kind: ExprType) -> _Parsed:
    """``part`` with an untyped name given the type its use needs (anything else as is)."""
    if isinstance(part.node, Name) and part.node.type is None:
        return part._replace(node=Name(part.node.path, kind))
    return part


def _check(part: _Parsed, expected: ExprType, where: str) -> _Parsed:
    """``part``, settled to ``expected``; ParseFailure when it has another type."""
    part = _settle(part, expected)
    if (found := type_of(part.node)) is not expected:
        raise ParseFailure(part.start, f"expected {_A[expected]} {where}, found {_A[found]}")
    return part


def _show(token: Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def _too_deep() -> str:
    return f"expression nested too deeply; at most {MAX_DEPTH} levels are allowed"
