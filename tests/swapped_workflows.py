"""AgentLifetime workflows as a bad deploy would ship them (tests/test_exit_contracts.py).

Each is registered under the lifetime's workflow name, so a worker running it picks up
lifetimes started by the real one and replays their histories with different code.
"""

from __future__ import annotations

import datetime
from typing import Any

from temporalio import workflow

# Passed through as the real workflow module does: the interceptor (outside the sandbox)
# must recognise the lifetime's input type.
with workflow.unsafe.imports_passed_through():
    from graphrunner._types import LifetimeInput, LifetimeResult, NodeOutput
    from graphrunner.graph._model import AgentGraph, EdgeType, NodeSpec
    from graphrunner.workflows import LIFETIME_WORKFLOW, AgentLifetimeWorkflow


@workflow.defn(name=LIFETIME_WORKFLOW, sandboxed=True)
class LocalPlansLifetime(AgentLifetimeWorkflow):
    """Routes every plan through a local activity: commands differ from the history."""

    @workflow.run
    async def run(self, inp: LifetimeInput) -> LifetimeResult:
        return await super().run(inp)

    async def _run_plan(
        self, graph: AgentGraph, node: NodeSpec, results: list[NodeOutput], via: Any, scope: Any
    ) -> Any:
        local = node.model_copy(update={"local": True})
        return await super()._run_plan(graph, local, results, via, scope)


@workflow.defn(name=LIFETIME_WORKFLOW, sandboxed=True)
class WallClockLifetime(AgentLifetimeWorkflow):
    """Reads the wall clock in workflow code (which the sandbox forbids) from work's 3rd run.

    The history it is given ends before that run, so the error comes from new code on new
    events, not from replaying old ones.
    """

    @workflow.run
    async def run(self, inp: LifetimeInput) -> LifetimeResult:
        return await super().run(inp)

    def _begin(self, graph: AgentGraph, node: NodeSpec) -> Any:
        if node.name == "work" and self._iterations[node.name] >= 2:
            datetime.datetime.now()
        return super()._begin(graph, node)


@workflow.defn(name=LIFETIME_WORKFLOW, sandboxed=True)
class ReroutedLifetime(AgentLifetimeWorkflow):
    """A deliberately changed routing: a plan that chose one task goes to its first other one.

    On the research example the second review fans out to the reviewers instead of gathering
    a third time, so a history recorded by the real workflow schedules something else there.
    """

    @workflow.run
    async def run(self, inp: LifetimeInput) -> LifetimeResult:
        return await super().run(inp)

    async def _run_plan(
        self, graph: AgentGraph, node: NodeSpec, results: list[NodeOutput], via: Any, scope: Any
    ) -> Any:
        decision, step = await super()._run_plan(graph, node, results, via, scope)
        chosen = getattr(decision, "next_task_names", None)
        if step.iteration >= 2 and chosen and len(chosen) == 1:
            edges = graph.out_edges(node.name)
            others = [e.target for e in edges if e.target and e.target not in chosen]
            parallel = [
                e.target for e in edges if e.target in others and e.type is EdgeType.PARALLEL
            ]
            rerouted = parallel or others[:1]
            if rerouted:
                decision = decision.model_copy(update={"next_task_names": rerouted})
        return decision, step
