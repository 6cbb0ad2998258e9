"""The graphrunner error hierarchy.

Definition errors (`GraphError`) carry every problem found, each with the file, line, the
node or edge, and the rule that was broken. Run-time failures of a lifetime reach callers as
Temporal failures whose ``type`` is one of the names in `FailureType`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graphrunner._rejection import Rejection

__all__ = [
    "DecryptionError",
    "FailureType",
    "GraphError",
    "GraphIssue",
    "GraphrunnerError",
    "GuardrailRejected",
    "PolicyError",
    "ServerUnreachable",
]


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
        column: 1-based column in ``line``, when known (problems YAML or the schema find
            at one character; graph-wide rules name a node or edge by its line).
        where: The node (``node 'x'``) or edge (``edge a -> b``) concerned, if any.
    """

    rule: str
    message: str
    file: str | None = None
    line: int | None = None
    where: str | None = None
    column: int | None = None

    def __str__(self) -> str:
        place = self.file or "<graph>"
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
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
    BAD_NODE_INPUT = "BadNodeInput"
    IMPL_NOT_FOUND = "NodeImplementationNotFound"
    BAD_FAN_IN = "BadFanIn"
    MAP_TOO_LARGE = "MapTooLarge"
    BAD_STATE_UPDATE = "BadStateUpdate"
    GRAPH_MISMATCH = "PinnedGraphMismatch"
    INVALID_GRAPH = "InvalidGraph"
    INTERNAL = "InternalError"
    GUARDRAIL_ABORTED = "GuardrailAborted"
    GUARDRAIL_REJECTED = "GuardrailRejected"
    GUARDRAIL_CONFIG = "GuardrailConfigError"
    SUBGRAPH_FAILED = "SubgraphFailed"
    FORK_DIVERGED = "ForkDiverged"


class GuardrailRejected(GraphrunnerError):
    """Raised inside a lifetime when a guardrail rejects an execution (never leaves it).

    The workflow catches it and routes ``rejection`` (which rule, what it saw) to a plan.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"rejected by guardrail: {rejection}")
        self.rejection = rejection


class PolicyError(GraphrunnerError):
    """A guardrail policy or one of its expressions is invalid.

    A loader that finds several problems raises one PolicyError whose ``issues`` lists them
    all (each itself a PolicyError); its ``file``, ``line`` and ``column`` are the first
    problem's, so a caller that only reads those still lands on a real place.

    Attributes:
        message: What was wrong and what was expected there.
        file: The policy file, when the policy came from one.
        line: 1-based line in ``file`` (or in the expression text), when known.
        column: 1-based column, when known.
        issues: Every problem found; just this error when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        issues: list[PolicyError] | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self._issues = list(issues or [])
        super().__init__(self._render())

    @property
    def issues(self) -> list[PolicyError]:
        """Every problem found, first to last; ``[self]`` for a single problem."""
        return list(self._issues) or [self]

    @property
    def place(self) -> str:
        """Where the problem is, as ``file:line:column`` (parts that are unknown left out)."""
        place = self.file or "<policy>"
        for part in (self.line, self.column):
            if part is None:
                break
            place += f":{part}"
        return place

    def _render(self) -> str:
        if not self._issues:
            return f"{self.place}: {self.message}"
        lines = "\n".join(f"  {issue.place}: {issue.message}" for issue in self._issues)
        return f"{self.message}:\n{lines}"


class DecryptionError(Exception):
    """Encrypted data (a payload, a record) could not be decrypted; nothing was returned.

    Raised when the key it names is not among the codec keys (``GRAPHRUNNER_CODEC_KEYS``),
    when the key under that name is not the one that encrypted it, when the data was
    altered, or when a process without keys reads encrypted data. Deliberately not a
    `GraphrunnerError`: those end a lifetime when raised in workflow code, and a worker that
    cannot decrypt must fail only the workflow task, which Temporal retries until a worker
    with the key takes it.

    Attributes:
        key_id: The id of the key the data was encrypted with.
    """

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id
