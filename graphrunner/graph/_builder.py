"""Build an AgentGraph in Python; produces the same validated model as the YAML loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ValidationError

from graphrunner._yaml import Composed
from graphrunner.errors import GraphError, GraphIssue
from graphrunner.graph._loader import (
    _best_effort,
    _pydantic_issues,
    _resolve_guardrails,
    load_graph,
)
from graphrunner.graph._model import (
    GENERATED,
    AgentGraph,
    EdgeType,
    GraphDefaults,
    NodeKind,
    StateField,
)
from graphrunner.graph._state_schema import state_fields
from graphrunner.graph._validate import validate_graph
from graphrunner.guardrails._policy import Policy

if TYPE_CHECKING:
    from graphrunner._functions import NodeFunction

__all__ = ["GraphBuilder"]


def _impl_path(impl: type | NodeFunction[..., Any] | str) -> str:
    """The ``module:Name`` path a worker imports ``impl`` by (validation checks it)."""
    if isinstance(impl, str):
        return impl
    return f"{impl.__module__}:{impl.__qualname__}"


class GraphBuilder:
    """Fluent builder for `AgentGraph`.

    Example:
        >>> graph = (
        ...     GraphBuilder("hello", version="1.0.0")
        ...     .task("greet", Greet)
        ...     .plan("decide", Decide)
        ...     .edge("greet", "decide")
        ...     .edge("decide", "greet")
        ...     .final("decide")
        ...     .build()
        ... )
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.1.0",
        description: str = "",
        defaults: GraphDefaults | None = None,
    ) -> None:
        self._head: dict[str, Any] = {"name": name, "version": version, "description": description}
        if defaults is not None:
            self._head["defaults"] = defaults
        self._nodes: list[dict[str, Any]] = []
        # Plain mappings until build(), so every shape error is reported there, as one GraphError.
        self._edges: list[dict[str, Any]] = []
        self._guardrails: Policy | str | Path | None = None
        self._subgraphs: dict[str, AgentGraph] = {}
        self._subgraph_issues: list[GraphIssue] = []

    def task(self, name: str, impl: type | NodeFunction[..., Any] | str, **options: Any) -> Self:
        """Add a Task node: a `Task` subclass, an ``@task`` function, or its import path.

        ``options`` are NodeSpec fields (timeout_s, retry, config ...).
        """
        self._nodes.append(
            {"name": name, "kind": NodeKind.TASK, "impl": _impl_path(impl), **options}
        )
        return self

    def plan(
        self, name: str, impl: type | NodeFunction[..., Any] | str | None = None, **options: Any
    ) -> Self:
        """Add a Plan node (a `Plan` subclass, an ``@plan`` function, or its import path).

        Without ``impl`` the plan routes by the ``when`` conditions of its edges (give them
        with `edge`, `parallel` and `final`) and runs as a local activity unless
        ``local=False``. ``local=True`` runs any plan as a local activity.
        """
        spec: dict[str, Any] = {"name": name, "kind": NodeKind.PLAN, **options}
        if impl is not None:
            spec["impl"] = _impl_path(impl)
        self._nodes.append(spec)
        return self

    def human(
        self,
        name: str,
        *,
        prompt: str,
        response: type[BaseModel] | dict[str, Any] | None = None,
        timeout_s: float | None = None,
        on_timeout: str | dict[str, Any] = "fail",
        assignee: str | None = None,
        labels: list[str] | None = None,
        state: str | None = None,
        **options: Any,
    ) -> Self:
        """Add a human-input Task: the lifetime asks ``prompt`` and waits for an answer.

        Args:
            name: The task's name.
            prompt: The question, a template over the task's data (``{key.sub}``).
            response: The answer's schema: a pydantic model (its JSON Schema is pinned; the
                workflow never imports it) or a JSON Schema. None: any JSON value.
            timeout_s: How long to wait; None waits for ever.
            on_timeout: ``"fail"`` (the task fails) or ``{"respond": answer}``.
            assignee: Who should answer (shown in pending lists).
            labels: Shown in pending lists.
            state: A declared state field the answer is folded into.
            options: Other NodeSpec fields (description, max_iterations ...).
        """
        human: dict[str, Any] = {"prompt": prompt, "on_timeout": on_timeout}
        if isinstance(response, type) and issubclass(response, BaseModel):
            human["model"] = f"{response.__module__}:{response.__qualname__}"
            human["response"] = response.model_json_schema()
        elif response is not None:
            human["response"] = response
        for key, value in (
            ("timeout_s", timeout_s),
            ("assignee", assignee),
            ("labels", labels),
            ("state", state),
        ):
            if value is not None:
                human[key] = value
        self._nodes.append({"name": name, "kind": NodeKind.TASK, "human": human, **options})
        return self

    def llm_task(
        self,
        name: str,
        *,
        prompt: str = "{}",
        system: str | None = None,
        output: type[BaseModel] | dict[str, Any] | str | None = None,
        tier: str = "standard",
        tools: list[Callable[..., Any] | str] | None = None,
        **llm: Any,
    ) -> Self:
        """Add an ``llm_task``: a task that asks a model instead of running code.

        Args:
            name: The task's name.
            prompt: The user message, a template over the task's input (``{key.sub}``).
            system: The system message, a template too.
            output: The answer's shape: a pydantic model (named by its import path, which a
                worker imports), a JSON Schema, or ``package.module:Model``; None: text.
            tier: The model tier.
            tools: Functions the model may call (or their ``package.module:function``).
            llm: Other ``llm`` fields (``max_reasks``, ``temperature``, ``max_tokens``,
                ``max_tool_rounds``) and NodeSpec fields (``timeout_s``, ``retry`` ...).
        """
        spec: dict[str, Any] = {"tier": tier, "prompt": prompt}
        if system is not None:
            spec["system"] = system
        if output is not None:
            spec["output"] = _impl_path(output) if isinstance(output, type) else output
        if tools is not None:
            spec["tools"] = [
                tool if isinstance(tool, str) else f"{tool.__module__}:{tool.__qualname__}"
                for tool in tools
            ]
        return self._llm_node(name, NodeKind.TASK, spec, llm)

    def llm_plan(
        self,
        name: str,
        *,
        prompt: str = "{}",
        system: str | None = None,
        tier: str = "standard",
        default: str | None = None,
        **llm: Any,
    ) -> Self:
        """Add an ``llm_plan``: the model chooses one of the plan's declared successors.

        Args:
            name: The plan's name.
            prompt: The user message, a template over the plan's input (the last result's
                output; a JOIN's list of outputs).
            system: The system message.
            tier: The model tier.
            default: The successor (or ``finish``) taken when the model keeps choosing one
                the plan does not have; None: the plan fails then.
            llm: Other ``llm`` fields (``max_reasks``, ``temperature`` ...) and NodeSpec fields.
        """
        spec: dict[str, Any] = {"tier": tier, "prompt": prompt}
        if system is not None:
            spec["system"] = system
        if default is not None:
            spec["default"] = default
        return self._llm_node(name, NodeKind.PLAN, spec, llm)

    def llm_judge(
        self,
        name: str,
        *,
        dimensions: list[str],
        passing: str,
        grades: list[str] | None = None,
        prompt: str = "{}",
        system: str | None = None,
        tier: str = "standard",
        **llm: Any,
    ) -> Self:
        """Add an ``llm_judge``: a task that grades its input on each rubric dimension.

        Its output is ``{"grades": {dimension: grade}, "overall": grade, "passed": bool,
        "notes": str}``; a routing plan after it can gate on ``output.passed``.

        Args:
            name: The task's name.
            dimensions: What is graded (e.g. coverage, consistency).
            passing: The lowest passing grade (``pass`` in YAML).
            grades: The grades, best first (default S, A, B, C, D, F).
            prompt: The user message, a template over the input.
            system: The system message.
            tier: The model tier.
            llm: Other ``llm`` fields and NodeSpec fields.
        """
        rubric: dict[str, Any] = {"dimensions": dimensions, "pass": passing}
        if grades is not None:
            rubric["grades"] = grades
        spec: dict[str, Any] = {"tier": tier, "prompt": prompt, "rubric": rubric}
        if system is not None:
            spec["system"] = system
        return self._llm_node(name, NodeKind.TASK, spec, llm)

    def _llm_node(
        self, name: str, kind: NodeKind, spec: dict[str, Any], options: dict[str, Any]
    ) -> Self:
        from graphrunner.graph._llm import LlmSpec

        llm_fields = set(LlmSpec.model_fields) - {"rubric"}
        for key in [key for key in options if key in llm_fields]:
            spec[key] = options.pop(key)
        self._nodes.append({"name": name, "kind": kind, "llm": spec, **options})
        return self

    def subgraph(self, name: str, graph: AgentGraph | str | Path, **options: Any) -> Self:
        """Add a Task node that runs another graph as a child lifetime.

        Args:
            name: The task's name.
            graph: An `AgentGraph` (pinned as ``name@version``), the path of its YAML (loaded
                now; its problems are reported by `build`), or ``"generated"``: the graph the
                plan that chooses this task returns (`PlanResult.goto(..., graph=...)`).
            options: NodeSpec fields: ``task_queue`` (where the child runs), ``timeout_s``
                (the child lifetime's execution timeout), ``max_iterations`` ...
        """
        ref: str
        if isinstance(graph, AgentGraph):
            ref = f"{graph.name}@{graph.version}"
            self._subgraphs[ref] = graph
        elif str(graph) == GENERATED:
            ref = GENERATED
        else:
            ref = str(graph)
            try:
                self._subgraphs[ref] = load_graph(graph)
            except GraphError as exc:
                self._subgraph_issues += exc.issues
        self._nodes.append({"name": name, "kind": NodeKind.TASK, "graph": ref, **options})
        return self

    def start(self, name: str) -> Self:
        """Set the start node (by default the first node added)."""
        self._head["start"] = name
        return self

    def edge(
        self, source: str, target: str, type: EdgeType = EdgeType.NORMAL, *, when: str | None = None
    ) -> Self:
        """Add an edge ``source -> target``; ``when``: its condition (a plan without impl)."""
        edge: dict[str, Any] = {"from": source, "to": target, "type": type}
        if when is not None:
            edge["when"] = when
        self._edges.append(edge)
        return self

    def parallel(self, source: str, *targets: str, when: str | None = None) -> Self:
        """Add PARALLEL edges from plan ``source`` to each task in ``targets`` (each ``when``)."""
        for target in targets:
            self.edge(source, target, EdgeType.PARALLEL, when=when)
        return self

    def join(self, target: str, *sources: str) -> Self:
        """Add JOIN edges from each task in ``sources`` into plan ``target``."""
        for source in sources:
            self.edge(source, target, EdgeType.JOIN)
        return self

    def final(self, source: str, *, when: str | None = None) -> Self:
        """Add a FINAL edge: taking it from ``source`` ends the lifetime (``when`` it holds)."""
        edge: dict[str, Any] = {"from": source, "type": EdgeType.FINAL}
        if when is not None:
            edge["when"] = when
        self._edges.append(edge)
        return self

    def state(self, fields: type[BaseModel] | Mapping[str, StateField | Mapping[str, Any]]) -> Self:
        """Declare the lifetime state: a pydantic model or a mapping of field -> spec.

        A model's fields take their reducers from ``Annotated[..., reducer("add")]``
        (`graphrunner.reducer`), their types from the model's JSON Schema and their defaults
        from the model; the graph pins the result as plain JSON, as a YAML ``state:`` section.
        """
        if isinstance(fields, type) and issubclass(fields, BaseModel):
            self._head["state"] = state_fields(fields)
        else:
            self._head["state"] = dict(fields)
        return self

    def guardrails(self, policy: Policy | str | Path) -> Self:
        """Pin the graph's own guardrail policy into it.

        Args:
            policy: A `Policy`, or the path of a policy YAML file (relative to the current
                directory), loaded by `build` so its problems are reported with the rest.
        """
        self._guardrails = policy
        return self

    def build(self, *, check_imports: bool = True) -> AgentGraph:
        """Validate and return the graph.

        Raises:
            GraphError: With every problem found, those of a guardrail policy file included.
        """
        data = {**self._head, "nodes": self._nodes, "edges": self._edges}
        if self._subgraphs:
            data["subgraphs"] = self._subgraphs
        policy_issues: list[GraphIssue] = list(self._subgraph_issues)
        if isinstance(self._guardrails, str | Path):
            policy, policy_issues = _resolve_guardrails(
                str(self._guardrails), file="<builder>", line=None
            )
            if policy is not None:
                data["guardrails"] = policy
        elif self._guardrails is not None:
            data["guardrails"] = self._guardrails
        try:
            graph = AgentGraph.model_validate(data)
        except ValidationError as exc:
            # Schema problems hide no graph-wide one: check what is left, as the loader does.
            issues = _pydantic_issues(exc, data, "<builder>", lambda _loc: None)
            best, unknowns = _best_effort(data, exc, Composed())
            if best is not None:
                issues += validate_graph(
                    best, file="<builder>", check_imports=check_imports, unknowns=unknowns
                )
            raise GraphError(policy_issues + issues) from None
        issues = policy_issues + validate_graph(
            graph, file="<builder>", check_imports=check_imports
        )
        if issues:
            raise GraphError(issues)
        return graph
