"""Plans without code: a plan with no ``impl`` routes by the ``when`` conditions of its edges.

A condition is an expression of the guardrail language (`graphrunner.guardrails._expr`: the
same lexer, parser, type checker, limits and compiled evaluator), over these names:

``output``, ``output.<key>[.<key>...]``
    The last result's output, or a key of it (through nested mappings). Its type is the one
    its use needs: ``output.score >= 8`` reads a number, ``output.label == "billing"`` a
    string, ``output.approved`` (or ``not output.approved``) a boolean.
``node`` (string), ``iteration`` (number), ``rejected`` (boolean)
    Of the last result: which task produced it, its iteration (in a loop, the round), and
    whether a guardrail rejected it (it then has no output).
``state.<field>``
    A field the graph declares under ``state``, as the plan was called with it: number and
    integer fields read as numbers, string and boolean fields as such, ``any`` fields take
    the type of their use; array and object fields cannot be read.
``count(...)``, ``sum(...)``, ``min``, ``max``, ``avg``
    Range over every result the plan got (every branch of a JOIN; one result otherwise):
    ``min(output.score) >= 7``, ``count(where rejected) > 0``.

A missing value, or one of another type, reads as 0, "" or false (the language never fails).

The plan takes the first of its edges, in declared order, whose condition holds; when that
edge is PARALLEL, it fans out to every PARALLEL edge whose condition holds (their branches
JOIN as usual). When none holds it takes its **default**, its one edge without ``when``
(which may be FINAL). The chosen tasks get the last result's output as their data; a FINAL
edge ends the lifetime with it as the output. A plan reached by JOIN edges hands on the list
of its results' outputs instead, in the order joined (a rejected one as null).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from graphrunner.errors import PolicyError
from graphrunner.graph._model import (
    AgentGraph,
    EdgeSpec,
    EdgeType,
    NodeKind,
    NodeSpec,
    StateField,
)
from graphrunner.guardrails._ast import STATE, ExprType
from graphrunner.guardrails._eval import BoolFn, Compiler, Frame, state_row
from graphrunner.guardrails._expr import parse_expression
from graphrunner.guardrails._names import UnknownName, Vocabulary

__all__ = ["Problem", "Route", "Router", "routes_by_conditions", "routing_problems", "vocabulary"]

_OUTPUT: Final = "output"
#: Names of the last result, with their types.
RESULT_NAMES: Final = {
    "node": ExprType.STRING,
    "iteration": ExprType.NUMBER,
    "rejected": ExprType.BOOLEAN,
}
# Declared state types a condition reads, and as what (None: by its use).
_STATE_TYPES: Final[dict[str, ExprType | None]] = {
    "number": ExprType.NUMBER,
    "integer": ExprType.NUMBER,
    "string": ExprType.STRING,
    "boolean": ExprType.BOOLEAN,
    "any": None,
}
_NAMES: Final = "output, output.<key>, node, iteration, rejected, state.<field>"


def vocabulary(state: Mapping[str, StateField] | None) -> Vocabulary:
    """The names an edge condition may use, given the graph's declared state."""

    def resolve(text: str) -> ExprType | None:
        root, dot, rest = text.partition(".")
        if root == _OUTPUT:
            return None
        if root == STATE:
            return _state_type(rest, state)
        if text in RESULT_NAMES:
            return RESULT_NAMES[text]
        if dot and root in RESULT_NAMES:
            raise UnknownName(
                f"{root!r} is a {RESULT_NAMES[root].value}; only output and state have "
                "dotted names",
                len(root),
            )
        raise UnknownName(f"unknown name {text!r}; an edge condition reads: {_NAMES}")

    return Vocabulary(fields={}, resolve=resolve)


def _state_type(name: str, state: Mapping[str, StateField] | None) -> ExprType | None:
    at = len(STATE) + 1
    if not name or "." in name:
        raise UnknownName("a state field is read whole, as state.<field>, e.g. state.rounds")
    if not state:
        raise UnknownName(
            f"this graph declares no state, so there is no field {name!r} (declare it under "
            "'state:')",
            at,
        )
    declared = state.get(name)
    if declared is None:
        raise UnknownName(
            f"unknown state field {name!r}; this graph declares: {', '.join(state)}", at
        )
    if declared.type not in _STATE_TYPES:
        raise UnknownName(
            f"state field {name!r} is of type {declared.type!r}; a condition reads number, "
            "integer, string, boolean or any fields",
            at,
        )
    return _STATE_TYPES[declared.type]


def routes_by_conditions(graph: AgentGraph, plan: str) -> bool:
    """Whether any edge of ``plan`` has a ``when`` (a plan without impl then routes by them)."""
    return any(edge.when is not None for edge in graph.out_edges(plan))


# -- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A routing problem for `graphrunner.graph._validate` to report."""

    rule: str
    message: str
    loc: tuple[str | int, ...]
    where: str


def routing_problems(
    graph: AgentGraph,
    *,
    known_kind: Collection[str],
    unknown_edges: Collection[int] = (),
    any_source: bool = False,
) -> Iterator[Problem]:
    """Every problem of the graph's ``when`` conditions and of its plans without impl.

    Rules: ``edge-condition`` (a condition that does not parse or type-check, or names an
    unknown field), ``routing`` (``when`` on an edge that no condition routes, or a plan
    without impl whose edges do not have exactly one default).

    Args:
        graph: The graph.
        known_kind: Nodes whose kind is known (not a stand-in for a schema error).
        unknown_edges: Edges (by index) that are stand-ins: skipped.
        any_source: Some edge's source is a stand-in, so no plan's edges can be counted.
    """
    nodes: dict[str, NodeSpec] = {}
    index: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        nodes.setdefault(node.name, node)
        index.setdefault(node.name, i)
    words = vocabulary(graph.state)
    for j, edge in enumerate(graph.edges):
        if edge.when is None or j in unknown_edges:
            continue
        where = f"edge {edge.label()}"
        source = nodes.get(edge.source) if edge.source in known_kind else None
        if source is not None and source.kind is NodeKind.TASK:
            yield Problem(
                "routing",
                "'when' belongs on the edges of a plan without 'impl'; a task's one edge is "
                "always taken",
                ("edges", j, "when"),
                where,
            )
            continue
        if source is not None and source.impl is not None:
            yield Problem(
                "routing",
                f"plan '{source.name}' has an 'impl', which chooses its successors in code; "
                "'when' routes only plans without one (remove the 'when' or the 'impl')",
                ("edges", j, "when"),
                where,
            )
            continue
        try:
            parse_expression(edge.when, vocabulary=words)
        except PolicyError as exc:
            at = (
                f"line {exc.line}, column {exc.column}" if exc.line != 1 else f"column {exc.column}"
            )
            yield Problem(
                "edge-condition", f"when ({at}): {exc.message}", ("edges", j, "when"), where
            )
    if any_source:
        return
    for name, node in nodes.items():
        if node.kind is not NodeKind.PLAN or node.impl is not None or name not in known_kind:
            continue
        edges = [(j, e) for j, e in enumerate(graph.edges) if e.source == name]
        if any(j in unknown_edges for j, _ in edges) or all(e.when is None for _, e in edges):
            continue  # a stand-in edge may be the default; no condition: impl-missing says so
        defaults = [e for _, e in edges if e.when is None]
        if len(defaults) == 1:
            continue
        if defaults:
            shown = ", ".join(e.label() for e in defaults)
            message = (
                f"a plan without 'impl' takes its one edge without 'when' when no condition "
                f"holds; it has {len(defaults)} ({shown}): give all but one a 'when'"
            )
        else:
            message = (
                "a plan without 'impl' takes its one edge without 'when' when no condition "
                "holds; every edge here has a 'when', so the lifetime could not go on: leave "
                "'when' off the edge to take then (it may be FINAL)"
            )
        yield Problem("routing", message, ("nodes", index[name]), f"node '{name}'")


# -- routing at run time -------------------------------------------------------------------


class Result(Protocol):
    """What routing reads of one result a plan got (a `graphrunner.NodeOutput`)."""

    @property
    def node(self) -> str: ...  # noqa: D102

    @property
    def iteration(self) -> int: ...  # noqa: D102

    @property
    def output(self) -> Any: ...  # noqa: D102

    @property
    def rejected(self) -> bool: ...  # noqa: D102


@dataclass(frozen=True)
class Route:
    """Where a plan without impl goes: ``targets`` (none: it finishes) with ``data``."""

    targets: list[str] = field(default_factory=list)
    data: Any = None


class Router:
    """The routing of one plan without impl: its conditions parsed and compiled once.

    Raises:
        ValueError: The plan's edges break the routing rules (validation reports them).
    """

    def __init__(self, graph: AgentGraph, plan: str) -> None:
        words = vocabulary(graph.state)
        compiler = Compiler()
        self._conditions: list[tuple[EdgeSpec, BoolFn]] = []
        defaults: list[EdgeSpec] = []
        for edge in graph.out_edges(plan):
            if edge.when is None:
                defaults.append(edge)
                continue
            try:
                tree = parse_expression(edge.when, vocabulary=words).tree
            except PolicyError as exc:
                raise ValueError(f"edge {edge.label()}: when: {exc.message}") from None
            self._conditions.append((edge, compiler.boolean(tree)))
        if len(defaults) != 1:
            raise ValueError(f"plan '{plan}' has {len(defaults)} edges without 'when', not 1")
        self._default = defaults[0]
        self._joins = any(e.target == plan and e.type is EdgeType.JOIN for e in graph.edges)

    def decide(self, results: Sequence[Result], state: Mapping[str, Any] | None) -> Route:
        """Where the plan goes, given the results it got and the state it was called with."""
        keys = state_row(state)
        rows = [
            {
                "node": r.node,
                "iteration": r.iteration,
                "rejected": r.rejected,
                _OUTPUT: r.output,
                **keys,
            }
            for r in results
        ]
        last = rows[-1] if rows else keys
        frame = Frame(executions=rows)
        held = [edge for edge, holds in self._conditions if holds(last, frame)]
        if self._joins:
            data: Any = [r.output for r in results]
        else:
            data = results[-1].output if results else None
        edge = held[0] if held else self._default
        if edge.type is EdgeType.FINAL or edge.target is None:
            return Route([], data)
        if edge.type is EdgeType.PARALLEL and held:
            targets = [e.target for e in held if e.type is EdgeType.PARALLEL and e.target]
            return Route(list(dict.fromkeys(targets)), data)
        return Route([edge.target], data)
