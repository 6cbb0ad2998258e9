"""A lifetime whose tasks named ``ask*`` wait for a person, as the human-input node will.

Registered under the lifetime's workflow name (tests/test_control.py and
tests/test_search_attributes.py run it on their own workers): each ``ask*`` task marks the
lifetime WAITING, waits for the signal ``test.answer`` naming it, then marks it RUNNING.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from graphrunner._types import (
        LifetimeInput,
        LifetimePhase,
        LifetimeResult,
        StepStatus,
        TaskResult,
    )
    from graphrunner.graph._model import AgentGraph, NodeSpec
    from graphrunner.workflows import LIFETIME_WORKFLOW, AgentLifetimeWorkflow


@workflow.defn(name=LIFETIME_WORKFLOW, sandboxed=False)
class AskingLifetime(AgentLifetimeWorkflow):
    """An AgentLifetime whose ``ask*`` tasks wait in the workflow for ``test.answer``."""

    def __init__(self) -> None:
        super().__init__()
        self._asking: list[str] = []
        self._answers: dict[str, Any] = {}

    @workflow.run
    async def run(self, inp: LifetimeInput) -> LifetimeResult:
        return await super().run(inp)

    @workflow.signal(name="test.answer")
    def answer_for_test(self, node: str) -> None:
        self._answers[node] = f"answer to {node}"

    def _question(self) -> object:
        return {"asking": list(self._asking)} if self._asking else None

    async def _run_task(
        self, graph: AgentGraph, node: NodeSpec, data: Any, via: Any, scope: Any, mark: str = ""
    ) -> Any:
        if not node.name.startswith("ask"):
            return await super()._run_task(graph, node, data, via, scope, mark)
        step = self._begin(graph, node)
        self._asking.append(node.name)
        self._mark(LifetimePhase.WAITING)
        try:
            await workflow.wait_condition(lambda: node.name in self._answers)
        finally:
            self._asking.remove(node.name)
            self._mark(LifetimePhase.RUNNING)
        self._finish(step, StepStatus.COMPLETED, graph.task_next(node.name))
        return TaskResult(output=self._answers[node.name]), step
