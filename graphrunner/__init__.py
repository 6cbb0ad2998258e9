"""graphrunner: run multi-agent AI graphs (AgentGraphs) as durable Temporal workflows.

Define a graph of Task and Plan nodes in YAML or with `GraphBuilder`, run it as an
AgentLifetime with `GraphrunnerClient`, and let Temporal make it durable.

The lifetime sandbox shares this package with the worker (`GraphrunnerPlugin` passes it
through), so importing it eagerly costs a process once, not every lifetime.
"""

from __future__ import annotations

from graphrunner._answers import HumanAnswer, HumanOutcome, HumanRequest, RefusedAnswer
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
from graphrunner.activities import Recorder
from graphrunner.client import GraphrunnerClient
from graphrunner.errors import GraphError, GraphIssue, GraphrunnerError, ServerUnreachable
from graphrunner.graph import (
    AgentGraph,
    EdgeType,
    GraphBuilder,
    GraphDefaults,
    HumanSpec,
    LlmSpec,
    NodeKind,
    StateField,
    load_graph,
    reducer,
    validate_graph,
)
from graphrunner.guardrails import Policy
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.worker import build_worker, open_recorder

__all__ = [
    "AgentGraph",
    "EdgeType",
    "GraphBuilder",
    "GraphDefaults",
    "GraphError",
    "GraphIssue",
    "GraphrunnerClient",
    "GraphrunnerError",
    "GraphrunnerPlugin",
    "HumanSpec",
    "LlmSpec",
    "HumanAnswer",
    "HumanOutcome",
    "HumanRequest",
    "LifetimeInput",
    "LifetimeResult",
    "LifetimeStatus",
    "NodeContext",
    "NodeFunction",
    "NodeKind",
    "NodeOutput",
    "Plan",
    "PlanResult",
    "Policy",
    "Recorder",
    "RefusedAnswer",
    "Resource",
    "Resources",
    "ServerUnreachable",
    "Settings",
    "StateField",
    "StepRecord",
    "Task",
    "TaskResult",
    "Telemetry",
    "build_worker",
    "load_graph",
    "open_recorder",
    "plan",
    "reducer",
    "resource",
    "task",
    "validate_graph",
]
