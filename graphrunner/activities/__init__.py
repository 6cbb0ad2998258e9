"""Activities that run Task and Plan nodes and record their executions."""

from graphrunner.activities._nodes import RUN_PLAN, RUN_TASK, NodeActivities
from graphrunner.activities._recording import Attempt, Recorder

__all__ = ["RUN_PLAN", "RUN_TASK", "Attempt", "NodeActivities", "Recorder"]
