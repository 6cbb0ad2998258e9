"""The ``graphrunner.run_tool`` activity: one tool call of a built-in LLM task.

The lifetime workflow runs each tool call the model asked for as an activity of its own
(summary ``task · iteration · tool``), so it is retried, timed out, guarded and recorded on
its own: an execution record of kind ``tool`` under the task's name, with the tool's name,
the arguments and the result, and the task's execution as its parent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner._tool_call import RUN_TOOL, ToolCallInput
from graphrunner._tools import load_tool
from graphrunner._types import TaskResult, Telemetry
from graphrunner._values import BadValue, check_value
from graphrunner.activities._graphs import refuse_other_tenant, resolve_call
from graphrunner.activities._recording import Attempt, Recorder
from graphrunner.errors import FailureType
from graphrunner.stores._records import ExecutionStatus

__all__ = ["ToolActivities"]


class ToolActivities:
    """The tool activity of one worker.

    Args:
        recorder: Writes execution records; None records nothing.
        impl_modules: Module prefixes a tool may come from (as for node code); None: any.
    """

    def __init__(
        self,
        recorder: Recorder | None,
        *,
        impl_modules: tuple[str, ...] | None = None,
        tenant: str | None = None,
    ) -> None:
        self.recorder = recorder
        self.impl_modules = impl_modules
        self.tenant = tenant

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, call: ToolCallInput) -> TaskResult:
        """Run one tool call; its output is what the tool returned (or the argument error)."""
        header, _ = await resolve_call(call, call.record_kind)
        refuse_other_tenant(header, self.tenant)
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        where = f"tool '{call.name}' of task '{call.node}' (iteration {call.iteration})"
        try:
            result = await self._call(call, where)
        except BaseException as exc:
            if self.recorder is not None:
                await self.recorder.write(
                    header,
                    Attempt(
                        status=ExecutionStatus.FAILED,
                        started_at=started_at,
                        finished_at=datetime.now(UTC),
                        latency_ms=(time.monotonic() - clock) * 1000,
                        error=f"{type(exc).__name__}: {exc}",
                    ),
                )
            raise
        latency_ms = (time.monotonic() - clock) * 1000
        telemetry = Telemetry(latency_ms=round(latency_ms, 3), attempt=activity.info().attempt)
        if self.recorder is not None:
            await self.recorder.write(
                header,
                Attempt(
                    status=ExecutionStatus.SUCCEEDED,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                    latency_ms=latency_ms,
                    output={"arguments": call.arguments, "result": result},
                    telemetry=telemetry,
                    next=[call.node],
                ),
            )
        return TaskResult(output=result, telemetry=telemetry)

    async def _call(self, call: ToolCallInput, where: str) -> Any:
        module = call.tool.partition(":")[0]
        allowed = self.impl_modules
        if allowed is not None and not any(
            module == p or module.startswith(p + ".") for p in allowed
        ):
            raise ApplicationError(
                f"{where}: '{call.tool}' is not in a module this worker may import "
                f"(GRAPHRUNNER_IMPL_MODULES={','.join(allowed) or '(none)'})",
                type=FailureType.IMPL_NOT_FOUND,
                non_retryable=True,
            )
        try:
            tool = load_tool(call.tool)
        except (ImportError, TypeError) as exc:
            raise ApplicationError(
                f"{where}: cannot load '{call.tool}': {exc}",
                type=FailureType.IMPL_NOT_FOUND,
                non_retryable=True,
            ) from None
        try:
            returned = await tool.call(call.arguments)
        except ValueError as exc:
            if str(exc).startswith("bad arguments"):  # the model is told, and may fix them
                return {"error": str(exc)}
            raise ApplicationError(f"{where} raised ValueError: {exc}", type="ValueError") from exc
        except Exception as exc:
            # Retried as the node's retry policy says; the message names the tool.
            raise ApplicationError(
                f"{where} raised {type(exc).__name__}: {exc}", type=type(exc).__name__
            ) from exc
        result = to_jsonable_python(returned, fallback=str)
        try:
            check_value(result, f"{where} returned a value that a lifetime cannot carry")
        except BadValue as exc:
            raise ApplicationError(
                str(exc), type=FailureType.BAD_NODE_RESULT, non_retryable=True
            ) from None
        return result
