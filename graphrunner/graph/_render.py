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
    """Return a mermaid ``flowchart`` of the graph: tasks as boxes, plans as hexagons."""
    lines = ["flowchart TD", "    START(((start)))", "    END(((end)))"]
    for node in graph.nodes:
        label = f"{node.name}<br/><small>{node.kind.value}</small>"
        shape = f'["{label}"]' if node.kind is NodeKind.TASK else f'{{{{"{label}"}}}}'
        lines.append(f"    {node.name}{shape}")
    lines.append(f"    START --> {graph.start_node}")
    for edge in graph.edges:
        lines.append(f"    {edge.source} {_ARROWS[edge.type]} {edge.target or 'END'}")
    return "\n".join(lines) + "\n"


def graph_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the graph YAML format."""
    schema = AgentGraph.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://graphrunner.dev/schema/agent-graph.json"
    schema["title"] = "graphrunner AgentGraph"
    return schema
