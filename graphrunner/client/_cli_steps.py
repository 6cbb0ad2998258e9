"""The ``steps`` and ``reset`` commands: a lifetime's steps across runs, and reset to one."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from graphrunner.client._cli import (
    JsonFlag,
    TenantOpt,
    _row,
    _run,
    _settings,
    _table,
    _text,
    app,
    out,
)
from graphrunner.client._client import GraphrunnerClient
from graphrunner.client._steps import LifetimeStep, ResetResult

__all__: list[str] = []


def _short(run_id: str | None) -> str:
    return run_id[:8] if run_id else "-"


def steps_table(steps: list[LifetimeStep], title: str) -> Table:
    """One row per step: its run, times, reset point and whether it is superseded."""
    table = _table(
        title,
        ["#", "node", "kind", "iter", "status", "started", "finished", "reset@", "run"]
        + ["superseded by"],
        right=("#", "iter", "reset@"),
    )
    for s in steps:
        _row(
            table,
            str(s.seq),
            s.node,
            s.kind.value,
            str(s.iteration),
            s.status.value,
            s.started_at.isoformat(timespec="seconds"),
            s.finished_at.isoformat(timespec="seconds") if s.finished_at else "-",
            str(s.reset_point) if s.reset_point is not None else "-",
            _short(s.run_id),
            _short(s.superseded_by),
        )
    return table


@app.command()
def steps(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Every step of a lifetime across its runs, with the event to reset to before each."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        found = await client.steps(lifetime_id)
        if as_json:
            print(found.model_dump_json(indent=2))
            return
        out.print(steps_table(found.steps, f"steps of {lifetime_id} (run {found.run_id})"))
        if len(found.runs) > 1:
            out.print(_text(f"runs, oldest first: {', '.join(found.runs)}"))

    _run(go())


def _said(result: ResetResult, dry_run: bool) -> None:
    at = f"event {result.event_id}, the workflow-task boundary before step #{result.step}"
    if dry_run:
        out.print(_text(f"would reset {result.lifetime_id} run {result.base_run_id} to {at}"))
    else:
        out.print(
            _text(
                f"reset {result.lifetime_id} to {at}: new run {result.new_run_id} "
                f"(run {result.base_run_id} is abandoned; its records stay, superseded)"
            )
        )
    out.print(steps_table(result.rerun, "steps that run again"))
    earlier = [f"#{s.seq}" for s in result.rerun if s.seq < result.step]
    if earlier:
        out.print(
            _text(
                f"{', '.join(earlier)} run again too: they finished after that boundary (in "
                f"the workflow task that began #{result.step}, or still running there)"
            )
        )
    if result.answers:
        fate = "dropped (the lifetime asks again)" if result.answers_dropped else "re-applied"
        out.print(_text(f"{result.answers} human answer(s) given after that point: {fate}"))


@app.command()
def reset(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    step: Annotated[
        int, typer.Option("--step", min=0, help="Run again from this step (# in `steps`).")
    ],
    drop_answers: Annotated[
        bool,
        typer.Option(
            "--drop-answers",
            help="Drop human answers (every Signal and Update) given after that point.",
        ),
    ] = False,
    reason: Annotated[str, typer.Option(help="Why; shown in the Web UI.")] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show which steps would run again.")
    ] = False,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Reset a lifetime to just before step N: steps N.. run again with the current code."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        result = await client.reset(
            lifetime_id, step=step, drop_answers=drop_answers, reason=reason, dry_run=dry_run
        )
        if as_json:
            print(json.dumps(result.model_dump(mode="json"), indent=2))
            return
        _said(result, dry_run)

    _run(go())
