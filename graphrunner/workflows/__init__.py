"""Temporal workflows: one AgentLifetime per run of a graph."""

from graphrunner.workflows._lifetime import LIFETIME_WORKFLOW, AgentLifetimeWorkflow

__all__ = ["LIFETIME_WORKFLOW", "AgentLifetimeWorkflow"]
