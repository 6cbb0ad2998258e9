"""Start one dev server, run both sides' workers, and measure them alternately.

Every measurement is taken for both sides back to back, in an order that flips each round
(A B, B A, A B ...), so drift in machine load lands on both sides alike.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from bench.env import CoreWarnings, ProcessCpu, dev_server, log, quiet_runtime
from bench.history import HistoryStats, history_stats
from bench.sides import Baseline, Graphrunner, Side, timed

__all__ = ["Config", "Measurement", "Report", "run"]


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
    # Seconds the measurements may take in all; a section that has spent its share stops
    # repeating (so a badly slow side still yields a report, on fewer rounds).
    budget_s: float = 150.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            steps=15, reps=3, rounds=4, lifetimes=20, lifetime_steps=5, batches=2, budget_s=20.0
        )


@dataclass
class Measurement:
    """One figure for both sides: samples, medians and the graphrunner/baseline ratio."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    aim: float | None  # ratio graphrunner/baseline to stay within (max, or min if higher)
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms_per_step: dict[str, dict[str, float]] = field(default_factory=dict)
    rounds: tuple[int, int] = (0, 0)  # rounds done, rounds planned

    def median(self, side: str) -> float:
        return statistics.median(self.samples[side])

    @property
    def ratio(self) -> float:
        return self.median("graphrunner") / self.median("baseline")

    @property
    def ratio_spread(self) -> tuple[float, float]:
        """Quartiles of the per-round ratios (each round runs both sides back to back)."""
        sides = self.samples["graphrunner"], self.samples["baseline"]
        paired = [g / b for g, b in zip(*sides, strict=True)]
        if len(paired) < 2:
            return paired[0], paired[0]
        q1, _, q3 = statistics.quantiles(paired, n=4, method="inclusive")
        return q1, q3

    @property
    def met(self) -> bool | None:
        if self.aim is None:
            return None
        return self.ratio >= self.aim if self.higher_is_better else self.ratio <= self.aim

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["median"] = {side: self.median(side) for side in self.samples}
        out["ratio"] = self.ratio
        out["ratio_quartiles"] = list(self.ratio_spread)
        out["met"] = self.met
        return out


@dataclass
class Report:
    """Everything one benchmark run found."""

    config: Config
    measurements: list[Measurement]
    history: dict[str, HistoryStats]
    seconds: float
    server_version: str
    core_warnings: dict[str, int]  # Temporal core warnings by kind, with their counts


# Share of `Config.budget_s` each section may spend before it stops repeating.
_SHARES = {"lifetime_overhead": 0.05, "latency": 0.2, "latency_local": 0.15, "fan_out": 0.15}
_SHARES["throughput"] = 1 - sum(_SHARES.values())


async def _alternate(
    m: Measurement,
    sides: list[Side],
    times: int,
    budget_s: float,
    measure: Callable[[Side], Awaitable[float]],
) -> Measurement:
    """Measure both sides ``times`` rounds, flipping the order each round, within a budget."""
    m.samples = {side.name: [] for side in sides}
    began = time.perf_counter()
    for i in range(times):
        if i and time.perf_counter() - began > budget_s:
            log(f"  time budget of {budget_s:.0f} s spent after {i} of {times} rounds")
            break
        for side in sides if i % 2 == 0 else reversed(sides):
            m.samples[side.name].append(await measure(side))
    m.rounds = len(m.samples[sides[0].name]), times
    return m


async def _measure(cfg: Config, sides: list[Side], cpu: ProcessCpu) -> list[Measurement]:
    def budget(key: str) -> float:
        return cfg.budget_s * _SHARES[key]

    results = []
    log(f"fixed cost: {cfg.reps} x 1-step lifetime")

    async def one_step(side: Side) -> float:
        return await timed(side.loop(1, local=False)) * 1000

    title = "1-step lifetime, start to result"
    m = Measurement("lifetime_overhead", title, "ms", higher_is_better=False, aim=None)
    results.append(await _alternate(m, sides, cfg.reps, budget(m.key), one_step))

    for local in (False, True):
        kind = "Plan as local activity" if local else "Plan as activity"
        log(f"latency: {cfg.reps} x {cfg.steps}-step loop, {kind}")

        async def loop(side: Side, local: bool = local) -> float:
            return await timed(side.loop(cfg.steps, local=local)) * 1000 / cfg.steps

        key = "latency_local" if local else "latency"
        title = f"Per-step latency, {kind}"
        m = Measurement(key, title, "ms/step", higher_is_better=False, aim=1.1)
        results.append(await _alternate(m, sides, cfg.reps, budget(key), loop))

    log(f"fan-out: {cfg.reps} x {cfg.rounds} rounds of {cfg.branches} parallel tasks")

    async def fan(side: Side) -> float:
        return await timed(side.fan(cfg.rounds, cfg.branches)) * 1000 / cfg.rounds

    title = f"Fan-out round (Plan + {cfg.branches} parallel Tasks)"
    m = Measurement("fan_out", title, "ms/round", higher_is_better=False, aim=None)
    results.append(await _alternate(m, sides, cfg.reps, budget(m.key), fan))

    total = cfg.lifetimes * cfg.lifetime_steps
    log(f"throughput: {cfg.batches} x {cfg.lifetimes} lifetimes of {cfg.lifetime_steps} steps")
    used: dict[str, list[tuple[float, float]]] = {side.name: [] for side in sides}

    async def batch(side: Side) -> float:
        own0, server0 = cpu.read()
        elapsed = await timed(side.loop(cfg.lifetime_steps, local=False), cfg.lifetimes)
        own1, server1 = cpu.read()
        used[side.name].append((own1 - own0, server1 - server0))
        return total / elapsed

    title = f"Throughput, {cfg.lifetimes} concurrent lifetimes"
    m = Measurement("throughput", title, "steps/s", higher_is_better=True, aim=0.9)
    results.append(await _alternate(m, sides, cfg.batches, budget(m.key), batch))
    for name, pairs in used.items():
        m.cpu_ms_per_step[name] = {
            "worker_process": 1000 * sum(p[0] for p in pairs) / (total * len(pairs)),
            "server": 1000 * sum(p[1] for p in pairs) / (total * len(pairs)),
        }
    return results


async def _warm_up(cfg: Config, sides: list[Side]) -> None:
    log("warm-up")
    for side in sides:
        await timed(side.loop(3, local=False))
        await timed(side.loop(3, local=True))
        await timed(side.fan(2, cfg.branches))
        await timed(side.loop(2, local=False), max(cfg.lifetimes // 4, 2))


async def run(cfg: Config) -> Report:
    """Run the whole benchmark on a fresh dev server and return what it measured."""
    began = time.perf_counter()
    warnings = CoreWarnings()
    async with dev_server(quiet_runtime(warnings)) as (client, server):
        sides: list[Side] = [Graphrunner(client), Baseline(client)]
        workers = [side.worker() for side in sides]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            await _warm_up(cfg, sides)
            pid = server.process.pid if server.process else None
            measurements = await _measure(cfg, sides, ProcessCpu(pid))
            log("history of one lifetime per side")
            history = await history_stats(sides, cfg.steps)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    seconds = time.perf_counter() - began
    return Report(cfg, measurements, history, seconds, info.server_version, dict(warnings.counts))
