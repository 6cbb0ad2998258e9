"""Input of the ``graphrunner.run_tool`` activity: one tool call of a built-in LLM task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from graphrunner._llm_wire import RUN_TOOL
from graphrunner._types import ExecutionHeader, TaskCall, execution_id
from graphrunner.graph._model import AgentGraph

__all__ = ["RUN_TOOL", "ToolCallInput", "tool_execution_id"]


def tool_execution_id(
    workflow_id: str, run_id: str, node: str, iteration: int, round: int, index: int
) -> str:
    """The execution id of the ``index``-th tool call of round ``round`` of a task execution."""
    return execution_id(workflow_id, run_id, f"{node}#tool-{round}-{index}", iteration)


class ToolCallInput(TaskCall):
    """One tool call: the task's call fields, the tool, and the model's arguments.

    Recorded as an execution of its own, kind ``tool``, under the task's name, with the
    task's execution as its parent; guardrail rules see it as ``kind == "tool"``.
    """

    tool: str = Field(description="The tool, 'package.module:function'.")
    name: str = Field(description="The name the model called it by.")
    call_id: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    round: int = Field(default=1, ge=1)
    index: int = Field(default=1, ge=1)

    @property
    def record_kind(self) -> str:
        """``tool``: what execution records and guardrail rules call this execution."""
        return "tool"

    def header(
        self,
        *,
        lifetime_id: str,
        run_id: str,
        graph: AgentGraph,
        graph_hash: str,
        kind: str,
        scheduled_at: datetime | None,
    ) -> ExecutionHeader:
        """The task's header, with the tool call's own execution id and the tool's name."""
        base = super().header(
            lifetime_id=lifetime_id,
            run_id=run_id,
            graph=graph,
            graph_hash=graph_hash,
            kind=kind,
            scheduled_at=scheduled_at,
        )
        task_id = base.execution_id
        return base.model_copy(
            update={
                "execution_id": tool_execution_id(
                    lifetime_id, run_id, self.node, self.iteration, self.round, self.index
                ),
                "parent_ids": [task_id],
                "tool": self.name,
            }
        )
