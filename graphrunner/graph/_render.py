"""Render a graph as a mermaid flowchart, and the YAML format as JSON Schema."""

from __future__ import annotations

from typing import Any

from graphrunner.graph._model import AgentGraph, EdgeType, NodeKind

__all__ = ["graph_json_schema", "to_mermaid"]

_ARROWS = {
    EdgeType.NORMAL: "-->",
    EdgeType.PARALLEL: "==>|PARALLEL|",
    EdgeType.JOIN: "-->|JOIN|",
    EdgeType.FINAL: "-->",
}


def to_mermaid(graph: AgentGraph) -> str:
    """Return a mermaid ``flowchart`` of the graph: tasks as boxes, plans as hexagons.

    An edge with a ``when`` shows its condition; a routing plan's default edge shows ``else``.
    """
    routing = {e.source for e in graph.edges if e.when is not None}
    lines = ["flowchart TD", "    START(((start)))", "    END(((end)))"]
    for node in graph.nodes:
        label = f"{node.name}<br/><small>{node.kind.value}</small>"
        shape = f'["{label}"]' if node.kind is NodeKind.TASK else f'{{{{"{label}"}}}}'
        lines.append(f"    {node.name}{shape}")
    lines.append(f"    START --> {graph.start_node}")
    for edge in graph.edges:
        arrow = _ARROWS[edge.type]
        condition = edge.when if edge.when is not None else "else"
        if edge.source in routing:
            kind = f"{edge.type.value}: " if edge.type is EdgeType.PARALLEL else ""
            arrow = f'{arrow.split("|")[0]}|"{kind}{_escape(condition)}"|'
        lines.append(f"    {edge.source} {arrow} {edge.target or 'END'}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    # Mermaid reads entity codes inside a quoted label; quotes, pipes and brackets would end it.
    codes = {'"': "#quot;", "|": "#124;", "<": "#lt;", ">": "#gt;", "\n": " "}
    return "".join(codes.get(ch, ch) for ch in text)


# In YAML a graph names its policy file; the model holds the policy loaded from it.
_GUARDRAILS_SCHEMA: dict[str, Any] = {
    "title": "Guardrails",
    "type": "string",
    "description": "Path of a guardrail policy file, relative to the graph file; its rules "
    "are pinned into the graph when loaded.",
}


def graph_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the graph YAML format."""
    schema = AgentGraph.model_json_schema(by_alias=True, mode="validation")
    if "$ref" in schema:  # AgentGraph.subgraphs makes the model recursive: inline the root
        root = schema.pop("$ref").removeprefix("#/$defs/")
        schema.update(schema["$defs"].pop(root))
    # Pinned by the loader from the tasks' 'graph' references; never written in YAML.
    schema["properties"].pop("subgraphs", None)
    schema["properties"]["guardrails"] = dict(_GUARDRAILS_SCHEMA)
    _drop_unreferenced_defs(schema)  # the Policy model's, no longer used
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://graphrunner.dev/schema/agent-graph.json"
    schema["title"] = "graphrunner AgentGraph"
    return schema


def _drop_unreferenced_defs(schema: dict[str, Any]) -> None:
    defs: dict[str, Any] = schema.get("$defs", {})
    used: set[str] = set()
    pending: list[Any] = [value for key, value in schema.items() if key != "$defs"]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            name = str(item.get("$ref", "")).removeprefix("#/$defs/")
            if name in defs and name not in used:
                used.add(name)
                pending.append(defs[name])
            pending.extend(item.values())
    schema["$defs"] = {name: value for name, value in defs.items() if name in used}
