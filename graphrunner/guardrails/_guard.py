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

Aggregates are kept as running `Tally` values, so a check costs the same at every step, and
conditions are compiled to closures once per policy (`graphrunner.guardrails._eval`), as are
the reports of the values a fired rule saw.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graphrunner.guardrails._ast import Aggregate, unparse, walk
from graphrunner.guardrails._eval import (
    BoolFn,
    Compiler,
    ContributionFn,
    Frame,
    ObserveFn,
    Row,
    Tally,
    state_row,
)
from graphrunner.guardrails._policy import Action, Policy, Rule, Scope

__all__ = [
    "LifetimeGuard",
    "Phase",
    "Verdict",
    "aggregate_key",
    "aggregates_of",
    "execution_row",
]


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


def aggregates_of(rule: Rule) -> list[Aggregate]:
    """The distinct aggregates in a rule's condition, in order of appearance."""
    return list(dict.fromkeys(n for n in walk(rule.when.tree) if isinstance(n, Aggregate)))


def aggregate_key(node: Aggregate) -> str:
    """The canonical text of an aggregate: how the tenant ledger names its counters."""
    return unparse(node)


@dataclass(frozen=True)
class _Checked:
    """A rule ready to check: its condition compiled against its scope's aggregate slots.

    ``observe`` is compiled alongside, with the same slots, and runs only when the rule fires:
    it reports the values the condition saw (`Compiler.observer`).
    """

    rule: Rule
    severity: int
    fires: BoolFn
    observe: ObserveFn


@dataclass
class _Totals:
    """Running tallies of one scope's aggregates, by slot, with their compiled contributions."""

    aggregates: list[Aggregate]
    contributions: list[ContributionFn]
    tallies: list[Tally]

    @classmethod
    def of(cls, aggregates: list[Aggregate]) -> _Totals:
        compiler = Compiler()
        return cls(
            aggregates,
            [compiler.contribution(agg) for agg in aggregates],
            [Tally() for _ in aggregates],
        )

    @property
    def slots(self) -> dict[Aggregate, int]:
        return {agg: i for i, agg in enumerate(self.aggregates)}

    def with_row(self, tallies: list[Tally], row: Row, frame: Frame) -> list[float]:
        """Each aggregate's value once ``row`` is added to ``tallies`` (left unchanged)."""
        return [
            tally.value_with(agg.func, *contribute(row, frame))
            for agg, tally, contribute in zip(
                self.aggregates, tallies, self.contributions, strict=True
            )
        ]


@dataclass
class LifetimeGuard:
    """The guardrail state of one lifetime under one effective policy.

    Rule conditions are compiled once (`graphrunner.guardrails._eval`) when the guard is
    made or a rule replaced; each check then costs a few closure calls per rule.

    An execution counts in the lifetime's totals from the moment it passes its check before
    scheduling (`admit`) until its result is folded in (`fold`) or it is dropped (`drop`):
    the branches of a fan-out are checked one after another before any of them runs, and
    each must see the others, or ``count(where node == "search") > 5`` would let three
    parallel searches through where only one fits.

    Attributes:
        policy: The effective policy (global, graph and tenant layers merged).
        rows: Every execution folded so far (kept so that a rule replaced on resume can be
            recomputed over the whole lifetime).
    """

    policy: Policy
    rows: list[dict[str, object]] = field(default_factory=list)
    # Admitted, not yet folded: execution id -> (row before scheduling, elapsed at admission).
    _in_flight: dict[str, tuple[dict[str, object], float]] = field(default_factory=dict)
    _elapsed: list[float] = field(default_factory=list)  # of each row, when it was folded
    _lifetime: _Totals = field(init=False)
    _tenant: _Totals = field(init=False)
    _tenant_keys: dict[str, Aggregate] = field(init=False)
    _checked: list[_Checked] = field(init=False)
    _waived: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lifetime = _Totals.of([])
        self._rebuild()

    def _rebuild(self) -> None:
        def distinct(scope: Scope) -> list[Aggregate]:
            found = (agg for r in self.policy.rules if r.scope is scope for agg in aggregates_of(r))
            return list(dict.fromkeys(found))

        old = dict(zip(self._lifetime.aggregates, self._lifetime.tallies, strict=True))
        lifetime = _Totals.of(distinct(Scope.LIFETIME))
        for i, agg in enumerate(lifetime.aggregates):
            kept = old.get(agg)
            if kept is not None:
                lifetime.tallies[i] = kept
            else:  # a new aggregate (a rule replaced on resume): recompute it
                contribute = lifetime.contributions[i]
                for row, elapsed_s in zip(self.rows, self._elapsed, strict=True):
                    lifetime.tallies[i].add(*contribute(row, Frame(elapsed_s)))
        self._lifetime = lifetime
        self._tenant = _Totals.of(distinct(Scope.TENANT))
        self._tenant_keys = {aggregate_key(agg): agg for agg in self._tenant.aggregates}
        compilers = {
            Scope.EXECUTION: Compiler(),
            Scope.LIFETIME: Compiler(self._lifetime.slots),
            Scope.TENANT: Compiler(self._tenant.slots),
        }
        self._checked = [
            _Checked(
                rule,
                _SEVERITY[rule.action],
                compilers[rule.scope].boolean(rule.when.tree),
                compilers[rule.scope].observer(rule.when.tree),
            )
            for rule in self.policy.rules
        ]

    @property
    def tenant_keys(self) -> Mapping[str, Aggregate]:
        """Aggregates of tenant-scope rules, by ledger key (replaced, not changed, on resume)."""
        return self._tenant_keys

    def replace_rule(self, rule: Rule) -> None:
        """Swap in a new version of a rule (a raised limit on resume), recomputing totals."""
        self.policy = Policy(rules=[rule if r.name == rule.name else r for r in self.policy.rules])
        self._rebuild()

    def waive(self, rule: str, execution_id: str) -> None:
        """Let one execution through one rule (an operator resumed a pause it caused)."""
        self._waived.add((rule, execution_id))

    def waived(self, rule: str, execution_id: str) -> bool:
        """Whether an operator let ``execution_id`` through ``rule`` (see `waive`)."""
        return (rule, execution_id) in self._waived

    def tenant_contributions(self, row: Row, elapsed_s: float) -> dict[str, tuple[float, bool]]:
        """What ``row`` adds to each tenant-ledger counter."""
        frame = Frame(elapsed_s=elapsed_s)
        return {
            key: _finite(*contribute(row, frame))
            for key, contribute in zip(self._tenant_keys, self._tenant.contributions, strict=True)
        }

    def check(
        self,
        phase: Phase,
        row: Row,
        *,
        execution_id: str,
        elapsed_s: float,
        tenant: Mapping[str, Tally] | None = None,
        scopes: Collection[Scope] | None = None,
    ) -> Verdict | None:
        """The rule to act on for ``row``, or None.

        Args:
            phase: Before scheduling or after the result.
            row: The execution being checked (telemetry empty before scheduling).
            execution_id: Its id (an operator's waiver names it).
            elapsed_s: Seconds since the lifetime started.
            tenant: Tenant-ledger totals by key; before scheduling they exclude ``row`` (it is
                added here), after the result they include it (it was charged).
            scopes: Check only the rules of these scopes (default: all).
        """
        frames: dict[Scope, Frame] = {}
        best: _Checked | None = None
        for checked in self._checked:
            rule = checked.rule
            if best is not None and checked.severity <= best.severity:
                continue
            if scopes is not None and rule.scope not in scopes:
                continue
            if self._waived and (rule.name, execution_id) in self._waived:
                continue
            frame = frames.get(rule.scope)
            if frame is None:
                frame = frames[rule.scope] = self._frame(
                    rule.scope, phase, row, execution_id, elapsed_s, tenant
                )
            if checked.fires(row, frame):
                best = checked
        if best is None:
            return None
        frame = frames[best.rule.scope]
        return Verdict(best.rule, phase, best.observe(row, frame))

    def lifetime_totals(self) -> dict[str, Tally]:
        """The lifetime-scope aggregates so far, by canonical text (a child lifetime's seed)."""
        return {
            aggregate_key(agg): Tally(t.total, t.count, t.lo, t.hi)
            for agg, t in zip(self._lifetime.aggregates, self._lifetime.tallies, strict=True)
        }

    def seed(self, totals: Mapping[str, Tally]) -> None:
        """Start the lifetime-scope aggregates from a parent lifetime's (see `lifetime_totals`)."""
        for i, agg in enumerate(self._lifetime.aggregates):
            found = totals.get(aggregate_key(agg))
            if found is not None:
                self._lifetime.tallies[i] = Tally(found.total, found.count, found.lo, found.hi)

    def admit(self, execution_id: str, row: Row, elapsed_s: float) -> None:
        """Count an execution that passed its check before scheduling, until it is folded."""
        self._in_flight[execution_id] = (dict(row), elapsed_s)

    def drop(self, execution_id: str) -> None:
        """Stop counting an admitted execution that ended without a result (it failed)."""
        self._in_flight.pop(execution_id, None)

    def fold(self, row: Row, elapsed_s: float, *, execution_id: str | None = None) -> None:
        """Add a finished (or rejected) execution to the lifetime's totals.

        Args:
            row: The execution, with its telemetry.
            elapsed_s: Seconds since the lifetime started.
            execution_id: Its id, if it was admitted: it then stops counting as in flight.
        """
        if execution_id is not None:
            self._in_flight.pop(execution_id, None)
        frame = Frame(elapsed_s=elapsed_s)
        for tally, contribute in zip(
            self._lifetime.tallies, self._lifetime.contributions, strict=True
        ):
            tally.add(*contribute(row, frame))
        self.rows.append(dict(row))
        self._elapsed.append(elapsed_s)

    def _frame(
        self,
        scope: Scope,
        phase: Phase,
        row: Row,
        execution_id: str,
        elapsed_s: float,
        tenant: Mapping[str, Tally] | None,
    ) -> Frame:
        if scope is Scope.EXECUTION:
            return Frame(elapsed_s=elapsed_s, executions=(row,))
        base = Frame(elapsed_s=elapsed_s)
        if scope is Scope.LIFETIME:
            totals = self._lifetime
            tallies = totals.tallies
            others = [v for k, v in self._in_flight.items() if k != execution_id]
            if others:  # admitted siblings (a fan-out): count them as they stand
                tallies = [Tally(t.total, t.count, t.lo, t.hi) for t in tallies]
                for other, admitted_at in others:
                    at = Frame(elapsed_s=admitted_at)
                    for tally, contribute in zip(tallies, totals.contributions, strict=True):
                        tally.add(*contribute(other, at))
            return Frame(elapsed_s, totals.with_row(tallies, row, base))
        seen = [(tenant or {}).get(key, Tally()) for key in self._tenant_keys]
        if phase is Phase.BEFORE:
            values = self._tenant.with_row(seen, row, base)
        else:
            values = [
                t.value(agg.func) for agg, t in zip(self._tenant.aggregates, seen, strict=True)
            ]
        return Frame(elapsed_s, values)


def _finite_number(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past float range
        return False


def _finite(value: float, counts: bool) -> tuple[float, bool]:
    """A ledger delta JSON (and so the state DB) can carry: infinities clamp, NaN is 0."""
    if math.isnan(value):
        return 0.0, counts
    return max(-sys.float_info.max, min(sys.float_info.max, value)), counts


def execution_row(
    *,
    node: str,
    kind: str,
    iteration: int,
    status: str,
    attempt: int = 1,
    telemetry: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> dict[str, object]:
    """The fields a rule can read of one execution (see `graphrunner.guardrails._ast.FIELDS`).

    ``state`` is the lifetime state the execution was called with (its call's ``state``):
    its number fields are in the row as ``state.<field>`` (rules read number fields only,
    and the tenant ledger's activity takes the row as numbers and strings).
    """
    t = telemetry or {}
    tokens_in, tokens_out = int(t.get("tokens_in") or 0), int(t.get("tokens_out") or 0)
    numbers = {
        key: value
        for key, value in state_row(state).items()
        if isinstance(value, int | float) and not isinstance(value, bool) and _finite_number(value)
    }
    return {
        **numbers,
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
