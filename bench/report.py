"""Print a `Report`: rich tables for people, JSON for machines."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from bench.harness import BASELINE, GUARD_TITLE, TALK_INLINE, Measurement, Report
from bench.history import HistoryStats
from bench.long_loop import LongLoop

__all__ = ["print_json", "print_tables"]


def _aim(m: Measurement) -> str:
    sign = "≥" if m.higher_is_better else "≤"
    aims = [f"{sign} {m.aim:.2f}x"] if m.aim is not None else []
    if m.limit is not None:
        aims.append(f"{'>' if m.higher_is_better else '<'} {m.limit:g} {m.unit}")
    return ", ".join(aims) or "—"


def _verdict(m: Measurement) -> str:
    if m.unavailable is not None:
        return "[yellow]unavailable[/yellow]"
    if m.met is None:
        return "[dim]info[/dim]"
    if m.met:
        return "[green]met[/green]"
    if m.aim is None and m.limit is not None:
        value = m.median(m.side)
        return f"[red]missed ({abs(value / m.limit - 1) * 100:.0f}% off)[/red]"
    assert m.aim is not None
    # How far off, in the direction that matters, e.g. "+12% slower".
    if m.higher_is_better:
        return f"[red]missed ({(1 - m.ratio / m.aim) * 100:.0f}% short)[/red]"
    return f"[red]missed ({(m.ratio / m.aim - 1) * 100:.0f}% over)[/red]"


def _missed(m: Measurement) -> str:
    """What a missed row measured: its ratio, or its own value for a row with a limit."""
    if m.limit is not None:
        return f"{m.median(m.side):,.1f} {m.unit} ({m.ratio:.2f}x the baseline)"
    return f"{m.ratio:.2f}x"


def _title(m: Measurement) -> str:
    done, planned = m.rounds
    if done < planned:
        return f"{m.title} [yellow](time budget: {done} of {planned} rounds)[/yellow]"
    return m.title


def _cell(m: Measurement, side: str) -> str:
    samples = m.samples[side]
    shown = ",.0f" if m.median(side) >= 1000 else ".1f" if m.median(side) >= 10 else ".2f"
    if len(samples) == 1:
        return format(samples[0], shown)
    low, high = format(min(samples), shown), format(max(samples), shown)
    return f"{m.median(side):{shown}} [dim]({low}–{high})[/dim]"


def print_tables(report: Report, console: Console | None = None) -> None:
    """Print the results table, the history table and the aims."""
    # Wide enough for the tables when piped (make bench | tee), where rich assumes 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    cfg = report.config
    console.print(
        f"[bold]graphrunner vs hand-written temporalio[/bold] · Temporal server "
        f"{report.server_version} (dev, SQLite WAL, tuned) · Python {platform.python_version()} "
        f"· {report.seconds:.0f} s"
    )
    table = Table(
        title="graphrunner vs baseline: median (min–max) of alternated runs; "
        "ratio = graphrunner / baseline (quartiles of per-round ratios)"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("graphrunner", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("aim", justify="right")
    table.add_column("", justify="left")
    for m in report.measurements:
        if m.group != "main":
            continue
        if m.unavailable is not None:
            table.add_row(_title(m), m.unit, "—", "—", "—", _aim(m), _verdict(m))
            continue
        table.add_row(
            _title(m),
            m.unit,
            _cell(m, m.side),
            _cell(m, BASELINE),
            f"{m.ratio:.2f}x [dim]({m.ratio_spread[0]:.2f}–{m.ratio_spread[1]:.2f})[/dim]",
            _aim(m),
            _verdict(m),
        )
    console.print(table)
    console.print(
        f"[dim]latency: {cfg.reps} lifetimes of {cfg.steps} Task+Plan steps per side and "
        f"variant; fan-out: {cfg.reps} lifetimes of {cfg.rounds} rounds x {cfg.branches} "
        f"tasks; throughput: {cfg.batches} batches of {cfg.lifetimes} lifetimes x "
        f"{cfg.lifetime_steps} steps ({cfg.record_batches} per recording side, each against "
        "the baseline batch of its round). Wall time from the client, start to result. "
        "graphrunner uses its own data converter (pydantic + external payload storage), the "
        "baseline plain pydantic. Worker CPU: this process's CPU (client and workers) per "
        "step of each throughput batch. History: the last latency lifetime of each side "
        f"({cfg.steps} steps). Idle memory: {cfg.idle_lifetimes} lifetimes per side and "
        "round waiting on a running node; growth of this process's Python heap (tracemalloc) "
        "per lifetime, the Rust core's own state not counted.[/dim]"
    )
    for side, reason in report.unavailable.items():
        console.print(f"[yellow]{side} not measured:[/yellow] {reason}")
    if report.result_readback_ms:
        shown = "; ".join(
            f"{size} lifetime {c['graphrunner_wall_ms']:.1f} ms against the SDK's "
            f"{c['sdk_wall_ms']:.1f} ms (CPU {c['graphrunner_cpu_ms']:.1f} against "
            f"{c['sdk_cpu_ms']:.1f} ms)"
            for size, c in report.result_readback_ms.items()
        )
        console.print(
            "[dim]graphrunner's LifetimeHandle.result() reads the path back from history (a "
            "history fetch, decoding every node call), once per lifetime in every "
            f"graphrunner row above, median of 5 on a finished lifetime: {shown}.[/dim]"
        )
    _print_records(report, console)
    _print_guardrails(report, console)

    cpu = Table(title="Where the work goes (throughput batches, CPU ms per Task+Plan step)")
    cpu.add_column("side")
    cpu.add_column("client+worker process", justify="right")
    cpu.add_column("Temporal server", justify="right")
    for side, used in _cpu_by_side(report).items():
        cpu.add_row(side, f"{used['worker_process']:.2f}", f"{used['server']:.2f}")
    console.print(cpu)
    if report.converter_us_per_step:
        costs = report.converter_us_per_step
        shown = ", ".join(f"{name} {us:.0f} µs" for name, us in costs.items())
        console.print(
            f"[dim]Data converter, CPU per Task+Plan step (bind, decode and re-encode one "
            f"step's activity payloads in both workers, in-process): {shown}.[/dim]"
        )

    title = f"History of one {cfg.steps}-step loop lifetime (Plan as activity)"
    console.print(_history_table(title, report.history))
    _print_state(report, console)
    _print_waiting(report, console)
    _print_llm_turns(report, console)
    _print_long_loop(report, console)

    for kind, count in sorted(report.core_warnings.items(), key=lambda kv: -kv[1]):
        console.print(f"[yellow]Temporal core warned {count} x:[/yellow] {kind}")
    if sys.dont_write_bytecode:
        console.print(
            "[yellow]note:[/yellow] PYTHONDONTWRITEBYTECODE is set, so the workflow sandbox "
            "compiles every module it re-imports from source, once per lifetime; this weighs on "
            "whichever side re-imports more modules."
        )
    missed = [m for m in report.measurements if m.met is False]
    if missed:
        console.print(
            "[bold red]Aims missed:[/bold red] "
            + "; ".join(f"{m.title} {_missed(m)} (aim {_aim(m)})" for m in missed)
        )
    else:
        console.print("[bold green]All aims met.[/bold green]")


def _history_table(title: str, history: dict[str, HistoryStats]) -> Table:
    hist = Table(title=title)
    hist.add_column("side")
    hist.add_column("steps", justify="right")
    hist.add_column("events/step", justify="right")
    hist.add_column("history bytes/step", justify="right")
    hist.add_column("workflow input B", justify="right")
    hist.add_column("activity input B", justify="right")
    hist.add_column("activity result B", justify="right")
    for side, stats in history.items():
        hist.add_row(
            side,
            str(stats.steps),
            f"{stats.events_per_step:.1f}",
            f"{stats.bytes_per_step:,.0f}",
            f"{stats.workflow_input_bytes:,}",
            f"{stats.activity_input_bytes:,}",
            f"{stats.activity_result_bytes:,}",
        )
    return hist


def _ratio(m: Measurement, side: str, other: str) -> str:
    ratio, (low, high) = m.compare(side, other)
    if len(m.samples[side]) == 1:
        return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"
    return f"{ratio:.2f}x [dim]({low:.2f}–{high:.2f})[/dim]"


def _print_state(report: Report, console: Console) -> None:
    """The loop with lifetime state against the same loop without, on both sides."""
    rows = [m for m in report.measurements if m.group == "state"]
    if not rows:
        return
    cfg = report.config
    table = Table(
        title="Lifetime state: the loop with state against the same loop without, both sides, "
        "alternated; ratios of medians (quartiles of per-round ratios)"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("graphrunner: without → with", justify="right")
    table.add_column("baseline: without → with", justify="right")
    table.add_column("with state: gr / baseline", justify="right")
    table.add_column("state's cost: gr", justify="right")
    table.add_column("state's cost: baseline", justify="right")
    table.add_column("aim", justify="right")
    table.add_column("", justify="left")

    def pair(m: Measurement, side: str, without: str | None) -> str:
        if without is None:
            return _cell(m, side)
        return f"{_cell(m, without)} → {_cell(m, side)}"

    for m in rows:
        table.add_row(
            _title(m),
            m.unit,
            pair(m, m.side, m.reference),
            pair(m, m.against, m.against_reference),
            _ratio(m, m.side, m.against),
            _ratio(m, m.side, m.reference) if m.reference else "—",
            _ratio(m, m.against, m.against_reference) if m.against_reference else "—",
            _aim(m),
            _verdict(m),
        )
    console.print(table)
    for m in rows:
        if m.cpu_ms_per_step:
            shown = ", ".join(
                f"{name} {cpu['worker_process']:.1f} + {cpu['server']:.1f}"
                for name, cpu in m.cpu_ms_per_step.items()
            )
            console.print(
                f"[dim]{m.title}, CPU ms per step of this process (client and workers) + the "
                f"Temporal server, over the same lifetimes: {shown}.[/dim]"
            )
    added = report.state_added_bytes
    n = cfg.state_history_steps
    marks = sorted({2, n // 4, n // 2, 3 * n // 4, n - 1} & set(range(1, n + 1)))
    shown = "; ".join(
        f"{side} " + ", ".join(f"step {k} {by_step[k - 1]:,}" for k in marks)
        for side, by_step in added.items()
    )
    console.print(
        "[dim]State: four fields (a count with add, a list with append that grows one short "
        "item a step, a number with max, a string with replace); the task updates all four "
        "every step, the plan routes on the count. Latency: up to "
        f"{cfg.state_reps} rounds of the four {cfg.state_steps}-step loops. History: one "
        f"{n}-step lifetime of each (both loops of a side have the same events with the same "
        "ids, so their difference is the state's)"
        + (f"; history bytes the state adds to a step: {shown}" if added else "")
        + f". The large state: one lifetime per side whose first task writes "
        f"{cfg.state_big:,} characters into a fifth field; graphrunner's calls then go to the "
        "blob store by reference (external payload storage, 256 KiB threshold), the baseline "
        "(plain pydantic) keeps them inline.[/dim]"
    )
    console.print(_history_table("History of the state section's lifetimes", report.state_history))


def _print_waiting(report: Report, console: Console) -> None:
    """Lifetimes waiting for a person: answer round trips; many parked, then answered."""
    rows = [m for m in report.measurements if m.group == "waiting"]
    if not rows:
        return
    cfg = report.config
    table = Table(
        title="Waiting for a person: graphrunner's human task against a hand-written workflow "
        "waiting on an update; each side's worker in its own process"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("graphrunner", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("aim", justify="right")
    table.add_column("", justify="left")
    for m in rows:
        table.add_row(
            _title(m),
            m.unit,
            _cell(m, m.side),
            _cell(m, m.against),
            _ratio(m, m.side, m.against),
            _aim(m),
            _verdict(m),
        )
    console.print(table)
    count = cfg.waiting_lifetimes
    notes = []
    for m in rows:
        for side, figures in m.figures.items():
            notes.append(
                f"{side} worker RSS {figures['rss_before_mib']:,.1f} MiB before, "
                f"{figures['rss_waiting_mib']:,.1f} MiB with {count:,} waiting"
            )
        if m.cpu_ms_per_step:
            shown = ", ".join(
                f"{side} {cpu['worker_process']:.1f} + {cpu['server']:.1f}"
                for side, cpu in m.cpu_ms_per_step.items()
            )
            notes.append(f"{m.title}: CPU ms per lifetime, worker process + server: {shown}")
    console.print(
        "[dim]Round trip: up to "
        f"{cfg.answer_reps} rounds, sides alternated, of one lifetime started, seen waiting, "
        "answered (graphrunner: GraphrunnerClient.respond, which reads the request from the "
        "memo, then the update graphrunner.respond; baseline: execute_update), median; "
        "server side from history: the update's workflow task scheduled -> the next node's "
        f"ActivityTaskStarted. Parked: {count:,} lifetimes per side started and seen waiting "
        "(no activity slot held), then all answered, 100 calls in flight; RSS of the "
        "worker's own process, after gc, before and while they wait, / lifetimes. "
        + "; ".join(notes)
        + ".[/dim]"
    )


def _count(m: Measurement, side: str) -> str:
    """A cell of whole numbers (runs, events, bytes) without decimals; else as `_cell`."""
    value = m.median(side)
    return f"{value:,.0f}" if value == int(value) else _cell(m, side)


def _print_long_loop(report: Report, console: Console) -> None:
    """One long lifetime per side, continuing as new when Temporal suggests it."""
    rows = [m for m in report.measurements if m.group == "long_loop"]
    if not rows:
        return
    table = Table(
        title="Long loop: one lifetime per side continuing as new when Temporal suggests it "
        "(server defaults: 4,096 events or 4 MiB); ratio = graphrunner / baseline"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("graphrunner", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("aim", justify="right")
    table.add_column("", justify="left")
    for m in rows:
        table.add_row(
            m.title,
            m.unit,
            _count(m, m.side),
            _count(m, m.against),
            _ratio(m, m.side, m.against),
            _aim(m),
            _verdict(m),
        )
    console.print(table)
    notes = []
    for side, found in report.long_loop.items():
        runs = ", ".join(f"{r.events:,} ({r.history_bytes / 1000:,.0f} kB)" for r in found.runs)
        notes.append(f"{side}: {runs}")
    markers = ", ".join(
        f"{side} {found.marker_bytes:,.0f} B" for side, found in report.long_loop.items()
    )
    cpu = next((m.cpu_ms_per_step for m in rows if m.cpu_ms_per_step), {})
    used = ", ".join(
        f"{side} {c['worker_process']:.1f} + {c['server']:.1f}" for side, c in cpu.items()
    )
    console.print(
        "[dim]graphrunner: Task tick (bench.nodes:Tick, one added to the state's count) and a "
        "routing plan without code (a local activity: one marker event an iteration) back to "
        "tick while state.count < K; the baseline (BenchLongLoop): one activity an iteration, "
        "the same decision in workflow code, its count carried into the next run. One "
        "lifetime per side, graphrunner first, after every other section. Events (history "
        f"bytes, protobuf) of each run, first run first: {'; '.join(notes)}. Mean marker "
        f"event in the largest run: {markers}. CPU ms per iteration, this process (client "
        f"and workers) + the server: {used}.[/dim]"
    )
    title = "History of each side's largest run (steps: its iterations)"
    console.print(_history_table(title, {s: f.largest for s, f in report.long_loop.items()}))


def _print_llm_turns(report: Report, console: Console) -> None:
    """One growing tool conversation per side: history bytes per round."""
    rows = [m for m in report.measurements if m.group == "llm_turns"]
    if not rows:
        return
    by_ref = rows[0].side
    table = Table(
        title="LLM turns: one tool conversation per side, each round ~2 KiB more; "
        f"ratio = graphrunner ({by_ref}: conversation by reference) / baseline"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("graphrunner, by reference", justify="right")
    table.add_column("graphrunner, inline", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("aim", justify="right")
    table.add_column("", justify="left")
    for m in rows:
        inline = _count(m, TALK_INLINE) if TALK_INLINE in m.samples else "—"
        table.add_row(
            m.title,
            m.unit,
            _count(m, m.side),
            inline,
            _count(m, m.against),
            _ratio(m, m.side, m.against),
            _aim(m),
            _verdict(m),
        )
    console.print(table)
    shown = []
    for side, found in report.llm_turns.items():
        rounds = found.per_round
        picks = sorted({1, 2, 3, 4, *range(10, found.rounds + 1, 10)})
        shown.append(f"{side}: " + ", ".join(f"{t}: {rounds[t - 1]:,}" for t in picks))
    console.print(
        "[dim]graphrunner: an llm_task 'chat' (offline model scripted to call the tool "
        "bench.nodes:bulky, ~2 KiB a result, once a round) and a routing plan; by reference: "
        "the recording worker, whose blob store keeps the conversation between rounds once over "
        "4 KiB; inline: the worker without records. Baseline (BenchToolTalk): the message list "
        "in the workflow, all of it in every model activity's input. A round's bytes run to its "
        "tool activity's completion (round 1 also holds the start). History bytes by round: "
        f"{'; '.join(shown)}.[/dim]"
    )


def _long_loop_json(found: dict[str, LongLoop]) -> dict[str, dict[str, object]]:
    return {
        side: {
            **asdict(f),
            "most_events": f.most_events,
            "most_bytes": f.most_bytes,
            "bytes_per_iteration": f.bytes_per_iteration,
        }
        for side, f in found.items()
    }


def _cpu_by_side(report: Report) -> dict[str, dict[str, float]]:
    """CPU per step of every side, from its first throughput row."""
    out: dict[str, dict[str, float]] = {}
    for m in report.measurements:
        if m.key.startswith("throughput"):
            for side, used in m.cpu_ms_per_step.items():
                out.setdefault(side, used)
    return out


def _print_records(report: Report, console: Console) -> None:
    """What recording every node execution costs, against graphrunner without records."""
    rows = [
        m
        for m in report.measurements
        if m.reference and m.unavailable is None and m.group == "main"
    ]
    if not rows:
        return
    table = Table(
        title="Cost of execution records: the recording side minus graphrunner without records, "
        "same rounds (quartiles of per-round differences)"
    )
    table.add_column("measurement")
    table.add_column("unit")
    table.add_column("without records", justify="right")
    table.add_column("with records", justify="right")
    table.add_column("difference", justify="right")
    table.add_column("worker CPU ms/step", justify="right")
    for m in rows:
        assert m.reference is not None and m.delta is not None and m.delta_spread is not None
        before = m.median(m.reference)
        cpu = ""
        if m.cpu_ms_per_step:
            own, ref = m.cpu_ms_per_step[m.side], m.cpu_ms_per_step[m.reference]
            cpu = f"{ref['worker_process']:.2f} → {own['worker_process']:.2f}"
        table.add_row(
            m.title,
            m.unit,
            f"{before:.1f}",
            f"{m.median(m.side):.1f}",
            f"{m.delta:+.1f} ({m.delta / before * 100:+.0f}%) "
            f"[dim]({m.delta_spread[0]:+.1f} to {m.delta_spread[1]:+.1f})[/dim]",
            cpu,
        )
    console.print(table)


# Short names of the guardrail rows in their table.
_GUARD_LABELS = {
    "guardrails_0": "0 rules (vs no interceptor)",
    "guardrails_1": "1 rule",
    "guardrails_25": "25 rules",
    "guardrails_tenant": "tenant rule, SQLite records",
}


def _print_guardrails(report: Report, console: Console) -> None:
    """Per-step latency under 0, 1 and 25 rules; rule evaluation alone, in-process."""
    rows = [m for m in report.measurements if m.group == "guardrails"]
    if rows:
        table = Table(
            title="Guardrails: per-step latency (ms/step) of the loop lifetime, Plan as "
            "activity, alternated; ratios of medians (quartiles of per-round ratios)"
        )
        table.add_column("policy")
        table.add_column("ms/step", justify="right")
        table.add_column("vs reference", justify="right")
        table.add_column("added", justify="right")
        table.add_column("aim", justify="right")
        table.add_column("vs baseline", justify="right")
        table.add_column("CPU", justify="right")
        table.add_column("guard", justify="right")
        for m in rows:
            label = _GUARD_LABELS.get(m.key, m.title.removeprefix(GUARD_TITLE))
            done, planned = m.rounds
            if done < planned:
                label += f" [yellow]({done} of {planned})[/yellow]"
            cpu = m.cpu_ms_per_step.get(m.side, {})
            versus = added = aim = "—"
            if m.against != BASELINE:
                low, high = m.ratio_spread
                versus = f"{m.ratio:.2f}x [dim]({low:.2f}–{high:.2f})[/dim]"
                aim = f"{_aim(m)} {_verdict(m)}" if m.aim is not None else _verdict(m)
            if m.delta is not None:
                added = f"{m.delta:+.1f}"
            ratio, spread = m.compare(m.side, BASELINE)
            table.add_row(
                label,
                _cell(m, m.side),
                versus,
                added,
                aim,
                f"{ratio:.2f}x [dim]({spread[0]:.2f}–{spread[1]:.2f})[/dim]",
                f"{cpu['worker_process']:.1f}" if "worker_process" in cpu else "",
                f"{cpu['guard']:.2f}" if "guard" in cpu else "",
            )
        console.print(table)
        cfg = report.config
        console.print(
            f"[dim]Up to {cfg.guard_reps} lifetimes of {cfg.steps} Task+Plan steps per side "
            "((k of n): rounds the time budget allowed); the tenant-rule side and its reference "
            "(a SQLite recording worker without rules, which its ratios use instead of 0 rules) "
            f"take part in the first {cfg.tenant_reps}. Reference: 0 rules for the 1- and "
            "25-rule rows; for the 0-rule row, the same worker without the guardrail "
            "interceptor (bench only: every graphrunner worker runs it). The policy is the "
            "worker's global layer (bench/guardrails.py); the rules are evaluated at every "
            "check and never fire. added: ms/step over the reference. CPU: ms per step of "
            "this process (client and all workers) during the side's lifetimes; guard: of "
            "which thread CPU inside LifetimeGuard.check and fold, "
            "as the interceptor calls them in the workflow worker.[/dim]"
        )
    costs = report.guard_cost
    if not costs:
        return
    zero = next((m for m in rows if m.key == "guardrails_0" and m.samples), None)
    step_ms = zero.median(zero.side) if zero else None
    table = Table(
        title="Guardrail evaluation alone: LifetimeGuard.check before and after each execution "
        "+ fold, CPU µs per Task+Plan step (in-process, no server)"
    )
    table.add_column("rules")
    table.add_column("µs/step", justify="right")
    table.add_column("µs per rule", justify="right")
    table.add_column("share of a 0-rule step", justify="right")
    base = next((c.us_per_step for c in costs if c.rules == 0), 0.0)
    for c in costs:
        per_rule = f"{(c.us_per_step - base) / c.rules:.0f}" if c.rules else "—"
        share = f"{c.us_per_step / 10 / step_ms:.1f}%" if step_ms else ""
        table.add_row(
            str(c.rules),
            f"{c.us_per_step:,.0f} [dim]({c.us_min:,.0f}–{c.us_max:,.0f})[/dim]",
            per_rule,
            share,
        )
    console.print(table)
    first = costs[0]
    console.print(
        f"[dim]Median (min–max) of {report.config.guard_repeats} fresh lifetimes of "
        f"{first.steps} steps (a Task 'work' and a Plan 'loop' each, with telemetry), sizes "
        "alternated; thread CPU time. Share: against the median per-step latency without "
        "rules above.[/dim]"
    )


def _history_json(history: dict[str, HistoryStats]) -> dict[str, dict[str, object]]:
    return {
        side: {
            **asdict(stats),
            "events_per_step": stats.events_per_step,
            "bytes_per_step": stats.bytes_per_step,
        }
        for side, stats in history.items()
    }


def print_json(report: Report) -> None:
    """Print the whole report as one JSON object."""
    out = {
        "config": asdict(report.config),
        "server_version": report.server_version,
        "python": platform.python_version(),
        "seconds": report.seconds,
        "measurements": [m.to_json() for m in report.measurements],
        "history": _history_json(report.history),
        "converter_us_per_step": report.converter_us_per_step,
        "result_readback_ms": report.result_readback_ms,
        "guard_us_per_step": [asdict(cost) for cost in report.guard_cost],
        "state_history": _history_json(report.state_history),
        "state_added_bytes": report.state_added_bytes,
        "long_loop": _long_loop_json(report.long_loop),
        "llm_turns": {side: asdict(t) for side, t in report.llm_turns.items()},
        "unavailable": report.unavailable,
        "core_warnings": report.core_warnings,
        "aims_met": all(m.met is not False for m in report.measurements),
    }
    print(json.dumps(out, indent=2))
