"""Property tests of the guardrail expression language and policy loader (hypothesis).

(a) Whatever text comes in, as an expression or as a whole policy file, the outcome is a
valid result or a PolicyError with a position: never another exception.
(b) Random well-typed trees print (`unparse`) to text that parses back to the same tree.
(c) Evaluating random well-typed trees over random, even ill-typed, executions never raises.

300 examples each keep the file near 10 s; FUZZ_EXAMPLES=5000 runs a deeper search (~3 min,
with ``-o timeout=900``).
"""

from __future__ import annotations

import functools
import math
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
from graphrunner.guardrails import (
    AGGREGATES,
    FIELDS,
    Aggregate,
    Binary,
    Boolean,
    EvalContext,
    Expr,
    ExprType,
    Field,
    Number,
    Policy,
    String,
    Unary,
    evaluate,
    parse_expression,
    parse_policy,
    unparse,
)
from graphrunner.guardrails._compile import Compiler, Frame

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


# -- (c) evaluation is total ----------------------------------------------------------------------

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


@FUZZ
@given(
    st.sampled_from([ExprType.NUMBER, ExprType.BOOLEAN, ExprType.STRING]).flatmap(
        lambda kind: st.integers(0, 4).flatmap(lambda depth: trees(kind, depth))
    ),
    executions,
    st.lists(executions, max_size=6),
    st.floats(),
)
def test_evaluation_never_raises_and_has_the_tree_type(
    tree: Expr, current: dict[str, Any], scope: list[dict[str, Any]], elapsed: float
) -> None:
    context = EvalContext(current=current, executions=scope, elapsed_s=elapsed)
    value = evaluate(tree, context)
    expected = {ExprType.NUMBER: float, ExprType.BOOLEAN: bool, ExprType.STRING: str}
    assert type(value) is expected[parse_expression(unparse(tree), expect=None).type]
    assert repr(evaluate(tree, context)) == repr(value)  # deterministic, NaN included


def test_decimal_signalling_nan_and_huge_ints_read_as_zero() -> None:
    context = EvalContext(current={"cost_usd": Decimal("sNaN"), "tokens_in": 10**400})
    assert evaluate(parse_expression("cost_usd + tokens_in", expect=None).tree, context) == 0.0


# -- (d) the compiled form the interceptor runs computes what the interpreter does ---------------


def _aggregates(tree: Expr) -> list[Aggregate]:
    found: list[Aggregate] = []

    def walk(node: Expr | None) -> None:
        if node is None:
            return
        if isinstance(node, Aggregate):
            found.append(node)
            walk(node.arg)
            walk(node.where)
        elif isinstance(node, Unary):
            walk(node.operand)
        elif isinstance(node, Binary):
            walk(node.left)
            walk(node.right)

    walk(tree)
    return list(dict.fromkeys(found))


@FUZZ
@given(any_tree, executions, st.lists(executions, max_size=6), st.floats())
def test_compiled_expressions_compute_exactly_what_the_interpreter_does(
    tree: Expr, current: dict[str, Any], scope: list[dict[str, Any]], elapsed: float
) -> None:
    # Aggregates computed over the executions in scope (execution-scope rules) ...
    context = EvalContext(current=current, executions=scope, elapsed_s=elapsed)
    compiled = Compiler().value(tree)
    frame = Frame(elapsed_s=elapsed, executions=scope)
    assert repr(compiled(current, frame)) == repr(evaluate(tree, context))
    # ... and read from running totals by slot (lifetime and tenant rules).
    aggregates = _aggregates(tree)
    values = [float(evaluate(agg, context)) for agg in aggregates]
    slotted = Compiler({agg: i for i, agg in enumerate(aggregates)}).value(tree)
    with_totals = EvalContext(
        current=current, elapsed_s=elapsed, totals=dict(zip(aggregates, values, strict=True))
    )
    expected = evaluate(tree, with_totals)
    assert repr(slotted(current, Frame(elapsed_s=elapsed, totals=values))) == repr(expected)
