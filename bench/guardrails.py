"""Guardrail policies for the benchmark, and what evaluating them costs in this process.

Every graphrunner worker runs `GuardrailInterceptor`; for each Task and Plan execution it
checks the lifetime's rules before scheduling and on the result, then folds the result into
the lifetime's running totals (`LifetimeGuard.check` twice, `LifetimeGuard.fold` once). The
bench runs the loop graph under no policy, under `policy(1)` and under `policy(25)`, and
times those three calls alone here (`guard_cost`), away from Temporal's noise.

The rules are realistic and varied (lifetime aggregates with ``where`` filters, execution
comparisons, arithmetic, ``and``/``or``/``not``) and are made the same way every run. Their
thresholds are far beyond anything a benchmark lifetime reaches, so they are evaluated at
every step and never fire: a firing rule would reject, pause or abort the lifetime.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphrunner.guardrails import Policy, parse_policy
from graphrunner.guardrails._guard import LifetimeGuard, Phase, execution_row

__all__ = [
    "GuardClock",
    "GuardCost",
    "guard_cost",
    "policy",
    "policy_yaml",
    "rule_lines",
    "tenant_policy",
]

# The nodes of the benchmark loop graph (`bench.sides.loop_graph`): a Task, then a Plan.
_TASK, _PLAN = "work", "loop"

# (scope, action, condition) templates; {n} is a threshold multiplier (1 for the first 25
# rules, then 2, 3, ... when more are asked for) so that every rule is distinct. Lifetime
# aggregates are kept as running totals; execution rules read the execution being checked.
_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("lifetime", "abort_lifetime", "sum(tokens_used) > {n}0_000_000"),
    ("lifetime", "pause_lifetime", f'sum(tokens_used where node == "{_TASK}") > {{n}}5_000_000'),
    ("execution", "reject_execution", "tokens_in + tokens_out > {n}_000_000"),
    ("lifetime", "abort_lifetime", f'count(where node == "{_PLAN}") > {{n}}00_000'),
    ("lifetime", "pause_lifetime", 'avg(latency_ms where kind == "task") > {n}_800_000'),
    ("execution", "reject_execution", f'node == "{_TASK}" and iteration > {{n}}00_000'),
    ("lifetime", "reject_execution", f'max(latency_ms where node == "{_TASK}") > {{n}}_600_000'),
    ("lifetime", "abort_lifetime", "sum(cost_usd) > {n}0_000"),
    ("execution", "reject_execution", "latency_ms > {n}_200_000 or attempt > {n}00"),
    ("lifetime", "pause_lifetime", 'count(status == "failed") > {n}0_000'),
    ("lifetime", "abort_lifetime", "sum(tokens_out) / (count() + 1) > {n}_000_000"),
    ("lifetime", "abort_lifetime", "elapsed_s > {n}_209_600"),
    ("execution", "reject_execution", "cost_usd * 1000 > {n}_000_000"),
    ("lifetime", "pause_lifetime", 'min(latency_ms where kind == "plan") > {n}_600_000'),
    ("lifetime", "pause_lifetime", 'sum(cost_usd where model == "gpt-4o") > {n}_000'),
    ("execution", "reject_execution", 'kind == "task" and tokens_used > {n}_000_000'),
    (
        "lifetime",
        "abort_lifetime",
        'count(where kind == "task" and status == "succeeded") > {n}00_000',
    ),
    ("lifetime", "pause_lifetime", "not (iteration < {n}_000_000)"),
    (
        "lifetime",
        "pause_lifetime",
        f'sum(tokens_in where node == "{_TASK}" or node == "{_PLAN}") > {{n}}0_000_000',
    ),
    ("execution", "reject_execution", 'model != "" and latency_ms > {n}_800_000'),
    ("lifetime", "abort_lifetime", "avg(tokens_used) * count() > {n}0_000_000"),
    ("lifetime", "abort_lifetime", "max(attempt) > {n}_000"),
    ("execution", "reject_execution", "tokens_out - tokens_in > {n}_000_000"),
    ("lifetime", "pause_lifetime", "sum(latency_ms) / 1000 > {n}86_400"),
    (
        "lifetime",
        "abort_lifetime",
        f'count(where node == "{_TASK}") - count(where node == "{_PLAN}") > {{n}}0_000',
    ),
)


def rule_lines(count: int) -> list[str]:
    """``count`` policy rules as YAML flow mappings, the same every time."""
    lines = []
    for i in range(count):
        scope, action, when = _TEMPLATES[i % len(_TEMPLATES)]
        condition = when.format(n=1 + i // len(_TEMPLATES))
        lines.append(
            f"- {{name: bench-{i + 1:02d}, when: '{condition}', scope: {scope}, action: {action}}}"
        )
    return lines


def policy_yaml(count: int) -> str:
    """A policy of ``count`` rules (`rule_lines`) as YAML text."""
    return "rules:\n" + "".join(f"  {line}\n" for line in rule_lines(count))


def policy(count: int) -> Policy | None:
    """The benchmark policy of ``count`` rules; None (no policy at all) for 0."""
    return parse_policy(policy_yaml(count), file=f"<bench {count} rules>") if count else None


def tenant_policy() -> Policy:
    """One tenant-scope token cap: one ledger reserve (settle, check, reserve) per execution."""
    text = (
        "rules:\n  - {name: bench-tenant, when: 'sum(tokens_used) > 1_000_000_000_000', "
        "scope: tenant, action: abort_lifetime}\n"
    )
    return parse_policy(text, file="<bench tenant rule>")


@dataclass(frozen=True)
class GuardCost:
    """CPU time of the guard calls of one Task+Plan step, over ``steps`` steps."""

    rules: int
    steps: int
    us_per_step: float  # median over the repeats
    us_min: float
    us_max: float


_Execution = tuple[str, dict[str, object], dict[str, object]]


def _rows(steps: int) -> list[_Execution]:
    """(execution id, row before scheduling, row of the result) for each execution.

    Telemetry is well above what the bench's no-op nodes report (they report none), so the
    filters and aggregates see real numbers; it stays far below every threshold.
    """
    out = []
    for step in range(1, steps + 1):
        for node, kind in ((_TASK, "task"), (_PLAN, "plan")):
            before = execution_row(node=node, kind=kind, iteration=step, status="scheduled")
            telemetry = {
                "tokens_in": 1200,
                "tokens_out": 300,
                "cost_usd": 0.004,
                "latency_ms": 850.0 + step % 7,
                "model": "gpt-4o-mini",
            }
            after = execution_row(
                node=node, kind=kind, iteration=step, status="succeeded", telemetry=telemetry
            )
            out.append((f"{node}-{step}", before, after))
    return out


def _one_lifetime(guard: LifetimeGuard, rows: list[_Execution]) -> float:
    """Thread CPU seconds of what the interceptor does per execution, over a lifetime."""
    check, fold, before_, after_ = guard.check, guard.fold, Phase.BEFORE, Phase.AFTER
    fired = None
    began = time.thread_time()
    for i, (eid, before, after) in enumerate(rows):
        elapsed = i * 0.05
        fired = fired or check(before_, before, execution_id=eid, elapsed_s=elapsed)
        fired = fired or check(after_, after, execution_id=eid, elapsed_s=elapsed)
        fold(after, elapsed)
    took = time.thread_time() - began
    if fired is not None:
        raise AssertionError(f"bench guardrail rule {fired.rule.name} fired: {fired.observed}")
    return took


def guard_cost(counts: tuple[int, ...], steps: int, repeats: int) -> list[GuardCost]:
    """Time `LifetimeGuard.check` (before and after) and `fold` for each policy size.

    Each repeat runs a fresh lifetime of ``steps`` Task+Plan steps (two executions each, so
    four checks and two folds per step) under every policy in turn, the order rotating, so
    that drift in machine load lands on every size alike. Raises AssertionError if a rule
    fires (the thresholds are wrong).
    """
    rows = _rows(steps)
    policies = {count: policy(count) for count in counts}
    took: dict[int, list[float]] = {count: [] for count in counts}
    for pol in policies.values():  # warm-up: first-call costs, caches
        _one_lifetime(LifetimeGuard(pol or Policy(rules=[])), rows[:20])
    for r in range(repeats):
        order = list(counts[r % len(counts) :] + counts[: r % len(counts)])
        for count in order:
            pol = policies[count]
            guard = LifetimeGuard(pol or Policy(rules=[]))
            took[count].append(_one_lifetime(guard, rows) * 1e6 / steps)
    return [
        GuardCost(
            rules=count,
            steps=steps,
            us_per_step=statistics.median(us),
            us_min=min(us),
            us_max=max(us),
        )
        for count, us in took.items()
    ]


class GuardClock:
    """Thread CPU seconds spent in `LifetimeGuard.check` and `fold` in this process's workers.

    `installed` wraps both methods (on the class, so the interceptor's calls in the workflow
    worker go through the wrapper) and restores them on exit. Each call then costs about one
    `time.thread_time` call more (about 1 µs here). With lifetimes run one at a time, the
    difference of `seconds` around one lifetime is that lifetime's guard CPU.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - began

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[GuardClock]:
        names = ("check", "fold")
        saved = {name: getattr(LifetimeGuard, name) for name in names}
        try:
            for name, method in saved.items():
                setattr(LifetimeGuard, name, self._timed(method))
            yield self
        finally:
            for name, method in saved.items():
                setattr(LifetimeGuard, name, method)
