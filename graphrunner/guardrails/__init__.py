"""Guardrail policies: YAML rules over execution telemetry, in a small safe expression language.

Load a policy with `load_policy`, combine the global, graph and tenant layers with
`merge_policies`, and check a rule with `Rule.fires` over an `EvalContext`. Expressions are
parsed by a hand-written parser into an immutable, type-checked tree (`Expression`); they are
never passed to ``eval``. Every definition error is a `graphrunner.errors.PolicyError` naming
the file, line and column.
"""

from graphrunner.guardrails._ast import (
    AGGREGATES,
    FIELDS,
    Aggregate,
    Binary,
    Boolean,
    Expr,
    ExprType,
    Field,
    Number,
    String,
    Unary,
    unparse,
)
from graphrunner.guardrails._eval import EvalContext, Value, evaluate
from graphrunner.guardrails._expr import MAX_DEPTH, MAX_LENGTH, Expression, parse_expression
from graphrunner.guardrails._policy import (
    Action,
    Policy,
    Rule,
    Scope,
    load_policy,
    merge_policies,
    parse_policy,
    policy_json_schema,
)

__all__ = [
    "AGGREGATES",
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Action",
    "Aggregate",
    "Binary",
    "Boolean",
    "EvalContext",
    "Expr",
    "ExprType",
    "Expression",
    "Field",
    "Number",
    "Policy",
    "Rule",
    "Scope",
    "String",
    "Unary",
    "Value",
    "evaluate",
    "load_policy",
    "merge_policies",
    "parse_expression",
    "parse_policy",
    "policy_json_schema",
    "unparse",
]
