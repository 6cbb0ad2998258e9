"""Property tests of the guardrail expression language and policy loader (hypothesis).

(a) Whatever text comes in, as an expression or as a whole policy file, the outcome is a
valid result or a PolicyError with a position: never another exception.
(b) Random well-typed trees print (`unparse`) to text that parses back to the same tree.
(c) The compiled evaluator, over random well-typed trees and random, even ill-typed,
executions, never raises and computes what an oracle written here from the documented
semantics computes (aggregates over the executions or read from running totals), and a fired
rule's report of observed values holds the oracle's values.

300 examples each keep the file near 10 s; FUZZ_EXAMPLES=5000 runs a deeper search (~3 min,
with ``-o timeout=900``).
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrunner.errors import PolicyError
from graphrunner.guardrails import ExprType, Policy, parse_expression, parse_policy
from graphrunner.guardrails._ast import (
    AGGREGATES,
    EQUALITY,
    FIELDS,
    ORDERING,
    Aggregate,
    Binary,
    Boolean,
    Expr,
    Field,
    Number,
    String,
    Unary,
    unparse,
)
from graphrunner.guardrails._eval import Compiler, Frame

# No example database: it would leave a .hypothesis folder in the working tree.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
POLICIES = Path(__file__).resolve().parent / "fixtures" / "policies"
FIXTURE_TEXTS = [path.read_text() for path in sorted(POLICIES.glob("*.yaml"))]

NUMBER_FIELDS = sorted(name for name, kind in FIELDS.items() if kind is ExprType.NUMBER)
STRING_FIELDS = sorted(name for name, kind in FIELDS.items() if kind is ExprType.STRING)


# -- (a) any text gives a result or a positioned PolicyError ------------------------------------

VOCABULARY = [
    *FIELDS,
    *AGGREGATES,
    *("and", "or", "not", "true", "false", "where", "(", ")", "(", ")"),
    *("==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "=", "!", ".", ","),
    *("0", "1_000", "2.5", "1e-3", "1e999", "1__0", "'search'", '"task"', "'open", "\\", "#"),
]
token_soup = st.lists(
    st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=3)), max_size=30
).flatmap(lambda parts: st.sampled_from([" ", "", "\n", "\t"]).map(lambda sep: sep.join(parts)))


def assert_positioned(error: PolicyError, text: str, file: str | None) -> None:
    assert error.issues
    max_line = len(text.splitlines()) + 1
    for issue in error.issues:
        assert issue.message
        assert issue.file == file
        assert issue.line is not None and 1 <= issue.line <= max_line, issue
        assert issue.column is not None and issue.column >= 1, issue
    assert (error.line, error.column) == (error.issues[0].line, error.issues[0].column)


def check_expression(text: str) -> None:
    try:
        expression = parse_expression(text, expect=None)
    except PolicyError as error:
        assert_positioned(error, text, None)
        assert error.line is not None and error.line <= text.count("\n") + 1
    else:
        assert parse_expression(unparse(expression.tree), expect=None) == expression


def check_policy(text: str) -> None:
    try:
        policy = parse_policy(text, file="fuzz.yaml")
    except PolicyError as error:
        assert_positioned(error, text, "fuzz.yaml")
    else:
        assert isinstance(policy, Policy)
        assert all(rule.when.type is ExprType.BOOLEAN for rule in policy.rules)
        assert len({rule.name for rule in policy.rules}) == len(policy.rules)


@FUZZ
@given(st.text())
def test_any_text_as_an_expression_parses_or_fails_with_a_position(text: str) -> None:
    check_expression(text)


@FUZZ
@given(token_soup)
def test_token_soup_parses_or_fails_with_a_position(text: str) -> None:
    check_expression(text)


PLACE = re.compile(r"line \d+, column \d+")
RULE = "rules:\n  - name: r\n    scope: lifetime\n    action: abort_lifetime\n    when: "


@FUZZ
@given(token_soup.filter(lambda text: text.isascii() and text.isprintable() and text[:1].strip()))
def test_expression_errors_in_yaml_point_at_the_same_character(text: str) -> None:
    try:
        parse_expression(text)
    except PolicyError as error:
        offset = (error.column or 0) - 1  # one line: the column is the offset
        message = error.message
    else:
        return
    before = text[:offset]
    # The scalar starts at line 5, column 11 in every style but the block, which starts a
    # line below with six spaces of indentation.
    styles = {
        "'" + text.replace("'", "''") + "'": (5, 12 + offset + before.count("'")),
        '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"': (
            5,
            12 + offset + before.count("\\") + before.count('"'),
        ),
        "|\n      " + text + "\n": (6, 7 + offset),
    }
    for scalar, place in styles.items():
        with pytest.raises(PolicyError) as caught:
            parse_policy(RULE + scalar)
        [issue] = caught.value.issues
        assert (issue.line, issue.column) == place, scalar
        # A message may name another place (the '(' to close), in the file or the text.
        assert PLACE.sub("", issue.message) == PLACE.sub("", f"rule 'r': when: {message}")


@FUZZ
@given(st.text())
def test_any_text_as_a_policy_file_loads_or_fails_with_a_position(text: str) -> None:
    check_policy(text)


YAML_BITS = [":", "-", "'", '"', "\n", "  ", "[", "{", "&a", "*a", "!!str", "? "]
edits = st.lists(
    st.tuples(
        st.floats(0, 1),
        st.sampled_from(["insert", "delete", "replace"]),
        st.one_of(st.sampled_from([*VOCABULARY, *YAML_BITS]), st.text(max_size=2)),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(st.sampled_from(FIXTURE_TEXTS), edits)
def test_mutated_policy_files_load_or_fail_with_a_position(
    text: str, changes: list[tuple[float, str, str]]
) -> None:
    for where, how, piece in changes:
        at = int(where * len(text))
        if how == "insert":
            text = text[:at] + piece + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + len(piece) + 1 :]
        else:
            text = text[:at] + piece + text[at + len(piece) :]
    check_policy(text)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["name", "when", "scope", "x"]), inner, max_size=3),
    ),
    max_leaves=8,
)
# Mostly plausible rules (so that some policies are valid), each part sometimes garbage.
conditions = st.deferred(
    lambda: st.integers(0, 3).flatmap(lambda depth: trees(ExprType.BOOLEAN, depth)).map(unparse)
)
PARTS = {
    "name": st.sampled_from(["a", "b", "cap", "a", "9x", ""]),
    "when": conditions,
    "scope": st.sampled_from(["execution", "lifetime", "tenant", "forever"]),
    "action": st.sampled_from(["reject_execution", "pause_lifetime", "abort_lifetime", "x"]),
    "message": st.text(max_size=8),
}
rule_dicts = st.one_of(
    st.fixed_dictionaries({k: v for k, v in PARTS.items() if k != "message"}),
    st.fixed_dictionaries(
        {},
        optional={
            **{k: st.one_of(v, yaml_values) for k, v in PARTS.items()},
            "when": st.one_of(conditions, token_soup, yaml_values),
            "extra": yaml_values,
        },
    ),
)
policy_dicts = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just(1), yaml_values),
        "rules": st.lists(rule_dicts, max_size=4),
    },
)


@FUZZ
@given(policy_dicts, st.sampled_from([None, True, False]), st.sampled_from(["'", '"', None]))
def test_structured_random_policies_load_or_fail_with_a_position(
    data: dict[str, Any], flow: bool | None, style: str | None
) -> None:
    check_policy(yaml.safe_dump(data, default_flow_style=flow, default_style=style))


# -- (b) printing a tree and parsing it back gives the same tree ---------------------------------

numbers = st.one_of(
    st.integers(min_value=0, max_value=10**20),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).filter(
        lambda x: math.copysign(1, x) > 0
    ),
)


@functools.cache  # strategies are immutable; building them anew per example is very slow
def trees(kind: ExprType, depth: int, inside: bool = False) -> st.SearchStrategy[Expr]:
    """Well-typed trees of ``kind``; aggregates only outside aggregates (they do not nest)."""
    leaves: st.SearchStrategy[Expr]
    if kind is ExprType.NUMBER:
        leaves = st.one_of(
            st.builds(Number, numbers), st.builds(Field, st.sampled_from(NUMBER_FIELDS))
        )
    elif kind is ExprType.STRING:
        return st.one_of(
            st.builds(String, st.text(max_size=8)), st.builds(Field, st.sampled_from(STRING_FIELDS))
        )
    else:
        leaves = st.builds(Boolean, st.booleans())
    if depth == 0:
        return leaves
    sub: Callable[[ExprType], st.SearchStrategy[Expr]] = lambda k: trees(k, depth - 1, inside)  # noqa: E731
    number, boolean = ExprType.NUMBER, ExprType.BOOLEAN
    if kind is ExprType.NUMBER:
        options = [
            st.builds(Unary, st.just("-"), sub(number)),
            st.builds(Binary, st.sampled_from(["+", "-", "*", "/", "%"]), sub(number), sub(number)),
        ]
        if not inside:
            agg_arg = trees(number, depth - 1, True)
            filters = st.none() | trees(boolean, depth - 1, True)
            options.append(
                st.builds(
                    Aggregate, st.sampled_from(["sum", "max", "min", "avg"]), agg_arg, filters
                )
            )
            options.append(
                st.builds(
                    Aggregate,
                    st.just("count"),
                    st.none() | trees(boolean, depth - 1, True),
                    filters,
                )
            )
    else:
        options = [
            st.builds(Unary, st.just("not"), sub(boolean)),
            st.builds(Binary, st.sampled_from(["and", "or"]), sub(boolean), sub(boolean)),
            st.builds(Binary, st.sampled_from(["<", "<=", ">", ">="]), sub(number), sub(number)),
            st.sampled_from(list(ExprType)).flatmap(
                lambda k: st.builds(Binary, st.sampled_from(["==", "!="]), sub(k), sub(k))
            ),
        ]
    return st.one_of(leaves, *options)


any_tree = st.sampled_from([ExprType.NUMBER, ExprType.BOOLEAN, ExprType.STRING]).flatmap(
    lambda kind: st.integers(0, 4).flatmap(lambda depth: trees(kind, depth))
)


@FUZZ
@given(any_tree)
def test_unparse_then_parse_gives_an_equal_tree(tree: Expr) -> None:
    text = unparse(tree)
    parsed = parse_expression(text, expect=None)
    assert parsed.tree == tree
    assert unparse(parsed.tree) == text


# -- (c) the compiled evaluator computes the documented semantics --------------------------------

odd_numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.decimals(),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)
odd_strings = st.one_of(
    st.sampled_from(["search", "task", "plan", "failed", ""]),
    st.text(max_size=3),
    st.none(),
    st.integers(),
)
executions = st.fixed_dictionaries(
    {},
    optional={
        **{name: odd_numbers for name in NUMBER_FIELDS},
        **{name: odd_strings for name in STRING_FIELDS},
    },
)
Row = dict[str, Any]


def number_field(row: Row, name: str) -> float:
    """A numeric field as the README documents it: a missing or non-number field is 0."""
    if name == "tokens_used" and name not in row:
        return number_field(row, "tokens_in") + number_field(row, "tokens_out")
    value = row.get(name)
    if not isinstance(value, int | float | Decimal):
        return 0.0
    try:
        return float(value)
    except (OverflowError, ValueError):  # past float range; a signalling NaN
        return 0.0


def string_field(row: Row, name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value)


def oracle(node: Expr, row: Row, scope: list[Row], elapsed: float) -> bool | float | str:
    """The value of ``node`` by Python's own operators, aggregates over ``scope`` as lists.

    Written from the documented semantics, not from the evaluator: division by zero and
    aggregates over nothing are 0, numbers are floats, bare fields read ``row``.
    """

    def of(sub: Expr, at: Row = row) -> Any:
        return oracle(sub, at, scope, elapsed)

    if isinstance(node, Number | String | Boolean):
        return float(node.value) if isinstance(node, Number) else node.value
    if isinstance(node, Field):
        if node.name == "elapsed_s":
            return float(elapsed)
        if FIELDS[node.name] is ExprType.STRING:
            return string_field(row, node.name)
        return number_field(row, node.name)
    if isinstance(node, Unary):
        return (not of(node.operand)) if node.op == "not" else -of(node.operand)
    if isinstance(node, Binary):
        a, b = of(node.left), of(node.right)
        if node.op in ("/", "%") and b == 0:
            return 0.0
        return {
            "and": lambda: a and b,
            "or": lambda: a or b,
            "+": lambda: a + b,
            "-": lambda: a - b,
            "*": lambda: a * b,
            "/": lambda: a / b,
            "%": lambda: a % b,
            "<": lambda: a < b,
            "<=": lambda: a <= b,
            ">": lambda: a > b,
            ">=": lambda: a >= b,
            "==": lambda: a == b,
            "!=": lambda: a != b,
        }[node.op]()
    assert isinstance(node, Aggregate)
    picked = [each for each in scope if node.where is None or of(node.where, each)]
    if node.func == "count":
        return float(len([each for each in picked if node.arg is None or of(node.arg, each)]))
    assert node.arg is not None
    values = [of(node.arg, each) for each in picked]
    if not values:
        return 0.0
    total = functools.reduce(operator.add, values, 0.0)  # in order, as a running total adds
    found = {"sum": total, "avg": total / len(values), "max": max(values), "min": min(values)}
    return float(found[node.func])


def aggregates_in(tree: Expr) -> list[Aggregate]:
    found: list[Aggregate] = []

    def visit(node: Expr | None) -> None:
        if isinstance(node, Aggregate):
            found.append(node)
        elif isinstance(node, Unary):
            visit(node.operand)
        elif isinstance(node, Binary):
            visit(node.left)
            visit(node.right)

    visit(tree)
    return list(dict.fromkeys(found))


@FUZZ
@given(any_tree, executions, st.lists(executions, max_size=6), st.floats())
def test_compiled_expressions_compute_the_documented_semantics(
    tree: Expr, current: Row, scope: list[Row], elapsed: float
) -> None:
    expected = repr(oracle(tree, current, scope, elapsed))
    # Aggregates computed over the executions in scope (execution-scope rules) ...
    compiled = Compiler().value(tree)
    assert repr(compiled(current, Frame(elapsed_s=elapsed, executions=scope))) == expected
    # ... and read from running totals by slot (lifetime and tenant rules).
    aggregates = aggregates_in(tree)
    totals = [float(oracle(agg, current, scope, elapsed)) for agg in aggregates]
    slotted = Compiler({agg: i for i, agg in enumerate(aggregates)}).value(tree)
    assert repr(slotted(current, Frame(elapsed_s=elapsed, totals=totals))) == expected
    # A one-off evaluation has the tree's type.
    value = parse_expression(unparse(tree), expect=None).evaluate(
        current=current, executions=scope, elapsed_s=elapsed
    )
    types = {ExprType.NUMBER: float, ExprType.BOOLEAN: bool, ExprType.STRING: str}
    assert type(value) is types[parse_expression(unparse(tree), expect=None).type]
    assert repr(value) == expected


def comparison_sides(node: Expr) -> list[Expr]:
    """Non-literal sides of the comparisons outside aggregates: what a decision reports."""
    if isinstance(node, Unary):
        return comparison_sides(node.operand)
    if not isinstance(node, Binary):
        return []
    own = []
    if node.op in (*ORDERING, *EQUALITY):
        own = [s for s in (node.left, node.right) if not isinstance(s, Number | String | Boolean)]
    return own + comparison_sides(node.left) + comparison_sides(node.right)


@FUZZ
@given(trees(ExprType.BOOLEAN, 3), executions, st.lists(executions, max_size=4), st.floats())
def test_observed_values_are_the_values_of_each_compared_side(
    tree: Expr, current: Row, scope: list[Row], elapsed: float
) -> None:
    observed = Compiler().observer(tree)(current, Frame(elapsed_s=elapsed, executions=scope))
    expected: dict[str, float | str] = {}
    for side in comparison_sides(tree):
        value = oracle(side, current, scope, elapsed)
        if not isinstance(value, str):
            value = float(value)
            value = value if math.isfinite(value) else str(value)  # JSON has no NaN or inf
        expected[unparse(side)] = value
    assert repr(observed) == repr(expected)


def test_decimal_signalling_nan_and_huge_ints_read_as_zero() -> None:
    expression = parse_expression("cost_usd + tokens_in", expect=None)
    assert expression.evaluate(current={"cost_usd": Decimal("sNaN"), "tokens_in": 10**400}) == 0.0
