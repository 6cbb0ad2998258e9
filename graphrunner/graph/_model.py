"""The AgentGraph model: the one validated shape that YAML files and the builder produce.

This module is imported inside the Temporal workflow sandbox, so it stays small and free of
I/O: structural checks live here (pydantic), graph-wide rules live in `_validate`.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graphrunner.graph._human import HumanSpec
from graphrunner.graph._llm import LlmSpec
from graphrunner.guardrails._policy import Policy

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "MAX_ERROR_TYPES",
    "MAX_ERROR_TYPE_LENGTH",
    "MAX_ITERATIONS",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "GENERATED",
    "AgentGraph",
    "EdgeSpec",
    "EdgeType",
    "GraphDefaults",
    "NodeKind",
    "NodeSpec",
    "RetrySpec",
    "StateField",
]


# Bounds on every number the Temporal server or the lifetime workflow sees, in two tiers.
#
# The model refuses only what no lifetime could ever have run: NaN and infinity (JSON turns
# them into null), more attempts than the server's int32, durations past the protobuf
# Duration range. It also decodes every pinned graph in running histories, so it must never
# refuse what a worker accepted before: a lifetime whose input no longer decodes would hang.
#
# Validation (`validate_graph`, which the loader and the builder run) then holds a new
# definition to sane limits, documented here and in the JSON Schema: past them a value is a
# mistake, and some would be refused by the server on every retry, so the lifetime would hang.
#: Durations (timeouts, heartbeat, retry intervals), seconds: 1 ms (Temporal's resolution)
#: up to 10 years (well inside protobuf Durations and Go's time.Duration, ~292 years).
MIN_SECONDS: Final = 0.001
MAX_SECONDS: Final = 10 * 365 * 24 * 3600
#: Attempts of one node: ten thousand is past any sane retry plan (the server's int32 is the
#: hard limit).
MAX_ATTEMPTS: Final = 10_000
#: Retry backoff coefficient: a longer wait than x1000 per retry is an error, not a plan.
MAX_BACKOFF: Final = 1000.0
#: The loop guard: no history holds a million runs of one node (Temporal ends a workflow's
#: history at 51,200 events), so a higher cap could never be reached.
MAX_ITERATIONS: Final = 1_000_000
#: Exception type names in a retry policy: the server gets them with every activity command.
MAX_ERROR_TYPES: Final = 64
MAX_ERROR_TYPE_LENGTH: Final = 256
_INT32: Final = 2**31 - 1
_DURATION_RANGE: Final = 315_576_000_000  # protobuf Duration: +-10,000 years
_JSON_DEPTH: Final = 200  # pydantic's JSON parser refuses deeper nesting

Seconds = Annotated[
    float,
    Field(
        gt=0,
        le=_DURATION_RANGE,
        allow_inf_nan=False,
        json_schema_extra={"minimum": MIN_SECONDS, "maximum": MAX_SECONDS},
    ),
]


class NodeKind(StrEnum):
    """Whether a node does work (task) or decides what runs next (plan)."""

    TASK = "task"
    PLAN = "plan"


class EdgeType(StrEnum):
    """How control moves along an edge.

    NORMAL: Task -> Plan (the plan runs next) or Plan -> Task (a successor the plan may pick).
    PARALLEL: Plan -> Task; the tasks a plan picks among its PARALLEL edges run concurrently.
    JOIN: Task -> Plan; the plan waits for every branch of the enclosing fan-out.
    FINAL: from a node to nowhere; taking it ends the lifetime.
    """

    NORMAL = "NORMAL"
    PARALLEL = "PARALLEL"
    JOIN = "JOIN"
    FINAL = "FINAL"


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class RetrySpec(_Strict):
    """Temporal retry policy of a node; unset fields fall back to the graph defaults."""

    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=_INT32,
        json_schema_extra={"maximum": MAX_ATTEMPTS},
        description=f"Attempts in all, including the first (1 to {MAX_ATTEMPTS:,}).",
    )
    initial_interval_s: Seconds | None = Field(
        default=None, description="Wait before the first retry, seconds."
    )
    backoff: float | None = Field(
        default=None,
        ge=1,
        allow_inf_nan=False,
        json_schema_extra={"maximum": MAX_BACKOFF},
        description=f"Multiplier of the wait after each retry (1 to {MAX_BACKOFF:g}).",
    )
    max_interval_s: Seconds | None = Field(
        default=None, description="Longest wait between retries, seconds."
    )
    non_retryable_errors: list[str] | None = Field(
        default=None,
        json_schema_extra={"maxItems": MAX_ERROR_TYPES},
        description="Exception type names that are never retried "
        f"(at most {MAX_ERROR_TYPES}, each at most {MAX_ERROR_TYPE_LENGTH} characters).",
    )

    def merged_over(self, base: RetrySpec) -> RetrySpec:
        """Return this spec with unset fields taken from ``base``."""
        ours = self.model_dump(exclude_none=True)
        return base.model_copy(update=ours)


# What an unset retry field means, whether unset on the node or in the graph defaults.
BUILTIN_RETRY = RetrySpec(
    max_attempts=3,
    initial_interval_s=1.0,
    backoff=2.0,
    max_interval_s=30.0,
    non_retryable_errors=[],
)


DEFAULT_MAP_ITEMS = 100
"""Default of ``defaults.max_map_items``."""


class GraphDefaults(_Strict):
    """Settings every node inherits unless it sets its own."""

    timeout_s: Seconds = Field(
        default=60.0,
        description="Start-to-close timeout of one attempt, seconds (1 ms to 10 years).",
    )
    heartbeat_timeout_s: Seconds | None = Field(
        default=None,
        description="If set, a node's worker heartbeats; a crashed worker is noticed this fast.",
    )
    retry: RetrySpec = Field(
        default_factory=RetrySpec,
        description="Retry settings of every node; unset fields keep the built-in defaults "
        "(3 attempts, 1 s initial interval, backoff 2.0, at most 30 s between attempts).",
    )
    max_iterations: int = Field(
        default=100,
        ge=1,
        json_schema_extra={"maximum": MAX_ITERATIONS},
        description=f"Most times any one node may run in a lifetime (1 to {MAX_ITERATIONS:,}).",
    )
    # Left out of every dump when unset, so graphs without it hash as before.
    max_map_items: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        exclude_if=lambda value: value is None,
        description=f"Most items one map fan-out (PlanResult.map) may have (default "
        f"{DEFAULT_MAP_ITEMS}, at most 10,000).",
    )

    # Left out of every dump when unset, so graphs without it hash as before.
    continue_as_new_after: int | None = Field(
        default=None,
        ge=10,
        le=100_000,
        exclude_if=lambda value: value is None,
        description="Continue as new after this many steps in one run (10 to 100,000), even "
        "before Temporal suggests it; unset: only when Temporal suggests it.",
    )

    def map_cap(self) -> int:
        """The most items one map fan-out may have."""
        return self.max_map_items or DEFAULT_MAP_ITEMS


class NodeSpec(_Strict):
    """A Task or Plan node; ``impl`` is the import path ``package.module:Name`` of its code."""

    name: str
    kind: NodeKind
    # Optional in the model (validation says which nodes need one); left out of every dump
    # when unset, so graphs that set it hash as before.
    impl: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Implementation as 'package.module:Name': a Task or Plan subclass, or an "
        "@task or @plan function. A plan may have none when the 'when' conditions of its "
        "edges route it (the first edge whose condition holds, else its one edge without "
        "'when').",
    )
    description: str = ""
    timeout_s: Seconds | None = None
    heartbeat_timeout_s: Seconds | None = None
    retry: RetrySpec | None = None
    local: bool = Field(
        default=False,
        description="Run this plan as a local activity (fast; for pure, quick decisions). "
        "Default: false, but true for a plan without 'impl' (it routes by its edges' "
        "conditions: pure and quick).",
    )
    # Left out of every dump when unset, so graphs without them hash as before.
    max_tokens: int | None = Field(
        default=None,
        ge=0,
        le=2**53,
        exclude_if=lambda value: value is None,
        description="Most tokens one execution may use: reserved against tenant budgets "
        "before it runs (default: the policy's 'reserve').",
    )
    max_cost_usd: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        allow_inf_nan=False,
        exclude_if=lambda value: value is None,
        description="Most one execution may cost, in US dollars: reserved against tenant "
        "budgets before it runs (default: the policy's 'reserve').",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Free-form settings handed to the implementation."
    )
    # Sub-graphs (left out of every dump when unset, so graphs without them hash as before).
    graph: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Run another graph as this task, as a child lifetime: a YAML path "
        "relative to this file ('other.yaml'), 'name@version' of a graph in the same "
        "directory, or 'generated' for the graph the plan that chose this task returned.",
    )
    task_queue: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Task queue of the workers that run this sub-graph's child lifetime "
        "(default: the parent's).",
    )
    # Human input (left out of every dump when unset, so graphs without it hash as before).
    human: HumanSpec | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Ask a person instead of running code: the lifetime waits in the "
        "workflow for an answer (graphrunner respond / the graphrunner.respond update / the "
        "graphrunner.answer signal) that fits 'response', and goes on with it as this task's "
        "output.",
    )
    # Built-in LLM nodes (left out of every dump when unset, so graphs without it hash as
    # before).
    llm: LlmSpec | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Call a model instead of running code: a task answers (llm_task), a "
        "plan chooses one of its successors (llm_plan), a task with a 'rubric' grades its "
        "input (llm_judge).",
    )

    @model_validator(mode="before")
    @classmethod
    def _routing_plans_run_local(cls, data: Any) -> Any:
        # A plan without code evaluates a few conditions: a local activity (~3 ms) rather
        # than a round trip through the task queue (~30 ms). Set here, so dumps (and the
        # pinned graph) say so; an explicit 'local' is kept.
        if (
            isinstance(data, dict)
            and data.get("impl") is None
            and data.get("llm") is None  # a model call is neither pure nor quick
            and str(data.get("kind")) == NodeKind.PLAN.value
            and "local" not in data
        ):
            return {**data, "local": True}
        return data

    @field_validator("config")
    @classmethod
    def _json_numbers(cls, config: dict[str, Any]) -> dict[str, Any]:
        # The config travels as JSON: NaN and infinity would become null without a word, and
        # nesting deeper than the JSON parser takes (or a cycle) could never be decoded.
        _check_json_value(config, 0)
        return config


def _check_json_value(value: object, depth: int) -> None:
    if depth > _JSON_DEPTH:
        raise ValueError(f"nested more than {_JSON_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"numbers must be finite, found {value}")
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            _check_json_value(item, depth + 1)


REDUCERS: Final = ("replace", "append", "merge", "add", "max", "min")
"""Built-in reducers of a state field; a named function is ``package.module:function``."""

STATE_TYPES: Final = ("any", "string", "number", "integer", "boolean", "array", "object")


class StateField(_Strict):
    """One field of a graph's lifetime state: its JSON type, reducer and starting value.

    Reducers combine the field's current value with an update a node returned:

    - ``replace`` (default): the update becomes the value;
    - ``append``: a list grows by the update (by each item when the update is a list);
    - ``merge``: a mapping takes the update's keys (shallow);
    - ``add``, ``max``, ``min``: numbers;
    - ``package.module:function``: ``function(current, update) -> new``, pure and
      deterministic (it runs in the lifetime workflow, and replay checks it).
    """

    type: str = Field(default="any", description="JSON type: " + ", ".join(STATE_TYPES) + ".")
    reducer: str = Field(
        default="replace",
        description="How updates combine: " + ", ".join(REDUCERS) + ", or "
        "'package.module:function'.",
    )
    default: Any = Field(default=None, description="Value before any update.")
    description: str = ""

    @field_validator("default")
    @classmethod
    def _json_default(cls, value: Any) -> Any:
        _check_json_value(value, 0)
        return value


class EdgeSpec(_Strict):
    """A directed edge; FINAL edges have no target.

    ``when`` is a condition on an edge of a plan without ``impl``, in the guardrail expression
    language: the plan takes the first of its edges (in declared order) whose condition
    holds, else its one edge without ``when`` (see `graphrunner.graph._routing`).
    """

    source: str = Field(alias="from")
    target: str | None = Field(default=None, alias="to")
    type: EdgeType = EdgeType.NORMAL
    # Left out of every dump when unset, so graphs without conditions hash as before.
    when: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Condition under which a plan without 'impl' takes this edge, e.g. "
        "'output.label == \"billing\"' or 'state.rounds >= 3 or output.score >= 8'. Names: "
        "output and output.<key>... (the last result's output), node, iteration, rejected (of "
        "the last result), state.<field> (a declared state field); count, sum, min, max, avg "
        "range over every result the plan got. The plan's one edge without 'when' is taken "
        "when no condition holds; a PARALLEL edge taken fans out to every PARALLEL edge whose "
        "condition holds.",
    )

    @field_validator("when", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML reads 'when: true' as a boolean; it is the expression "true".
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    def label(self) -> str:
        """Human-readable form used in messages, e.g. ``review -> gather (NORMAL)``."""
        return f"{self.source} -> {self.target or 'END'} ({self.type.value})"


GENERATED: Final = "generated"
"""``NodeSpec.graph`` of a task that runs the graph its plan returned (`PlanResult.graph`)."""


class AgentGraph(_Strict):
    """An immutable graph template: nodes, edges and defaults.

    Build one with `graphrunner.load_graph` (YAML) or `graphrunner.GraphBuilder`; both run
    the same validation. The model itself only checks shapes and types.
    """

    name: str
    version: str = Field(description="Semantic version, e.g. 1.2.0.")
    description: str = ""
    start: str | None = Field(default=None, description="First node; defaults to nodes[0].")
    defaults: GraphDefaults = Field(default_factory=GraphDefaults)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    # Left out of every dump when unset, so a graph without a policy serialises, and hashes,
    # exactly as before the field existed: pinned hashes in running histories stay valid,
    # and workers that predate the field still accept the workflow input.
    guardrails: Policy | None = Field(
        default=None,
        exclude_if=lambda policy: policy is None,
        description="The graph's own guardrail policy, pinned into the graph (and so into "
        "content_hash). In YAML, the path of a policy file; the loader loads it.",
    )

    # Left out of every dump when unset (graphs without state hash as before).
    state: dict[str, StateField] | None = Field(
        default=None,
        exclude_if=lambda state: state is None,
        description="Lifetime state: field name -> type, reducer and default. Nodes read it "
        "(ctx.state) and return updates (TaskResult/PlanResult ``update``).",
    )

    # Left out of every dump when unset (graphs without sub-graphs hash as before).
    subgraphs: dict[str, AgentGraph] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The graphs that sub-graph tasks run, by their 'graph' reference, pinned "
        "into this one (and so into content_hash). Filled in by the loader and the builder; "
        "not written in YAML.",
    )

    def subgraph(self, node: NodeSpec) -> AgentGraph | None:
        """The pinned graph a sub-graph task runs (None: no such reference, or generated)."""
        if node.graph is None or node.graph == GENERATED:
            return None
        return (self.subgraphs or {}).get(node.graph)

    def node(self, name: str) -> NodeSpec:
        """Return the node called ``name``; KeyError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def start_node(self) -> str:
        """Name of the node a lifetime starts at."""
        return self.start or self.nodes[0].name

    def out_edges(self, name: str) -> list[EdgeSpec]:
        """Edges leaving node ``name``, in definition order."""
        return [edge for edge in self.edges if edge.source == name]

    def task_next(self, task: str) -> list[str]:
        """Where task ``task``'s one out-edge leads: its target, ``END`` for a FINAL edge."""
        edges = self.out_edges(task)
        return [edges[0].target or "END"] if edges else []

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form; equal graphs hash equal whatever their source.

        A pinned guardrail policy is part of the hash (change a rule, change the hash); an
        unset one is not in the JSON at all, so graphs without one hash as they always did.
        """
        canonical = self.model_dump_json(by_alias=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def timeout(self, node: NodeSpec) -> timedelta:
        """Start-to-close timeout of one attempt of ``node``."""
        return timedelta(seconds=node.timeout_s or self.defaults.timeout_s)

    def heartbeat_timeout(self, node: NodeSpec) -> timedelta | None:
        """Heartbeat timeout of ``node``, if it has one."""
        seconds = node.heartbeat_timeout_s or self.defaults.heartbeat_timeout_s
        return timedelta(seconds=seconds) if seconds else None

    def retry(self, node: NodeSpec) -> RetrySpec:
        """Effective retry settings of ``node``: node, over graph defaults, over built-ins."""
        graph_wide = self.defaults.retry.merged_over(BUILTIN_RETRY)
        return node.retry.merged_over(graph_wide) if node.retry else graph_wide
