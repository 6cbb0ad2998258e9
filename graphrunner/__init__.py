"""graphrunner: run multi-agent AI graphs (AgentGraphs) as durable Temporal workflows.

Define a graph of Task and Plan nodes in YAML or with `GraphBuilder`, run it as an
AgentLifetime with `GraphrunnerClient`, and let Temporal make it durable.

Exports load lazily (PEP 562): the Temporal sandbox re-imports this package for every new
lifetime, and importing the client, SQLAlchemy and PyYAML each time cost ~300 ms per lifetime
(measured in bench/). Importing a name loads only the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphrunner._functions import NodeFunction, plan, task
    from graphrunner._resources import Resource, Resources, resource
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
        Telemetry,
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

_EXPORTS = {
    "AgentGraph": "graphrunner.graph",
    "EdgeType": "graphrunner.graph",
    "GraphBuilder": "graphrunner.graph",
    "GraphError": "graphrunner.errors",
    "GraphIssue": "graphrunner.errors",
    "GraphrunnerClient": "graphrunner.client",
    "GraphrunnerError": "graphrunner.errors",
    "LifetimeInput": "graphrunner._types",
    "LifetimeResult": "graphrunner._types",
    "LifetimeStatus": "graphrunner._types",
    "NodeContext": "graphrunner._sdk",
    "NodeFunction": "graphrunner._functions",
    "NodeKind": "graphrunner.graph",
    "NodeOutput": "graphrunner._types",
    "Plan": "graphrunner._sdk",
    "PlanResult": "graphrunner._types",
    "Resource": "graphrunner._resources",
    "Resources": "graphrunner._resources",
    "ServerUnreachable": "graphrunner.errors",
    "Settings": "graphrunner._settings",
    "StepRecord": "graphrunner._types",
    "Task": "graphrunner._sdk",
    "TaskResult": "graphrunner._types",
    "Telemetry": "graphrunner._types",
    "build_worker": "graphrunner.worker",
    "load_graph": "graphrunner.graph",
    "plan": "graphrunner._functions",
    "resource": "graphrunner._resources",
    "task": "graphrunner._functions",
    "validate_graph": "graphrunner.graph",
}

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
    "NodeFunction",
    "NodeKind",
    "NodeOutput",
    "Plan",
    "PlanResult",
    "Resource",
    "Resources",
    "ServerUnreachable",
    "Settings",
    "StepRecord",
    "Task",
    "TaskResult",
    "Telemetry",
    "build_worker",
    "load_graph",
    "plan",
    "resource",
    "task",
    "validate_graph",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphrunner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
