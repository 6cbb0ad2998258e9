"""The ``replay`` command: would the current code break lifetimes on the server?

Run it before a deploy (``graphrunner replay --graph research --since 7d``) or in CI against a
staging server: it exits 1 if any lifetime's history no longer replays.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated

import typer

from graphrunner.client._cli import (
    AppDir,
    JsonFlag,
    TenantOpt,
    _esc,
    _fail,
    _run,
    _settings,
    _text,
    app,
    out,
)
from graphrunner.client._client import GraphrunnerClient
from graphrunner.client._replay import (
    ReplayVerdict,
    fetch_histories,
    lifetimes_to_replay,
    parse_since,
    replay_histories,
)
from graphrunner.client._runtime import add_app_dir

__all__: list[str] = []


def _workflow_class(spec: str) -> type:
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        _fail(f"--workflow {spec}: cannot import it ({exc}); give MODULE:CLASS")
    if not isinstance(found, type):
        _fail(f"--workflow {spec}: not a class")
    return found


@app.command()
def replay(
    lifetime_ids: Annotated[
        list[str] | None, typer.Argument(help="Lifetime ids (or --graph).", show_default=False)
    ] = None,
    graph: Annotated[
        str | None, typer.Option("--graph", "-g", help="Every lifetime of this graph.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --graph: started after WHEN (30m, 2h, 7d, or an ISO time)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="With --graph: at most this many, newest first.")
    ] = 100,
    workflow: Annotated[
        str | None,
        typer.Option(
            help="Replay with this workflow class (MODULE:CLASS, registered as AgentLifetime) "
            "instead of this graphrunner's: a candidate change, before it is deployed.",
        ),
    ] = None,
    app_dir: AppDir = Path("."),
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Replay lifetimes' histories against this code; exit 1 if any would break."""
    if bool(lifetime_ids) == (graph is not None):
        _fail(f"replay: give lifetime IDs or --graph, not {'both' if graph else 'neither'}")
    if since is not None and graph is None:
        _fail("replay: --since goes with --graph")
    try:
        after = parse_since(since) if since is not None else None
    except ValueError as exc:
        _fail(str(exc))
    add_app_dir(app_dir)
    workflows = [_workflow_class(workflow)] if workflow else None
    settings = _settings(tenant)

    async def go() -> list[ReplayVerdict]:
        client = await GraphrunnerClient.connect(settings)
        ids = list(lifetime_ids or [])
        if graph is not None:
            found = await lifetimes_to_replay(
                client.temporal, graph=graph, since=after, limit=limit
            )
            ids = [i for i in found if await client.owns(i)]  # a bound CLI: its tenant's only
        for lifetime_id in ids:
            await client.check_owner(lifetime_id)  # a bound CLI refuses another tenant's
        histories = await fetch_histories(client.temporal, ids)
        return await replay_histories(
            histories,
            blobs=client.blobs,
            workflows=workflows,
            quiet=True,
            codec=client.temporal.data_converter.payload_codec,
        )

    verdicts = _run(go())
    broken = [v for v in verdicts if not v.ok]
    if as_json:
        print(
            json.dumps(
                {
                    "replayed": len(verdicts),
                    "broken": len(broken),
                    "lifetimes": [v.model_dump() for v in verdicts],
                },
                indent=2,
            )
        )
    else:
        for v in verdicts:
            state = "running" if v.running else "closed"
            if v.ok:
                out.print(
                    f"{_esc(v.lifetime_id)}: [green]ok[/] ({state}, {v.events} events)",
                    highlight=False,
                )
                continue
            where = f"event {v.event_id} ({v.event_type})" if v.event_id else "unknown event"
            step = f", step {v.step_number}: {v.step}" if v.step else ""
            out.print(
                f"{_esc(v.lifetime_id)}: [red]breaks[/] at {_esc(where + step)} ({state})",
                highlight=False,
            )
            out.print(_text(f"  error: {v.error}"))
            out.print(_text(f"  hint: {v.hint}"))
        what = "lifetime" if len(verdicts) == 1 else "lifetimes"
        scope = f" of graph {graph}" if graph else ""
        out.print(
            _text(f"replay: {len(verdicts) - len(broken)} of {len(verdicts)} {what}{scope} replay")
            + _text(f", {len(broken)} would break" if broken else "")
        )
    if broken:
        raise typer.Exit(1)
