"""Guardrail policies: loading, exact error positions, evaluation and merge precedence.

Fixtures live in tests/fixtures/policies. In the invalid ones, a comment line with a caret
(``#      ^ words``) marks a problem: the caret's column is the column of the problem on the
nearest line above that is not a marker, and the words must appear in its message. Exactly
the marked problems must be reported. No Temporal server.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from graphrunner.errors import PolicyError
from graphrunner.guardrails import (
    Action,
    ExprType,
    Policy,
    Rule,
    Scope,
    load_policy,
    merge_policies,
    parse_expression,
    parse_policy,
    policy_json_schema,
)
from graphrunner.guardrails._ast import unparse
from graphrunner.guardrails._expr import MAX_LENGTH
from graphrunner.stores import ExecutionRecord, ExecutionStatus

POLICIES = Path(__file__).resolve().parent / "fixtures" / "policies"
INVALID = sorted(path.name for path in POLICIES.glob("invalid-*.yaml"))
CARET = re.compile(r"^#\s*\^\s*(.*?)\s*$")


def marked_problems(path: Path) -> set[tuple[int, int, str]]:
    found = set()
    target = 0
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        match = CARET.match(text)
        if match is None:
            target = number
            continue
        found.add((target, text.index("^") + 1, match.group(1)))
    return found


def problems(error: PolicyError) -> list[tuple[int | None, int | None, str]]:
    return [(issue.line, issue.column, issue.message) for issue in error.issues]


# -- loading -------------------------------------------------------------------------------


def test_the_issue_example_loads_with_every_field() -> None:
    policy = load_policy(POLICIES / "valid-basic.yaml")
    cap = policy.rule("lifetime-token-cap")
    assert str(cap.when) == "sum(tokens_used) > 10000"
    assert cap.when.type is ExprType.BOOLEAN
    assert (cap.scope, cap.action, cap.message) == (
        Scope.LIFETIME,
        Action.ABORT_LIFETIME,
        "token budget exhausted",
    )
    assert [rule.name for rule in policy.rules] == [
        "lifetime-token-cap",
        "slow-search",
        "tenant-daily-spend",
    ]
    assert policy.rule("slow-search").message == ""


def test_every_yaml_scalar_style_gives_the_expression_it_shows() -> None:
    policy = load_policy(POLICIES / "valid-styles.yaml")
    texts = {rule.name: unparse(rule.when.tree) for rule in policy.rules}
    assert texts == {
        "plain": 'count(where kind == "task") > 20 or elapsed_s > 3600',
        "single-quoted": 'sum(tokens_used where node == "search") > 5000',
        "double-quoted": 'avg(latency_ms where model == "gpt") > 2000.0 and '
        'count(status == "failed") >= 3',
        "literal": "max(cost_usd) > 1.5 or min(tokens_out) * 2 < 0",
        "folded": "iteration >= 10 and attempt > 2",
    }


def test_a_policy_survives_a_dump_and_reload() -> None:
    policy = load_policy(POLICIES / "valid-styles.yaml")
    again = parse_policy(yaml.safe_dump(policy.model_dump(mode="json")))
    assert again == policy


@pytest.mark.parametrize("fixture", INVALID)
def test_exactly_the_marked_problems_are_reported(fixture: str) -> None:
    path = POLICIES / fixture
    expected = marked_problems(path)
    assert expected, f"{fixture} has no caret markers"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    error = caught.value
    found = problems(error)
    assert {(line, column) for line, column, _ in found} == {(ln, col) for ln, col, _ in expected}
    for line, column, words in expected:
        message = next(msg for ln, col, msg in found if (ln, col) == (line, column))
        assert words in message, f"{fixture}:{line}:{column}: {message!r} lacks {words!r}"
    assert all(issue.file == str(path) for issue in error.issues)
    assert (error.line, error.column) == min((ln, col) for ln, col, _ in expected)
    assert f"{path}:{error.issues[0].line}:{error.issues[0].column}:" in str(error)


def test_problems_come_in_file_order_in_one_error() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(POLICIES / "invalid-many.yaml")
    positions = [(line, column) for line, column, _ in problems(caught.value)]
    assert len(positions) == 7
    assert positions == sorted(positions)  # type: ignore[type-var]
    assert caught.value.message.startswith("7 problems in policy")


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("", 1, 1, "found an empty file"),
        ("# only a comment\n", 1, 1, "found an empty file"),
        ("- a\n- b\n", 1, 1, "expected a mapping with a 'rules' list, found a list"),
        ("just text\n", 1, 1, "found 'just text'"),
        ("rules: []\nrulez: []\n", 2, 1, "unknown key 'rulez'; expected one of: version, rules"),
        ("version: 1\n", 1, 1, "missing required key 'rules'"),
        ("rules: {}\n", 1, 8, "rules: expected a valid list, found a mapping"),
        (
            "rules:\n  - name: a\n    when: {x: 1}\n    scope: tenant\n    action: pause_lifetime",
            3,
            11,
            "rule 'a': when: expected an expression string",
        ),
        ("rules: []\nrules: []\n", 2, 1, "key 'rules' appears twice in one mapping (first at line"),
        ("rules: []\n? [a]\n: 1\n", 2, 3, "expected a string key"),
        ("rules: !!python/object:os.system {}\n", 1, 8, "unsupported YAML tag"),
        ("version: !!int one\nrules: []\n", 1, 10, "cannot read this value"),
        ("rules: [\n\x07]\n", 2, 1, "character '\\x07' is not allowed in YAML"),
        ("rules: &a [*a]\n", 1, 8, "nested too deeply"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        ), 0, 0, "too large"),
    ],
)  # fmt: skip
def test_file_level_problems_have_a_position(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, file="p.yaml")
    issue = next(i for i in caught.value.issues if words in i.message)
    assert issue.file == "p.yaml"
    assert issue.line is not None and issue.column is not None
    if line:  # the alias bomb is stopped wherever the node budget runs out
        assert (issue.line, issue.column) == (line, column)


def test_crlf_line_endings_give_the_same_positions() -> None:
    text = (POLICIES / "invalid-unknown-field.yaml").read_text()
    with pytest.raises(PolicyError) as unix:
        parse_policy(text)
    with pytest.raises(PolicyError) as windows:
        parse_policy(text.replace("\n", "\r\n"))
    assert problems(windows.value) == problems(unix.value)


def test_an_expression_longer_than_the_limit_is_reported_where_it_overflows() -> None:
    long = " + ".join(["1"] * (MAX_LENGTH // 4 + 1)) + " > 0"
    text = (
        f"rules:\n  - name: long\n    when: {long}\n    scope: lifetime\n    action: abort_lifetime"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert (caught.value.line, caught.value.column) == (3, 11 + MAX_LENGTH)
    assert f"at most {MAX_LENGTH} are allowed" in caught.value.message


def test_a_missing_file_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(missing)
    assert caught.value.file == str(missing)
    assert "cannot read the policy file" in caught.value.message


def test_yaml_problems_hide_no_other_problem_of_a_policy() -> None:
    text = (
        "version: !!int one\n"
        "rules:\n"
        "  - name: cap\n"
        "    when: sum(tokens_used) > 10 and\n"
        "    scop: lifetime\n"
        "    action: abort_lifetime\n"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, file="p.yaml")

    assert problems(caught.value) == [
        (1, 10, "cannot read this value as an integer: 'one'"),
        (3, 5, "rule 'cap': missing required key 'scope'"),
        (
            4,
            36,
            "rule 'cap': when: expected a value (a field, number, string, true, false, an "
            "aggregate or '('), but the expression ended",
        ),
        (
            5,
            5,
            "rule 'cap': unknown key 'scop'; expected one of: name, when, scope, action, "
            "message; did you mean 'scope'?",
        ),
    ]


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("rules:\n  - <<: {name: a}\n    when: 'true'\n", 2, 5, "merge keys ('<<')"),
        ("rules: !custom []\n", 1, 8, "unsupported YAML tag '!custom'"),
        ("version: !!bool maybe\nrules: []\n", 1, 10, "as true or false: 'maybe'"),
        ("version: 1\nrules: []\nx: !!binary aGk=\n", 3, 4, "binary values are not supported"),
        ("rules: " + "[" * 30 + "]" * 30 + "\n", 1, 27, "nested too deeply: at most 20 levels"),
    ],
)
def test_hostile_policy_yaml_is_located(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, file="p.yaml")

    assert any(
        (issue.line, issue.column) == (line, column) and words in issue.message
        for issue in caught.value.issues
    ), problems(caught.value)


def test_a_rule_message_longer_than_the_server_shows_is_refused() -> None:
    text = (
        "rules:\n  - name: cap\n    when: count() > 3\n    scope: lifetime\n"
        f"    action: pause_lifetime\n    message: {'x' * 1001}\n"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, file="p.yaml")

    assert problems(caught.value) == [
        (6, 14, "rule 'cap': message: 1,001 characters; at most 1,000 are allowed")
    ]
    assert parse_policy(text.replace("x" * 1001, "x" * 1000)).rule("cap").message == "x" * 1000


def test_a_policy_file_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"rules:\n  - name: caf\xe9\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert str(caught.value) == (
        f"{path}:2:14: cannot read the policy file: not UTF-8: byte 0xe9 cannot be decoded; "
        "save the file as UTF-8"
    )


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda path: path.mkdir(), "it is a directory, not a file"),
        (lambda path: os.mkfifo(path), "it is not a regular file"),
        (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n\x00"), "not UTF-8: byte 0x89"),
        (
            lambda path: path.write_bytes(b"x" * (1024 * 1024 + 1)),
            "the file is larger than 1,048,576 bytes",
        ),
    ],
    ids=["directory", "fifo", "binary", "huge"],
)
def test_a_policy_path_that_is_no_policy_file_is_one_clear_error(
    tmp_path: Path, make: Any, says: str
) -> None:
    path = tmp_path / "policy.yaml"
    make(path)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert caught.value.file == str(path)
    assert caught.value.message.startswith(f"cannot read the policy file: {says}")


def test_a_graph_file_given_as_a_policy_says_so() -> None:
    graph = Path(__file__).resolve().parent / "fixtures" / "graphs" / "valid-loop.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(graph)

    [issue] = caught.value.issues
    assert (issue.line, issue.column) == (2, 1)
    assert issue.message.startswith("this is a graph file (it has 'nodes' and 'edges'), not a")


def test_rules_built_in_python_are_validated_too() -> None:
    rule = Rule(name="cap", when="count() > 3", scope=Scope.LIFETIME, action=Action.ABORT_LIFETIME)
    assert rule.when == parse_expression("count()>3")
    with pytest.raises(ValidationError, match="column 11: unknown field 'tokens'"):
        Rule(name="cap", when="count() + tokens > 3", scope="lifetime", action="abort_lifetime")
    with pytest.raises(ValidationError, match="rule name 'cap' is used twice"):
        Policy(rules=[rule, rule])
    # A parsed expression must be a condition too, or the saved policy would not load back.
    number = parse_expression("cost_usd + 1", expect=None)
    with pytest.raises(ValidationError, match="must be true or false, not a number"):
        Rule(name="cap", when=number, scope="lifetime", action="abort_lifetime")


def test_json_schema_accepts_the_valid_fixtures_and_rejects_a_bad_scope() -> None:
    import jsonschema  # a dev dependency: this test never skips

    schema = policy_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    rule = schema["$defs"]["Rule"]
    assert rule["required"] == ["name", "when", "scope", "action"]
    assert rule["properties"]["when"]["type"] == "string"
    for path in POLICIES.glob("valid-*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    bad = yaml.safe_load((POLICIES / "invalid-scope-action.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# -- expression errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("", 1, 1, "expected an expression, found nothing"),
        ("  ", 1, 1, "expected an expression, found nothing"),
        ("count() >\n\n", 1, 10, "but the expression ended"),
        ("count() >", 1, 10, "but the expression ended"),
        ("count() > 1\n  and tokens > 2", 2, 7, "unknown field 'tokens'"),
        ("foo(1) > 2", 1, 1, "unknown function 'foo'; expected one of: avg, count, max, min, sum"),
        ("sum > 2", 1, 5, "expected '(' after 'sum'"),
        ("sum(tokens_used where) > 2", 1, 22, "expected a value"),
        ("count(node) > 1", 1, 7, "expected a condition in count(...), found a string"),
        ("max(node == 'a') > 1", 1, 5, "expected a number in max(...), found a condition"),
        ("avg(latency_ms node) > 1", 1, 16, "expected 'where' or ')'"),
        ("where kind == 'task'", 1, 1, "expected a value"),
        ("count() > 1 where kind == 'task'", 1, 13, "'where' is only allowed inside an aggregate"),
        ("x = 1", 1, 1, "unknown field 'x'"),
        ("attempt = 1", 1, 9, "expected '==' to compare"),
        ("tokens_used.x > 1", 1, 12, "attribute access is not supported"),
        ("!true", 1, 1, "expected '!=' (write 'not' to negate)"),
        ("true && false", 1, 6, "write 'and' instead"),
        ("node == 'abc", 1, 9, "unterminated string"),
        ("node == 'a\\qb'", 1, 11, "unknown escape in string"),
        ("attempt > 1__0", 1, 11, "malformed number '1__0'"),
        ("attempt > 5.", 1, 11, "malformed number '5.'"),
        ("attempt > 3x", 1, 11, "malformed number '3x'"),
        ("attempt > 1" + "0" * 400, 1, 11, "is too large"),
        ("attempt > 1e999", 1, 11, "is too large"),
        ("1 < attempt <= 3", 1, 13, "comparisons do not chain"),
        ("attempt == not true", 1, 12, "'not' needs parentheses here"),
        ("-true", 1, 2, "expected a number after '-', found a condition"),
        ("not 3", 1, 5, "expected a condition after 'not', found a number"),
        ("true and 3", 1, 10, "expected a condition after 'and', found a number"),
        ("'a' < 'b'", 1, 1, "expected a number before '<', found a string"),
        ("(1 > 2) == 3", 1, 9, "cannot compare a condition with a number"),
        ("count(count() > 1) > 1", 1, 7, "aggregates cannot be nested (count inside count)"),
        ("(count() > 1", 1, 13, "expected ')' to close the '(' at line 1, column 1"),
        ("count() > 1)", 1, 12, "unmatched ')'"),
        ("count() > 1 2", 1, 13, "unexpected '2'; expected an operator or the end"),
        ("count() + 1", 1, 1, "expected a condition, but this expression is a number"),
        ("(" * 60 + "true" + ")" * 60, 1, 51, "nested too deeply"),
        ("1" + " + 1" * 60 + " > 0", 1, 199, "nested too deeply"),
        ("not " * 60 + "true", 1, 201, "nested too deeply"),
    ],
)
def test_expression_errors_name_line_column_and_what_was_expected(
    text: str, line: int, column: int, words: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_expression(text, file="expr")
    error = caught.value
    assert words in error.message
    assert (error.file, error.line, error.column) == ("expr", line, column)
    assert str(error).startswith(f"expr:{line}:{column}: ")


def test_the_deepest_allowed_nesting_parses() -> None:
    assert parse_expression("not " * 49 + "true").type is ExprType.BOOLEAN
    assert parse_expression("(" * 49 + "true" + ")" * 49).type is ExprType.BOOLEAN


# -- evaluation ----------------------------------------------------------------------------


def ex(node: str, kind: str = "task", **fields: Any) -> dict[str, Any]:
    return {"node": node, "kind": kind, "status": "succeeded", "model": "", **fields}


RUNS = [
    ex("search", tokens_in=100, tokens_out=50, cost_usd=0.25, latency_ms=1200, iteration=1),
    ex("decide", "plan", tokens_in=10, tokens_out=5, cost_usd=0.01, latency_ms=30, iteration=1),
    ex("search", tokens_in=300, tokens_out=100, cost_usd=0.75, latency_ms=800, iteration=2),
    ex("write", status="failed", tokens_in=0, latency_ms=5000, iteration=2, attempt=3),
]
CURRENT = RUNS[2]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("sum(tokens_used)", 565.0),
        ("sum(tokens_in where node == 'search')", 400.0),
        ("count()", 4.0),
        ("count(where kind == 'task')", 3.0),
        ("count(status == 'failed')", 1.0),
        ("count(latency_ms > 1000 where kind == 'task')", 2.0),
        ("max(latency_ms)", 5000.0),
        ("min(latency_ms where node != 'write')", 30.0),
        ("avg(cost_usd where node == 'search')", 0.5),
        ("sum(tokens_used where node == 'nothing')", 0.0),
        ("avg(latency_ms where node == 'nothing')", 0.0),
        ("max(attempt)", 3.0),
        ("tokens_used", 400.0),
        ("node", "search"),
        ("elapsed_s * 2", 90.0),
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("10 - 4 - 3", 3.0),
        ("7 % 4", 3.0),
        ("-2 * -3", 6.0),
        ("1 / 0", 0.0),
        ("7 % 0", 0.0),
        ("sum(cost_usd) / count(where node == 'nothing')", 0.0),
        ("sum(cost_usd) / count(where node == 'nothing') > 0.5", False),
        ("not 1 > 2 and 3 > 2", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("node == 'search' and iteration == 2", True),
        ("kind != 'task' or model == ''", True),
        ("(1 > 2) == (3 > 4)", True),
        ("sum(tokens_used) > 10_000", False),
        ("count(where status == 'failed') >= 1 and elapsed_s > 30", True),
    ],
)
def test_representative_expressions_evaluate_as_documented(text: str, value: object) -> None:
    expression = parse_expression(text, expect=None)
    result = expression.evaluate(current=CURRENT, executions=RUNS, elapsed_s=45.0)
    assert result == pytest.approx(value) if isinstance(value, float) else result == value


def test_empty_context_reads_missing_fields_as_zero_and_empty() -> None:
    assert parse_expression("tokens_used + max(cost_usd)", expect=None).evaluate() == 0
    assert parse_expression("node == '' and count() == 0").evaluate() is True


def test_a_rule_fires_over_real_execution_records() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def record(i: int, node: str, tokens: int, status: ExecutionStatus) -> dict[str, Any]:
        return ExecutionRecord(
            execution_id=f"e{i}", lifetime_id="l", run_id="r", graph_name="g",
            graph_version="1.0.0", graph_hash="h", tenant="t", node=node, kind="task",
            iteration=i, seq=i, attempt=1, status=status, created_at=now, started_at=now,
            tokens_in=tokens, tokens_out=tokens, cost_usd=Decimal("0.10"), model="m",
        ).model_dump()  # fmt: skip

    records = [
        record(1, "search", 3000, ExecutionStatus.SUCCEEDED),
        record(2, "search", 2500, ExecutionStatus.FAILED),
    ]
    policy = load_policy(POLICIES / "valid-basic.yaml")
    cap = policy.rule("lifetime-token-cap")
    assert cap.fires(current=records[1], executions=records)
    assert not cap.fires(current=records[0], executions=records[:1])
    failed = parse_expression("count(status == 'failed') == 1 and sum(cost_usd) == 0.2")
    assert failed.evaluate(executions=records) is True


# -- printing and merging ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("((1 + 2)) * 3 > 0", "(1 + 2) * 3 > 0"),
        ("1 - (2 - 3) > 0", "1 - (2 - 3) > 0"),
        ("(1 - 2) - 3 > 0", "1 - 2 - 3 > 0"),
        ("not (true and false)", "not (true and false)"),
        ("(not true) == false", "(not true) == false"),
        ("- (- attempt) > 1_000", "--attempt > 1000"),
        ("node == 'it\\'s \"x\"\\n'", 'node == "it\'s \\"x\\"\\n"'),
        ("count( where kind=='plan' )>=2", 'count(where kind == "plan") >= 2'),
    ],
)
def test_unparse_prints_the_canonical_form(text: str, printed: str) -> None:
    tree = parse_expression(text).tree
    assert unparse(tree) == printed
    assert parse_expression(printed).tree == tree


def rule(name: str, when: str = "true", action: Action = Action.ABORT_LIFETIME) -> Rule:
    return Rule(name=name, when=when, scope=Scope.LIFETIME, action=action)


def test_merge_precedence_is_tenant_then_global_then_graph() -> None:
    global_ = Policy(rules=[rule("tokens", "sum(tokens_used) > 100"), rule("cost")])
    graph = Policy(rules=[rule("tokens", "sum(tokens_used) > 999"), rule("search-cap")])
    tenant = Policy(rules=[rule("cost", "false"), rule("tenant-only")])
    merged = merge_policies(global_, graph, tenant)
    assert [r.name for r in merged.rules] == ["tokens", "cost", "search-cap", "tenant-only"]
    # A graph cannot loosen a platform rule ...
    assert str(merged.rule("tokens").when) == "sum(tokens_used) > 100"
    # ... but a tenant override can (here it switches the rule off).
    assert str(merged.rule("cost").when) == "false"
    assert merged.rule("search-cap") == graph.rule("search-cap")


def test_merge_of_missing_layers() -> None:
    only = Policy(rules=[rule("a"), rule("b")])
    assert merge_policies() == Policy(rules=[])
    assert merge_policies(graph=only) == only
    assert merge_policies(None, None, only) == only
    tenant = Policy(rules=[rule("b", action=Action.PAUSE_LIFETIME)])
    assert merge_policies(tenant=tenant, graph=only).rule("b").action is Action.PAUSE_LIFETIME
