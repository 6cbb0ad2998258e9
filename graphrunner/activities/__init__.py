"""Activities that run Task and Plan nodes."""

from graphrunner.activities._nodes import RUN_PLAN, RUN_TASK, run_plan, run_task

__all__ = ["RUN_PLAN", "RUN_TASK", "run_plan", "run_task"]
