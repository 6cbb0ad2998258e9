"""``python -m bench.scaling``: node executions per second with 1, 2 and 3 worker processes.

The cloud profile scales by running more ``graphrunner worker`` processes on one task queue
(``docker compose up --scale worker=N``). This runs that here: one tuned dev server of its own
(`bench.env.dev_server`), a fresh PostgreSQL state DB (``gr_bench_<hex>``, dropped at the
end; without PostgreSQL the workers record nothing and the report says so), and for each
worker count N, N ``graphrunner worker`` processes configured only by environment variables,
as the compose worker service is. Each measurement starts fresh workers, warms them up with a
small batch, then starts ``--lifetimes`` lifetimes of the Task+Plan loop (`bench.sides
.loop_graph`, plans as activities) at once and waits for every result.

Reported per worker count (the median of ``--reps`` measurements; the counts are measured in
a rotating order, so drift in the box's load lands on all of them alike):

- node executions per second (each loop iteration is two: the task and the plan);
- CPU milliseconds per execution in the worker processes together, in the Temporal server,
  in PostgreSQL (every ``postgres`` process on the box: other users of it count too), and
  in this process (the client starting lifetimes and waiting for results);
- how busy the box was (``/proc/stat``, all cores; 100 % is every core busy), and how much
  of that the parts above do not explain (other processes on the box);
- the ceiling: executions per second if every core of the box ran only these parts (the
  cores over the CPU seconds per execution), a figure other users of the box disturb less
  than the measured rate.

```
python -m bench.scaling [--workers 1,2,3] [--lifetimes N] [--iterations N] [--reps N] [--json]
```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.env import dev_server, log, on_interrupt
from bench.records import PG_URL, _admin
from bench.sides import loop_graph
from graphrunner import AgentGraph, GraphrunnerClient, Settings
from graphrunner.client import DevServer

_ROOT = Path(__file__).resolve().parent.parent
_WORKER = [sys.executable, "-m", "graphrunner", "worker", "--app-dir", str(_ROOT)]
_TICK = os.sysconf("SC_CLK_TCK")
_TIMEOUT_S = 300.0  # one batch; far past any plausible run, so a hang ends the bench


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_cpu() -> float:
    """CPU seconds of every ``postgres`` process on the box (the server and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            head, _, rest = (entry / "stat").read_text().partition(") ")
            if head.endswith("(postgres"):
                fields = rest.split()
                total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _box_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole box since boot, every core, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / _TICK, total / _TICK


@dataclass
class Sample:
    """CPU counters at one moment."""

    wall: float
    workers: float
    server: float
    postgres: float
    client: float
    box_busy: float
    box_all: float

    @classmethod
    def take(cls, workers: list[subprocess.Popen[bytes]], server: DevServer) -> Sample:
        times = os.times()
        busy, every = _box_cpu()
        server_pid = server.process.pid if server.process is not None else None
        return cls(
            wall=time.perf_counter(),
            workers=sum(_proc_cpu(w.pid) for w in workers),
            server=_proc_cpu(server_pid) if server_pid is not None else 0.0,
            postgres=_postgres_cpu(),
            client=times.user + times.system,
            box_busy=busy,
            box_all=every,
        )


@dataclass
class Measurement:
    """One batch on N workers: its throughput and where the CPU went."""

    workers: int
    executions: int
    seconds: float
    per_second: float
    worker_ms: float  # CPU ms per execution, all worker processes together
    server_ms: float
    postgres_ms: float
    client_ms: float
    box_busy_pct: float  # of every core
    unexplained_pct: float  # box busy time none of the parts above account for
    ceiling_per_second: float  # every core on these parts alone: cores / CPU per execution


def _measure(before: Sample, after: Sample, workers: int, executions: int) -> Measurement:
    seconds = after.wall - before.wall

    def ms(name: str) -> float:
        return (getattr(after, name) - getattr(before, name)) * 1000 / executions

    busy = after.box_busy - before.box_busy
    every = after.box_all - before.box_all
    parts = sum(
        getattr(after, n) - getattr(before, n) for n in ("workers", "server", "postgres", "client")
    )
    return Measurement(
        workers=workers,
        executions=executions,
        seconds=round(seconds, 2),
        per_second=round(executions / seconds, 1),
        worker_ms=round(ms("workers"), 2),
        server_ms=round(ms("server"), 2),
        postgres_ms=round(ms("postgres"), 2),
        client_ms=round(ms("client"), 2),
        box_busy_pct=round(100 * busy / every, 1) if every else 0.0,
        unexplained_pct=round(100 * max(busy - parts, 0.0) / every, 1) if every else 0.0,
        ceiling_per_second=round((os.cpu_count() or 1) * executions / parts, 1) if parts else 0.0,
    )


@contextlib.contextmanager
def _state_db() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the records, dropped at the end; None if unreachable."""
    name = f"gr_bench_{uuid.uuid4().hex[:12]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # unreachable, no rights: report, measure without records
        log(f"PostgreSQL unavailable, the workers record nothing: {' '.join(str(exc).split())}")
        yield None
        return

    def drop() -> None:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with on_interrupt(drop):
        try:
            yield PG_URL.format(name=name)
        finally:
            drop()


@contextlib.asynccontextmanager
async def _workers(
    count: int, environ: dict[str, str], home: Path
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``graphrunner worker`` processes, polling; SIGTERMed at the end."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GRAPHRUNNER_"))}
    procs: list[subprocess.Popen[bytes]] = []

    def kill() -> None:
        for proc in procs:
            proc.kill()

    with on_interrupt(kill):
        began = time.perf_counter()
        try:
            logs = [home / f"worker-{uuid.uuid4().hex[:8]}.log" for _ in range(count)]
            for log_file in logs:
                with open(log_file, "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            _WORKER,
                            cwd=_ROOT,
                            env={**base, **environ},
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            await _polling(procs, logs)
            log(f"{count} worker(s) polling after {time.perf_counter() - began:.1f} s")
            yield procs
        finally:
            began = time.perf_counter()
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    await asyncio.to_thread(proc.wait, 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
            log(f"{count} worker(s) stopped in {time.perf_counter() - began:.1f} s")


async def _polling(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    """Wait until every worker says it polls (its first line, once its Worker is running).

    Not the server's DescribeTaskQueue: after earlier workers on the queue stopped, it went
    on listing only them for about a minute here, while the new ones already took tasks.
    """
    deadline = time.monotonic() + 120
    while not all(p.exists() and b"worker polling" in p.read_bytes() for p in logs):
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"workers {dead or 'not polling'}; see {logs[0].parent}")
        await asyncio.sleep(0.1)


async def _batch(client: GraphrunnerClient, graph: AgentGraph, count: int) -> None:
    """Start ``count`` lifetimes at once and wait for every result."""
    async with asyncio.timeout(_TIMEOUT_S):
        handles = await asyncio.gather(*(client.start(graph, None) for _ in range(count)))
        # The plain Temporal result: the path `LifetimeHandle.result` also reads from history
        # would add history reads to the server's load.
        await asyncio.gather(*(client.temporal.get_workflow_handle(h.id).result() for h in handles))


async def run(
    counts: list[int], lifetimes: int, iterations: int, reps: int
) -> tuple[list[Measurement], str]:
    """Measure each worker count ``reps`` times; every measurement, and the state DB kind."""
    graph = loop_graph(local=False, steps=iterations)
    executions = lifetimes * iterations * 2
    measured: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="graphrunner-scaling-") as tmp, _state_db() as db:
        home = Path(tmp)
        async with dev_server() as (temporal, server):
            queue = "bench-scaling"
            settings = Settings(home=home / "client", task_queue=queue, database_url=db)
            client = await GraphrunnerClient.connect(
                settings, address=server.address, namespace=temporal.namespace
            )
            environ = {
                "TEMPORAL_ADDRESS": server.address,
                "TEMPORAL_NAMESPACE": temporal.namespace,
                "TEMPORAL_CONFIG_FILE": str(home / "no-temporal.toml"),
                "GRAPHRUNNER_TASK_QUEUE": queue,
                "GRAPHRUNNER_HOME": str(home / "worker"),
                **({"GRAPHRUNNER_DATABASE_URL": db} if db else {"GRAPHRUNNER_RECORD": "0"}),
            }
            for rep in range(reps):
                shift = rep % len(counts)
                for count in counts[shift:] + counts[:shift]:
                    async with _workers(count, environ, home) as procs:
                        await _batch(client, graph, max(4, lifetimes // 5))  # warm-up
                        before = Sample.take(procs, server)
                        await _batch(client, graph, lifetimes)
                        after = Sample.take(procs, server)
                    m = _measure(before, after, count, executions)
                    measured.append(m)
                    log(
                        f"{count} worker(s): {m.per_second}/s; CPU ms per execution: workers "
                        f"{m.worker_ms}, server {m.server_ms}, postgres {m.postgres_ms}, "
                        f"client {m.client_ms}; box {m.box_busy_pct} % busy, "
                        f"{m.unexplained_pct} % by others"
                    )
    return measured, "postgresql" if db else "none (PostgreSQL unavailable)"


def _medians(measured: list[Measurement]) -> list[dict[str, float]]:
    rows = []
    for count in sorted({m.workers for m in measured}):
        mine = [asdict(m) for m in measured if m.workers == count]
        rows.append(
            {key: round(statistics.median(m[key] for m in mine), 2) for key in mine[0]}
            | {"reps": len(mine)}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling",
        description="Node executions per second with 1, 2 and 3 graphrunner worker processes.",
    )
    parser.add_argument("--workers", default="1,2,3", help="worker counts (default 1,2,3)")
    parser.add_argument("--lifetimes", type=int, default=60, help="lifetimes per batch (60)")
    parser.add_argument("--iterations", type=int, default=10, help="loop iterations each (10)")
    parser.add_argument("--reps", type=int, default=2, help="measurements per count (2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",")]
    measured, records = asyncio.run(run(counts, args.lifetimes, args.iterations, args.reps))
    rows = _medians(measured)
    if args.json:
        print(
            json.dumps({"records": records, "medians": rows, "all": [asdict(m) for m in measured]})
        )
        return 0
    print(
        f"Task+Plan loop, {args.lifetimes} lifetimes x {args.iterations} iterations at once; "
        f"records: {records}; {os.cpu_count()} cores; medians of {args.reps}"
    )
    print(
        f"{'workers':>7} {'exec/s':>7} {'worker ms':>9} {'server ms':>9} {'pg ms':>6} "
        f"{'client ms':>9} {'box busy':>8} {'other':>6} {'ceiling/s':>9}"
    )
    for r in rows:
        print(
            f"{r['workers']:>7} {r['per_second']:>7.1f} {r['worker_ms']:>9.2f} "
            f"{r['server_ms']:>9.2f} {r['postgres_ms']:>6.2f} {r['client_ms']:>9.2f} "
            f"{r['box_busy_pct']:>7.1f}% {r['unexplained_pct']:>5.1f}% "
            f"{r['ceiling_per_second']:>9.1f}"
        )
    print("CPU ms are per node execution; box busy is of all cores; other: not explained by")
    print("the workers, the server, PostgreSQL or this process (other users of the box);")
    print("ceiling: executions/s if every core ran only these parts (cores / CPU per execution).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
