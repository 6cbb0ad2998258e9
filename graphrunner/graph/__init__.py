"""AgentGraph model, YAML loader, builder, validation and rendering."""

from graphrunner.graph._builder import GraphBuilder
from graphrunner.graph._human import HumanSpec
from graphrunner.graph._llm import LlmSpec, Rubric
from graphrunner.graph._loader import load_graph, parse_graph
from graphrunner.graph._model import (
    AgentGraph,
    EdgeSpec,
    EdgeType,
    GraphDefaults,
    NodeKind,
    NodeSpec,
    RetrySpec,
    StateField,
)
from graphrunner.graph._render import graph_json_schema, to_mermaid
from graphrunner.graph._state_schema import reducer
from graphrunner.graph._validate import validate_graph

__all__ = [
    "AgentGraph",
    "EdgeSpec",
    "EdgeType",
    "GraphBuilder",
    "GraphDefaults",
    "HumanSpec",
    "LlmSpec",
    "NodeKind",
    "NodeSpec",
    "RetrySpec",
    "Rubric",
    "StateField",
    "graph_json_schema",
    "load_graph",
    "parse_graph",
    "reducer",
    "to_mermaid",
    "validate_graph",
]
