"""graphrunner: run multi-agent AI graphs (AgentGraphs) as durable Temporal workflows.

Define a graph of Task and Plan nodes in YAML or with `GraphBuilder`, run it as an
AgentLifetime with `GraphrunnerClient`, and let Temporal make it durable.
"""

from graphrunner._sdk import NodeContext, Plan, Task
from graphrunner._settings import Settings
from graphrunner._types import (
    LifetimeInput,
    LifetimeResult,
    LifetimeStatus,
    NodeOutput,
    PlanResult,
    StepRecord,
    TaskResult,
)
from graphrunner.client import GraphrunnerClient
from graphrunner.errors import GraphError, GraphIssue, GraphrunnerError, ServerUnreachable
from graphrunner.graph import (
    AgentGraph,
    EdgeType,
    GraphBuilder,
    NodeKind,
    load_graph,
    validate_graph,
)
from graphrunner.worker import build_worker

__all__ = [
    "AgentGraph",
    "EdgeType",
    "GraphBuilder",
    "GraphError",
    "GraphIssue",
    "GraphrunnerClient",
    "GraphrunnerError",
    "LifetimeInput",
    "LifetimeResult",
    "LifetimeStatus",
    "NodeContext",
    "NodeKind",
    "NodeOutput",
    "Plan",
    "PlanResult",
    "ServerUnreachable",
    "Settings",
    "StepRecord",
    "Task",
    "TaskResult",
    "build_worker",
    "load_graph",
    "validate_graph",
]
