"""Start one dev server, run every side's worker, and measure the sides alternately.

Every measurement is taken for all its sides back to back, in an order that rotates each
round (A B, B A, A B ... for two sides; A B C D, B C D A, ... for four), so drift in machine
load lands on all sides alike.

The sides are graphrunner without records, graphrunner recording every node execution into a
SQLite and into a PostgreSQL state DB, and the hand-written baseline. The recording sides take
part in the per-step latency (Plan as activity) and throughput figures only.

The guardrail section runs graphrunner (whose workers always run the guardrail interceptor)
under no policy, a 1-rule and a 25-rule policy (`bench.guardrails`), and the baseline, on the
same loop; for its first rounds also a recording worker with one tenant-scope rule against the
recording worker without rules. Then `bench.guardrails.guard_cost` times rule evaluation alone.

The state section runs the Task+Plan loop holding a small lifetime state (`bench.nodes.Tally`,
`UntilCount`) and the same loop without state, on graphrunner and on the baseline (whose
workflow holds the same dict and merges the updates by hand), alternated; then one lifetime
per side whose state holds a large field, for its history.

Then the idle-memory section: graphrunner and the baseline each hold many lifetimes waiting on
a running node (`bench.gate`) while `tracemalloc` measures the Python heap they take.

Then the waiting-lifetimes section (`bench.waiting`): each side's worker in a process of its
own, answer round trips of a lifetime waiting for a person, then many such lifetimes parked
on that worker (its RSS before and after) and answered.

Then the LLM-turns section (`bench.llm_turns`): one tool conversation per side that grows
~2 KiB a round, graphrunner with and without a blob store (its conversation by reference, or
inline) and the baseline passing the whole message list to every model activity; history
bytes per round.

Last, the long-loop section (`bench.long_loop`): one lifetime per side of thousands of iterations
that continues as new whenever Temporal suggests it; its runs, the largest run's events and
history bytes, its wall time per iteration. Last, so the histories it adds to the server's
database weigh on no other section.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.converter import converter_cost
from bench.env import CoreWarnings, ProcessCpu, dev_server, log, quiet_runtime
from bench.gate import GATE
from bench.guardrails import GuardClock, GuardCost, guard_cost, policy, tenant_policy
from bench.history import HistoryStats, activity_payloads, growth, history_stats, step_bytes
from bench.llm_turns import Talk, script_model, talk
from bench.long_loop import LongLoop, long_loop
from bench.records import state_dbs
from bench.sides import (
    ACTIVITY_SLOTS,
    Baseline,
    Graphrunner,
    Side,
    Starter,
    graphrunner_client,
    timed,
)
from bench.waiting import (
    QUEUES,
    RoundTrip,
    WorkerProcess,
    park_and_answer,
    round_trip,
    worker_process,
)
from graphrunner import Settings
from graphrunner.guardrails import PolicySource
from graphrunner.llm import offline

__all__ = [
    "ACTIVITY_SLOTS",
    "BASELINE",
    "GRAPHRUNNER",
    "GUARDED",
    "GUARD_TITLE",
    "RECORDING",
    "RECORDING_AIMS",
    "STATE_SIDES",
    "TENANT",
    "UNGUARDED",
    "Config",
    "Measurement",
    "Report",
    "run",
]

GRAPHRUNNER = "graphrunner"
BASELINE = "baseline"
# Recording sides: side name -> (state DB kind, how the tables name it, task queue). The
# queues are as long as graphrunner's "bench-graphrunner", so the histories compare byte for
# byte (the queue name is in several events of every step).
RECORDING = {
    "graphrunner+sqlite": ("sqlite", "records in SQLite", "bench-gr-rec-sqlt"),
    "graphrunner+postgres": ("postgres", "records in PostgreSQL", "bench-gr-rec-pgsq"),
}
# Guardrail sides: side name -> (rules in the worker's global policy, task queue). Without
# a policy the interceptor still runs (it always does): that is the "graphrunner" side.
GUARDED = {
    "graphrunner+1rule": (1, "bench-gr-rules-01"),
    "graphrunner+25rules": (25, "bench-gr-rules-25"),
}
# One tenant-scope rule: one reserve per execution (settling the one before, checking and
# reserving this one in one transaction), in the SQLite state DB, so it is compared with the
# SQLite recording side.
TENANT = "graphrunner+tenant"
# graphrunner's worker without the guardrail interceptor (bench only): what guardrails cost
# before any rule, the interceptor's own wrapper and its policy local activity per lifetime.
UNGUARDED = "graphrunner-noguard"
UNGUARDED_QUEUE = "bench-gr-no-guard"
TENANT_QUEUE = "bench-gr-tenant-1"
TENANT_REFERENCE = "graphrunner+sqlite"  # the same recording worker without rules
# Aims of the recording rows (ratio against the baseline): looser than graphrunner's own, as
# each step also awaits two record writes.
RECORDING_AIMS = {"latency": 1.1, "throughput": 0.9}
GUARD_TITLE = "Per-step latency, guardrails: "  # how the guardrail rows' titles begin
# The state section's lifetimes: the stateful loop on each side (each compared with the
# same side's loop without state, GRAPHRUNNER and BASELINE), and the loop whose state holds
# one large field.
STATEFUL = "graphrunner+state"
BASELINE_STATEFUL = "baseline+state"
BIG_STATE = "graphrunner+bigstate"
BASELINE_BIG_STATE = "baseline+bigstate"
STATE_SIDES = (GRAPHRUNNER, STATEFUL, BASELINE, BASELINE_STATEFUL)
# The LLM-turns section's graphrunner contestants: the recording worker, whose blob store keeps
# the conversation between rounds (by reference), and the worker without records (inline).
TALK_BY_REF = "graphrunner+sqlite"
TALK_INLINE = GRAPHRUNNER


@dataclass(frozen=True)
class Config:
    """Sizes of the runs."""

    steps: int = 40  # Task+Plan steps per lifetime in the latency loops
    reps: int = 7  # lifetimes per side for each latency and fan-out figure
    branches: int = 5  # parallel tasks per fan-out round
    rounds: int = 10  # fan-out rounds per lifetime
    lifetimes: int = 50  # concurrent lifetimes per throughput batch
    lifetime_steps: int = 10  # Task+Plan steps per throughput lifetime
    batches: int = 3  # throughput batches per side
    record_batches: int = 1  # throughput batches per recording side (in the first rounds)
    guard_reps: int = 9  # lifetimes per side in the guardrail section
    tenant_reps: int = 3  # of which the tenant-rule side and its reference take part in
    guard_steps: int = 1000  # Task+Plan steps of each in-process guard evaluation run
    guard_repeats: int = 3  # in-process runs per policy size
    # Lifetimes per side waiting at once in the idle-memory section; at most ACTIVITY_SLOTS,
    # so that all of them run their node at once.
    idle_lifetimes: int = 90
    idle_reps: int = 2  # idle-memory rounds (each side first once)
    # The waiting-lifetimes section: lifetimes per side parked at once, waiting for a person
    # (in the workflow: no activity slot, so more than ACTIVITY_SLOTS), and rounds of one
    # answer's round trip per side (within the section's share of the time budget).
    waiting_lifetimes: int = 1000
    answer_reps: int = 12
    # The state section: state_reps rounds of its four loops (stateful and stateless, each
    # side) of state_steps steps, for latency; then one lifetime of each of state_history_steps
    # steps (the same in both modes, so the state's list grows as far), for history; and one
    # lifetime per side of state_big_steps steps whose state holds state_big characters (over
    # the 256 KiB external-storage threshold).
    state_reps: int = 8
    state_steps: int = 20
    state_history_steps: int = 40
    state_big: int = 300_000
    state_big_steps: int = 5
    # The long-loop section: iterations (a task and a routing decision each) of its one
    # lifetime per side, which continues as new when Temporal suggests it (0: no section).
    long_iterations: int = 5000
    # The LLM-turns section: tool rounds of its one conversation per side (each ~2 KiB more),
    # and the rounds whose history bytes it reports (0 rounds: no section).
    talk_rounds: int = 100
    talk_turns: tuple[int, ...] = (10, 50, 100)
    # Seconds the measurements may take in all; a section that has spent its share stops
    # repeating (so a badly slow side still yields a report, on fewer rounds).
    budget_s: float = 285.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            steps=15,
            reps=3,
            rounds=4,
            lifetimes=20,
            lifetime_steps=5,
            batches=1,
            guard_reps=3,
            tenant_reps=1,
            guard_steps=200,
            idle_lifetimes=30,
            state_reps=3,
            state_steps=10,
            waiting_lifetimes=100,
            answer_reps=5,
            long_iterations=1000,
            talk_rounds=30,
            talk_turns=(10, 20, 30),
            budget_s=46.0,
        )


@dataclass
class Measurement:
    """One figure for a graphrunner side and the baseline: samples, medians and their ratio.

    ``side`` is the graphrunner side in the "graphrunner" column, ``against`` the side the
    ratio divides by (the baseline, or for the guardrail rows graphrunner without rules);
    ``reference`` (recording rows: graphrunner without records; guardrail rows: ``against``,
    measured in the same rounds; state rows: graphrunner without state) is a side it is also
    compared with, as a difference in the row's unit and a ratio; ``against_reference`` (state
    rows: the baseline without state) is the one ``against`` is compared with. ``group`` says
    which table shows the row ("main", "guardrails" or "state").
    """

    key: str
    title: str
    unit: str
    higher_is_better: bool
    aim: float | None  # ratio side/baseline to stay within (max, or min if higher)
    side: str = GRAPHRUNNER
    reference: str | None = None
    against: str = BASELINE
    against_reference: str | None = None
    group: str = "main"
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms_per_step: dict[str, dict[str, float]] = field(default_factory=dict)
    rounds: tuple[int, int] = (0, 0)  # rounds done, rounds planned
    unavailable: str | None = None  # why this side could not be measured at all
    limit: float | None = None  # a bound on the side's median itself, in the row's unit
    # Other figures of the row by side (the waiting section's RSS readings, in MiB).
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    def median(self, side: str) -> float:
        return statistics.median(self.samples[side])

    def compare(self, side: str, other: str) -> tuple[float, tuple[float, float]]:
        """Ratio of the medians of two sides, and the quartiles of the per-round ratios."""
        pairs = zip(self.samples[side], self.samples[other], strict=True)
        ratio = self.median(side) / self.median(other)
        return ratio, _quartiles([s / o for s, o in pairs])

    @property
    def ratio(self) -> float:
        return self.compare(self.side, self.against)[0]

    @property
    def ratio_spread(self) -> tuple[float, float]:
        """Quartiles of the per-round ratios (each round runs the sides back to back)."""
        return self.compare(self.side, self.against)[1]

    @property
    def delta(self) -> float | None:
        """Median of ``side`` minus median of ``reference``, in the row's unit."""
        if self.reference is None:
            return None
        return self.median(self.side) - self.median(self.reference)

    @property
    def delta_spread(self) -> tuple[float, float] | None:
        """Quartiles of the per-round differences ``side`` - ``reference``."""
        if self.reference is None:
            return None
        sides = self.samples[self.side], self.samples[self.reference]
        return _quartiles([s - r for s, r in zip(*sides, strict=True)])

    @property
    def met(self) -> bool | None:
        if self.unavailable is not None or (self.aim is None and self.limit is None):
            return None
        met = True
        if self.aim is not None:
            met = self.ratio >= self.aim if self.higher_is_better else self.ratio <= self.aim
        if self.limit is not None:
            value = self.median(self.side)
            met = met and (value >= self.limit if self.higher_is_better else value <= self.limit)
        return met

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        if self.unavailable is None:
            out["median"] = {side: self.median(side) for side in self.samples}
            out["ratio"] = self.ratio
            out["ratio_quartiles"] = list(self.ratio_spread)
            if self.reference is not None:
                out["delta"] = self.delta
                out["delta_quartiles"] = list(self.delta_spread or ())
                ratio, spread = self.compare(self.side, self.reference)
                out["reference_ratio"] = ratio
                out["reference_ratio_quartiles"] = list(spread)
            if self.against_reference is not None:
                ratio, spread = self.compare(self.against, self.against_reference)
                out["against_reference_ratio"] = ratio
                out["against_reference_ratio_quartiles"] = list(spread)
            if self.against != BASELINE and BASELINE in self.samples:
                ratio, spread = self.compare(self.side, BASELINE)
                out["baseline_ratio"] = ratio
                out["baseline_ratio_quartiles"] = list(spread)
        out["met"] = self.met
        return out


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


@dataclass
class Report:
    """Everything one benchmark run found."""

    config: Config
    measurements: list[Measurement]
    history: dict[str, HistoryStats]
    seconds: float
    server_version: str
    core_warnings: dict[str, int]  # Temporal core warnings by kind, with their counts
    # CPU µs per Task+Plan step of the data converters, by name (see bench/converter.py).
    converter_us_per_step: dict[str, float] = field(default_factory=dict)
    # graphrunner's result() against the SDK's on one finished lifetime, by its size ("1-step",
    # "40-step"): wall and CPU ms of each (see `_result_cost`).
    result_readback_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # CPU of the guard's checks and folds per Task+Plan step, by policy size (in-process).
    guard_cost: list[GuardCost] = field(default_factory=list)
    # The state section's last lifetime of each of its sides (`STATE_SIDES`, `BIG_STATE`,
    # `BASELINE_BIG_STATE`), and the history bytes the state adds to each step of the
    # stateful loop (stateful minus stateless, step 1 first), by GRAPHRUNNER and BASELINE.
    state_history: dict[str, HistoryStats] = field(default_factory=dict)
    state_added_bytes: dict[str, list[int]] = field(default_factory=dict)
    # The long-loop section's lifetime of each side (GRAPHRUNNER, BASELINE): its runs.
    long_loop: dict[str, LongLoop] = field(default_factory=dict)
    # The LLM-turns section's conversation of each side (TALK_BY_REF, TALK_INLINE, BASELINE).
    llm_turns: dict[str, Talk] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # sides not run, and why


# Seconds each section's rounds must fit in at the default budget (the first round always
# runs); with another `Config.budget_s` each gets the same share of it.
_SECONDS = {
    "lifetime_overhead": 3.2,
    "latency": 43.2,
    "latency_local": 16.0,
    "guardrails": 90.0,
    "fan_out": 12.8,
    "state": 25.0,
    "throughput": 84.8,
    "answer_round_trip": 10.0,
}
_SHARES = {key: seconds / sum(_SECONDS.values()) for key, seconds in _SECONDS.items()}

Samples = dict[str, list[float]]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_S = TypeVar("_S", bound=_Named)


@dataclass(frozen=True)
class _Variant:
    """One kind of lifetime of one side, as `_alternate` takes sides."""

    name: str
    start: Starter


async def _alternate(
    sides: list[_S],
    times: int,
    budget_s: float,
    measure: Callable[[_S], Awaitable[float]],
    *,
    limits: dict[str, int] | None = None,
) -> Samples:
    """Measure the sides ``times`` rounds, rotating the order each round, within a budget.

    A side named in ``limits`` takes part in that many first rounds only. The first round
    always runs; a later one only if it is expected to end within ``budget_s`` (each side
    taking as long as it took on average so far).
    """
    samples: Samples = {side.name: [] for side in sides}
    took: dict[str, list[float]] = {side.name: [] for side in sides}
    limits = limits or {}
    began = time.perf_counter()
    for i in range(times):
        here = [side for side in sides if i < limits.get(side.name, times)]
        expected = sum(statistics.fmean(took[side.name]) for side in here if took[side.name])
        if i and time.perf_counter() - began + expected > budget_s:
            log(f"  time budget of {budget_s:.0f} s: stopped after {i} of {times} rounds")
            break
        turn = i % len(here)
        for side in here[turn:] + here[:turn]:
            side_began = time.perf_counter()
            samples[side.name].append(await measure(side))
            took[side.name].append(time.perf_counter() - side_began)
    return samples


def _rows(template: Measurement, samples: Samples, planned: dict[str, int]) -> list[Measurement]:
    """One row per graphrunner side in ``samples``, each against the baseline of its rounds.

    A recording row's aim is `RECORDING_AIMS`' for the template's key (none if it has none).
    """
    rows = []
    for side in samples:
        done = len(samples[side])  # a side takes part in the first rounds
        if side == BASELINE or not done:
            continue
        recording = side in RECORDING
        m = Measurement(
            key=f"{template.key}_records_{RECORDING[side][0]}" if recording else template.key,
            title=f"{template.title}, {RECORDING[side][1]}" if recording else template.title,
            unit=template.unit,
            higher_is_better=template.higher_is_better,
            aim=RECORDING_AIMS.get(template.key) if recording else template.aim,
            side=side,
            reference=GRAPHRUNNER if recording else None,
        )
        kept = (side, BASELINE, GRAPHRUNNER) if recording else (side, BASELINE)
        m.samples = {name: samples[name][:done] for name in kept}
        m.rounds = done, planned.get(side, planned[BASELINE])
        rows.append(m)
    return rows


def _unavailable(template: Measurement, side: str, reason: str) -> Measurement:
    kind, label, _ = RECORDING[side]
    return Measurement(
        key=f"{template.key}_records_{kind}",
        title=f"{template.title}, {label}",
        unit=template.unit,
        higher_is_better=template.higher_is_better,
        aim=RECORDING_AIMS.get(template.key),
        side=side,
        reference=GRAPHRUNNER,
        unavailable=reason,
    )


class _Run:
    """The measurements of one run: sides, sizes, CPU accounting, and what they left."""

    def __init__(
        self,
        cfg: Config,
        sides: list[Side],
        cpu: ProcessCpu,
        unavailable: dict[str, str],
        guarded: list[Side] | None = None,
        address: str | None = None,
        blobs: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.address = address  # the dev server's, for the waiting section's worker processes
        self.blobs = blobs  # the blob store's directory, for graphrunner's worker process
        self.sides = sides
        self.guarded = guarded or []  # the guardrail sides (see `GUARDED` and `TENANT`)
        self.pair = [s for s in sides if s.name in (GRAPHRUNNER, BASELINE)]
        self.cpu = cpu
        self.unavailable = unavailable
        self.results: list[Measurement] = []
        # The last latency lifetime of each side, for its history.
        self.handles: dict[str, WorkflowHandle[Any, Any]] = {}
        # The last 1-step lifetime of each side, for what reading its result back costs.
        self.one_step: dict[str, WorkflowHandle[Any, Any]] = {}
        # The state section's last lifetime of each of its sides, for its history.
        self.state_handles: dict[str, WorkflowHandle[Any, Any]] = {}
        # The long-loop section's lifetime of each side.
        self.long_loops: dict[str, LongLoop] = {}
        # The LLM-turns section's conversation of each side.
        self.talks: dict[str, Talk] = {}

    def budget(self, key: str) -> float:
        return self.cfg.budget_s * _SHARES[key]

    def add(self, template: Measurement, samples: Samples, planned: dict[str, int]) -> None:
        rows = _rows(template, samples, planned)
        for side, reason in self.unavailable.items():
            rows.append(_unavailable(template, side, reason))
        self.results.extend(rows)

    def keep(
        self, name: str, start: Starter, into: dict[str, WorkflowHandle[Any, Any]] | None = None
    ) -> Starter:
        kept = self.handles if into is None else into

        async def started() -> WorkflowHandle[Any, Any]:
            handle = await start()
            kept[name] = handle
            return handle

        return started

    async def measure(self) -> list[Measurement]:
        cfg = self.cfg
        log(f"fixed cost: {cfg.reps} x 1-step lifetime")

        async def one_step(side: Side) -> float:
            return (
                await timed(self.keep(side.name, side.loop(1, local=False), self.one_step)) * 1000
            )

        title = "1-step lifetime, start to result"
        m = Measurement("lifetime_overhead", title, "ms", higher_is_better=False, aim=None)
        samples = await _alternate(self.pair, cfg.reps, self.budget(m.key), one_step)
        self.results.extend(_rows(m, samples, {BASELINE: cfg.reps}))

        log(
            f"latency: {cfg.reps} x {cfg.steps}-step loop, Plan as activity, "
            f"{len(self.sides)} sides"
        )

        async def loop(side: Side) -> float:
            start = self.keep(side.name, side.loop(cfg.steps, local=False))
            return await timed(start) * 1000 / cfg.steps

        title = "Per-step latency, Plan as activity"
        m = Measurement("latency", title, "ms/step", higher_is_better=False, aim=1.0)
        samples = await _alternate(self.sides, cfg.reps, self.budget(m.key), loop)
        self.add(m, samples, {BASELINE: cfg.reps})

        log(f"latency: {cfg.reps} x {cfg.steps}-step loop, Plan as local activity")

        async def local_loop(side: Side) -> float:
            return await timed(side.loop(cfg.steps, local=True)) * 1000 / cfg.steps

        title = "Per-step latency, Plan as local activity"
        m = Measurement("latency_local", title, "ms/step", higher_is_better=False, aim=1.0)
        samples = await _alternate(self.pair, cfg.reps, self.budget(m.key), local_loop)
        self.results.extend(_rows(m, samples, {BASELINE: cfg.reps}))

        await self.guardrails()

        log(f"fan-out: {cfg.reps} x {cfg.rounds} rounds of {cfg.branches} parallel tasks")

        async def fan(side: Side) -> float:
            return await timed(side.fan(cfg.rounds, cfg.branches)) * 1000 / cfg.rounds

        title = f"Fan-out round (Plan + {cfg.branches} parallel Tasks)"
        m = Measurement("fan_out", title, "ms/round", higher_is_better=False, aim=None)
        samples = await _alternate(self.pair, cfg.reps, self.budget(m.key), fan)
        self.results.extend(_rows(m, samples, {BASELINE: cfg.reps}))

        await self.state()
        await self.throughput()
        await self.idle_memory()
        await self.waiting()
        await self.llm_turns()
        await self.long_loop()
        return self.results

    async def guardrails(self) -> None:
        """Per-step latency under 0, 1 and 25 guardrail rules (and one tenant-scope rule)."""
        cfg = self.cfg
        by_name = {side.name: side for side in self.sides + self.guarded}
        names = [UNGUARDED, GRAPHRUNNER, *GUARDED, BASELINE]
        limits = {}
        tenant = f", {cfg.tenant_reps} x for the tenant rule and its reference"
        if TENANT in by_name and TENANT_REFERENCE in by_name:
            names[-1:-1] = [TENANT_REFERENCE, TENANT]
            limits = {TENANT_REFERENCE: cfg.tenant_reps, TENANT: cfg.tenant_reps}
        sides = [by_name[name] for name in names if name in by_name]
        log(
            f"guardrails: {cfg.guard_reps} x {cfg.steps}-step loop, Plan as activity, "
            f"{len(sides)} sides{tenant if limits else ''}"
        )
        # CPU seconds of each lifetime: this process, the server, the guard's checks and folds.
        used: dict[str, list[tuple[float, float, float]]] = {side.name: [] for side in sides}
        clock = GuardClock()

        async def loop(side: Side) -> float:
            own0, server0 = self.cpu.read()
            guard0 = clock.seconds
            elapsed = await timed(self.keep(side.name, side.loop(cfg.steps, local=False)))
            own1, server1 = self.cpu.read()
            used[side.name].append((own1 - own0, server1 - server0, clock.seconds - guard0))
            return elapsed * 1000 / cfg.steps

        with clock.installed():
            samples = await _alternate(
                sides, cfg.guard_reps, self.budget("guardrails"), loop, limits=limits
            )
        title = GUARD_TITLE
        rows: list[Measurement] = [
            Measurement(
                "guardrails_0",
                f"{title}no policy (0 rules) vs no interceptor",
                "ms/step",
                higher_is_better=False,
                aim=None,
                reference=UNGUARDED,
                against=UNGUARDED,
                group="guardrails",
            )
        ]
        for name, (count, _) in GUARDED.items():
            rows.append(
                Measurement(
                    f"guardrails_{count}",
                    f"{title}{count} rule{'s' if count > 1 else ''} vs 0 rules",
                    "ms/step",
                    higher_is_better=False,
                    aim=1.05 if count == 25 else None,
                    side=name,
                    reference=GRAPHRUNNER,
                    against=GRAPHRUNNER,
                    group="guardrails",
                )
            )
        rows.append(
            Measurement(
                "guardrails_tenant",
                f"{title}1 tenant-scope rule vs 0 rules, records in SQLite",
                "ms/step",
                higher_is_better=False,
                aim=None,
                side=TENANT,
                reference=TENANT_REFERENCE,
                against=TENANT_REFERENCE,
                group="guardrails",
            )
        )
        for m in rows:
            done = len(samples.get(m.side, ()))
            if not done:
                continue
            kept = dict.fromkeys((m.side, m.against, BASELINE))
            m.samples = {name: samples[name][:done] for name in kept}
            m.rounds = done, limits.get(m.side, cfg.guard_reps)
            for name in kept:
                pairs = used[name][:done]
                m.cpu_ms_per_step[name] = {
                    "worker_process": 1000 * sum(p[0] for p in pairs) / (cfg.steps * done),
                    "server": 1000 * sum(p[1] for p in pairs) / (cfg.steps * done),
                    "guard": 1000 * sum(p[2] for p in pairs) / (cfg.steps * done),
                }
            self.results.append(m)

    async def state(self) -> None:
        """Per-step latency of the stateful loop and of the same loop without state, on both
        sides; then one longer lifetime of each, and one per side whose state holds a large
        field, for their histories.
        """
        cfg = self.cfg
        steps = cfg.state_steps
        gr, base = (
            next(s for s in self.pair if s.name == name) for name in (GRAPHRUNNER, BASELINE)
        )

        def loops(steps: int) -> list[_Variant]:
            return [
                _Variant(GRAPHRUNNER, gr.loop(steps, local=False)),
                _Variant(STATEFUL, gr.stateful(steps)),
                _Variant(BASELINE, base.loop(steps, local=False)),
                _Variant(BASELINE_STATEFUL, base.stateful(steps)),
            ]

        variants = loops(steps)
        log(f"state: {cfg.state_reps} x {steps}-step loop with and without state, both sides")
        # CPU seconds of each lifetime: this process (client and workers), the server.
        used: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}

        async def loop(variant: _Variant) -> float:
            own0, server0 = self.cpu.read()
            elapsed = await timed(variant.start)
            own1, server1 = self.cpu.read()
            used[variant.name].append((own1 - own0, server1 - server0))
            return elapsed * 1000 / steps

        samples = await _alternate(variants, cfg.state_reps, self.budget("state"), loop)
        m = Measurement(
            "state_latency",
            f"Per-step latency ({steps}-step loops)",
            "ms/step",
            higher_is_better=False,
            aim=1.0,
            side=STATEFUL,
            reference=GRAPHRUNNER,
            against=BASELINE_STATEFUL,
            against_reference=BASELINE,
            group="state",
        )
        done = min(len(runs) for runs in samples.values())
        m.samples = {name: samples[name][:done] for name in STATE_SIDES}
        m.rounds = done, cfg.state_reps
        for name in STATE_SIDES:
            pairs = used[name][:done]
            m.cpu_ms_per_step[name] = {
                "worker_process": 1000 * sum(p[0] for p in pairs) / (steps * done),
                "server": 1000 * sum(p[1] for p in pairs) / (steps * done),
            }
        self.results.append(m)
        log(
            f"state: 1 x {cfg.state_history_steps}-step loop of each, and 1 x "
            f"{cfg.state_big_steps}-step loop whose state holds {cfg.state_big:,} characters "
            "per side, for their histories"
        )
        big = cfg.state_big
        once = loops(cfg.state_history_steps) + [
            _Variant(BIG_STATE, gr.stateful(cfg.state_big_steps, big=big)),
            _Variant(BASELINE_BIG_STATE, base.stateful(cfg.state_big_steps, big=big)),
        ]
        for variant in once:
            await timed(self.keep(variant.name, variant.start, self.state_handles))

    async def throughput(self) -> None:
        cfg = self.cfg
        total = cfg.lifetimes * cfg.lifetime_steps
        limits = {name: cfg.record_batches for name in RECORDING}
        log(
            f"throughput: {cfg.batches} x {cfg.lifetimes} lifetimes of {cfg.lifetime_steps} "
            f"steps ({cfg.record_batches} x for each recording side)"
        )
        used: dict[str, list[tuple[float, float]]] = {side.name: [] for side in self.sides}

        async def batch(side: Side) -> float:
            own0, server0 = self.cpu.read()
            elapsed = await timed(side.loop(cfg.lifetime_steps, local=False), cfg.lifetimes)
            own1, server1 = self.cpu.read()
            used[side.name].append((own1 - own0, server1 - server0))
            return total / elapsed

        title = f"Throughput, {cfg.lifetimes} concurrent lifetimes"
        m = Measurement("throughput", title, "steps/s", higher_is_better=True, aim=0.95)
        samples = await _alternate(
            self.sides, cfg.batches, self.budget(m.key), batch, limits=limits
        )
        planned = {BASELINE: cfg.batches} | {name: cfg.record_batches for name in RECORDING}
        first = len(self.results)
        self.add(m, samples, planned)
        for row in self.results[first:]:
            if row.unavailable is not None:
                continue
            done = row.rounds[0]  # CPU over the same batches as the row's samples
            for name in row.samples:
                pairs = used[name][:done]
                row.cpu_ms_per_step[name] = {
                    "worker_process": 1000 * sum(p[0] for p in pairs) / (total * done),
                    "server": 1000 * sum(p[1] for p in pairs) / (total * done),
                }
        # The same batches' process CPU as an aimed row of its own, one sample per batch.
        pair = (GRAPHRUNNER, BASELINE)
        if all(used.get(name) for name in pair):
            cpu = Measurement(
                "worker_cpu",
                "Worker CPU per step (client+worker process, throughput batches)",
                "ms/step",
                higher_is_better=False,
                aim=1.1,
            )
            done = min(len(samples[name]) for name in pair)
            cpu.samples = {name: [1000 * p[0] / total for p in used[name][:done]] for name in pair}
            cpu.rounds = done, cfg.batches
            self.results.append(cpu)

    async def idle_memory(self) -> None:
        """Python heap per lifetime cached by its worker and waiting on a running node."""
        cfg = self.cfg
        count = cfg.idle_lifetimes
        log(f"idle memory: {cfg.idle_reps} x {count} lifetimes waiting on a running node")

        async def held(side: Side) -> float:
            await asyncio.sleep(1.0)  # the last side's finished lifetimes leave the cache
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            start = side.hold()
            async with asyncio.timeout(180.0):
                handles = await asyncio.gather(*(start() for _ in range(count)))
                await GATE.until_waiting(count)
                gc.collect()
                waiting = tracemalloc.get_traced_memory()[0]
                GATE.release()
                await asyncio.gather(*(handle.result() for handle in handles))
            return (waiting - before) / count / 1024

        title = "Idle lifetime memory (Python heap, waiting on a running node)"
        m = Measurement("idle_memory", title, "KiB/lifetime", higher_is_better=False, aim=1.2)
        # Traced for this section only: tracemalloc slows every allocation down. Outside the
        # time budget: it needs every side to go first once, and takes a few seconds a round.
        tracemalloc.start()
        try:
            samples = await _alternate(self.pair, cfg.idle_reps, float("inf"), held)
        finally:
            tracemalloc.stop()
        self.results.extend(_rows(m, samples, {BASELINE: cfg.idle_reps}))

    async def waiting(self) -> None:
        """Lifetimes waiting for a person: one answer's round trip, alternated; then many
        parked on one worker (its process's RSS) and answered, each side in turn."""
        cfg = self.cfg
        if self.address is None or self.blobs is None:
            return
        count = cfg.waiting_lifetimes
        # The SDK's default cache holds 1,000 workflows; past it the worker would evict the
        # oldest waiting lifetimes (no memory, but a replay when answered), so a larger run
        # raises it on both sides, as a deployment holding that many would.
        cache = max(count, 1000)
        found = {side.name: side for side in self.pair}
        gr0, base0 = found.get(GRAPHRUNNER), found.get(BASELINE)
        if not isinstance(gr0, Graphrunner) or not isinstance(base0, Baseline):
            return
        # The same clients, on task queues of their own (the workers' processes serve them).
        pair: list[Side] = [
            Graphrunner(gr0.client, queue=QUEUES[GRAPHRUNNER]),
            Baseline(base0.client, queue=QUEUES[BASELINE]),
        ]
        log(
            f"waiting: each side's worker in its own process (max_cached_workflows {cache:,}); "
            f"{cfg.answer_reps} x one answer's round trip, then {count:,} lifetimes waiting"
        )
        async with contextlib.AsyncExitStack() as stack:
            procs: dict[str, WorkerProcess] = {}
            for side in pair:
                procs[side.name] = await stack.enter_async_context(
                    worker_process(side.name, self.address, QUEUES[side.name], cache, self.blobs)
                )
            for side in pair:  # warm-up: imports, connections, the first lifetimes
                for _ in range(2):
                    await round_trip(side)
            trips: dict[str, list[RoundTrip]] = {side.name: [] for side in pair}

            async def answered(side: Side) -> float:
                trip = await round_trip(side)
                trips[side.name].append(trip)
                return trip.client_ms

            await _alternate(pair, cfg.answer_reps, self.budget("answer_round_trip"), answered)
            done = min(len(t) for t in trips.values())
            for key, title, figure in (
                ("answer_client", "Answer round trip: the client's respond call", "client_ms"),
                (
                    "answer_started",
                    "Answer round trip: update taken -> next node started (history)",
                    "to_started_ms",
                ),
            ):
                m = Measurement(key, title, "ms", higher_is_better=False, aim=None, group="waiting")
                m.samples = {
                    name: [getattr(t, figure) for t in trips[name][:done]] for name in trips
                }
                m.rounds = done, cfg.answer_reps
                self.results.append(m)

            rows = {
                key: Measurement(
                    key, title, unit, higher_is_better=False, aim=None, group="waiting"
                )
                for key, title, unit in (
                    ("waiting_rss", f"Worker RSS per waiting lifetime ({count:,})", "KiB"),
                    ("waiting_park", f"Time to park {count:,} lifetimes", "s"),
                    ("waiting_answer", f"Time to answer all {count:,}", "s"),
                    ("waiting_end", f"... until all {count:,} ended (next node ran)", "s"),
                )
            }
            rows["waiting_rss"].limit = 100.0  # so that 10,000 fit in 1 GiB
            for side in pair:
                log(f"  {side.name}: {count:,} lifetimes waiting for a person")
                got = await park_and_answer(side, procs[side.name], count, self.cpu)
                figures = {
                    "waiting_rss": got.rss_kib_per_lifetime,
                    "waiting_park": got.park_s,
                    "waiting_answer": got.answer_s,
                    "waiting_end": got.end_s,
                }
                for key, value in figures.items():
                    rows[key].samples[side.name] = [value]
                rows["waiting_rss"].figures[side.name] = {
                    "rss_before_mib": got.rss_before_kib / 1024,
                    "rss_waiting_mib": got.rss_waiting_kib / 1024,
                }
                for key, (worker_s, server_s) in (
                    ("waiting_park", got.park_cpu),
                    ("waiting_end", got.answer_cpu),
                ):
                    rows[key].cpu_ms_per_step[side.name] = {
                        "worker_process": 1000 * worker_s / count,
                        "server": 1000 * server_s / count,
                    }
            for m in rows.values():
                m.rounds = 1, 1
                self.results.append(m)

    async def long_loop(self) -> None:
        """One lifetime per side of `Config.long_iterations` iterations, continuing as new when
        Temporal suggests it: its runs, the largest run's events and bytes, time per iteration.

        Outside the time budget: one lifetime per side (graphrunner first), too long to
        alternate.
        """
        k = self.cfg.long_iterations
        if k < 1:
            return
        log(f"long loop: 1 x {k:,}-iteration loop per side, continuing as new when suggested")
        for side in self.pair:
            found = await long_loop(side, k, self.cpu)
            self.long_loops[side.name] = found
            log(
                f"  {side.name}: {found.seconds:.1f} s, {len(found.runs)} runs, "
                f"largest {found.most_events:,} events, {found.most_bytes:,} B"
            )
        if len(self.long_loops) == 2:
            self.results.extend(_long_rows(self.long_loops))

    async def llm_turns(self) -> None:
        """One tool conversation of `Config.talk_rounds` rounds per side: history bytes per
        round at `Config.talk_turns`, and their growth.

        Outside the time budget: one lifetime per side, after one 1-round conversation on
        graphrunner (it imports litellm in this process, a few seconds, once).
        """
        rounds = self.cfg.talk_rounds
        by_name = {side.name: side for side in self.sides}
        names = [n for n in (TALK_BY_REF, TALK_INLINE, BASELINE) if n in by_name]
        if rounds < 1 or TALK_BY_REF not in by_name:
            return
        log(f"LLM turns: 1 x {rounds}-round tool conversation per side (~2 KiB a round)")
        script_model()
        try:
            await timed(by_name[TALK_BY_REF].talk(1))
            for name in names:
                found = await talk(by_name[name], rounds)
                self.talks[name] = found
                log(
                    f"  {name}: {found.seconds:.1f} s, {found.events:,} events, "
                    f"{found.history_bytes:,} B in {found.runs} run(s), rounds "
                    + ", ".join(f"{t}: {found.at(t):,} B" for t in self._talk_turns())
                )
        finally:
            offline.clear()
        self.results.extend(_talk_rows(self.talks, self._talk_turns()))

    def _talk_turns(self) -> list[int]:
        rounds = self.cfg.talk_rounds
        return sorted({t for t in self.cfg.talk_turns if t < rounds} | {rounds})


def _talk_rows(found: dict[str, Talk], turns: list[int]) -> list[Measurement]:
    """The LLM-turns section's rows: graphrunner by reference against the baseline (and the
    same against graphrunner inline, as the reference)."""
    first, last = turns[0], turns[-1]
    figures: list[tuple[str, str, str, Callable[[Talk], float]]] = [
        (f"talk_turn_{t}", f"History bytes of tool round {t}", "B", lambda f, t=t: f.at(t))
        for t in turns
    ]
    figures += [
        (
            "talk_flat",
            f"... round {last} / round {first}",
            "x",
            lambda f: f.at(last) / f.at(first),
        ),
        (
            "talk_growth",
            "... growth per round (slope, rounds 4 on)",
            "B/round per round",
            lambda f: f.growth,
        ),
        (
            "talk_total",
            f"History bytes of the whole {last}-round lifetime",
            "B",
            lambda f: f.history_bytes,
        ),
        (
            "talk_latency",
            "Wall time per round (start to result)",
            "ms/round",
            lambda f: 1000 * f.seconds / f.rounds,
        ),
    ]
    rows = []
    for key, title, unit, figure in figures:
        m = Measurement(
            key,
            title,
            unit,
            higher_is_better=False,
            aim=None,
            side=TALK_BY_REF,
            reference=TALK_INLINE if TALK_INLINE in found else None,
            group="llm_turns",
        )
        m.samples = {name: [float(figure(f))] for name, f in found.items()}
        m.rounds = 1, 1
        rows.append(m)
    # graphrunner's bytes per round stay flat: within 10% from the first reported round to
    # the last, however long the conversation grows.
    next(m for m in rows if m.key == "talk_flat").limit = 1.1
    return rows


def _long_rows(found: dict[str, LongLoop]) -> list[Measurement]:
    """The long-loop section's rows, graphrunner against the baseline."""
    k = found[GRAPHRUNNER].iterations
    figures = (
        ("long_runs", f"Runs of a {k:,}-iteration lifetime", "runs", lambda f: len(f.runs)),
        ("long_events", "... its largest run: events", "events", lambda f: f.most_events),
        ("long_bytes", "... its largest run: history bytes", "B", lambda f: f.most_bytes),
        (
            "long_bytes_iteration",
            "History bytes per iteration (all runs)",
            "B/iteration",
            lambda f: f.bytes_per_iteration,
        ),
        (
            "long_latency",
            "Wall time per iteration (start to result)",
            "ms/iteration",
            lambda f: 1000 * f.seconds / f.iterations,
        ),
    )
    rows = []
    for key, title, unit, figure in figures:
        m = Measurement(key, title, unit, higher_is_better=False, aim=None, group="long_loop")
        m.samples = {name: [float(figure(f))] for name, f in found.items()}
        m.rounds = 1, 1
        rows.append(m)
    by_key = {m.key: m for m in rows}
    # The server warns at 10,240 events in one history (limit.historyCount.warn).
    by_key["long_events"].limit = 10_240
    by_key["long_bytes"].aim = 1.5  # the history aim of the other sections
    by_key["long_latency"].cpu_ms_per_step = {
        name: {
            "worker_process": 1000 * f.worker_cpu_s / f.iterations,
            "server": 1000 * f.server_cpu_s / f.iterations,
        }
        for name, f in found.items()
    }
    return rows


async def _warm_up(cfg: Config, sides: list[Side], guarded: list[Side]) -> None:
    log("warm-up")
    for side in sides:
        await timed(side.loop(3, local=False))
        await timed(side.loop(2, local=False), max(cfg.lifetimes // 4, 2))
        if side.name in (GRAPHRUNNER, BASELINE):
            await timed(side.loop(3, local=True))
            await timed(side.stateful(3))
            await timed(side.fan(2, cfg.branches))
            await timed(side.long_loop(3))
            handles = [await side.hold()() for _ in range(2)]
            await GATE.until_waiting(len(handles))
            GATE.release()
            for handle in handles:
                await handle.result()
    for side in guarded:  # they run the latency loop only
        await timed(side.loop(3, local=False))


async def _result_cost(handle: WorkflowHandle[Any, Any], repeats: int = 5) -> dict[str, float]:
    """Wall and CPU ms of ``handle.result()`` on a finished lifetime, and of the SDK's own.

    graphrunner's `LifetimeHandle.result` reads the lifetime's path back from history (a
    history fetch, decoding every node call) after the SDK's result; the
    difference is what every graphrunner row timed from the client pays once per lifetime.
    """
    took: dict[str, list[tuple[float, float]]] = {"sdk": [], "graphrunner": []}
    for _ in range(repeats):
        for name, read in (("sdk", WorkflowHandle.result), ("graphrunner", type(handle).result)):
            wall, cpu = time.perf_counter(), time.process_time()
            await read(handle)
            took[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        f"{name}_{kind}_ms": 1000 * statistics.median(t[i] for t in pairs)
        for name, pairs in took.items()
        for i, kind in enumerate(("wall", "cpu"))
    }


def _history_row(history: dict[str, HistoryStats], steps: int) -> Measurement:
    """History bytes per step of graphrunner's and the baseline's last latency lifetime."""
    m = Measurement(
        "history_bytes",
        f"History bytes per step ({steps}-step loop lifetime)",
        "B/step",
        higher_is_better=False,
        aim=1.5,
    )
    m.samples = {name: [history[name].bytes_per_step] for name in (GRAPHRUNNER, BASELINE)}
    m.rounds = 1, 1
    return m


def _state_rows(
    cfg: Config, events: dict[str, list[Any]]
) -> tuple[list[Measurement], dict[str, HistoryStats], dict[str, list[int]]]:
    """The state section's history rows, from the last lifetime of each of its sides.

    Also the statistics of those lifetimes, and the bytes the state adds to each step
    (stateful minus stateless loop, step by step) for graphrunner and the baseline.
    """
    steps = {name: cfg.state_history_steps for name in STATE_SIDES}
    steps |= {BIG_STATE: cfg.state_big_steps, BASELINE_BIG_STATE: cfg.state_big_steps}
    stats = {name: history_stats(events[name], n) for name, n in steps.items() if name in events}
    if not all(name in stats for name in STATE_SIDES):
        return [], stats, {}
    per_step = {name: step_bytes(events[name]) for name in STATE_SIDES}
    added = {
        side: [a - b for a, b in zip(per_step[stateful], per_step[side], strict=True)]
        for side, stateful in ((GRAPHRUNNER, STATEFUL), (BASELINE, BASELINE_STATEFUL))
    }
    n = cfg.state_history_steps

    def row(key: str, title: str, unit: str) -> Measurement:
        return Measurement(
            key,
            title,
            unit,
            higher_is_better=False,
            aim=None,
            side=STATEFUL,
            against=BASELINE_STATEFUL,
            group="state",
        )

    history = row("state_history_bytes", f"History bytes per step ({n}-step loops)", "B/step")
    history.aim = 1.5  # the design's aim for history bytes per step
    history.reference, history.against_reference = GRAPHRUNNER, BASELINE
    history.samples = {name: [stats[name].bytes_per_step] for name in STATE_SIDES}
    more = row("state_history_added", "History bytes per step the state adds", "B/step")
    more.samples = {
        STATEFUL: [statistics.fmean(added[GRAPHRUNNER])],
        BASELINE_STATEFUL: [statistics.fmean(added[BASELINE])],
    }
    grows = row(
        "state_growth",
        f"... their growth per step (one list item; steps 2-{n - 1})",
        "B/step per step",
    )
    grows.samples = {
        STATEFUL: [growth(added[GRAPHRUNNER])],
        BASELINE_STATEFUL: [growth(added[BASELINE])],
    }
    rows = [history, more, grows]
    if BIG_STATE in stats and BASELINE_BIG_STATE in stats:
        big = Measurement(
            "state_big_history_bytes",
            f"History bytes per step, a {cfg.state_big // 1000} KB state "
            f"({cfg.state_big_steps}-step loop)",
            "B/step",
            higher_is_better=False,
            aim=None,
            side=BIG_STATE,
            against=BASELINE_BIG_STATE,
            group="state",
        )
        big.samples = {
            name: [stats[name].bytes_per_step] for name in (BIG_STATE, BASELINE_BIG_STATE)
        }
        rows.append(big)
    for measured in rows:
        measured.rounds = 1, 1
    return rows, stats, added


async def run(cfg: Config) -> Report:
    """Run the whole benchmark on a fresh dev server and return what it measured."""
    began = time.perf_counter()
    warnings = CoreWarnings()
    async with dev_server(quiet_runtime(warnings)) as (client, server), state_dbs() as dbs:
        # graphrunner runs as deployed: its own data converter (pydantic + external payload
        # storage) on the same connection; the baseline keeps plain pydantic.
        settings = Settings()
        gr_client = graphrunner_client(client, settings, dbs.blobs)
        sides: list[Side] = [Graphrunner(gr_client)]
        sides += [
            Graphrunner(gr_client, name=name, queue=queue, records=store, blobs=dbs.blobs)
            for name, (kind, _, queue) in RECORDING.items()
            if (store := dbs.stores.get(kind)) is not None
        ]
        sides.append(Baseline(client))
        guarded: list[Side] = [
            Graphrunner(gr_client, name=UNGUARDED, queue=UNGUARDED_QUEUE, guardrails=False)
        ]
        guarded += [
            Graphrunner(
                gr_client,
                name=name,
                queue=queue,
                policies=PolicySource(global_policy=policy(count)),
            )
            for name, (count, queue) in GUARDED.items()
        ]
        if (sqlite := dbs.stores.get("sqlite")) is not None:
            guarded.append(
                Graphrunner(
                    gr_client,
                    name=TENANT,
                    queue=TENANT_QUEUE,
                    records=sqlite,
                    blobs=dbs.blobs,
                    policies=PolicySource(global_policy=tenant_policy()),
                )
            )
        unavailable = {
            name: f"no {kind} state DB: {dbs.unavailable[kind]}"
            for name, (kind, _, _) in RECORDING.items()
            if kind in dbs.unavailable
        }
        async with contextlib.AsyncExitStack() as stack:
            for side in sides + guarded:
                await stack.enter_async_context(side.worker())
            await _warm_up(cfg, sides, guarded)
            pid = server.process.pid if server.process else None
            measured = _Run(
                cfg,
                sides,
                ProcessCpu(pid),
                unavailable,
                guarded,
                address=server.address,
                blobs=dbs.blobs.root,
            )
            measurements = await measured.measure()
            log("history of one latency lifetime per side; result read-back; converter cost")
            readback = {
                f"{steps}-step": await _result_cost(handle)
                for steps, handle in (
                    (1, measured.one_step.get(GRAPHRUNNER)),
                    (cfg.steps, measured.handles.get(GRAPHRUNNER)),
                )
                if handle is not None
            }
            events = {
                name: list((await handle.fetch_history()).events)
                for name, handle in measured.handles.items()
            }
            state_events = {
                name: list((await handle.fetch_history()).events)
                for name, handle in measured.state_handles.items()
            }
        history = {name: history_stats(e, cfg.steps) for name, e in events.items()}
        measurements.append(_history_row(history, cfg.steps))
        state_rows, state_history, state_added = _state_rows(cfg, state_events)
        measurements.extend(state_rows)
        converters = {
            "pydantic": pydantic_data_converter,
            "pydantic + external storage": gr_client.data_converter,
        }
        payloads = activity_payloads(events[GRAPHRUNNER])
        converter = await converter_cost(converters, payloads, cfg.steps)
        log(
            f"guardrail evaluation in-process: {cfg.guard_repeats} x {cfg.guard_steps} steps "
            "under 0, 1 and 25 rules"
        )
        guards = guard_cost((0, 1, 25), cfg.guard_steps, cfg.guard_repeats)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    seconds = time.perf_counter() - began
    return Report(
        cfg,
        measurements,
        history,
        seconds,
        info.server_version,
        dict(warnings.counts),
        converter_us_per_step=converter,
        result_readback_ms=readback,
        guard_cost=guards,
        state_history=state_history,
        state_added_bytes=state_added,
        long_loop=measured.long_loops,
        llm_turns=measured.talks,
        unavailable=unavailable,
    )
