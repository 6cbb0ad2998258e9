"""The ``graphrunner`` command line (Typer + Rich)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from typer.core import TyperCommand

from graphrunner._metrics import metrics_runtime
from graphrunner._settings import Settings
from graphrunner._tracing import flush_traces
from graphrunner._types import LifetimeResult, StepRecord
from graphrunner._values import BadValue, clip, parse_json
from graphrunner.client._client import (
    GraphrunnerClient,
    LifetimeInfo,
    LostContact,
    connect_temporal,
    own_rows,
)
from graphrunner.client._runtime import (
    add_app_dir,
    embedded_server,
    load_policies,
    open_recorder,
    serve_worker,
)
from graphrunner.errors import DecryptionError, GraphError, GraphrunnerError
from graphrunner.graph import graph_json_schema, load_graph, to_mermaid
from graphrunner.guardrails import MANUAL_PAUSE, policy_json_schema
from graphrunner.stores import (
    SCHEMA_VERSION,
    DecisionRecord,
    ExecutionRecord,
    RecordStore,
    open_blobs,
    open_records,
    stream_result,
)
from graphrunner.stores._attempts import AttemptRecord, lifetime_attempts
from graphrunner.worker import build_worker

__all__ = ["app", "main"]

# Plain (click) help, not Rich's: Rich help shows every flag with a type, "--wait <bool>", as
# if it took a value.
app = typer.Typer(
    help="Run AgentGraphs as durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped output (files, tests, CI logs) is not cut to 80 columns: tables keep their cells whole.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long
T = TypeVar("T")

AppDir = Annotated[
    Path, typer.Option("--app-dir", help="Directory added to sys.path to import node code.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help="Act as this tenant (default: GRAPHRUNNER_TENANT): its lifetimes only; with "
        "GRAPHRUNNER_ISOLATION=hard, in its namespace.",
        show_default=False,
    ),
]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_STATE_CELL = 2000  # characters of one state value in a table (--json shows it whole)


def _visible(text: str) -> str:
    """``text`` with control characters shown as escapes, never sent to the terminal.

    User and server text (a node's error, a graph's version, a pause reason) could otherwise
    move the cursor or recolour lines: an ESC sequence can erase a failure and print a tick.
    Lone surrogates, which no terminal encoding takes, are shown as escapes too.
    """
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def _esc(text: str) -> str:
    """``text`` for a Rich markup string: visible, and with its square brackets kept."""
    return escape(_visible(text))


def _text(text: str) -> Text:
    """A line of plain text (no markup) made visible."""
    return Text(_visible(text))


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` verbatim (it may hold server or user text) as one error line.

    Line breaks inside it (a database driver's hint, say) become spaces: one error, one line.
    """
    line = re.sub(r"\s*\n\s*", " ", message.strip())
    err.print(f"[bold red]error:[/] {_esc(line)}", highlight=False)
    raise typer.Exit(code)


def _table(title: str, columns: list[str], right: tuple[str, ...] = ()) -> Table:
    """A table whose title and cells are shown verbatim, never read as Rich markup."""
    table = Table(title=Text(_visible(title)))
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _row(table: Table, *cells: object) -> None:
    table.add_row(*(Text(_visible(str(cell))) for cell in cells))


def _report(exc: GraphError) -> NoReturn:
    for issue in exc.issues:
        err.print(f"[red]✗[/] {_esc(str(issue))}", highlight=False)
    _fail(f"{len(exc.issues)} problem(s) in graph definition")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except GraphError as exc:
        _report(exc)
    except BadValue as exc:  # bad input, found before anything was sent
        _fail(str(exc), 1)
    except (GraphrunnerError, DecryptionError) as exc:
        _fail(str(exc), 2)
    except SQLAlchemyError as exc:
        _fail(_db_error(exc), 2)
    except WorkflowAlreadyStartedError as exc:
        _fail(f"a lifetime with id '{exc.workflow_id}' already exists: choose another --id", 1)
    except RPCError as exc:  # NOT_FOUND, PERMISSION_DENIED ...: the server's own words
        _fail(f"Temporal refused the request ({exc.status.name}): {exc.message}", 2)


def _db_error(exc: SQLAlchemyError) -> str:
    """One line for a state DB that cannot be reached or read."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"state DB error: {first}"


def _settings(tenant: str | None = None) -> Settings:
    """The settings from the environment; ``tenant`` (``--tenant``) binds them to a tenant.

    A shell (or service account) bound by ``GRAPHRUNNER_TENANT`` cannot be rebound to
    another tenant by ``--tenant``.
    """
    bound = os.environ.get("GRAPHRUNNER_TENANT") or None
    if tenant is not None and bound is not None and tenant != bound:
        _fail(
            f"GRAPHRUNNER_TENANT binds this command to tenant '{bound}': --tenant '{tenant}' "
            "is refused",
            2,
        )
    try:
        return Settings.from_env(tenant=tenant)
    except GraphrunnerError as exc:
        _fail(str(exc), 2)


def _steps_table(steps: list[StepRecord], title: str) -> Table:
    table = _table(
        title,
        ["#", "node", "kind", "iteration", "status", "duration", "next"],
        right=("#", "iteration", "duration"),
    )
    for step in steps:
        ms = step.duration_ms
        _row(
            table,
            str(step.seq),  # the execution's own number, as `history` shows it
            step.node,
            step.kind.value,
            str(step.iteration),
            step.status.value,
            f"{ms:.0f} ms" if ms is not None else "-",
            ", ".join(step.next),
        )
    return table


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _history_table(
    records: list[ExecutionRecord], title: str, superseded: dict[str, str] | None = None
) -> Table:
    # After a reset (more than one run), each row says its run and whether it was abandoned.
    runs = len({r.run_id for r in records}) > 1
    extra = ["run", "superseded by"] if runs else []
    # Lifetimes that call models: the model each step used (a tool call: its tool).
    models = any(r.model or r.tool for r in records)
    table = _table(
        title,
        [
            "#",
            "node",
            "iter",
            "attempt",
            "status",
            *(["model"] if models else []),
            "tokens",
            "cost $",
            "latency",
            "result",
            *extra,
        ],
        right=("#", "iter", "attempt", "tokens", "cost $", "latency"),
    )
    for rec in records:
        result = rec.result_uri or (_size(rec.result_size) if rec.result_inline else "-")
        if rec.error:
            result = rec.error[:60]
        by = (superseded or {}).get(rec.execution_id)
        marks = [rec.run_id[:8], by[:8] if by else "-"] if runs else []
        _row(
            table,
            str(rec.seq),
            rec.node,
            str(rec.iteration),
            str(rec.attempt),
            rec.status.value,
            *([rec.model or (f"tool {rec.tool}" if rec.tool else "-")] if models else []),
            f"{rec.tokens_in}/{rec.tokens_out}",
            f"{rec.cost_usd:.4f}",
            f"{rec.latency_ms:.0f} ms",
            result,
            *marks,
        )
    return table


async def _superseded(
    settings: Settings, lifetime_id: str, records: list[ExecutionRecord]
) -> dict[str, str]:
    """Records a reset abandoned (execution id -> new run); {} with one run or no server."""
    if len({r.run_id for r in records}) < 2:
        return {}
    try:
        client = await GraphrunnerClient.connect(settings)
        return await client.superseded(lifetime_id, records)
    except (GraphrunnerError, RPCError):  # history still shows the records, with their runs
        return {}


def _attempts_table(rows: list[AttemptRecord], title: str) -> Table:
    table = _table(
        title,
        ["#", "node", "iter", "attempt", "status", "started", "latency", "error"],
        right=("#", "iter", "attempt", "latency"),
    )
    for a in rows:
        _row(
            table,
            str(a.seq),
            a.node,
            str(a.iteration),
            str(a.attempt),
            a.status.value,
            a.started_at.isoformat(timespec="seconds"),
            f"{a.latency_ms:.0f} ms",
            a.error or "-",  # whole: seeing why an attempt failed is the point
        )
    return table


def _decisions_table(decisions: list[DecisionRecord], title: str) -> Table:
    table = _table(
        title,
        ["#", "rule", "action", "when", "node", "iter", "observed", "message"],
        right=("#", "iter"),
    )
    for d in decisions:
        _row(
            table,
            str(d.seq),
            d.rule,
            d.action,
            d.phase,
            d.node or "-",
            str(d.iteration) if d.iteration is not None else "-",
            ", ".join(f"{k} = {v}" for k, v in d.observed.items()) or d.condition or "-",
            d.message or "-",
        )
    return table


@app.command()
def validate(
    graph: Annotated[Path, typer.Argument(help="Graph YAML file.")],
    app_dir: AppDir = Path("."),
    imports: Annotated[bool, typer.Option(help="Import node implementations too.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Check a graph file; list every problem with file, line, node and rule."""
    add_app_dir(app_dir)
    try:
        model = load_graph(graph, check_imports=imports)
    except GraphError as exc:
        if as_json:
            print(json.dumps({"valid": False, "issues": [vars(i) for i in exc.issues]}, indent=2))
            raise typer.Exit(1) from None
        for issue in exc.issues:
            err.print(f"[red]✗[/] {_esc(str(issue))}", highlight=False)
        _fail(f"{len(exc.issues)} problem(s) in {graph}")
    if as_json:
        print(
            json.dumps(
                {
                    "valid": True,
                    "name": model.name,
                    "version": model.version,
                    "hash": model.content_hash(),
                },
                indent=2,
            )
        )
    else:
        out.print(
            f"[green]✓[/] {_esc(str(graph))}: graph '{_esc(model.name)}' "
            f"{_esc(model.version)} is valid "
            f"({len(model.nodes)} nodes, {len(model.edges)} edges)",
            highlight=False,
        )


@app.command("graph")
def graph_cmd(
    graph: Annotated[Path, typer.Argument(help="Graph YAML file.")],
    app_dir: AppDir = Path("."),
) -> None:
    """Print the graph as a mermaid flowchart."""
    add_app_dir(app_dir)
    try:
        model = load_graph(graph, check_imports=False)
    except GraphError as exc:
        _report(exc)
    print(to_mermaid(model), end="")


@app.command()
def schema(
    policy: Annotated[
        bool, typer.Option("--policy", help="The guardrail policy format instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the graph YAML format (or, with --policy, of policies)."""
    print(json.dumps(policy_json_schema() if policy else graph_json_schema(), indent=2))


@app.command()
def run(
    graph: Annotated[Path, typer.Argument(help="Graph YAML file.")],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="Lifetime input: JSON, @FILE to read it from a file, or - for stdin.",
        ),
    ] = "null",
    lifetime_id: Annotated[str | None, typer.Option("--id", help="Lifetime id.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    app_dir: AppDir = Path("."),
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Start a lifetime of GRAPH; print its id and Temporal UI link."""
    add_app_dir(app_dir)
    data = _input(input)
    settings = _settings(tenant)

    async def go() -> None:
        model = load_graph(graph)
        client = await GraphrunnerClient.connect(settings)
        handle = await client.start(model, data, id=lifetime_id, tenant=tenant)
        link = client.ui_url(handle.id)
        # A repeated start attaches to the lifetime with that id (one lifetime per id).
        if handle.attached is None:
            said = "started lifetime"
        elif handle.attached == "running":
            said = "already running, attached to lifetime"
        else:
            said = f"already ran ({handle.attached}), attached to lifetime"
        if not wait:
            if as_json:
                print(
                    json.dumps(
                        {
                            "lifetime_id": handle.id,
                            "run_id": handle.result_run_id,
                            "ui_url": link,
                            "attached": handle.attached,
                        }
                    )
                )
            else:
                out.print(f"{said} [bold]{_esc(handle.id)}[/]\n{_esc(link)}")
            return
        if not as_json:
            out.print(
                f"{said} [bold]{_esc(handle.id)}[/] ({_esc(link)}); waiting…",
                highlight=False,
            )
        try:
            result = await client.result(handle.id)
        except LostContact as exc:
            _fail(str(exc), 3)
        except WorkflowFailureError as exc:
            _fail(f"lifetime {handle.id} failed: {_cause(exc)}")
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            out.print(_steps_table(result.steps, f"lifetime {handle.id}"))
            out.print_json(json.dumps(result.output))

    _run(go())


def _input(option: str, flag: str = "--input") -> Any:
    """The value of ``--input`` (or ``flag``): JSON text, ``@file`` or ``-`` (stdin)."""
    what = flag
    text = option
    if option == "-":
        what, text = f"{flag} - (stdin)", sys.stdin.read()
    elif option.startswith("@"):
        path = Path(option[1:])
        what = f"{flag} @{path}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{what}: cannot read the file: {exc}")
    try:
        return parse_json(text, what)
    except BadValue as exc:
        _fail(str(exc))


def _cause(exc: BaseException) -> str:
    """The innermost failure with a message, prefixed by its type when that says more."""
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    message = str(exc)
    kind = getattr(exc, "type", None)
    if isinstance(kind, str) and kind and not message.startswith(f"{kind}:"):
        return f"{kind}: {message}"
    return message


@app.command()
def status(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Show a lifetime's status and the steps it has taken."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        try:
            info = await client.status(lifetime_id)
        except Exception as exc:  # RPCError NOT_FOUND and friends
            _fail(f"lifetime {lifetime_id}: {exc}")
        if as_json:
            print(json.dumps(_status_json(info), indent=2))
            return
        out.print(
            f"lifetime [bold]{_esc(info.lifetime_id)}[/]: {info.status}"
            # What Temporal's status cannot say: waiting for a person, paused, aborted.
            + (f" ({info.phase})" if info.phase in ("waiting", "paused", "aborted") else "")
            + "  "
            f"(graph {_esc(str(info.graph_name))}, tenant {_esc(str(info.tenant))}, "
            f"started {info.started_at})",
            highlight=False,
        )
        if info.running:
            out.print(_text(f"running: {', '.join(info.running)}"))
        for pause in info.paused:
            values = ", ".join(f"{k} = {v}" for k, v in pause.observed.items())
            if pause.rule == MANUAL_PAUSE:
                who, where = "by hand", "before"
            else:
                who, where = f"by guardrail [bold]{_esc(pause.rule)}[/]", "at"
            out.print(
                f"[bold yellow]paused[/] {who}"
                + (f" {where} {_esc(pause.node)} · {pause.iteration}" if pause.node else "")
                + f": {_esc(pause.message or pause.condition)}"
                + (f" ({_esc(values)})" if values else "")
                + f"; resume with: graphrunner resume {_esc(info.lifetime_id)}",
                highlight=False,
                soft_wrap=True,
            )
        for request in info.waiting:
            out.print(
                f"[bold yellow]waiting for an answer[/] at {_esc(request.node)} · "
                f"{request.iteration} (request {request.request_id}, since "
                f"{request.since.isoformat(timespec='seconds')}): {_esc(request.question)}; "
                f"answer with: graphrunner respond {_esc(info.lifetime_id)} --node "
                f"{_esc(request.node)} --data '<JSON>'",
                highlight=False,
                soft_wrap=True,
            )
        for refused in info.refused:
            out.print(
                f"[bold red]refused answer[/] ({refused.at.isoformat(timespec='seconds')}, "
                f"by {_esc(refused.by or '?')}): {_esc(refused.reason)}",
                highlight=False,
                soft_wrap=True,
            )
        if info.failure:
            out.print(f"[bold red]failed:[/] {_esc(info.failure)}", highlight=False, soft_wrap=True)
        if info.stalled:
            out.print(
                f"[bold red]stalled:[/] {_esc(info.stalled)}; the lifetime goes on once "
                "workers run code that replays its history (or after 'temporal workflow reset')",
                highlight=False,
                soft_wrap=True,
            )
        if info.runs > 1:
            out.print(
                _text(
                    f"run {info.runs} (continued as new {info.runs - 1} times); steps "
                    f"#0..#{info.earlier_steps - 1} are in earlier runs: graphrunner steps "
                    f"{info.lifetime_id}"
                )
            )
        out.print(_steps_table(info.steps, "steps"))
        if info.state is not None:
            out.print(_state_table(info.state, None, "state"))
        _print_children(info, "  ")
        out.print(_text(info.ui_url))

    _run(go())


def _status_json(info: LifetimeInfo) -> dict[str, Any]:
    payload = dict(vars(info))
    payload["steps"] = [s.model_dump(mode="json") for s in info.steps]
    payload["paused"] = [p.model_dump(mode="json") for p in info.paused]
    payload["waiting"] = [r.model_dump(mode="json") for r in info.waiting]
    payload["refused"] = [r.model_dump(mode="json") for r in info.refused]
    payload["children"] = {k: _status_json(v) for k, v in info.children.items()}
    return payload


def _print_children(info: LifetimeInfo, indent: str) -> None:
    """The steps of each sub-graph task's child lifetime, under the task that started it."""
    for step in info.steps:
        child = info.children.get(step.child or "")
        if child is None:
            continue
        out.print(
            _text(
                f"{indent}{step.node} · {step.iteration} → child lifetime {child.lifetime_id}: "
                f"{child.status} (graph {child.graph_name})"
                + (f"; failed: {child.failure}" if child.failure else "")
            )
        )
        out.print(_steps_table(child.steps, f"{indent}steps of {step.node} · {step.iteration}"))
        if child.state is not None:
            out.print(_text(f"{indent}state of {step.node} · {step.iteration}:"))
            out.print(_state_table(child.state, None, ""))
        _print_children(child, indent + "  ")


@app.command()
def pending(
    lifetime_id: Annotated[
        str | None, typer.Argument(help="Only this lifetime's requests (default: all).")
    ] = None,
    graph: Annotated[str | None, typer.Option(help="Only lifetimes of this graph.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 200,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """List the human-input requests waiting for an answer (no worker needed)."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        found = await client.pending(lifetime_id, tenant=tenant, graph=graph, limit=limit)
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
            return
        table = _table(
            "pending answers",
            ["lifetime", "node", "#", "question", "since", "deadline", "assignee", "labels"],
        )
        for r in found:
            _row(
                table,
                r.lifetime_id,
                r.node,
                r.iteration,
                clip(r.question, 400),
                r.since.isoformat(timespec="seconds"),
                f"{r.deadline.isoformat(timespec='seconds')} ({r.on_timeout})"
                if r.deadline
                else "-",
                r.assignee or "-",
                ", ".join(r.labels) or "-",
            )
        out.print(table)
        if found:
            example = found[0]
            out.print(
                _text(
                    f"answer with: graphrunner respond {example.lifetime_id} --node "
                    f"{example.node} --data '<JSON>'  (schemas: --json)"
                )
            )

    _run(go())


@app.command()
def respond(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    node: Annotated[str, typer.Option(help="The human task that asked.")],
    data: Annotated[str, typer.Option(help="The answer: JSON text, @file, or - (stdin).")],
    by: Annotated[
        str | None, typer.Option("--as", help="Who answers (kept in the record; default: you).")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request", help="The request (when several of NODE wait).")
    ] = None,
    signal: Annotated[
        bool,
        typer.Option(
            "--signal",
            help="Send as a signal: accepted with no worker up, checked later (a refusal "
            "shows in 'status', not here).",
        ),
    ] = False,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Answer a lifetime's human-input step (validated by the lifetime before it is taken)."""
    settings = _settings(tenant)
    answer = _input(data, "--data")
    who = by if by is not None else f"{os.environ.get('USER') or 'cli'}@{os.uname().nodename}"

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        if signal:
            await client.answer_by_signal(lifetime_id, node, answer, request_id=request_id, by=who)
            out.print(_text(f"signalled an answer to {lifetime_id} · {node}"))
            return
        outcome = await client.respond(lifetime_id, node, answer, request_id=request_id, by=who)
        if as_json:
            print(outcome.model_dump_json(indent=2))
            return
        again = " (already answered: this is the first answer)" if outcome.duplicate else ""
        out.print(
            _text(
                f"answered {lifetime_id} · {outcome.node} · {outcome.iteration} as "
                f"{outcome.by or '-'} after {outcome.waited_ms / 1000:.1f} s{again}"
            )
        )

    _run(go())


@app.command()
def worker(
    app_dir: AppDir = Path("."),
    tenant: TenantOpt = None,
) -> None:
    """Run a worker (lifetime workflow + node activities) until Ctrl-C."""
    add_app_dir(app_dir)
    settings = _settings(tenant)

    async def go() -> None:
        policies = load_policies(settings)  # a bad policy stops the worker before it connects
        runtime = metrics_runtime(settings)  # a bad metrics address too
        client = await connect_temporal(settings, runtime=runtime)
        target = client.service_client.config.target_host
        await serve_worker(
            client,
            settings,
            policies=policies,
            ready=f"worker polling task queue '{settings.task_queue_for(settings.tenant)}' on "
            f"{target} (namespace {client.namespace}){_metrics_note(settings)}; Ctrl-C stops",
        )

    _run(go())


def _metrics_note(settings: Settings) -> str:
    if settings.metrics_bind is None:
        return ""
    return f"; metrics on http://{settings.metrics_bind}/metrics"


class _DevCommand(TyperCommand):
    """``graphrunner dev``, whose help names the ports the settings give, not the defaults."""

    # Any: typer passes its vendored click's Context and HelpFormatter, which it does not export.
    def format_help(self, ctx: Any, formatter: Any) -> None:
        try:
            settings = Settings.from_env()
        except GraphrunnerError:  # the command itself reports bad settings
            settings = Settings()
        self.help = (
            "Start the embedded Temporal dev server (gRPC on localhost:"
            f"{settings.dev_port}, Web UI on {settings.web_ui()}) and a worker, in the "
            "foreground; Ctrl-C stops both. Ports: GRAPHRUNNER_DEV_PORT, "
            "GRAPHRUNNER_DEV_UI_PORT."
        )
        super().format_help(ctx, formatter)


@app.command(cls=_DevCommand)
def dev(
    app_dir: AppDir = Path("."),
    tenant: TenantOpt = None,
) -> None:
    """Start the embedded Temporal dev server and a worker; Ctrl-C stops both."""
    add_app_dir(app_dir)
    settings = _settings(tenant)

    async def go() -> None:
        policies = load_policies(settings)
        runtime = metrics_runtime(settings)
        async with contextlib.AsyncExitStack() as stack:
            codec = ""
            if settings.codec_keys is not None:  # the UI shows plaintext through it
                from graphrunner.codec._server import serve_codec  # aiohttp: ~0.3 s to import

                ui = settings.web_ui()  # the browser's origin is whichever host was typed
                origins = [ui, ui.replace("//localhost:", "//127.0.0.1:")]
                url = await stack.enter_async_context(serve_codec(settings, origins=origins))
                codec = f"; codec server on {url}"
            client, server = await stack.enter_async_context(
                embedded_server(settings, headless=False, reuse=False, runtime=runtime)
            )
            ui = settings.web_ui() if server and not server.headless else "(no UI: port in use)"
            await serve_worker(
                client,
                settings,
                policies=policies,
                ready=f"Temporal dev server on {server.address if server else '?'}, UI {ui}"
                f"{codec}\nstate in {settings.home}/; worker on task queue "
                f"'{settings.task_queue_for(settings.tenant)}' (namespace {client.namespace})"
                f"{_metrics_note(settings)}. Ctrl-C stops both.",
            )
        out.print("stopped worker and dev server")

    _run(go())


@app.command()
def demo(
    graph: Annotated[Path, typer.Option(help="Graph to run.")] = Path("examples/research.yaml"),
    input_text: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="The lifetime's input as JSON (default: the research example's topic).",
        ),
    ] = None,
    app_dir: AppDir = Path("."),
) -> None:
    """Run an example lifetime end to end on the embedded server and show its path.

    With ``GRAPHRUNNER_LLM_SCRIPT`` naming an example's offline script, its LLM nodes
    follow it (e.g. ``examples/code_review/offline.yaml``).
    """
    add_app_dir(app_dir)
    settings = _settings()
    data: Any = {"topic": "durable agent workflows"}
    try:
        if input_text is not None:
            data = json.loads(input_text)
    except ValueError as exc:
        _fail(f"--input is not JSON: {exc}")

    async def go() -> LifetimeResult:
        model = load_graph(graph)
        async with embedded_server(settings, headless=True, reuse=True) as (temporal, server):
            where = "embedded dev server (started for the demo)" if server else "running server"
            out.print(
                f"graph [bold]{_esc(model.name)}[/] {_esc(model.version)} on the {where}",
                highlight=False,
            )
            recorder = open_recorder(settings)
            client = GraphrunnerClient(
                temporal, settings=settings, records=recorder.records if recorder else None
            )
            policies = load_policies(settings)
            worker = build_worker(
                temporal,
                task_queue=settings.task_queue,
                recorder=recorder,
                policies=policies,
                impl_modules=settings.impl_prefixes(),
            )
            async with worker:
                handle = await client.start(model, data)
                out.print(f"lifetime [bold]{_esc(handle.id)}[/] started", highlight=False)
                result = await handle.result()
            out.print(_steps_table(result.steps, f"path of lifetime {handle.id}"))
            if recorder is not None:
                written = len(await client.history(handle.id))
                out.print(
                    f"{written} execution records in {_esc(recorder.records.safe_url())}: "
                    f"[bold]graphrunner history {_esc(handle.id)}[/]",
                    highlight=False,
                )
            out.print(_text(f"output: {json.dumps(result.output)}"))
            out.print(
                "\nBrowse it in the Temporal Web UI: run [bold]graphrunner dev[/] (or "
                "[bold].venv/bin/graphrunner dev[/]) and open\n  "
                f"{_esc(client.ui_url(handle.id))}",
                highlight=False,
            )
            return result

    _run(go())


@app.command()
def history(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    attempts: Annotated[
        bool,
        typer.Option("--attempts", help="Also every finished attempt, failed ones with the error."),
    ] = False,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Every recorded execution of a lifetime: telemetry and where its result is."""
    settings = _settings(tenant)

    async def go() -> None:
        store = open_records(settings)
        # A tenant-bound CLI shows its own tenant's rows only (OtherTenant for another's).
        records = own_rows(settings.tenant, lifetime_id, await store.executions(lifetime_id))
        decisions = own_rows(settings.tenant, lifetime_id, await store.decisions(lifetime_id))
        tried = (
            await lifetime_attempts(store, lifetime_id, tenant=settings.tenant)
            if attempts and records
            else []
        )
        superseded = await _superseded(settings, lifetime_id, records)
        if as_json:
            payload = {
                "executions": [
                    {**r.model_dump(mode="json"), "superseded_by": superseded.get(r.execution_id)}
                    for r in records
                ],
                "decisions": [d.model_dump(mode="json") for d in decisions],
            }
            if attempts:
                payload["attempts"] = [a.model_dump(mode="json") for a in tried]
            print(json.dumps(payload, indent=2))
            return
        if not records and not decisions:
            _fail(f"no records for lifetime {lifetime_id} in {settings.state_db_url()}")
        out.print(_history_table(records, f"executions of {lifetime_id}", superseded))
        if attempts:
            out.print(_attempts_table(tried, f"attempts of {lifetime_id}"))
        if decisions:
            out.print(_decisions_table(decisions, f"guardrail decisions of {lifetime_id}"))

    _run(go())


@app.command()
def state(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    step: Annotated[
        int | None,
        typer.Option(
            "--step",
            min=0,
            help="The state after this step (# in `history`), rebuilt from its record.",
        ),
    ] = None,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """A lifetime's state: now (or at its end), or after one step."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        try:
            found = await client.state(lifetime_id, step=step)
        except GraphrunnerError as exc:
            _fail(str(exc))
        if as_json:
            print(json.dumps(found.model_dump(mode="json"), indent=2))
            return
        if found.step is None:
            title = f"state of {lifetime_id}"
        else:
            title = (
                f"state of {lifetime_id} after step {found.step} ({found.node} · {found.iteration})"
            )
        out.print(_state_table(found.state or {}, found.update or {}, title))

    _run(go())


def _state_table(state: dict[str, Any], update: dict[str, Any] | None, title: str) -> Table:
    """One row per state field: its value (and the update that made it), as JSON."""
    columns = ["field", "value"] + (["update"] if update is not None else [])
    table = _table(title, columns)
    for name, value in state.items():
        cells = [name, clip(json.dumps(value, ensure_ascii=False), _STATE_CELL)]
        if update is not None:
            cells.append(
                clip(json.dumps(update[name], ensure_ascii=False), _STATE_CELL)
                if name in update
                else ""
            )
        _row(table, *cells)
    return table


@app.command("list")
def list_cmd(
    graph: Annotated[str | None, typer.Option(help="Only this graph.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: running, completed, failed ...")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Lifetimes, newest first, with their record totals."""
    settings = _settings(tenant)

    async def go() -> None:
        client = await GraphrunnerClient.connect(settings)
        rows = await client.list_lifetimes(graph=graph, tenant=tenant, status=status, limit=limit)
        if as_json:
            print(json.dumps([vars(r) for r in rows], indent=2))
            return
        table = _table(
            "lifetimes",
            ["lifetime", "status", "graph", "tenant", "started", "execs", "tokens", "cost $"],
        )
        for r in rows:
            _row(
                table,
                r.lifetime_id,
                r.status,
                r.graph_name,
                r.tenant,
                r.started_at[:19],
                str(r.executions),
                str(r.tokens),
                r.cost_usd,
            )
        out.print(table)

    _run(go())


@app.command()
def costs(
    by: Annotated[str, typer.Option(help="Group by 'tenant' or 'graph'.")] = "tenant",
    as_json: JsonFlag = False,
    tenant: TenantOpt = None,
) -> None:
    """Token and cost totals per tenant or per graph."""
    settings = _settings(tenant)

    async def go() -> None:
        try:
            rows = await open_records(settings).costs(by, tenant=settings.tenant)
        except ValueError as exc:
            _fail(str(exc))
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
            return
        table = _table(
            f"costs by {by}", [by, "lifetimes", "executions", "tokens in", "tokens out", "cost $"]
        )
        for r in rows:
            _row(
                table,
                r.key,
                str(r.lifetimes),
                str(r.executions),
                str(r.tokens_in),
                str(r.tokens_out),
                f"{r.cost_usd:.4f}",
            )
        out.print(table)

    _run(go())


@app.command()
def result(
    lifetime_id: Annotated[str, typer.Argument(help="Lifetime id.")],
    node: Annotated[str, typer.Argument(help="Node name.")],
    iteration: Annotated[int | None, typer.Option(help="Iteration (default: the last).")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
    tenant: TenantOpt = None,
) -> None:
    """Print (or save) one execution's result as JSON; large results stream from the blob store."""
    settings = _settings(tenant)

    async def go() -> None:
        store = open_records(settings)
        records = [
            r
            for r in own_rows(settings.tenant, lifetime_id, await store.executions(lifetime_id))
            if r.node == node and (iteration is None or r.iteration == iteration)
        ]
        if not records:
            _fail(f"no recorded execution of node '{node}' in lifetime {lifetime_id}")
        blobs = open_blobs(settings)
        if output is None:
            try:
                async for chunk in stream_result(records[-1], blobs, store.cipher):
                    sys.stdout.buffer.write(chunk)
            finally:
                sys.stdout.buffer.flush()
            return
        # Written beside the target and renamed once whole: a refused or broken result
        # leaves no file behind, and never half of one.
        partial = output.with_name(output.name + ".part")
        try:
            with partial.open("wb") as sink:
                async for chunk in stream_result(records[-1], blobs, store.cipher):
                    sink.write(chunk)
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)

    _run(go())


db_app = typer.Typer(help="State DB schema.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")


@contextlib.contextmanager
def _state_db(settings: Settings) -> Iterator[RecordStore]:
    """The state DB for one command; failing to open or read it is one error line (exit 2)."""
    try:
        store = RecordStore(settings.state_db_url())
        try:
            yield store
        finally:
            store.close()
    except GraphrunnerError as exc:
        _fail(str(exc), 2)
    except SQLAlchemyError as exc:
        _fail(_db_error(exc), 2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the state DB schema to this graphrunner's version."""
    with _state_db(_settings()) as store:
        before, after = store.upgrade()
    out.print(_text(f"state DB schema: version {before} -> {after}"))


@db_app.command("status")
def db_status() -> None:
    """Show the state DB URL and schema version."""
    with _state_db(_settings()) as store:
        version = store.schema_version()
    out.print(
        _text(f"{store.safe_url()}: schema version {version} (this graphrunner: {SCHEMA_VERSION})")
    )


def main() -> None:
    """Console entry point.

    Exits with ``os._exit`` once output is flushed: the Temporal core's Rust threads can abort
    interpreter teardown with "PyGILState_Release ... finalizing" (temporalio/sdk-python#300),
    which turned about one short-lived CLI run in twenty into a SIGABRT here under load.
    """
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    flush_traces()  # os._exit skips the tracer provider's own flush at exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# Their own modules, which register their commands: pause, resume, abort, cancel (one
# lifetime or --query) and setup; replay (would this code break running lifetimes?); steps
# and reset (a lifetime's steps across runs); fork (a new lifetime from a step of another);
# and models (LLM tiers and cooldowns).
from graphrunner.client import (  # noqa: E402, F401
    _cli_codec,
    _cli_control,
    _cli_fork,
    _cli_llm,
    _cli_replay,
    _cli_steps,
)

if __name__ == "__main__":
    main()
