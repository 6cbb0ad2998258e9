"""Guardrail policies: YAML rules over execution telemetry, in a small safe expression language.

Load a policy with `load_policy` (or `parse_policy`), combine the global, graph and tenant
layers with `merge_policies`, and try a rule on sample executions with `Rule.fires`.
Expressions are parsed by a hand-written parser into an immutable, type-checked tree
(`Expression`) and compiled to closures; they are never passed to ``eval``. Every definition
error is a `graphrunner.errors.PolicyError` naming the file, line and column.

The wire models (`Decision`, `GuardrailStatus`, `PauseInfo`, `ResumeRequest`, `ResumeResult`)
are what clients see of a lifetime's guardrails. The interceptor that enforces policies on
every lifetime is `graphrunner.worker.GuardrailInterceptor` (installed by ``build_worker``).
"""

from graphrunner.guardrails._ast import ExprType
from graphrunner.guardrails._expr import Expression, parse_expression
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
    "MANUAL_PAUSE",
    "Action",
    "Decision",
    "ExprType",
    "Expression",
    "GuardrailStatus",
    "PauseInfo",
    "Policy",
    "PolicySource",
    "ResumeRequest",
    "ResumeResult",
    "Rule",
    "Scope",
    "load_policy",
    "merge_policies",
    "parse_expression",
    "parse_policy",
    "policy_json_schema",
]
