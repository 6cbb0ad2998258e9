"""Graph-wide validation rules.

Every rule appends `GraphIssue`s instead of raising, so one run reports every problem. Rule
names are stable (tests and users grep for them); the README lists them.
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from graphrunner.errors import GraphIssue
from graphrunner.graph._model import AgentGraph, EdgeSpec, EdgeType, NodeKind, NodeSpec
from graphrunner.guardrails._ast import Aggregate, Binary, Expr, Field, String, Unary
from graphrunner.guardrails._policy import Policy

__all__ = ["import_impl", "validate_graph"]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# semver.org 2.0.0, without build-metadata subtleties that nobody uses for graphs.
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

# Where an item was defined: ("nodes", 3) or ("edges", 0) -> line number.
LineOf = Callable[[tuple[str | int, ...]], int | None]


def import_impl(path: str) -> type:
    """Import ``package.module:ClassName`` and return the class.

    Raises:
        ImportError: The module or attribute cannot be found, or the path is malformed.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportError(f"'{path}' is not of the form 'package.module:ClassName'")
    module = importlib.import_module(module_name)
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ImportError(f"module '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if not isinstance(target, type):
        raise ImportError(f"'{path}' is not a class")
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


def validate_graph(
    graph: AgentGraph,
    *,
    file: str | None = None,
    line_of: LineOf | None = None,
    check_imports: bool = True,
) -> list[GraphIssue]:
    """Check every graph-wide rule and return all problems found (empty when valid).

    Args:
        graph: A structurally valid graph.
        file: Source file named in the issues.
        line_of: Maps a location such as ``("nodes", 2)`` to its line in ``file``.
        check_imports: Import each node's implementation and check it is the right kind.
    """
    out = _Collector(file, line_of or (lambda _loc: None))
    nodes: dict[str, NodeSpec] = {}
    node_index: dict[str, int] = {}

    if not SEMVER_RE.match(graph.version):
        out.add(
            "invalid-version",
            f"version '{graph.version}' is not semver (e.g. 1.0.0)",
            loc=("version",),
        )
    if not NAME_RE.match(graph.name):
        out.add(
            "invalid-name", f"graph name '{graph.name}' must match {NAME_RE.pattern}", loc=("name",)
        )
    if not graph.nodes:
        out.add("no-nodes", "a graph needs at least one node", loc=("nodes",))
        return out.issues

    for i, node in enumerate(graph.nodes):
        where = f"node '{node.name}'"
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
        if node.local and node.kind is NodeKind.TASK:
            out.add(
                "local-task",
                "only plans may run as local activities; remove 'local: true'",
                loc=("nodes", i),
                where=where,
            )
        _check_timing(graph, node, i, out)
        if check_imports:
            _check_impl(node, i, out)

    start = graph.start_node
    if start not in nodes:
        out.add("unknown-start", f"start node '{start}' is not defined", loc=("start",))

    valid_edges = _check_edges(graph.edges, nodes, out)
    out_edges: dict[str, list[EdgeSpec]] = defaultdict(list)
    for edge in valid_edges:
        out_edges[edge.source].append(edge)

    for name, node in nodes.items():
        # Count what the author declared (a broken edge was already reported on its own line;
        # "it has 0" next to a visible edge would mislead), each distinct edge once.
        edges = {(edge.target, edge.type) for edge in graph.out_edges(name)}
        where = f"node '{name}'"
        loc: tuple[str | int, ...] = ("nodes", node_index[name])
        if node.kind is NodeKind.TASK and len(edges) != 1:
            out.add(
                "task-successor",
                f"a task needs exactly one outgoing edge (to a plan, or FINAL); it has "
                f"{len(edges)}",
                loc=loc,
                where=where,
            )
        if node.kind is NodeKind.PLAN and not edges:
            out.add(
                "plan-successor", "a plan needs at least one outgoing edge", loc=loc, where=where
            )

    if start in nodes:
        _check_reachability(start, nodes, node_index, out_edges, out)
    edge_pos = {id(edge): j for j, edge in enumerate(graph.edges)}
    _check_fan_in(valid_edges, edge_pos, out_edges, out)
    if graph.guardrails is not None:
        _check_policy_nodes(graph.guardrails, nodes, out)
    return out.issues


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


def _check_impl(node: NodeSpec, i: int, out: _Collector) -> None:
    # Imported here: the SDK imports temporalio.activity, which the model module must not.
    from graphrunner._sdk import Plan, Task

    where = f"node '{node.name}'"
    try:
        cls = import_impl(node.impl)
    except Exception as exc:  # any import-time failure of user code is the user's to see
        out.add("impl-import", f"cannot import '{node.impl}': {exc}", loc=("nodes", i), where=where)
        return
    want: type = Task if node.kind is NodeKind.TASK else Plan
    if not issubclass(cls, want):
        out.add(
            "impl-kind",
            f"'{node.impl}' must subclass graphrunner.{want.__name__} for a {node.kind.value} node",
            loc=("nodes", i),
            where=where,
        )


def _check_edges(
    edges: Iterable[EdgeSpec], nodes: dict[str, NodeSpec], out: _Collector
) -> list[EdgeSpec]:
    valid: list[EdgeSpec] = []
    seen: dict[tuple[str, str | None, EdgeType], int] = {}
    for j, edge in enumerate(edges):
        loc = ("edges", j)
        where = f"edge {edge.label()}"
        ok = True
        if edge.source not in nodes:
            out.add("dangling-edge", f"source '{edge.source}' is not a node", loc=loc, where=where)
            ok = False
        if edge.type is EdgeType.FINAL:
            if edge.target is not None:
                out.add(
                    "final-target",
                    "a FINAL edge ends the lifetime; remove its 'to'",
                    loc=loc,
                    where=where,
                )
                ok = False
        elif edge.target is None:
            out.add(
                "missing-target",
                f"a {edge.type.value} edge needs a 'to' node",
                loc=loc,
                where=where,
            )
            ok = False
        elif edge.target not in nodes:
            out.add("dangling-edge", f"target '{edge.target}' is not a node", loc=loc, where=where)
            ok = False
        key = (edge.source, edge.target, edge.type)
        if key in seen:
            out.add("duplicate-edge", "the same edge is declared twice", loc=loc, where=where)
            ok = False
        seen.setdefault(key, j)
        if not ok:
            continue
        if edge.target is not None:
            src, dst = nodes[edge.source].kind, nodes[edge.target].kind
            if src is dst:
                out.add(
                    "alternation",
                    f"{src.value} -> {dst.value} edges break tick-tock alternation; "
                    f"put a {'plan' if src is NodeKind.TASK else 'task'} between them",
                    loc=loc,
                    where=where,
                )
                continue
            if edge.type is EdgeType.PARALLEL and src is not NodeKind.PLAN:
                out.add(
                    "edge-direction",
                    "PARALLEL edges go from a plan to a task",
                    loc=loc,
                    where=where,
                )
                continue
            if edge.type is EdgeType.JOIN and src is not NodeKind.TASK:
                out.add(
                    "edge-direction", "JOIN edges go from a task to a plan", loc=loc, where=where
                )
                continue
        valid.append(edge)
    return valid


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
    out_edges: dict[str, list[EdgeSpec]],
    out: _Collector,
) -> None:
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
    for edges in out_edges.values():
        for edge in edges:
            if edge.target is not None:
                into[edge.target].append(edge.source)
    finishing = {e.source for es in out_edges.values() for e in es if e.type is EdgeType.FINAL}
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


def _check_fan_in(
    edges: list[EdgeSpec],
    edge_pos: dict[int, int],
    out_edges: dict[str, list[EdgeSpec]],
    out: _Collector,
) -> None:
    # A branch starts at the target of a PARALLEL edge and runs until it takes a JOIN edge.
    # A fan-out nested inside the branch is closed by its own JOIN, after which the branch goes
    # on (as the lifetime workflow runs it), so the search tracks how deeply it is nested.
    # Deeper nesting than there are PARALLEL edges can only come from a cycle: stop there.
    max_nesting = sum(1 for edge in edges if edge.type is EdgeType.PARALLEL)

    def branch_nodes(first: str) -> tuple[set[str], bool]:
        seen: set[tuple[str, int]] = {(first, 0)}
        joined = False
        queue = deque(seen)
        while queue:
            name, nesting = queue.popleft()
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
        return {name for name, _ in seen}, joined

    in_branch: set[str] = set()
    for edge in edges:
        if edge.type is EdgeType.PARALLEL and edge.target is not None:
            members, joined = branch_nodes(edge.target)
            in_branch |= members
            if not joined:
                out.add(
                    "parallel-without-join",
                    f"the branch starting at '{edge.target}' never reaches a JOIN edge, so "
                    f"the fan-out from '{edge.source}' cannot be collected",
                    loc=("edges", edge_pos[id(edge)]),
                    where=f"edge {edge.label()}",
                )
    for edge in edges:
        if edge.type is EdgeType.JOIN and edge.source not in in_branch:
            out.add(
                "join-without-parallel",
                f"'{edge.source}' is not on any branch of a PARALLEL fan-out, so there is "
                f"nothing to join",
                loc=("edges", edge_pos[id(edge)]),
                where=f"edge {edge.label()}",
            )
