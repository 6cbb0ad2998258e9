"""The control commands: ``pause``, ``resume``, ``abort``, ``cancel`` and ``setup``.

Each control command acts on one lifetime (``ID``) or, with ``--query``, on every running
lifetime a Temporal visibility query matches, one line per lifetime and a summary.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from graphrunner.client._cli import (
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
from graphrunner.client._control import BULK_LIMIT, BulkOutcome

__all__: list[str] = []

Target = Annotated[
    str | None, typer.Argument(help="Lifetime id (or --query for many).", show_default=False)
]
Query = Annotated[
    str | None,
    typer.Option(
        "--query",
        "-q",
        help="Act on every running lifetime this Temporal list filter matches, e.g. "
        "\"GraphrunnerTenant='acme'\".",
    ),
]
Limit = Annotated[
    int,
    typer.Option(min=1, help="With --query: refuse (doing nothing) when more lifetimes match."),
]
_PAST = {"pause": "paused", "resume": "resumed", "abort": "aborted", "cancel": "cancelled"}


def _bulk(
    verb: str,
    lifetime_id: str | None,
    query: str | None,
    limit: int,
    as_json: bool,
    one: Callable[[GraphrunnerClient, str], Awaitable[None]],
    tenant: str | None = None,
    **options: str | None,
) -> None:
    """Run ``one`` on the lifetime, or ``verb`` on every lifetime ``query`` matches."""
    if (lifetime_id is None) == (query is None):
        _fail(f"{verb}: give a lifetime ID or --query, not {'both' if query else 'neither'}")
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        if lifetime_id is not None:
            await one(client, lifetime_id)
            return
        reason = options.get("reason") or ""
        outcomes = await client.control_many(
            verb,
            query or "",
            reason=reason,
            when=options.get("when"),
            rule=options.get("rule"),
            limit=limit,
        )
        _report(verb, query or "", outcomes, as_json)

    _run(go())


def _report(verb: str, query: str, outcomes: list[BulkOutcome], as_json: bool) -> None:
    done = sum(o.ok for o in outcomes)
    refused = len(outcomes) - done
    if as_json:
        print(
            json.dumps(
                {
                    "action": verb,
                    "query": query,
                    "matched": len(outcomes),
                    "ok": done,
                    "refused": refused,
                    "outcomes": [vars(o) for o in outcomes],
                },
                indent=2,
            )
        )
    else:
        for o in outcomes:
            mark = "[green]ok[/]" if o.ok else "[red]refused[/]"
            out.print(f"{_esc(o.lifetime_id)}: {mark}: {_esc(o.detail)}", highlight=False)
        what = "running lifetime" if len(outcomes) == 1 else "running lifetimes"
        out.print(
            _text(
                f"{verb}: {done} of {len(outcomes)} {what} matching {query} "
                f"{_PAST[verb]}" + (f", {refused} refused" if refused else "")
            )
        )
    if refused:
        raise typer.Exit(1)


@app.command()
def pause(
    lifetime_id: Target = None,
    query: Query = None,
    reason: Annotated[str, typer.Option(help="Why; shown in status and the UI.")] = "",
    limit: Limit = BULK_LIMIT,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Pause a lifetime by hand (or every one --query matches): no node starts until resume."""

    async def one(client: GraphrunnerClient, lifetime_id: str) -> None:
        info = await client.pause(lifetime_id, reason=reason)
        if as_json:
            print(info.model_dump_json(indent=2))
            return
        out.print(
            _text(
                f"paused {lifetime_id}: running nodes finish, no new one starts until "
                f"'graphrunner resume {lifetime_id}'"
            )
        )

    _bulk("pause", lifetime_id, query, limit, as_json, one, reason=reason, tenant=tenant)


@app.command()
def resume(
    lifetime_id: Target = None,
    query: Query = None,
    when: Annotated[
        str | None,
        typer.Option(help="New condition for the rule that paused it, e.g. 'sum(cost_usd) > 5'."),
    ] = None,
    rule: Annotated[
        str | None, typer.Option(help="Rule that --when replaces (default: the one that paused).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the decision record.")] = "",
    limit: Limit = BULK_LIMIT,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Resume a paused lifetime (or every one --query matches), optionally raising the limit."""

    async def one(client: GraphrunnerClient, lifetime_id: str) -> None:
        result = await client.resume(lifetime_id, when=when, rule=rule, reason=reason)
        if as_json:
            print(result.model_dump_json(indent=2))
            return
        out.print(_text(f"resumed {lifetime_id} (paused by {', '.join(result.resumed)})"))
        for name, condition in result.replaced.items():
            out.print(_text(f"rule {name} is now: {condition}"))

    _bulk(
        "resume",
        lifetime_id,
        query,
        limit,
        as_json,
        one,
        reason=reason,
        when=when,
        rule=rule,
        tenant=tenant,
    )


@app.command()
def abort(
    lifetime_id: Target = None,
    query: Query = None,
    reason: Annotated[str, typer.Option(help="Why; recorded and shown as the failure.")] = "",
    limit: Limit = BULK_LIMIT,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """End a lifetime (or every one --query matches) now, as a failure that is not retried."""

    async def one(client: GraphrunnerClient, lifetime_id: str) -> None:
        decision = await client.abort(lifetime_id, reason=reason)
        if as_json:
            print(decision.model_dump_json(indent=2))
            return
        out.print(_text(f"aborted {lifetime_id}: {reason or 'no reason given'}"))

    _bulk("abort", lifetime_id, query, limit, as_json, one, reason=reason, tenant=tenant)


@app.command()
def cancel(
    lifetime_id: Target = None,
    query: Query = None,
    reason: Annotated[str, typer.Option(help="Why; recorded with the cancellation.")] = "",
    limit: Limit = BULK_LIMIT,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Cancel a lifetime (or every one --query matches): Temporal cancellation, recorded."""

    async def one(client: GraphrunnerClient, lifetime_id: str) -> None:
        await client.cancel(lifetime_id, reason=reason)
        if as_json:
            print(json.dumps({"lifetime_id": lifetime_id, "cancel_requested": True}))
            return
        out.print(
            _text(
                f"cancel requested for {lifetime_id}: it ends 'canceled'; running nodes stop "
                "at their next heartbeat"
            )
        )

    _bulk("cancel", lifetime_id, query, limit, as_json, one, reason=reason, tenant=tenant)


@app.command()
def setup(
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Register graphrunner's search attributes on the server (TEMPORAL_ADDRESS); idempotent."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        done = await client.setup()
        if as_json:
            print(json.dumps([vars(d) for d in done], indent=2))
            return
        namespace = client.temporal.namespace
        for d in done:
            said = "registered" if d.outcome == "registered" else "already registered"
            out.print(_text(f"{d.name} ({d.type}): {said}"))
        out.print(_text(f"namespace {namespace} has graphrunner's search attributes"))

    _run(go())
