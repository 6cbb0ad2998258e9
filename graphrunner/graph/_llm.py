"""Built-in LLM nodes: the ``llm:`` section of a node, and the rules it must follow.

A node with ``llm`` and no ``impl`` runs a built-in body that calls a model through
``ctx.llm`` (`graphrunner.llm.LlmClient`):

- ``llm_task``: a task with ``llm``; renders ``system`` and ``prompt`` over its input, asks the
  model, and returns its text, or, with ``output``, the JSON it answered, validated against
  the schema (asked again, with the errors, up to ``max_reasks`` times). With ``tools`` the
  model may call Python functions, each call an activity and an execution record of its own.
- ``llm_plan``: a plan with ``llm``; the model chooses one of the plan's declared successors
  (or ``finish``), constrained by a JSON Schema enum; ``default`` is taken when it keeps
  choosing badly.
- ``llm_judge``: a task with ``llm.rubric``; grades its input on each rubric dimension and
  returns ``{"grades", "overall", "passed", "notes"}``, a quality gate for the next plan.

Like `graphrunner.graph._model`, this module is imported by the workflow: pure, no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_GRADES",
    "MAX_TOOLS",
    "MAX_TOOL_ROUNDS",
    "LlmSpec",
    "Rubric",
    "tool_name",
]

MAX_TEMPLATE: Final = 16 * 1024
"""Characters of a ``system`` or ``prompt`` template."""
MAX_TOOLS: Final = 32
MAX_TOOL_ROUNDS: Final = 100
"""Most tool rounds of one LLM task: ~12 events and, with the conversation by reference, a
few KiB of history each, so 100 rounds stay far below Temporal's history limits."""
MAX_OUTPUT_TOKENS: Final = 200_000
DEFAULT_GRADES: Final = ("S", "A", "B", "C", "D", "F")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Rubric(_Strict):
    """How an ``llm_judge`` grades: dimensions, grades best first, and the lowest passing one."""

    dimensions: list[str] = Field(
        min_length=1,
        max_length=16,
        description="What is graded, e.g. coverage, source_quality, consistency, "
        "verifiability, timeliness (1 to 16 names).",
    )
    grades: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GRADES),
        min_length=2,
        max_length=16,
        description="The grades, best first (default S, A, B, C, D, F).",
    )
    pass_grade: str = Field(
        alias="pass",
        description="The lowest passing grade: 'overall' at or above it passes.",
    )

    def rank(self, grade: str) -> int:
        """0 for the best grade; higher is worse."""
        return self.grades.index(grade)

    def overall(self, grades: dict[str, str]) -> str:
        """The worst of ``grades`` (a judge is as good as its weakest dimension)."""
        return max(grades.values(), key=self.rank)

    def passes(self, grade: str) -> bool:
        """Whether ``grade`` is at or above the passing grade."""
        return self.rank(grade) <= self.rank(self.pass_grade)


class LlmSpec(_Strict):
    """The ``llm:`` section of a node: a model call instead of code."""

    tier: str = Field(
        default="standard",
        min_length=1,
        max_length=64,
        description="The model tier: fast, standard, expert or one the worker defines.",
    )
    system: str | None = Field(
        default=None,
        max_length=MAX_TEMPLATE,
        exclude_if=lambda v: v is None,
        description="The system message, a template over the node's input ('{key.sub}').",
    )
    prompt: str = Field(
        default="{}",
        min_length=1,
        max_length=MAX_TEMPLATE,
        description="The user message, a template over the node's input: '{key}' or "
        "'{key.sub.0}' insert a value ('{}' the whole input as JSON), '{{' and '}}' a brace; "
        "nothing is evaluated. Default: the whole input.",
    )
    output: dict[str, Any] | str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="The answer's shape: a JSON Schema, or a pydantic model "
        "'package.module:Model'. The model is asked for JSON and the answer is validated; "
        "unset: the answer is text.",
    )
    max_reasks: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Times the model is asked again, with the validation errors, after an "
        "answer that does not fit (0 to 5).",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, allow_inf_nan=False, exclude_if=lambda v: v is None
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_OUTPUT_TOKENS,
        exclude_if=lambda v: v is None,
        description=f"Most tokens of one answer (1 to {MAX_OUTPUT_TOKENS:,}).",
    )
    tools: list[str] | None = Field(
        default=None,
        max_length=MAX_TOOLS,
        exclude_if=lambda v: v is None,
        description=f"Python functions the model may call, 'package.module:function' (at "
        f"most {MAX_TOOLS}); each call runs as an activity of its own.",
    )
    max_tool_rounds: int = Field(
        default=5,
        ge=1,
        le=MAX_TOOL_ROUNDS,
        description=f"Most rounds of tool calls before the task fails (1 to {MAX_TOOL_ROUNDS}).",
    )
    default: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Plans only: the successor taken when the model keeps choosing one the "
        "plan does not have (or 'finish').",
    )
    rubric: Rubric | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Makes the task a judge: it grades its input on each dimension.",
    )


def tool_name(path: str) -> str:
    """The name the model calls a tool by: the function's name in ``package.module:function``."""
    return path.rpartition(":")[2].rpartition(".")[2]


def llm_problems(
    spec: LlmSpec, *, kind: str, successors: list[str], can_finish: bool
) -> list[tuple[str, str]]:
    """(rule, message) of each problem of ``spec`` on a node of ``kind`` (no imports)."""
    from graphrunner.graph._human import schema_problems

    found: list[tuple[str, str]] = []
    if spec.default is not None:
        if kind != "plan":
            found.append(
                (
                    "llm-default",
                    "'default' is for plans: the successor taken when "
                    "the model keeps choosing badly",
                )
            )
        elif spec.default not in successors and not (spec.default == "finish" and can_finish):
            allowed = ", ".join([*successors, *(["finish"] if can_finish else [])]) or "none"
            found.append(
                (
                    "llm-default",
                    f"default '{spec.default}' is not a successor of this plan "
                    f"(allowed: {allowed})",
                )
            )
    if spec.rubric is not None:
        rubric = spec.rubric
        if kind == "plan":
            found.append(("llm-rubric", "a rubric makes a task a judge; a plan cannot have one"))
        if spec.output is not None or spec.tools:
            found.append(
                ("llm-rubric", "a judge's answer is its grades: remove 'output' and 'tools'")
            )
        for what, names in (("grades", rubric.grades), ("dimensions", rubric.dimensions)):
            if len(set(names)) != len(names):
                found.append(("llm-rubric", f"rubric.{what} has duplicates"))
            bad = [n for n in names if not _NAME.match(n)]
            if bad:
                found.append(
                    (
                        "llm-rubric",
                        f"rubric.{what}: {bad[0]!r} is not a name (letters, "
                        "digits, '_' or '-', at most 64 characters)",
                    )
                )
        if rubric.pass_grade not in rubric.grades:
            found.append(
                (
                    "llm-rubric",
                    f"rubric.pass '{rubric.pass_grade}' is not one of the "
                    f"grades ({', '.join(rubric.grades)})",
                )
            )
    if kind == "plan" and (spec.output is not None or spec.tools):
        found.append(("llm-plan", "a plan's answer is its choice: remove 'output' and 'tools'"))
    if isinstance(spec.output, dict):
        for problem in schema_problems(spec.output):
            found.append(("llm-output", f"output: {problem}"))
    elif isinstance(spec.output, str) and spec.output.count(":") != 1:
        found.append(
            (
                "llm-output",
                f"output '{spec.output}' is neither a JSON Schema nor 'package.module:Model'",
            )
        )
    names = [tool_name(t) for t in spec.tools or []]
    if len(set(names)) != len(names):
        found.append(
            ("llm-tools", "two tools share a function name; the model calls tools by name")
        )
    return found


def llm_import_problems(spec: LlmSpec) -> list[tuple[str, str]]:
    """(rule, message) of each ``output`` model or tool that cannot be imported or used.

    Imports user code: validation runs it with ``check_imports``, never the workflow.
    """
    from graphrunner._tools import tool_schema
    from graphrunner.graph._human import model_schema

    found: list[tuple[str, str]] = []
    if isinstance(spec.output, str) and spec.output.count(":") == 1:
        _, problem = model_schema(spec.output)
        if problem:
            found.append(("llm-output", f"output: {problem}"))
    for path in spec.tools or []:
        try:
            tool_schema(path)
        except (ImportError, TypeError, ValueError) as exc:
            found.append(("llm-tools", f"tool '{path}': {exc}"))
    return found
