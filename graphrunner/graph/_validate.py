"""Graph-wide validation rules, and the sane bounds of everything a definition sets.

Every rule appends `GraphIssue`s instead of raising, so one run reports every problem. Rule
names are stable (tests and users grep for them); the README lists them. A graph whose fields
failed schema validation is checked too, as a best-effort graph with stand-ins (see the
loader): `Unknowns` names the stand-ins, and each rule that would judge one is skipped.

The module is long because it is the one home of the graph-wide rules (the loader and the
builder share it); each rule is a small function.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel

from graphrunner._values import BadValue, check_value
from graphrunner.errors import GraphIssue
from graphrunner.graph._model import (
    GENERATED,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_ERROR_TYPE_LENGTH,
    MAX_ERROR_TYPES,
    MAX_ITERATIONS,
    MAX_SECONDS,
    MIN_SECONDS,
    AgentGraph,
    EdgeSpec,
    EdgeType,
    NodeKind,
    NodeSpec,
    RetrySpec,
    StateField,
)
from graphrunner.graph._routing import routing_problems
from graphrunner.graph._state_rules import check_state
from graphrunner.guardrails._ast import Aggregate, Binary, Expr, Field, String, Unary
from graphrunner.guardrails._policy import NUMBER_STATE_TYPES, Policy, state_fields

__all__ = ["BOUNDS", "Bound", "Unknowns", "import_impl", "validate_graph"]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# semver.org 2.0.0, without build-metadata subtleties that nobody uses for graphs.
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


@dataclass(frozen=True)
class Bound:
    """The sane range of a number in a graph (see `graphrunner.graph._model`)."""

    rule: str
    low: float
    high: float
    text: str


_DURATION = f"seconds from {MIN_SECONDS:g} (1 ms) to {MAX_SECONDS:,} (10 years)"
#: The sane range of every number a definition sets, by field name.
BOUNDS: Final = {
    "timeout_s": Bound("bad-timeout", MIN_SECONDS, MAX_SECONDS, _DURATION),
    "heartbeat_timeout_s": Bound("bad-timeout", MIN_SECONDS, MAX_SECONDS, _DURATION),
    "initial_interval_s": Bound("bad-retry", MIN_SECONDS, MAX_SECONDS, _DURATION),
    "max_interval_s": Bound("bad-retry", MIN_SECONDS, MAX_SECONDS, _DURATION),
    "max_attempts": Bound("bad-retry", 1, MAX_ATTEMPTS, f"1 to {MAX_ATTEMPTS:,} attempts"),
    "backoff": Bound("bad-retry", 1, MAX_BACKOFF, f"a factor from 1 to {MAX_BACKOFF:g}"),
    "max_iterations": Bound(
        "bad-iterations", 1, MAX_ITERATIONS, f"1 to {MAX_ITERATIONS:,} runs of a node"
    ),
}

# Sizes the server, the UI or validation itself must cope with. The static details of a
# lifetime are the graph's description, and the server refuses more than 20,000 bytes of them.
MAX_VERSION_LENGTH: Final = 128
MAX_DESCRIPTION_BYTES: Final = 16 * 1024
# A thousand nodes also keep one fan-out below the 2,000 pending activities Temporal allows
# a workflow by default (a wider one would fail its workflow task on every retry).
MAX_NODES: Final = 1000
MAX_EDGES: Final = 5000
# Steps of the fan-in search, which a hostile graph (fan-outs in cycles) could make cubic.
_FAN_IN_STEPS: Final = 500_000

# Where an item was defined: ("nodes", 3) or ("edges", 0) -> line number.
LineOf = Callable[[tuple[str | int, ...]], int | None]


@dataclass(kw_only=True)
class Unknowns:
    """What schema errors left unknown in a best-effort graph; rules that need it are skipped.

    A graph whose fields failed validation can still be checked as a whole once the bad values
    are replaced by stand-ins (see the loader), but a rule must not judge a stand-in: it would
    report a problem the author never wrote. Each rule that reads one of these is skipped
    until the schema error is fixed.

    Attributes:
        names: Nodes (by index) whose name is a stand-in.
        kinds: Nodes whose kind (or whole definition) is a stand-in.
        impls: Nodes whose implementation path is a stand-in.
        timing: Nodes whose timeout or retry settings were dropped.
        default_timing: The defaults' timeout or retry settings were dropped.
        edges: Edges whose type or ends are stand-ins.
        sources: Some edge's source is a stand-in (it may leave any node).
        targets: Some edge's target is a stand-in.
        start: The start node is a stand-in.
        subgraphs: Sub-graph references that could not be loaded (already reported).
    """

    names: set[int] = field(default_factory=set)
    kinds: set[int] = field(default_factory=set)
    impls: set[int] = field(default_factory=set)
    timing: set[int] = field(default_factory=set)
    default_timing: bool = False
    edges: set[int] = field(default_factory=set)
    sources: bool = False
    targets: bool = False
    start: bool = False
    subgraphs: set[str] = field(default_factory=set)


def import_impl(path: str) -> object:
    """Import ``package.module:Name`` and return what it names (a node class or function).

    Raises:
        ImportError: The path is malformed, names the starting script (``__main__``, which
            no other process can import), or the module or attribute cannot be found.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportError(f"'{path}' is not of the form 'package.module:Name'")
    if module_name == "__main__":
        raise ImportError(
            f"'{attr}' is defined in the script being run (__main__), which a worker, another "
            "process, cannot import; move it into a module and name it as 'module:" + attr + "'"
        )
    module = importlib.import_module(module_name)
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ImportError(f"module '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    return target


class _Collector:
    def __init__(self, file: str | None, line_of: LineOf) -> None:
        self.file = file
        self.line_of = line_of
        self.issues: list[GraphIssue] = []

    def add(
        self, rule: str, message: str, *, loc: tuple[str | int, ...] = (), where: str = ""
    ) -> None:
        self.issues.append(
            GraphIssue(
                rule=rule,
                message=message,
                file=self.file,
                line=self.line_of(loc) if loc else None,
                where=where or None,
            )
        )


def _check_values(graph: AgentGraph, out: _Collector) -> None:
    """Text and config a lifetime can carry: no lone surrogates, config JSON within bounds.

    The model admits them (it also decodes graphs pinned in older histories); the workflow
    input could not be encoded with them, or the worker could not decode it.
    """
    checks: list[tuple[object, str, tuple[str | int, ...], str]] = [
        (getattr(graph, name), f"graph {name}", (name,), "")
        for name in ("name", "version", "description")
    ]
    for i, node in enumerate(graph.nodes):
        where = f"node '{_shorten(node.name)}'"
        text = node.model_dump(mode="python", exclude={"config", "guardrails"})
        checks.append((text, where, ("nodes", i), where))
        checks.append((node.config, f"{where} config", ("nodes", i, "config"), where))
    for i, edge in enumerate(graph.edges):
        checks.append(((edge.source, edge.target, edge.when), f"edge #{i + 1}", ("edges", i), ""))
    for value, what, loc, where in checks:
        try:
            check_value(value, what)
        except BadValue as exc:
            out.add("bad-value", str(exc), loc=loc, where=where)


def validate_graph(
    graph: AgentGraph,
    *,
    file: str | None = None,
    line_of: LineOf | None = None,
    check_imports: bool = True,
    unknowns: Unknowns | None = None,
    _depth: int = 0,
) -> list[GraphIssue]:
    """Check every graph-wide rule and return all problems found (empty when valid).

    Pinned sub-graphs (`AgentGraph.subgraphs`) are checked too, by the same rules; their
    problems name the sub-graph (``file > subgraph 'ref'``).

    Args:
        graph: A structurally valid graph.
        file: Source file named in the issues.
        line_of: Maps a location such as ``("nodes", 2)`` to its line in ``file``.
        check_imports: Import each node's implementation and check it is the right kind.
        unknowns: Parts of ``graph`` that stand in for values that failed schema validation
            (already reported); the rules that would read them are skipped.
    """
    out = _Collector(file, line_of or (lambda _loc: None))
    unknown = unknowns or Unknowns()
    nodes: dict[str, NodeSpec] = {}
    node_index: dict[str, int] = {}
    routed = {edge.source for edge in graph.edges if edge.when is not None}

    if not SEMVER_RE.match(graph.version) or len(graph.version) > MAX_VERSION_LENGTH:
        out.add(
            "invalid-version",
            f"version '{_shorten(graph.version)}' is not semver (e.g. 1.0.0) of at most "
            f"{MAX_VERSION_LENGTH} characters",
            loc=("version",),
        )
    if not NAME_RE.match(graph.name):
        out.add(
            "invalid-name",
            f"graph name '{_shorten(graph.name)}' must match {NAME_RE.pattern}",
            loc=("name",),
        )
    _check_values(graph, out)
    check_state(graph, out, check_imports=check_imports)
    size = len(json.dumps(graph.description, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_DESCRIPTION_BYTES:
        out.add(
            "too-large",
            f"the description takes {size:,} bytes as JSON; at most {MAX_DESCRIPTION_BYTES:,} "
            "are allowed (Temporal shows it as the lifetime's details and refuses more than "
            "20,000)",
            loc=("description",),
        )
    if not graph.nodes:
        out.add("no-nodes", "a graph needs at least one node", loc=("nodes",))
        return out.issues
    too_many = [
        (section, len(items), cap)
        for section, items, cap in (
            ("nodes", graph.nodes, MAX_NODES),
            ("edges", graph.edges, MAX_EDGES),
        )
        if len(items) > cap
    ]
    for section, count, cap in too_many:
        out.add("too-large", f"{count:,} {section}; at most {cap:,} are allowed", loc=(section,))
    if too_many:
        return out.issues  # the graph-wide rules below would take too long

    if not unknown.default_timing:
        _check_numbers(graph.defaults, ("defaults",), "", out)
    for i, node in enumerate(graph.nodes):
        where = f"node '{_shorten(node.name)}'"
        if i not in unknown.timing:
            _check_numbers(node, ("nodes", i), where, out)
        if i in unknown.names:
            nodes[node.name] = node  # a stand-in name: no rule about names applies
            node_index[node.name] = i
            continue
        if not NAME_RE.match(node.name):
            out.add(
                "invalid-name",
                "name must start with a letter or '_' and use only letters, digits, '_' "
                "or '-' (at most 64 characters)",
                loc=("nodes", i),
                where=where,
            )
        if node.name in nodes:
            first = out.line_of(("nodes", node_index[node.name]))
            at = f" (first defined on line {first})" if first else ""
            out.add(
                "duplicate-name", f"name is used by another node{at}", loc=("nodes", i), where=where
            )
            continue
        nodes[node.name] = node
        node_index[node.name] = i
        if node.local and node.kind is NodeKind.TASK and i not in unknown.kinds:
            out.add(
                "local-task",
                "only plans may run as local activities; remove 'local: true'",
                loc=("nodes", i),
                where=where,
            )
        if i not in unknown.timing and not unknown.default_timing:
            _check_timing(graph, node, i, out)
        if i not in unknown.impls and node.impl is None:
            _check_no_impl(node, i, out, routed=node.name in routed)
        elif check_imports and i not in unknown.impls:
            _check_impl(node, i, out, check_kind=i not in unknown.kinds)
        if node.graph is not None or node.task_queue is not None:
            _check_subgraph_node(graph, node, i, out, unknown)
        if node.human is not None:
            _check_human(graph, node, i, out)
        if node.llm is not None and i not in unknown.kinds:
            _check_llm(graph, node, i, out, check_imports=check_imports)
    known_kind = {name for name, i in node_index.items() if i not in unknown.kinds | unknown.names}

    start = graph.start_node
    start_known = not unknown.start and not (graph.start is None and 0 in unknown.names)
    if start not in nodes and start_known and not unknown.names:
        out.add("unknown-start", f"start node '{start}' is not defined", loc=("start",))

    edges = _check_edges(graph.edges, nodes, known_kind, unknown, out)
    if not unknown.names:
        for problem in routing_problems(
            graph,
            known_kind=known_kind,
            unknown_edges=unknown.edges,
            any_source=unknown.sources,
        ):
            out.add(problem.rule, problem.message, loc=problem.loc, where=problem.where)

    # Count what the author declared (a broken edge was already reported on its own line;
    # "it has 0" next to a visible edge would mislead), each distinct edge once. An edge
    # whose source is unknown may leave any node: then nothing can be counted.
    declared_by: dict[str, set[tuple[str | None, EdgeType]]] = defaultdict(set)
    for edge in graph.edges:
        declared_by[edge.source].add((edge.target, edge.type))
    for name, node in nodes.items() if not unknown.sources else ():
        if name not in known_kind:
            continue
        declared = declared_by[name]
        where = f"node '{name}'"
        loc: tuple[str | int, ...] = ("nodes", node_index[name])
        if node.kind is NodeKind.TASK and len(declared) != 1:
            out.add(
                "task-successor",
                f"a task needs exactly one outgoing edge (to a plan, or FINAL); it has "
                f"{len(declared)}",
                loc=loc,
                where=where,
            )
        if node.kind is NodeKind.PLAN and not declared:
            out.add(
                "plan-successor", "a plan needs at least one outgoing edge", loc=loc, where=where
            )

    # Reachability follows every edge between real nodes, even one that breaks a kind rule:
    # that edge is reported once, not again as everything downstream of it.
    if start in nodes and start_known and not (unknown.names or unknown.targets):
        _check_reachability(start, nodes, node_index, edges, out)
    if not (unknown.kinds or unknown.names or unknown.edges):
        _check_fan_in(edges, out)
    if graph.guardrails is not None and not unknown.names:
        _check_policy_nodes(graph.guardrails, nodes, out)
    if graph.guardrails is not None:
        _check_policy_state(graph.guardrails, graph.state, out)
    if graph.subgraphs:
        _check_subgraphs(graph, out, check_imports=check_imports, depth=_depth)
    return out.issues


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 21]}...{text[-18:]}"


def _check_policy_nodes(policy: Policy, nodes: dict[str, NodeSpec], out: _Collector) -> None:
    # A misspelt node name in a rule is valid policy: the rule silently never matches (==)
    # or always does (!=). Against a graph we know the names, so say so.
    known = ", ".join(sorted(nodes))
    for rule in policy.rules:
        for name in dict.fromkeys(_compared_node_names(rule.when.tree)):
            if name not in nodes:
                out.add(
                    "guardrails",
                    f"guardrails: rule '{rule.name}' compares node to '{name}', which is not "
                    f"a node of this graph; expected one of: {known}",
                    loc=("guardrails",),
                )


def _check_policy_state(
    policy: Policy, state: dict[str, StateField] | None, out: _Collector
) -> None:
    # A worker's rule over a field a graph lacks does not apply to its lifetimes (for_state);
    # the graph's own rule would then never apply, which is a mistake to report.
    for rule in policy.rules:
        for name in state_fields(rule):
            declared = (state or {}).get(name)
            if declared is None:
                known = ", ".join(state or {}) or "none"
                problem = f"which this graph does not declare under 'state' (declared: {known})"
            elif declared.type not in NUMBER_STATE_TYPES:
                problem = f"a {declared.type} field; rules read number or integer fields only"
            else:
                continue
            out.add(
                "guardrails",
                f"guardrails: rule '{rule.name}' reads state.{name}, {problem}",
                loc=("guardrails",),
            )


def _compared_node_names(tree: Expr | None) -> Iterable[str]:
    """Every string that ``tree`` compares the ``node`` field to, in order."""
    match tree:
        case Binary("==" | "!=", Field("node"), String(name)) | Binary(
            "==" | "!=", String(name), Field("node")
        ):
            yield name
        case Binary(_, left, right):
            yield from _compared_node_names(left)
            yield from _compared_node_names(right)
        case Unary(_, operand):
            yield from _compared_node_names(operand)
        case Aggregate(_, arg, where):
            yield from _compared_node_names(arg)
            yield from _compared_node_names(where)
        case _:
            pass


def _check_numbers(
    spec: BaseModel, loc: tuple[str | int, ...], where: str, out: _Collector
) -> None:
    """Report every number ``spec`` sets (not inherits) outside its sane range."""
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        if isinstance(value, RetrySpec):
            _check_numbers(value, (*loc, name), where, out)
            continue
        bound = BOUNDS.get(name)
        if bound is None or value is None or bound.low <= value <= bound.high:
            continue
        field = ".".join(map(str, (*loc, name)[2 if loc[0] == "nodes" else 0 :]))
        out.add(
            bound.rule,
            f"{field} is {value}; allowed: {bound.text}",
            loc=(*loc, name),
            where=where,
        )
    errors = spec.non_retryable_errors if isinstance(spec, RetrySpec) else None
    long = [name for name in errors or () if len(name) > MAX_ERROR_TYPE_LENGTH]
    if errors and (len(errors) > MAX_ERROR_TYPES or long):
        out.add(
            "bad-retry",
            f"retry.non_retryable_errors: at most {MAX_ERROR_TYPES} names of at most "
            f"{MAX_ERROR_TYPE_LENGTH} characters each (the server gets them with every "
            f"attempt); found {len(errors)}" + (f", {len(long)} too long" if long else ""),
            loc=(*loc, "non_retryable_errors"),
            where=where,
        )


def _check_timing(graph: AgentGraph, node: NodeSpec, i: int, out: _Collector) -> None:
    where = f"node '{node.name}'"
    retry = graph.retry(node)
    if (
        retry.initial_interval_s is not None
        and retry.max_interval_s is not None
        and retry.max_interval_s < retry.initial_interval_s
    ):
        out.add(
            "bad-retry",
            f"retry.max_interval_s ({retry.max_interval_s}) is below "
            f"retry.initial_interval_s ({retry.initial_interval_s})",
            loc=("nodes", i),
            where=where,
        )
    timeout = graph.timeout(node).total_seconds()
    heartbeat = graph.heartbeat_timeout(node)
    if heartbeat is not None and heartbeat.total_seconds() >= timeout:
        out.add(
            "bad-timeout",
            f"heartbeat_timeout_s ({heartbeat.total_seconds():g}) must be shorter than "
            f"timeout_s ({timeout:g})",
            loc=("nodes", i),
            where=where,
        )


def _check_no_impl(node: NodeSpec, i: int, out: _Collector, *, routed: bool) -> None:
    """The one rule about nodes without an ``impl``: which may have none.

    A plan whose edges have ``when`` conditions routes by them (`graphrunner.graph._routing`
    checks those); a task with ``graph`` runs its graph (see `_check_subgraph_node`).
    """
    if node.kind is NodeKind.PLAN and routed or node.llm is not None:
        return
    if node.kind is NodeKind.TASK and (node.graph is not None or node.human is not None):
        return
    message = "a node needs an 'impl' (package.module:Name)"
    if node.kind is NodeKind.PLAN:
        message += ", or, for a plan, 'when' conditions on its edges to route by"
    out.add("impl-missing", message, loc=("nodes", i), where=f"node '{_shorten(node.name)}'")


def _check_human(graph: AgentGraph, node: NodeSpec, i: int, out: _Collector) -> None:
    """A human-input task: a task with no code, a schema it can check cheaply, sane bounds."""
    from graphrunner.graph._human import (
        MAX_ANSWER_BYTES,
        TimeoutResponse,
        answer_problems,
        answer_size,
        schema_problems,
    )

    human = node.human
    if human is None:
        return
    where = f"node '{_shorten(node.name)}'"
    loc = ("nodes", i, "human")

    def add(message: str) -> None:
        out.add("human", message, loc=loc, where=where)

    if node.kind is not NodeKind.TASK:
        add("only tasks ask a person; make it 'kind: task'")
    if node.impl is not None or node.graph is not None:
        add("a human-input task runs no code: remove 'impl' / 'graph'")
    if human.response is None and human.model is not None:
        add(
            f"the model '{human.model}' was not converted to a schema (load the graph with "
            "load_graph or GraphBuilder)"
        )
    problems = schema_problems(human.response) if human.response is not None else []
    for problem in problems:
        add(f"response: {problem}")
    if isinstance(human.on_timeout, TimeoutResponse):
        if human.timeout_s is None:
            add("'on_timeout' needs 'timeout_s'")
        default = human.on_timeout.respond
        if answer_size(default) > MAX_ANSWER_BYTES:
            add(f"on_timeout.respond is larger than {MAX_ANSWER_BYTES:,} bytes")
        elif not problems:
            for problem in answer_problems(human.schema_or_any(), default):
                add(f"on_timeout.respond does not fit the response schema: {problem}")
    if human.state is not None and human.state not in (graph.state or {}):
        declared = ", ".join(sorted(graph.state or {})) or "none"
        add(f"state field '{human.state}' is not declared (declared: {declared})")


def _check_llm(
    graph: AgentGraph, node: NodeSpec, i: int, out: _Collector, *, check_imports: bool
) -> None:
    """A built-in LLM node: no code of its own, a consistent ``llm`` section."""
    from graphrunner.graph._llm import llm_import_problems, llm_problems

    spec = node.llm
    if spec is None:
        return
    where = f"node '{_shorten(node.name)}'"
    loc = ("nodes", i, "llm")
    others = [name for name in ("impl", "human", "graph") if getattr(node, name) is not None]
    if others:
        out.add(
            "llm-conflict",
            f"a node with 'llm' runs a model, not {' / '.join(others)}: remove "
            f"{'it' if len(others) == 1 else 'them'} or the 'llm' section",
            loc=loc,
            where=where,
        )
    out_edges = graph.out_edges(node.name)
    if node.kind is NodeKind.PLAN and any(edge.when is not None for edge in out_edges):
        out.add(
            "llm-conflict",
            "an llm plan lets the model choose; 'when' conditions route plans without one "
            "(remove the 'when' conditions or the 'llm' section)",
            loc=loc,
            where=where,
        )
    problems = llm_problems(
        spec,
        kind=node.kind.value,
        successors=[edge.target for edge in out_edges if edge.target is not None],
        can_finish=any(edge.type is EdgeType.FINAL for edge in out_edges),
    )
    if check_imports:
        problems += llm_import_problems(spec)
    for rule, message in problems:
        out.add(rule, message, loc=loc, where=where)


#: Levels of sub-graphs pinned inside a graph, and how many a graph may pin in all.
MAX_SUBGRAPH_DEPTH: Final = 8
MAX_SUBGRAPHS: Final = 100
MAX_TASK_QUEUE_LENGTH: Final = 255
_TASK_QUEUE_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def _check_subgraph_node(
    graph: AgentGraph, node: NodeSpec, i: int, out: _Collector, unknown: Unknowns
) -> None:
    """A sub-graph task: a task, with no impl, whose graph is pinned (or generated)."""
    where = f"node '{_shorten(node.name)}'"
    loc = ("nodes", i)
    if node.graph is not None and node.kind is NodeKind.PLAN and i not in unknown.kinds:
        out.add(
            "subgraph-kind",
            "only tasks may run a sub-graph; a plan decides with its 'impl'",
            loc=loc,
            where=where,
        )
    if node.graph is not None and node.impl is not None and i not in unknown.impls:
        out.add(
            "subgraph-impl",
            f"a sub-graph task runs graph '{_shorten(node.graph)}'; remove its 'impl'",
            loc=loc,
            where=where,
        )
    if node.task_queue is not None:
        if node.graph is None:
            out.add(
                "task-queue",
                "only sub-graph tasks (with 'graph') may name a task queue",
                loc=loc,
                where=where,
            )
        elif (
            len(node.task_queue) > MAX_TASK_QUEUE_LENGTH
            or not _TASK_QUEUE_RE.match(node.task_queue)
            or node.task_queue.strip() != node.task_queue
        ):
            out.add(
                "task-queue",
                f"task_queue must be 1 to {MAX_TASK_QUEUE_LENGTH} characters without control "
                "characters or surrounding spaces",
                loc=loc,
                where=where,
            )
    if (
        node.graph is not None
        and node.graph != GENERATED
        and node.graph not in unknown.subgraphs
        and graph.subgraph(node) is None
    ):
        out.add(
            "subgraph-missing",
            f"sub-graph '{_shorten(node.graph)}' is not pinned in this graph (load it with "
            "load_graph, or add it with GraphBuilder.subgraph)",
            loc=loc,
            where=where,
        )


def _check_subgraphs(
    graph: AgentGraph, out: _Collector, *, check_imports: bool, depth: int
) -> None:
    """Pinned sub-graphs: each used, bounded in depth and number, valid by every rule."""
    subgraphs = graph.subgraphs or {}
    used = {node.graph for node in graph.nodes}
    for ref in subgraphs:
        if ref not in used:
            out.add(
                "subgraph-unused",
                f"sub-graph '{_shorten(ref)}' is pinned but no task runs it",
                loc=("subgraphs",),
            )
    total = _count_subgraphs(graph)
    if total > MAX_SUBGRAPHS:
        out.add(
            "too-large",
            f"{total:,} sub-graphs pinned in all (nested ones included); at most "
            f"{MAX_SUBGRAPHS} are allowed",
            loc=("subgraphs",),
        )
        return
    if depth >= MAX_SUBGRAPH_DEPTH:
        out.add(
            "subgraph-depth",
            f"sub-graphs nest more than {MAX_SUBGRAPH_DEPTH} levels deep",
            loc=("subgraphs",),
        )
        return
    for ref, sub in subgraphs.items():
        place = f"{out.file or '<graph>'} > subgraph '{_shorten(ref)}'"
        out.issues += validate_graph(sub, file=place, check_imports=check_imports, _depth=depth + 1)


def _count_subgraphs(graph: AgentGraph) -> int:
    count, stack = 0, [graph]
    while stack and count <= MAX_SUBGRAPHS:
        found = list((stack.pop().subgraphs or {}).values())
        count += len(found)
        stack += found
    return count


def _check_impl(node: NodeSpec, i: int, out: _Collector, *, check_kind: bool) -> None:
    # Imported here: the function nodes import temporalio, which the model module must not.
    from graphrunner._functions import node_body

    where = f"node '{node.name}'"
    if node.impl is None:
        return
    shown = _shorten(node.impl)
    try:
        found = import_impl(node.impl)
    except Exception as exc:  # any import-time failure of user code is the user's to see
        out.add("impl-import", f"cannot import '{shown}': {exc}", loc=("nodes", i), where=where)
        return
    if check_kind:
        try:
            node_body(found, node.kind)
        except TypeError as exc:
            out.add("impl-kind", f"'{shown}' {exc}", loc=("nodes", i), where=where)


# An edge as the graph-wide searches follow it: its index and the edge, normalised (an edge
# whose ends break a kind rule is followed as NORMAL, one whose target is broken as FINAL).
_Link = tuple[int, EdgeSpec]


def _check_edges(
    edges: Iterable[EdgeSpec],
    nodes: dict[str, NodeSpec],
    known_kind: set[str],
    unknown: Unknowns,
    out: _Collector,
) -> list[_Link]:
    """Report each edge's own problems; return the links the graph-wide searches follow."""
    links: list[_Link] = []
    seen: dict[tuple[str, str | None, EdgeType], int] = {}
    final, normal = {"type": EdgeType.FINAL, "target": None}, {"type": EdgeType.NORMAL}
    for j, edge in enumerate(edges):
        if j in unknown.edges:  # its own problem is reported; follow what is known of it
            if edge.source in nodes and (edge.target is None or edge.target in nodes):
                links.append((j, edge if edge.target else edge.model_copy(update=final)))
            continue
        loc = ("edges", j)
        where = f"edge {edge.label()}"
        # A dangling name may be a node whose own name failed validation: say nothing then.
        report_dangling = not unknown.names
        ends_ok = edge.source in nodes
        if not ends_ok and report_dangling:
            out.add("dangling-edge", f"source '{edge.source}' is not a node", loc=loc, where=where)
        if edge.type is EdgeType.FINAL:
            if edge.target is not None:
                out.add(
                    "final-target",
                    "a FINAL edge ends the lifetime; remove its 'to'",
                    loc=loc,
                    where=where,
                )
        elif edge.target is None:
            out.add(
                "missing-target",
                f"a {edge.type.value} edge needs a 'to' node",
                loc=loc,
                where=where,
            )
        elif edge.target not in nodes:
            if report_dangling:
                out.add(
                    "dangling-edge", f"target '{edge.target}' is not a node", loc=loc, where=where
                )
        key = (edge.source, edge.target, edge.type)
        if key in seen:
            out.add("duplicate-edge", "the same edge is declared twice", loc=loc, where=where)
            continue
        seen[key] = j
        if not ends_ok:
            continue
        if edge.type is EdgeType.FINAL or edge.target is None or edge.target not in nodes:
            # A broken target is reported above; where it leads is unknown, so the source is
            # not also told it can never finish.
            links.append((j, edge.model_copy(update=final)))
            continue
        problem = None
        if edge.source in known_kind and edge.target in known_kind:
            problem = _kind_problem(edge, nodes[edge.source].kind, nodes[edge.target].kind)
        if problem is not None:
            out.add(problem[0], problem[1], loc=loc, where=where)
        links.append((j, edge if problem is None else edge.model_copy(update=normal)))
    return links


def _kind_problem(edge: EdgeSpec, src: NodeKind, dst: NodeKind) -> tuple[str, str] | None:
    if src is dst:
        between = "plan" if src is NodeKind.TASK else "task"
        return (
            "alternation",
            f"{src.value} -> {dst.value} edges break tick-tock alternation; "
            f"put a {between} between them",
        )
    if edge.type is EdgeType.PARALLEL and src is not NodeKind.PLAN:
        return "edge-direction", "PARALLEL edges go from a plan to a task"
    if edge.type is EdgeType.JOIN and src is not NodeKind.TASK:
        return "edge-direction", "JOIN edges go from a task to a plan"
    return None


def _out_edges(links: list[_Link]) -> dict[str, list[EdgeSpec]]:
    out_edges: dict[str, list[EdgeSpec]] = defaultdict(list)
    for _, edge in links:
        out_edges[edge.source].append(edge)
    return out_edges


def _reach(start: str, out_edges: dict[str, list[EdgeSpec]]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for edge in out_edges[queue.popleft()]:
            if edge.target is not None and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return seen


def _check_reachability(
    start: str,
    nodes: dict[str, NodeSpec],
    node_index: dict[str, int],
    links: list[_Link],
    out: _Collector,
) -> None:
    out_edges = _out_edges(links)
    reachable = _reach(start, out_edges)
    for name in nodes:
        if name not in reachable:
            out.add(
                "unreachable",
                f"cannot be reached from the start node '{start}'",
                loc=("nodes", node_index[name]),
                where=f"node '{name}'",
            )
    # Nodes that can finish: reverse search from every source of a FINAL edge.
    into: dict[str, list[str]] = defaultdict(list)
    for _, edge in links:
        if edge.target is not None:
            into[edge.target].append(edge.source)
    finishing = {edge.source for _, edge in links if edge.type is EdgeType.FINAL}
    queue = deque(finishing)
    while queue:
        for src in into[queue.popleft()]:
            if src not in finishing:
                finishing.add(src)
                queue.append(src)
    for name in nodes:
        if name in reachable and name not in finishing:
            out.add(
                "no-final-path",
                "no FINAL edge can be reached from here, so a lifetime "
                "that gets here can never finish",
                loc=("nodes", node_index[name]),
                where=f"node '{name}'",
            )


def _check_fan_in(links: list[_Link], out: _Collector) -> None:
    # A branch starts at the target of a PARALLEL edge and runs until it takes a JOIN edge.
    # A fan-out nested inside the branch is closed by its own JOIN, after which the branch goes
    # on (as the lifetime workflow runs it), so the search tracks how deeply it is nested.
    # Deeper nesting than there are PARALLEL edges can only come from a cycle: stop there.
    out_edges = _out_edges(links)
    parallel = [(j, edge) for j, edge in links if edge.type is EdgeType.PARALLEL]
    max_nesting = len(parallel)

    budget = [_FAN_IN_STEPS]

    @functools.cache
    def branch_nodes(first: str) -> tuple[frozenset[str], bool]:
        seen: set[tuple[str, int]] = {(first, 0)}
        joined = False
        queue = deque(seen)
        while queue and budget[0] > 0:
            name, nesting = queue.popleft()
            budget[0] -= len(out_edges[name]) + 1
            for edge in out_edges[name]:
                if edge.target is None:
                    continue
                if edge.type is EdgeType.JOIN and nesting == 0:
                    joined = True
                    continue
                if edge.type is EdgeType.JOIN:
                    step = (edge.target, nesting - 1)
                elif edge.type is EdgeType.PARALLEL:
                    if nesting == max_nesting:
                        continue
                    step = (edge.target, nesting + 1)
                else:
                    step = (edge.target, nesting)
                if step not in seen:
                    seen.add(step)
                    queue.append(step)
        return frozenset(name for name, _ in seen), joined

    in_branch: set[str] = set()
    for j, edge in parallel:
        if edge.target is None:
            continue
        members, joined = branch_nodes(edge.target)
        if budget[0] <= 0:
            out.add(
                "too-large",
                f"the fan-outs are too tangled to check in {_FAN_IN_STEPS:,} steps (PARALLEL "
                "edges inside cycles without a JOIN nest without end); simplify them",
                loc=("edges", j),
                where=f"edge {edge.label()}",
            )
            return
        in_branch |= members
        if not joined:
            out.add(
                "parallel-without-join",
                f"the branch starting at '{edge.target}' never reaches a JOIN edge, so "
                f"the fan-out from '{edge.source}' cannot be collected",
                loc=("edges", j),
                where=f"edge {edge.label()}",
            )
    for j, edge in links:
        if edge.type is EdgeType.JOIN and edge.source not in in_branch:
            out.add(
                "join-without-parallel",
                f"'{edge.source}' is not on any branch of a PARALLEL fan-out, so there is "
                f"nothing to join",
                loc=("edges", j),
                where=f"edge {edge.label()}",
            )
