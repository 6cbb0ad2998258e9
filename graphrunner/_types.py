"""Typed values that cross the workflow/activity boundary (and so Temporal history).

Kept apart from the SDK and the activities so workflow code imports only pydantic and
the graph model. Field additions must keep defaults: old histories have to replay.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from graphrunner._llm_wire import LlmTurn, ToolRound
from graphrunner._rejection import Rejection
from graphrunner.graph._model import AgentGraph, NodeKind
from graphrunner.guardrails._policy import Policy
from graphrunner.guardrails._wire import TallyValue

__all__ = [
    "FIRST_QUESTION",
    "INPUT_FORMAT",
    "RUN_PLAN",
    "RUN_TASK",
    "ExecutionHeader",
    "FirstQuestion",
    "ForkMemo",
    "ForkSeed",
    "InheritedGuard",
    "LifetimeInput",
    "LifetimePhase",
    "LifetimeResult",
    "LifetimeStatus",
    "NodeOutput",
    "ParentLink",
    "PlanCall",
    "PlanResult",
    "QuestionRequest",
    "Rejection",
    "StepRecord",
    "StepStatus",
    "TaskCall",
    "TaskResult",
    "Telemetry",
    "UnsupportedHistory",
    "WireModel",
    "execution_id",
    "check_format",
]


# Activity type names, shared by the workflow (which cannot import the activity modules: the
# sandbox would pull in SQLAlchemy), the activities, and the history reader.
RUN_TASK = "graphrunner.run_task"
RUN_PLAN = "graphrunner.run_plan"
_SUMMARY_SEP = " · "
MAX_TOKENS = 2**53  # per execution
MAX_COST_USD = 1e9  # per execution


def step_summary(node: str, iteration: int, mark: str = "") -> str:
    """The activity summary the Temporal UI shows for one node execution.

    ``mark`` is a map branch's place, ``[3/7]``: ``review · 3 [3/7]``.
    """
    return f"{node}{_SUMMARY_SEP}{iteration}{' ' + mark if mark else ''}"


_MARK = re.compile(r" \[\d+/\d+\]$")


def parse_step_summary(text: str) -> tuple[str, int] | None:
    """Inverse of `step_summary`, without the mark.

    None for a summary graphrunner did not write.
    """
    node, sep, iteration = _MARK.sub("", text).rpartition(_SUMMARY_SEP)
    return (node, int(iteration)) if sep and iteration.isdigit() else None


def execution_id(workflow_id: str, run_id: str, node: str, iteration: int) -> str:
    """The id of one node execution: the same on every attempt and replay, unique otherwise."""
    identity = f"{workflow_id}/{run_id}/{node}/{iteration}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WireModel(_Model):
    """A model that crosses into history often: its JSON leaves out fields at their defaults.

    Graphrunner's payload converter (see `graphrunner.plugin`) writes these with
    ``exclude_defaults``; any pydantic decoder reads them back whole. Their ``Any`` fields hold
    plain JSON only (node results are made plain before they leave the activity), so no
    user model inside them loses a field.
    """


class Telemetry(WireModel):
    """What a node execution consumed; LLM nodes fill it in, others leave it empty.

    Attributes:
        tokens_in: Prompt tokens.
        tokens_out: Completion tokens.
        cost_usd: Cost in US dollars.
        model: Model that served the call, if any.
    """

    # Bounded so that sums stay exact in a float and fit the state DB's BIGINT / NUMERIC(20,10).
    tokens_in: int = Field(default=0, ge=0, le=MAX_TOKENS)
    tokens_out: int = Field(default=0, ge=0, le=MAX_TOKENS)
    cost_usd: float = Field(default=0.0, ge=0, le=MAX_COST_USD, allow_inf_nan=False)
    model: str = ""
    latency_ms: float | None = Field(
        default=None, description="Set by graphrunner: how long the attempt ran."
    )
    attempt: int | None = Field(default=None, description="Set by graphrunner: which attempt.")


class TaskResult(WireModel):
    """What a Task returns: its output (any JSON-serialisable value) and telemetry.

    ``update`` changes the lifetime state (fields the graph declares under ``state``); each
    field's reducer combines it with the current value.
    """

    output: Any = None
    telemetry: Telemetry = Field(default_factory=Telemetry)
    update: dict[str, Any] | None = Field(
        default=None, description="A lifetime state update: field -> value for its reducer."
    )
    tools: ToolRound | None = Field(
        default=None,
        description="Set by graphrunner's built-in LLM task only: the model asked for these "
        "tools; the lifetime runs them and asks it again.",
    )


class PlanResult(WireModel):
    """What a Plan returns.

    Attributes:
        next_task_names: Declared successors to run next. One NORMAL successor continues the
            path; several (or one) PARALLEL successors fan out. Empty finishes the lifetime,
            which needs a FINAL edge on this plan.
        data: Handed to every chosen task as its input.
        output: The lifetime's output when the plan finishes it.
        telemetry: What deciding consumed (tokens, cost), for LLM-driven plans.
    """

    next_task_names: list[str] = Field(default_factory=list)
    data: Any = None
    output: Any = None
    telemetry: Telemetry = Field(default_factory=Telemetry)
    items: list[Any] | None = Field(
        default=None,
        description="Set by `map`: run the one chosen task once per item, each item its data.",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=10_000, description="Most map branches running at once."
    )
    update: dict[str, Any] | None = Field(
        default=None, description="A lifetime state update: field -> value for its reducer."
    )
    graph: Any = Field(
        default=None,
        description="A graph for the chosen task(s) declared with 'graph: generated' to run "
        "as a child lifetime: an AgentGraph, its mapping, or its YAML text. The plan "
        "activity validates it and hands the workflow its canonical JSON.",
    )
    graph_hash: str | None = Field(
        default=None, description="Set by graphrunner: content hash of the validated graph."
    )
    graph_errors: list[str] | None = Field(
        default=None,
        description="Set by graphrunner: why the returned graph is invalid; the plan then "
        "runs again with them (see `NodeOutput.rejection`, rule 'invalid-graph').",
    )

    @classmethod
    def goto(cls, *names: str, data: Any = None, graph: Any = None) -> PlanResult:
        """Run the named successor task(s) next, handing each ``data``.

        ``graph`` (an `AgentGraph`, its mapping, or YAML text) is the graph chosen tasks
        declared with ``graph: generated`` run as a child lifetime; it is validated by the
        rules of ``graphrunner validate`` before anything runs.
        """
        return cls(next_task_names=list(names), data=data, graph=graph)

    @classmethod
    def map(
        cls, task: str, items: Sequence[Any], *, max_concurrency: int | None = None
    ) -> PlanResult:
        """Run ``task`` (a PARALLEL successor) once per item, each branch the item as its data.

        The analogue of LangGraph's ``Send``: as many branches as the plan decides at run
        time, at most ``max_concurrency`` at once; the JOIN plan gets their results in item
        order (no items: it runs at once with none). ``defaults.max_map_items`` (100) caps a
        map, and the task's ``max_iterations`` the lifetime (each branch is one iteration).
        """
        return cls(next_task_names=[task], items=list(items), max_concurrency=max_concurrency)

    @classmethod
    def finish(cls, output: Any = None) -> PlanResult:
        """End the lifetime along this plan's FINAL edge with ``output``."""
        return cls(output=output)


class NodeOutput(WireModel):
    """A finished task's output as the next plan sees it.

    A rejected execution (see `Rejection`) has no output; ``rejection`` says which guardrail
    rule discarded it, so the plan can choose differently.
    """

    node: str
    iteration: int
    output: Any = None
    execution_id: str = Field(
        default="",
        description="The execution's id (its record's); filled in before a plan sees it.",
    )
    rejection: Rejection | None = None

    @property
    def rejected(self) -> bool:
        """Whether a guardrail rejected this execution."""
        return self.rejection is not None


class ExecutionHeader(_Model):
    """Who, where and when of one node execution: the one mapping from a call to a record.

    Built by the node activity (from its call, `activity.info()` and the pinned graph) and by
    the guardrail interceptor (from the call and `workflow.info()`); execution records,
    attempt rows and guardrail decisions all take their identifying fields from it.
    """

    lifetime_id: str
    run_id: str = ""
    graph_name: str
    graph_version: str
    graph_hash: str
    tenant: str
    node: str
    kind: str  # "task" | "plan"
    iteration: int
    execution_id: str
    seq: int = 0
    parent_ids: list[str] = Field(default_factory=list)
    edge: str | None = None
    scheduled_at: datetime | None = None
    forked_from: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A fork's parent lifetime and step, ``<parent id>#<step>``.",
    )
    tool: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A tool call of an LLM task (kind ``tool``): the tool's name.",
    )


GRAPH_KEY_LENGTH = 32
"""Hex digits of a graph's content hash a node call names it by (128 bits: finding two
graphs that share them is out of reach, so a worker's cache never hands a node another
graph)."""


class _Call(WireModel):
    """What the workflow sends a node activity: only what the worker cannot derive.

    The node's spec, the graph's name, version and full hash, and a plan's successors come
    from the pinned graph, which the activity finds by ``graph`` (the first
    `GRAPH_KEY_LENGTH` hex digits of its content hash, see `graphrunner._pinned`); the
    lifetime id, run id and scheduling time from `temporalio.activity.info`; execution ids
    from the lifetime, run, node and iteration (`execution_id`). The rest are record headers
    the workflow decided, so they are deterministic.
    """

    graph: str
    tenant: str = "default"
    node: str
    iteration: int
    seq: int = 0
    parents: list[tuple[str, int]] = Field(
        default_factory=list, description="(node, iteration) of the executions that led here."
    )
    edge: str | None = None
    state: dict[str, Any] | None = Field(
        default=None, description="The lifetime state as this execution sees it (if declared)."
    )
    forked_from: str | None = Field(
        default=None,
        description="Set in a fork only: its parent lifetime and step, ``<parent id>#<step>``.",
    )
    _execution_id: str = PrivateAttr(default="")

    @property
    def node_name(self) -> str:
        """The executing node's name."""
        return self.node

    @property
    def execution_id(self) -> str:
        """The execution's id, as the workflow set it (empty on the activity side)."""
        return self._execution_id

    def with_execution_id(self, value: str) -> Self:
        """This call, knowing its execution id (the workflow's side; never serialized)."""
        self._execution_id = value
        return self

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
        """The record header of this execution: the one mapping from a call to a record."""
        return ExecutionHeader(
            lifetime_id=lifetime_id,
            run_id=run_id,
            graph_name=graph.name,
            graph_version=graph.version,
            graph_hash=graph_hash,
            tenant=self.tenant,
            node=self.node,
            kind=kind,
            iteration=self.iteration,
            execution_id=execution_id(lifetime_id, run_id, self.node, self.iteration),
            seq=self.seq,
            parent_ids=[execution_id(lifetime_id, run_id, n, i) for n, i in self.parents],
            edge=self.edge,
            scheduled_at=scheduled_at,
            forked_from=self.forked_from,
        )


class TaskCall(_Call):
    """Input of the task activity."""

    data: Any = None
    turn: LlmTurn | None = Field(
        default=None,
        description="A later round of a built-in LLM task that calls tools (None: the first).",
    )

    @property
    def record_kind(self) -> str:
        """What records and guardrail rules call this execution (``kind``)."""
        return "task"


RECORD_CHILD = "graphrunner.record_child"
"""The local activity that records a sub-graph task once its child lifetime has ended."""


class ChildCall(TaskCall):
    """Input of ``graphrunner.record_child``: a sub-graph task and how its child ended.

    Attributes:
        child: The child lifetime's id.
        output: Its output (when it completed).
        spent: What it spent (its executions', its children's included).
        error: Why it failed, when it did.
        started_at: When the child was started.
        finished_at: When it ended.
    """

    child: str
    output: Any = None
    spent: Telemetry = Field(default_factory=Telemetry)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class PlanCall(_Call):
    """Input of the plan activity."""

    results: list[NodeOutput] = Field(default_factory=list)

    @property
    def record_kind(self) -> str:
        """What records and guardrail rules call this execution (``kind``)."""
        return "plan"


class InheritedGuard(_Model):
    """The parent's guardrails a child lifetime runs under (set by the guardrail interceptor).

    Attributes:
        policy: The parent's effective policy (its layers merged), over the child graph's.
        totals: The parent's lifetime-scope aggregates when the child started, by their
            canonical text: the child's lifetime rules count on from them.
        ledger: Whether the parent's worker pinned a state DB for tenant rules.
    """

    policy: Policy
    totals: dict[str, TallyValue] = Field(default_factory=dict)
    ledger: bool = False


MAX_CHILD_DEPTH = 8
"""Most levels of child lifetimes below a lifetime started by a client."""


class ParentLink(_Model):
    """Which execution of which lifetime started a child lifetime (its sub-graph task).

    Attributes:
        lifetime_id: The parent lifetime.
        run_id: The parent's run.
        node: The sub-graph task.
        iteration: Its iteration.
        execution_id: Its execution id (the parent's record of it names the child).
        depth: 1 for a child of a lifetime a client started, 2 below that, ...
        guard: The parent's guardrails, when it has any.
    """

    lifetime_id: str
    run_id: str = ""
    node: str
    iteration: int
    execution_id: str = ""
    depth: int = Field(default=1, ge=1, le=MAX_CHILD_DEPTH)
    guard: InheritedGuard | None = Field(default=None, exclude_if=lambda v: v is None)


MAX_CARRIED_REJECTIONS = 100
"""Most rejected steps a lifetime carries into its next run (the newest; records keep all)."""


class CarriedUpstream(_Model):
    """The plan that chose the task the walk goes on with (it chooses again on a rejection)."""

    plan: str
    results: list[NodeOutput] = Field(default_factory=list)
    parents: list[tuple[str, int]] = Field(default_factory=list)
    edge: str | None = None


class GeneratedGraph(_Model):
    """A graph a plan generated, which the task the walk goes on with may run."""

    node: str
    iteration: int
    graph: AgentGraph
    graph_hash: str


class Carry(_Model):
    """What a lifetime takes into its next run when it continues as new.

    Only what routing needs, never the steps: the records and the earlier runs' histories
    hold those. A lifetime continues as new on its main path between two steps (never inside
    a fan-out, never while a person, a child lifetime or a guardrail pause holds it), so no
    execution is in flight and this is the whole walk.

    Attributes:
        runs: How many runs the lifetime had before this one (0 for a fork that starts from
            a carried walk: its runs are its own).
        seq: Steps begun in earlier runs (this run's first step has this number).
        started_at: When the lifetime's first run started (elapsed-time rules count from it;
            None: this run's start, as in a fork).
        node: The node the walk goes on with.
        data: The data that node gets (a task).
        results: The results it gets (a plan).
        parents: The executions that led there (node, iteration).
        edge: The edge type that led there (or ``REJECTED``).
        upstream: The plan that chose that task, to choose again on a rejection.
        state: The lifetime state.
        iterations: How many times each node ran.
        spent: What the executions (children included) spent so far.
        rejected: The newest `MAX_CARRIED_REJECTIONS` steps a guardrail rejected.
        generated: The generated graph the next task may run.
        answers: Human answers held for requests not asked yet (`HumanOutcome` dicts).
        refused: Signalled answers refused lately (`RefusedAnswer` dicts).
        guard: The guardrails' pinned policy and lifetime totals (the interceptor sets it).
    """

    runs: int = Field(ge=0, le=10_000_000)
    seq: int = Field(ge=0, le=2**53)
    started_at: datetime | None = None
    node: str
    data: Any = None
    results: list[NodeOutput] = Field(default_factory=list)
    parents: list[tuple[str, int]] = Field(default_factory=list)
    edge: str | None = None
    upstream: CarriedUpstream | None = None
    state: dict[str, Any] | None = None
    iterations: dict[str, int] = Field(default_factory=dict)
    spent: Telemetry | None = None
    rejected: list[StepRecord] = Field(default_factory=list, max_length=MAX_CARRIED_REJECTIONS)
    generated: list[GeneratedGraph] = Field(default_factory=list, max_length=1)
    answers: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    refused: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    guard: InheritedGuard | None = Field(default=None, exclude_if=lambda v: v is None)


class ForkMemo(WireModel):
    """One step a fork takes from its parent lifetime instead of running it again.

    Read from the parent's history by the client (`graphrunner.client.GraphrunnerClient.fork`):
    the outcome the parent's workflow routed on, exactly. Telemetry is left out: the step
    did not run in the fork, so it spends nothing there.

    Attributes:
        seq: The step's number in the parent (and in the fork).
        node: Its node.
        iteration: Its iteration.
        kind: ``task``, ``plan``, ``human`` (a human-input task) or ``child`` (a sub-graph
            task).
        rank: Its place among the memos in the order the parent saw them complete; the fork
            hands them over in that order, so concurrent branches begin their steps in the
            parent's order.
        task: A task's result (a child's output, a person's answer as its output).
        plan: A plan's decision.
        rejection: Why a guardrail rejected it, when one did.
        child: A sub-graph task's child lifetime (reused, not run again).
        lifetime_id: The lifetime that ran it, when not the fork's parent (a fork's fork).
        run_id: The run that ran it, when not the parent's run the memos were read from.
    """

    seq: int = Field(ge=0)
    node: str
    iteration: int = Field(ge=1)
    kind: Literal["task", "plan", "human", "child"]
    rank: int = Field(ge=0)
    task: TaskResult | None = None
    plan: PlanResult | None = None
    rejection: Rejection | None = None
    child: str | None = None
    lifetime_id: str = ""
    run_id: str = ""


class ForkSeed(_Model):
    """What makes a lifetime a fork: its parent, the step it forks at, the steps it takes.

    Attributes:
        parent_id: The parent lifetime.
        parent_run_id: The parent's run whose history the memos come from.
        step: Steps numbered below it are taken from the parent; it and later ones run.
        memos: Those steps, one per number below ``step``.
    """

    parent_id: str = Field(min_length=1, max_length=1000)
    parent_run_id: str = ""
    step: int = Field(ge=0)
    memos: list[ForkMemo] = Field(default_factory=list)

    @property
    def mark(self) -> str:
        """``<parent id>#<step>``: the fork's search attribute and records' ``forked_from``."""
        return f"{self.parent_id}#{self.step}"

    def forked(self, carry: Carry | None) -> Carry | None:
        """The walk a fork starts from, given the carry of the parent's run with its step.

        Where the walk is, the state, the iteration counts and held answers come along;
        what belongs to the parent's own running does not: its spend, guardrail totals and
        pinned policy (a fork pins its own at start), rejections, and its start time.
        """
        if carry is None:
            return None
        return carry.model_copy(
            update={"runs": 0, "started_at": None, "spent": None, "guard": None, "rejected": []}
        )

    def ran(self, memo: ForkMemo) -> tuple[str, str]:
        """The lifetime and run that ran a memoized step (its execution record's)."""
        return memo.lifetime_id or self.parent_id, memo.run_id or self.parent_run_id


class LifetimeInput(_Model):
    """Input of an AgentLifetime workflow: the pinned graph and the user's input.

    ``format`` says which graphrunner wrote the input; see `check_format`. ``parent`` is
    set on a child lifetime (a sub-graph task's); ``carry`` on every run after a lifetime's
    first, when it continued as new (and on a fork of a step in such a run); ``fork`` on a
    fork of another lifetime.
    """

    graph: AgentGraph
    graph_hash: str
    input: Any = None
    # The state DB's bound; a longer one would fail every ledger write, on every retry.
    tenant: str = Field(default="default", min_length=1, max_length=255)
    format: int = 1
    parent: ParentLink | None = Field(default=None, exclude_if=lambda v: v is None)
    carry: Carry | None = Field(default=None, exclude_if=lambda v: v is None)
    fork: ForkSeed | None = Field(default=None, exclude_if=lambda v: v is None)


INPUT_FORMAT = 2
"""`LifetimeInput.format` that clients write and workers run (1: before graphrunner 0.2)."""


class UnsupportedHistory(RuntimeError):
    """A lifetime written by an older graphrunner than this worker runs.

    Not a `GraphrunnerError`: raised in workflow code it fails the workflow task, not the
    lifetime, so the lifetime waits (visibly, in ``graphrunner status``) for a worker that
    can run it.
    """


def check_format(inp: LifetimeInput) -> None:
    """Refuse (stall) a lifetime whose input format this worker does not run."""
    if inp.format != INPUT_FORMAT:
        raise UnsupportedHistory(
            f"this lifetime's input has format {inp.format} (an older graphrunner's, or a "
            'start by hand that did not say "format": '
            f"{INPUT_FORMAT}); this worker runs format {INPUT_FORMAT} only. Run it on a worker "
            "of that graphrunner version, or terminate it"
        )


class LifetimePhase(StrEnum):
    """Where a lifetime is, as the ``GraphrunnerStatus`` search attribute says it."""

    RUNNING = "running"
    WAITING = "waiting"  # for a person (a human-input step)
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


#: The update that waits until a lifetime first waits for a person (or ends without asking).
FIRST_QUESTION = "graphrunner.first_question"


class QuestionRequest(_Model):
    """Input of the ``graphrunner.first_question`` update (no fields yet)."""


class FirstQuestion(_Model):
    """Answer of the ``graphrunner.first_question`` update.

    Attributes:
        phase: ``waiting`` when the lifetime waits for a person; else the phase it ended in
            (completed, failed, aborted, cancelled) without asking anyone.
        question: What the lifetime asks, when a human-input step provides it.
        continued: The lifetime continued as new before asking anyone: ask its next run
            (`GraphrunnerClient.start_and_ask` does).
    """

    phase: LifetimePhase
    question: Any = None
    continued: bool = False


class StepStatus(StrEnum):
    """Outcome of one node execution as the workflow saw it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


class StepRecord(_Model):
    """One node execution on the path a lifetime took."""

    node: str
    kind: NodeKind
    iteration: int
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    next: list[str] = Field(default_factory=list)
    execution_id: str = ""
    seq: int = 0
    child: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="A sub-graph task's child lifetime id.",
    )

    @property
    def duration_ms(self) -> float | None:
        """Wall time from scheduling to completion, as recorded in workflow time."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class LifetimeResult(_Model):
    """Result of a finished lifetime: its output and the path it took."""

    output: Any = None
    graph_name: str
    graph_version: str
    graph_hash: str
    steps: list[StepRecord] = Field(
        default_factory=list,
        description="The path: filled from history by `GraphrunnerClient.result` and the "
        "handle `GraphrunnerClient.start` returns. The workflow's own result names only the "
        "steps a guardrail rejected (history cannot tell them), so a long lifetime's result "
        "stays small.",
    )
    state: dict[str, Any] | None = Field(
        default=None, description="The lifetime state at the end (None: the graph has none)."
    )
    telemetry: Telemetry | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="What the lifetime's executions (its child lifetimes' included) spent, "
        "when they reported any: a sub-graph task reports it as its own telemetry.",
    )


class LifetimeStatus(_Model):
    """Live view of a lifetime, answered by the ``status`` query."""

    graph_name: str
    graph_version: str
    graph_hash: str
    tenant: str
    running: list[str]
    steps: list[StepRecord]
    state: dict[str, Any] | None = Field(
        default=None, description="The lifetime state now (None: the graph declares none)."
    )
    waiting: list[Any] = Field(
        default_factory=list,
        description="Human-input requests the lifetime waits on (graphrunner.HumanRequest).",
    )
    refused: list[Any] = Field(
        default_factory=list,
        description="Signalled answers the lifetime refused (graphrunner.RefusedAnswer).",
    )
