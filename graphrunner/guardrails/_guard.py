"""Which rule fires for an execution: the guardrail state of one lifetime, with no I/O.

`LifetimeGuard` is fed only what the workflow sees (the execution about to be scheduled, the
result that came back, tenant totals read by an activity), so replaying a history feeds it the
same values and it reaches the same decisions.

Each execution is checked twice. **Before scheduling**, the execution is in scope with no
telemetry yet (status ``scheduled``): ``count(where node == "search") > 5`` stops the sixth
search before it runs, and ``iteration > 3`` stops the fourth run of a node. **After the
result**, it is in scope with its telemetry: ``sum(tokens_used) > 10000`` fires on the
execution that crossed the cap. When several rules fire, the most severe action wins
(abort, then pause, then reject), then the first in the policy.

Aggregates are kept as running `Tally` values, so a check costs the same at every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graphrunner.guardrails._ast import EQUALITY, ORDERING, Aggregate, Binary, Expr, Unary, unparse
from graphrunner.guardrails._ast import Field as FieldRef
from graphrunner.guardrails._eval import EvalContext, Tally, Value, contribution, evaluate
from graphrunner.guardrails._policy import Action, Policy, Rule, Scope

__all__ = [
    "LifetimeGuard",
    "Phase",
    "Verdict",
    "aggregate_key",
    "aggregates_of",
    "execution_row",
]

Row = Mapping[str, object]

_SEVERITY = {Action.ABORT_LIFETIME: 3, Action.PAUSE_LIFETIME: 2, Action.REJECT_EXECUTION: 1}


class Phase(StrEnum):
    """When a check runs."""

    BEFORE = "before"
    AFTER = "after"


@dataclass(frozen=True)
class Verdict:
    """A rule that fired, and the values that made it fire."""

    rule: Rule
    phase: Phase
    observed: dict[str, float | str]


def _walk(node: Expr, *, into_aggregates: bool = True) -> Iterator[Expr]:
    yield node
    match node:
        case Unary(_, operand):
            yield from _walk(operand, into_aggregates=into_aggregates)
        case Binary(_, left, right):
            yield from _walk(left, into_aggregates=into_aggregates)
            yield from _walk(right, into_aggregates=into_aggregates)
        case Aggregate(_, arg, where) if into_aggregates:
            if arg is not None:
                yield from _walk(arg)
            if where is not None:
                yield from _walk(where)


def aggregates_of(rule: Rule) -> list[Aggregate]:
    """The distinct aggregates in a rule's condition, in order of appearance."""
    return list(dict.fromkeys(n for n in _walk(rule.when.tree) if isinstance(n, Aggregate)))


def aggregate_key(node: Aggregate) -> str:
    """The canonical text of an aggregate: how the tenant ledger names its counters."""
    return unparse(node)


def _observed(tree: Expr, context: EvalContext) -> dict[str, float | str]:
    """The value of every non-literal side of every comparison in ``tree``.

    Comparisons inside an aggregate (its filter) are per execution and are not reported.
    """
    seen: dict[str, float | str] = {}
    for node in _walk(tree, into_aggregates=False):
        if isinstance(node, Binary) and node.op in (*ORDERING, *EQUALITY):
            for side in (node.left, node.right):
                if isinstance(side, Aggregate | Binary | Unary | FieldRef):
                    value: Value = evaluate(side, context)
                    if not isinstance(value, str):
                        value = float(value)
                        # JSON (so PostgreSQL) has no NaN or infinity: keep those as text.
                        value = value if math.isfinite(value) else str(value)
                    seen[unparse(side)] = value
    return seen


@dataclass
class LifetimeGuard:
    """The guardrail state of one lifetime under one effective policy.

    Attributes:
        policy: The effective policy (global, graph and tenant layers merged).
        rows: Every execution folded so far (kept so that a rule replaced on resume can be
            recomputed over the whole lifetime).
    """

    policy: Policy
    rows: list[dict[str, object]] = field(default_factory=list)
    _tallies: dict[Aggregate, Tally] = field(default_factory=dict)
    _waived: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        wanted = {
            agg
            for rule in self.policy.rules
            if rule.scope is Scope.LIFETIME
            for agg in aggregates_of(rule)
        }
        tallies = {agg: self._tallies.get(agg) for agg in wanted}
        for agg, tally in tallies.items():
            if tally is None:  # a new aggregate (a rule replaced on resume): recompute it
                fresh = Tally()
                for row in self.rows:
                    fresh.add(*contribution(agg, row, EvalContext()))
                self._tallies[agg] = fresh
        self._tallies = {agg: self._tallies[agg] for agg in wanted}

    @property
    def tenant_keys(self) -> dict[str, Aggregate]:
        """Aggregates of tenant-scope rules, by ledger key."""
        return {
            aggregate_key(agg): agg
            for rule in self.policy.rules
            if rule.scope is Scope.TENANT
            for agg in aggregates_of(rule)
        }

    def replace_rule(self, rule: Rule) -> None:
        """Swap in a new version of a rule (a raised limit on resume), recomputing totals."""
        self.policy = Policy(rules=[rule if r.name == rule.name else r for r in self.policy.rules])
        self._rebuild()

    def waive(self, rule: str, execution_id: str) -> None:
        """Let one execution through one rule (an operator resumed a pause it caused)."""
        self._waived.add((rule, execution_id))

    def tenant_contributions(self, row: Row, elapsed_s: float) -> dict[str, tuple[float, bool]]:
        """What ``row`` adds to each tenant-ledger counter."""
        context = EvalContext(current=row, elapsed_s=elapsed_s)
        return {key: contribution(agg, row, context) for key, agg in self.tenant_keys.items()}

    def check(
        self,
        phase: Phase,
        row: Row,
        *,
        execution_id: str,
        elapsed_s: float,
        tenant: Mapping[str, Tally] | None = None,
    ) -> Verdict | None:
        """The rule to act on for ``row``, or None.

        Args:
            phase: Before scheduling or after the result.
            row: The execution being checked (telemetry empty before scheduling).
            execution_id: Its id (an operator's waiver names it).
            elapsed_s: Seconds since the lifetime started.
            tenant: Tenant-ledger totals by key; before scheduling they exclude ``row`` (it is
                added here), after the result they include it (it was charged).
        """
        contexts: dict[Scope, EvalContext] = {}
        best: tuple[int, Rule] | None = None
        for rule in self.policy.rules:
            if (rule.name, execution_id) in self._waived:
                continue
            if best is not None and _SEVERITY[rule.action] <= best[0]:
                continue
            context = contexts.get(rule.scope)
            if context is None:
                context = contexts[rule.scope] = self._context(
                    rule.scope, phase, row, elapsed_s, tenant
                )
            if rule.fires(context):
                best = (_SEVERITY[rule.action], rule)
        if best is None:
            return None
        rule = best[1]
        return Verdict(rule, phase, _observed(rule.when.tree, contexts[rule.scope]))

    def fold(self, row: Row, elapsed_s: float) -> None:
        """Add a finished (or rejected) execution to the lifetime's totals."""
        context = EvalContext(current=row, elapsed_s=elapsed_s)
        for agg, tally in self._tallies.items():
            tally.add(*contribution(agg, row, context))
        self.rows.append(dict(row))

    def _context(
        self,
        scope: Scope,
        phase: Phase,
        row: Row,
        elapsed_s: float,
        tenant: Mapping[str, Tally] | None,
    ) -> EvalContext:
        if scope is Scope.EXECUTION:
            return EvalContext(current=row, executions=[row], elapsed_s=elapsed_s)
        base = EvalContext(current=row, elapsed_s=elapsed_s)
        totals: dict[Aggregate, float] = {}
        if scope is Scope.LIFETIME:
            for agg, tally in self._tallies.items():
                totals[agg] = _with(tally, contribution(agg, row, base)).value(agg.func)
        else:
            for key, agg in self.tenant_keys.items():
                seen = (tenant or {}).get(key, Tally())
                if phase is Phase.BEFORE:
                    seen = _with(seen, contribution(agg, row, base))
                totals[agg] = seen.value(agg.func)
        return EvalContext(current=row, elapsed_s=elapsed_s, totals=totals)


def _with(tally: Tally, add: tuple[float, bool]) -> Tally:
    copy = Tally(tally.total, tally.count, tally.lo, tally.hi)
    copy.add(*add)
    return copy


def execution_row(
    *,
    node: str,
    kind: str,
    iteration: int,
    status: str,
    attempt: int = 1,
    telemetry: Mapping[str, Any] | None = None,
) -> dict[str, object]:
    """The fields a rule can read of one execution (see `graphrunner.guardrails.FIELDS`)."""
    t = telemetry or {}
    tokens_in, tokens_out = int(t.get("tokens_in") or 0), int(t.get("tokens_out") or 0)
    return {
        "node": node,
        "kind": kind,
        "iteration": iteration,
        "attempt": attempt,
        "status": status,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens_used": tokens_in + tokens_out,
        "cost_usd": float(t.get("cost_usd") or 0.0),
        "latency_ms": float(t.get("latency_ms") or 0.0),
        "model": str(t.get("model") or ""),
    }
