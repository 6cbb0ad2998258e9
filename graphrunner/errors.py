"""The graphrunner error hierarchy.

Definition errors (`GraphError`) carry every problem found, each with the file, line, the
node or edge, and the rule that was broken. Run-time failures of a lifetime reach callers as
Temporal failures whose ``type`` is one of the names in `FailureType`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FailureType", "GraphError", "GraphIssue", "GraphrunnerError", "ServerUnreachable"]


class GraphrunnerError(Exception):
    """Base class of every error graphrunner raises on purpose."""


@dataclass(frozen=True, kw_only=True)
class GraphIssue:
    """One problem in a graph definition.

    Attributes:
        rule: Short stable name of the rule broken, e.g. ``dangling-edge``.
        message: What is wrong and what to do about it.
        file: The YAML file, when the graph came from one.
        line: 1-based line in ``file``, when known.
        where: The node (``node 'x'``) or edge (``edge a -> b``) concerned, if any.
    """

    rule: str
    message: str
    file: str | None = None
    line: int | None = None
    where: str | None = None

    def __str__(self) -> str:
        place = self.file or "<graph>"
        if self.line is not None:
            place += f":{self.line}"
        subject = f" {self.where}:" if self.where else ""
        return f"{place}:{subject} {self.message} [{self.rule}]"


class GraphError(GraphrunnerError):
    """A graph definition is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[GraphIssue]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in graph definition"
        super().__init__(head + ":\n" + "\n".join(f"  {issue}" for issue in self.issues))


class ServerUnreachable(GraphrunnerError):
    """The Temporal server could not be reached."""


class FailureType(StrEnum):
    """``ApplicationError.type`` values with which graphrunner fails a lifetime or node."""

    NODE_FAILED = "NodeFailed"
    UNDECLARED_SUCCESSOR = "UndeclaredSuccessor"
    MAX_ITERATIONS = "MaxIterationsExceeded"
    BAD_NODE_RESULT = "BadNodeResult"
    IMPL_NOT_FOUND = "NodeImplementationNotFound"
    BAD_FAN_IN = "BadFanIn"
    GRAPH_MISMATCH = "PinnedGraphMismatch"
    INTERNAL = "InternalError"
