"""The AgentGraph model: the one validated shape that YAML files and the builder produce.

This module is imported inside the Temporal workflow sandbox, so it stays small and free of
I/O: structural checks live here (pydantic), graph-wide rules live in `_validate`.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphrunner.guardrails._policy import Policy

__all__ = [
    "AgentGraph",
    "EdgeSpec",
    "EdgeType",
    "GraphDefaults",
    "NodeKind",
    "NodeSpec",
    "RetrySpec",
]


class NodeKind(StrEnum):
    """Whether a node does work (task) or decides what runs next (plan)."""

    TASK = "task"
    PLAN = "plan"


class EdgeType(StrEnum):
    """How control moves along an edge.

    NORMAL: Task -> Plan (the plan runs next) or Plan -> Task (a successor the plan may pick).
    PARALLEL: Plan -> Task; the tasks a plan picks among its PARALLEL edges run concurrently.
    JOIN: Task -> Plan; the plan waits for every branch of the enclosing fan-out.
    FINAL: from a node to nowhere; taking it ends the lifetime.
    """

    NORMAL = "NORMAL"
    PARALLEL = "PARALLEL"
    JOIN = "JOIN"
    FINAL = "FINAL"


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class RetrySpec(_Strict):
    """Temporal retry policy of a node; unset fields fall back to the graph defaults."""

    max_attempts: int | None = Field(
        default=None, ge=1, description="Attempts in all, including the first (>= 1)."
    )
    initial_interval_s: float | None = Field(
        default=None, gt=0, description="Wait before the first retry, seconds."
    )
    backoff: float | None = Field(
        default=None, ge=1, description="Multiplier of the wait after each retry (>= 1)."
    )
    max_interval_s: float | None = Field(
        default=None, gt=0, description="Longest wait between retries, seconds."
    )
    non_retryable_errors: list[str] | None = Field(
        default=None, description="Exception type names that are never retried."
    )

    def merged_over(self, base: RetrySpec) -> RetrySpec:
        """Return this spec with unset fields taken from ``base``."""
        ours = self.model_dump(exclude_none=True)
        return base.model_copy(update=ours)


# What an unset retry field means, whether unset on the node or in the graph defaults.
BUILTIN_RETRY = RetrySpec(
    max_attempts=3,
    initial_interval_s=1.0,
    backoff=2.0,
    max_interval_s=30.0,
    non_retryable_errors=[],
)


class GraphDefaults(_Strict):
    """Settings every node inherits unless it sets its own."""

    timeout_s: float = Field(
        default=60.0, gt=0, description="Start-to-close timeout of one attempt, seconds."
    )
    heartbeat_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="If set, a node's worker heartbeats; a crashed worker is noticed this fast.",
    )
    retry: RetrySpec = Field(
        default_factory=RetrySpec,
        description="Retry settings of every node; unset fields keep the built-in defaults "
        "(3 attempts, 1 s initial interval, backoff 2.0, at most 30 s between attempts).",
    )
    max_iterations: int = Field(
        default=100, ge=1, description="Most times any one node may run in a lifetime."
    )


class NodeSpec(_Strict):
    """A Task or Plan node; ``impl`` is the import path ``package.module:ClassName``."""

    name: str
    kind: NodeKind
    impl: str = Field(description="Implementation class as 'package.module:ClassName'.")
    description: str = ""
    timeout_s: float | None = Field(default=None, gt=0)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    retry: RetrySpec | None = None
    local: bool = Field(
        default=False,
        description="Run this plan as a local activity (fast; for pure, quick decisions).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Free-form settings handed to the implementation."
    )


class EdgeSpec(_Strict):
    """A directed edge; FINAL edges have no target."""

    source: str = Field(alias="from")
    target: str | None = Field(default=None, alias="to")
    type: EdgeType = EdgeType.NORMAL

    def label(self) -> str:
        """Human-readable form used in messages, e.g. ``review -> gather (NORMAL)``."""
        return f"{self.source} -> {self.target or 'END'} ({self.type.value})"


class AgentGraph(_Strict):
    """An immutable graph template: nodes, edges and defaults.

    Build one with `graphrunner.load_graph` (YAML) or `graphrunner.GraphBuilder`; both run
    the same validation. The model itself only checks shapes and types.
    """

    name: str
    version: str = Field(description="Semantic version, e.g. 1.2.0.")
    description: str = ""
    start: str | None = Field(default=None, description="First node; defaults to nodes[0].")
    defaults: GraphDefaults = Field(default_factory=GraphDefaults)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    # Left out of every dump when unset, so a graph without a policy serialises, and hashes,
    # exactly as before the field existed: pinned hashes in running histories stay valid,
    # and workers that predate the field still accept the workflow input.
    guardrails: Policy | None = Field(
        default=None,
        exclude_if=lambda policy: policy is None,
        description="The graph's own guardrail policy, pinned into the graph (and so into "
        "content_hash). In YAML, the path of a policy file; the loader loads it.",
    )

    def node(self, name: str) -> NodeSpec:
        """Return the node called ``name``; KeyError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def start_node(self) -> str:
        """Name of the node a lifetime starts at."""
        return self.start or self.nodes[0].name

    def out_edges(self, name: str) -> list[EdgeSpec]:
        """Edges leaving node ``name``, in definition order."""
        return [edge for edge in self.edges if edge.source == name]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form; equal graphs hash equal whatever their source.

        A pinned guardrail policy is part of the hash (change a rule, change the hash); an
        unset one is not in the JSON at all, so graphs without one hash as they always did.
        """
        canonical = self.model_dump_json(by_alias=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def timeout(self, node: NodeSpec) -> timedelta:
        """Start-to-close timeout of one attempt of ``node``."""
        return timedelta(seconds=node.timeout_s or self.defaults.timeout_s)

    def heartbeat_timeout(self, node: NodeSpec) -> timedelta | None:
        """Heartbeat timeout of ``node``, if it has one."""
        seconds = node.heartbeat_timeout_s or self.defaults.heartbeat_timeout_s
        return timedelta(seconds=seconds) if seconds else None

    def retry(self, node: NodeSpec) -> RetrySpec:
        """Effective retry settings of ``node``: node, over graph defaults, over built-ins."""
        graph_wide = self.defaults.retry.merged_over(BUILTIN_RETRY)
        return node.retry.merged_over(graph_wide) if node.retry else graph_wide
