"""Load an AgentGraph from YAML, keeping line numbers so every error points at its place."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from graphrunner.errors import GraphError, GraphIssue, PolicyError
from graphrunner.graph._model import AgentGraph
from graphrunner.graph._validate import validate_graph
from graphrunner.guardrails._policy import Policy, load_policy

__all__ = ["load_graph", "parse_graph"]

Loc = tuple[str | int, ...]


def load_graph(path: str | Path, *, check_imports: bool = True) -> AgentGraph:
    """Read, parse and validate a graph YAML file.

    Args:
        path: The YAML file.
        check_imports: Also import every node implementation and check its kind.

    Raises:
        GraphError: With every problem found, each naming file, line, node or edge and rule.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError([GraphIssue(rule="unreadable", message=str(exc), file=file)]) from exc
    return parse_graph(text, file=file, check_imports=check_imports)


def parse_graph(text: str, *, file: str = "<string>", check_imports: bool = True) -> AgentGraph:
    """Parse and validate graph YAML given as text; see `load_graph`.

    A ``guardrails`` path is resolved from the directory of ``file``, or from the current
    directory when ``file`` is a placeholder such as ``<string>``.
    """
    issues: list[GraphIssue] = []
    lines: dict[Loc, int] = {}
    key_lines: dict[Loc, int] = {}
    data = _compose(text, file, lines, key_lines, issues)
    if issues:
        raise GraphError(issues)
    if not isinstance(data, Mapping):
        raise GraphError(
            [GraphIssue(rule="schema", message="a graph file must be a YAML mapping", file=file)]
        )

    def line_of(loc: Loc) -> int | None:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                return lines[loc[:cut]]
        return None

    data = dict(data)
    policy_issues: list[GraphIssue] = []
    if "guardrails" in data:
        policy, policy_issues = _resolve_guardrails(
            data["guardrails"], file=file, line=key_lines[("guardrails",)]
        )
        if policy is None:
            del data["guardrails"]  # reported; the rest of the graph is still checked
        else:
            data["guardrails"] = policy
    try:
        graph = AgentGraph.model_validate(data)
    except ValidationError as exc:
        raise GraphError(policy_issues + _pydantic_issues(exc, data, file, line_of)) from None
    found = validate_graph(graph, file=file, line_of=line_of, check_imports=check_imports)
    if policy_issues or found:
        raise GraphError(policy_issues + found)
    return graph


def _resolve_guardrails(
    value: object, *, file: str, line: int | None
) -> tuple[Policy | None, list[GraphIssue]]:
    """Load the policy file a graph's ``guardrails`` value names; problems become GraphIssues.

    ``file`` is the graph's source: a relative policy path is resolved from its directory,
    or from the current directory when it is a placeholder such as ``<string>``.
    """

    def issue(message: str) -> GraphIssue:
        return GraphIssue(rule="guardrails", message=f"guardrails: {message}", file=file, line=line)

    if not isinstance(value, str) or not value.strip():
        found = "an empty string" if isinstance(value, str) else _found(value)
        return None, [
            issue(
                "expected the path of a policy file (relative to the graph file), found "
                f"{found}; to define rules, put them in a policy file and give its path"
            )
        ]
    placeholder = file.startswith("<")
    path = (Path() if placeholder else Path(file).parent) / value
    if not path.exists():
        origin = "the current directory" if placeholder else "the graph file's directory"
        return None, [
            issue(f"policy file {path} does not exist (relative paths start from {origin})")
        ]
    try:
        return load_policy(path), []
    except PolicyError as exc:
        # One issue per policy problem, each naming its own file:line:column.
        return None, [
            issue(f"in policy {problem.place}: {problem.message}") for problem in exc.issues
        ]


def _found(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _compose(
    text: str,
    file: str,
    lines: dict[Loc, int],
    key_lines: dict[Loc, int],
    issues: list[GraphIssue],
) -> Any:
    """YAML text to plain data; ``lines`` gets the line of each value, ``key_lines`` of each key."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(
            GraphIssue(
                rule="yaml-syntax",
                message=f"invalid YAML: {problem}",
                file=file,
                line=mark.line + 1 if mark else None,
            )
        )
        return None
    finally:
        loader.dispose()
    if root is None:
        return None

    open_nodes: set[int] = set()  # nodes being converted: an alias back into one is a cycle

    def shape_issue(node: yaml.Node, message: str) -> None:
        issues.append(
            GraphIssue(rule="schema", message=message, file=file, line=node.start_mark.line + 1)
        )

    def convert(node: yaml.Node, loc: Loc) -> Any:
        lines[loc] = node.start_mark.line + 1
        if id(node) in open_nodes:
            shape_issue(node, "a YAML alias refers to a mapping or list that contains it")
            return None
        if isinstance(node, yaml.MappingNode):
            open_nodes.add(id(node))
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    shape_issue(key_node, "mapping keys must be plain names, not lists or mappings")
                    continue
                key = loader.construct_object(key_node, deep=True)
                if key in out:
                    issues.append(
                        GraphIssue(
                            rule="duplicate-key",
                            message=f"key '{key}' appears twice in one mapping",
                            file=file,
                            line=key_node.start_mark.line + 1,
                        )
                    )
                key_lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, (*loc, key))
            open_nodes.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            open_nodes.add(id(node))
            items = [convert(item, (*loc, i)) for i, item in enumerate(node.value)]
            open_nodes.discard(id(node))
            return items
        return loader.construct_object(node, deep=True)

    return convert(root, ())


def _rule_for(loc: Loc) -> str:
    names = [str(part) for part in loc]
    if "retry" in names:
        return "bad-retry"
    if any(name.endswith("timeout_s") for name in names):
        return "bad-timeout"
    if "max_iterations" in names:
        return "bad-iterations"
    return "schema"


def _pydantic_issues(
    exc: ValidationError, data: Mapping[str, Any], file: str, line_of: Any
) -> list[GraphIssue]:
    issues = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        where = None
        if len(loc) >= 2 and loc[0] in ("nodes", "edges") and isinstance(loc[1], int):
            where = _describe(data, loc[0], loc[1])
        field = ".".join(str(part) for part in loc) or "graph"
        issues.append(
            GraphIssue(
                rule=_rule_for(loc),
                message=f"{field}: {error['msg']}",
                file=file,
                line=line_of(loc),
                where=where,
            )
        )
    return issues


def _describe(data: Mapping[str, Any], section: str, index: int) -> str:
    items = data.get(section)
    item = items[index] if isinstance(items, list) and index < len(items) else None
    if not isinstance(item, Mapping):
        return f"{section[:-1]} #{index + 1}"
    if section == "nodes":
        return f"node '{item.get('name', f'#{index + 1}')}'"
    return f"edge {item.get('from', '?')} -> {item.get('to') or 'END'}"
