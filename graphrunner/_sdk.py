"""Base classes graph authors subclass: `Task` (does work) and `Plan` (decides what runs next)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphrunner._resources import Resource, Resources
from graphrunner._types import NodeOutput, PlanResult, TaskResult
from graphrunner.llm._runtime import NoLlm
from graphrunner.llm._types import LlmClient

__all__ = ["NodeContext", "Plan", "Task"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class NodeContext:
    """What a node knows about the execution it is part of.

    Attributes:
        lifetime_id: Id of the lifetime (the Temporal workflow id).
        graph_name: Name of the graph.
        graph_version: Version of the graph.
        node: This node's name.
        iteration: How many times this node has run in this lifetime, this run included.
        attempt: Temporal attempt number of this execution (1 on the first try).
        tenant: Tenant that owns the lifetime.
        config: The node's ``config`` mapping from the graph definition.
        successors: For plans, the task names it may choose (its declared successors).
        logger: Logger that tags records with the lifetime and node.
        idempotency_key: The same on every attempt of this execution and different for every
            other execution (another node, iteration, lifetime, or a run after a reset). A node
            body runs at least once: a worker can crash after the body finished and before
            Temporal heard of it, and the attempt then runs again. Pass this key to the
            services it changes (an ``Idempotency-Key`` header, a unique column) so that a
            repeated attempt changes nothing twice.
        resources: The worker's shared resources; `resource` reads one.
        state: The lifetime state as this execution sees it (the graph's ``state`` fields;
            empty when the graph declares none). Read-only: return an ``update`` in the
            `TaskResult` or `PlanResult` to change it.
        llm: Calls models by tier (``await ctx.llm.complete(messages, tier="fast")``), down
            the tier's fallback chain, through litellm. Every call's tokens and cost add to
            this attempt's telemetry (when the node reports none itself), failed attempts
            included; see `graphrunner.llm`.
    """

    lifetime_id: str
    graph_name: str
    graph_version: str
    node: str
    iteration: int
    attempt: int
    tenant: str
    config: dict[str, Any]
    logger: logging.LoggerAdapter[logging.Logger]
    successors: list[str] = field(default_factory=list)
    idempotency_key: str = ""
    resources: Resources = field(default_factory=Resources, repr=False)
    state: Mapping[str, Any] = field(default_factory=dict)
    llm: LlmClient = field(default_factory=NoLlm, repr=False)

    async def resource(self, res: Resource[T]) -> T:
        """The worker's value of ``res`` (see `graphrunner.resource`), created on first use.

        One value per worker, shared by every execution that runs there, closed when the
        worker shuts down.
        """
        return await self.resources.get(res)


class Task(ABC):
    """A node that does work: code, an API or LLM call, a tool call.

    Subclass it and implement `run`. It runs as a Temporal activity, so it may do any I/O;
    raise to fail the attempt (Temporal retries it per the node's retry policy).
    """

    @abstractmethod
    async def run(self, ctx: NodeContext, data: Any) -> TaskResult | Any:
        """Do the work.

        Args:
            ctx: Execution context.
            data: What the upstream plan handed on (the lifetime input for the start task).

        Returns:
            A `TaskResult`, or any JSON-serialisable value taken as its ``output``.
        """


class Plan(ABC):
    """A node that decides which of its declared successor tasks run next.

    Subclass it and implement `decide`. Plans that are pure and quick may set
    ``local: true`` on the node to run as a local activity.
    """

    @abstractmethod
    async def decide(self, ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        """Choose what runs next.

        Args:
            ctx: Execution context; ``ctx.successors`` lists the tasks that may be chosen.
            results: Outputs of the task that led here, or of every branch of a fan-out that
                joined here (in the order the branches were chosen). A plan that starts the
                graph gets the lifetime input as one result from node ``__input__``.

        Returns:
            A `PlanResult`; `PlanResult.goto` and `PlanResult.finish` build the usual ones.
        """
