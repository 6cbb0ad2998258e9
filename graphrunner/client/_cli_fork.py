"""The ``fork`` command: a new lifetime that takes a lifetime's steps before N and runs on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import WorkflowFailureError

# The module, not its function: _cli imports this module and _cli_steps at its end, and
# either may be imported first.
from graphrunner.client import _cli_steps
from graphrunner.client._cli import (
    AppDir,
    JsonFlag,
    TenantOpt,
    _cause,
    _esc,
    _fail,
    _input,
    _run,
    _settings,
    _steps_table,
    _text,
    app,
    out,
)
from graphrunner.client._client import PARENT_INPUT, GraphrunnerClient, LostContact
from graphrunner.client._runtime import add_app_dir
from graphrunner.graph import load_graph

__all__: list[str] = []


@app.command()
def fork(
    lifetime_id: Annotated[str, typer.Argument(help="The lifetime to fork.")],
    step: Annotated[
        int,
        typer.Option("--step", min=0, help="The first step the fork runs (# in `steps`)."),
    ],
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The fork's input: JSON, @FILE or - for stdin (default: the parent's).",
        ),
    ] = None,
    graph: Annotated[
        Path | None,
        typer.Option("--graph", help="A new version of the graph, compatible up to the step."),
    ] = None,
    fork_id: Annotated[str | None, typer.Option("--id", help="The fork's lifetime id.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the fork's result.")] = False,
    app_dir: AppDir = Path("."),
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Start a new lifetime that takes ID's steps before N and runs from N with today's code."""
    add_app_dir(app_dir)
    data = PARENT_INPUT if input is None else _input(input)
    settings = _settings(tenant)

    async def go() -> None:
        model = load_graph(graph) if graph is not None else None
        client = await GraphrunnerClient.connect(settings)
        result = await client.fork(lifetime_id, step, input=data, graph=model, id=fork_id)
        if as_json and not wait:
            print(json.dumps(result.model_dump(mode="json"), indent=2))
            return
        if not as_json:
            out.print(
                f"forked [bold]{_esc(lifetime_id)}[/] at step #{step}: new lifetime "
                f"[bold]{_esc(result.lifetime_id)}[/]\n{_esc(result.ui_url)}",
                highlight=False,
            )
            out.print(
                _cli_steps.steps_table(result.memoized, "steps taken from the parent (not run)")
            )
            first = result.first
            runs = f"#{step} ({first.node}#{first.iteration})" if first else f"#{step}"
            graph_said = " on the new graph" if result.graph_changed else ""
            out.print(
                _text(
                    f"{len(result.memoized)} step(s) taken from the parent; the fork runs "
                    f"from step {runs} on, with the current code{graph_said}"
                )
            )
        if not wait:
            return
        try:
            final = await client.result(result.lifetime_id)
        except LostContact as exc:
            _fail(str(exc), 3)
        except WorkflowFailureError as exc:
            _fail(f"lifetime {result.lifetime_id} failed: {_cause(exc)}")
        if as_json:
            print(
                json.dumps(
                    {
                        "fork": result.model_dump(mode="json"),
                        "result": final.model_dump(mode="json"),
                    },
                    indent=2,
                )
            )
        else:
            out.print(_steps_table(final.steps, f"path of lifetime {result.lifetime_id}"))
            out.print_json(json.dumps(final.output))

    _run(go())
