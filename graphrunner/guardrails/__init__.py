"""Guardrail policies: YAML rules over execution telemetry, in a small safe expression language.

Load a policy with `load_policy`, combine the global, graph and tenant layers with
`merge_policies`, and check a rule with `Rule.fires` over an `EvalContext`.
`GuardrailInterceptor` enforces the policies on every lifetime a worker runs (see its module
for how), keeping per-lifetime state in a `LifetimeGuard`. Expressions are
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
from graphrunner.guardrails._eval import EvalContext, Tally, Value, evaluate
from graphrunner.guardrails._expr import MAX_DEPTH, MAX_LENGTH, Expression, parse_expression
from graphrunner.guardrails._guard import LifetimeGuard, Phase, Verdict
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
from graphrunner.guardrails._sources import PolicySource
from graphrunner.guardrails._wire import (
    MANUAL_PAUSE,
    Decision,
    GuardrailStatus,
    PauseInfo,
    ResumeRequest,
    ResumeResult,
)

__all__ = [
    "AGGREGATES",
    "FIELDS",
    "MANUAL_PAUSE",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Action",
    "Aggregate",
    "Binary",
    "Boolean",
    "Decision",
    "EvalContext",
    "Expr",
    "ExprType",
    "Expression",
    "Field",
    "GuardrailInterceptor",
    "GuardrailStatus",
    "LifetimeGuard",
    "Number",
    "PauseInfo",
    "Phase",
    "Policy",
    "PolicySource",
    "ResumeRequest",
    "ResumeResult",
    "Rule",
    "Scope",
    "String",
    "Tally",
    "Unary",
    "Value",
    "Verdict",
    "evaluate",
    "load_policy",
    "merge_policies",
    "parse_expression",
    "parse_policy",
    "policy_json_schema",
    "unparse",
]


def __getattr__(name: str) -> object:
    # Lazy: the interceptor imports graphrunner._types, which imports the graph model, which
    # imports this package for Policy; an eager import here would be a cycle.
    if name == "GuardrailInterceptor":
        from graphrunner.guardrails._interceptor import GuardrailInterceptor

        return GuardrailInterceptor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
