"""The built-in bodies of LLM nodes: ``llm_task``, ``llm_plan`` and ``llm_judge``.

Each calls the model through ``ctx.llm`` (`graphrunner.llm.LlmClient`, which the LLM runtime
puts on the context; its usage adds to the attempt's telemetry) and checks the answer here:

- An answer that must be JSON of a shape (a task's ``output``, a plan's choice, a judge's
  grades) is parsed and validated; one that does not fit is sent back with the errors, at
  most ``max_reasks`` times. Every re-ask is kept in the execution record's ``notes``
  (``{"reasks": [{"answer": ..., "errors": [...]}]}``), never in the output the graph sees.
  When the re-asks run out, the node fails for good (``LlmBadAnswer``) naming the node and
  the last errors; an ``llm_plan`` with a ``default`` takes it instead.
- A task with ``tools`` returns the tool calls the model asked for (`ToolRound`); the
  lifetime workflow runs them, each its own activity, and calls this body again with their
  results (`LlmTurn`). The conversation goes to the blob store between rounds once it is
  larger than a few KiB, so history keeps a reference, not the whole conversation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphrunner._llm_wire import (
    INLINE_CONVERSATION_BYTES,
    LlmTurn,
    ToolRequest,
    ToolRound,
)
from graphrunner._sdk import NodeContext
from graphrunner._tools import load_tool
from graphrunner._types import NodeOutput, PlanResult, TaskResult
from graphrunner._values import clip
from graphrunner.errors import FailureType
from graphrunner.graph._human import answer_problems, render_prompt
from graphrunner.graph._llm import LlmSpec, Rubric
from graphrunner.graph._validate import import_impl
from graphrunner.llm._types import LlmClient, LlmReply
from graphrunner.stores._blobs import BlobStore

__all__ = ["FINISH", "LlmNodes", "Notes"]

FINISH: Final = "finish"
"""What an ``llm_plan``'s model answers to take the plan's FINAL edge."""
_ANSWER_SHOWN: Final = 2000  # characters of a bad answer kept in notes and failures
Notes = dict[str, Any]


def _llm(ctx: NodeContext, node: str) -> LlmClient:
    """``ctx.llm``, which the LLM runtime sets; a clear failure on a worker without one."""
    client = getattr(ctx, "llm", None)
    if client is None:
        raise ApplicationError(
            f"node '{node}' calls a model, but this worker has no LLM runtime (ctx.llm)",
            type=FailureType.IMPL_NOT_FOUND,
            non_retryable=True,
        )
    return cast(LlmClient, client)


def _messages(spec: LlmSpec, data: Any, extra_system: str = "") -> list[dict[str, Any]]:
    system = render_prompt(spec.system, data) if spec.system else ""
    system = "\n\n".join(part for part in (system, extra_system) if part)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": render_prompt(spec.prompt, data)})
    return messages


def _parse_json(text: str) -> tuple[Any, list[str]]:
    """The JSON value of an answer (fences around it allowed), or why it is not JSON."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        return json.loads(body), []
    except ValueError as exc:
        return None, [f"the answer is not JSON: {exc}"]


Check = Callable[[Any], tuple[Any, list[str]]]
"""Validates a parsed answer: (the value to keep, problems)."""


def _schema_check(schema: dict[str, Any]) -> Check:
    def check(value: Any) -> tuple[Any, list[str]]:
        return value, answer_problems(schema, value)

    return check


def _model_check(model: type[BaseModel]) -> Check:
    def check(value: Any) -> tuple[Any, list[str]]:
        try:
            return model.model_validate(value).model_dump(mode="json"), []
        except ValidationError as exc:
            return None, [
                f"$.{'.'.join(map(str, e['loc']))}: {e['msg']}".replace("$.:", "$:")
                for e in exc.errors()[:5]
            ]

    return check


class _Asker:
    """Asks one node's model for JSON that fits, re-asking with the errors."""

    def __init__(
        self, ctx: NodeContext, spec: LlmSpec, where: str, notes: Notes, tools: Any = None
    ) -> None:
        self.llm = _llm(ctx, ctx.node)
        self.spec = spec
        self.where = where
        self.notes = notes
        self.tools = tools

    async def complete(
        self, messages: list[dict[str, Any]], schema: dict[str, Any] | None = None
    ) -> LlmReply:
        return await self.llm.complete(
            messages,
            tier=self.spec.tier,
            response_format=schema,
            tools=self.tools,
            temperature=self.spec.temperature,
            max_tokens=self.spec.max_tokens,
        )

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        check: Check,
        reply: LlmReply | None = None,
    ) -> tuple[Any, list[str]]:
        """A value that fits, or (None, the last problems) once ``max_reasks`` ran out."""
        reasks = self.notes.setdefault("reasks", [])
        while True:
            if reply is None:
                reply = await self.complete(messages, schema)
            value, problems = _parse_json(reply.text)
            if not problems:
                value, problems = check(value)
            if not problems:
                if not reasks:
                    self.notes.pop("reasks")
                return value, []
            if len(reasks) >= self.spec.max_reasks:
                return None, problems
            reasks.append({"answer": clip(reply.text, _ANSWER_SHOWN), "errors": problems})
            activity.logger.info("%s: answer re-asked: %s", self.where, "; ".join(problems))
            messages = [
                *messages,
                {"role": "assistant", "content": reply.text},
                {
                    "role": "user",
                    "content": "Your answer does not fit the required JSON Schema:\n- "
                    + "\n- ".join(problems)
                    + "\nAnswer again with only the JSON value, fixed.",
                },
            ]
            reply = None

    def failed(self, problems: list[str]) -> ApplicationError:
        asked = len(self.notes.get("reasks", []))
        return ApplicationError(
            f"{self.where}: the model's answer still did not fit after {asked} re-ask"
            f"{'s' if asked != 1 else ''} (max_reasks={self.spec.max_reasks}): "
            + "; ".join(problems),
            self.notes,
            type="LlmBadAnswer",
            non_retryable=True,
        )


class LlmNodes:
    """The built-in LLM bodies of one worker (its blob store keeps long conversations)."""

    def __init__(self, blobs: BlobStore | None = None) -> None:
        self.blobs = blobs

    # -- llm_task and llm_judge --------------------------------------------------------

    async def task(
        self, ctx: NodeContext, spec: LlmSpec, data: Any, turn: LlmTurn | None, notes: Notes
    ) -> TaskResult:
        """An ``llm_task`` (or ``llm_judge``) round: an answer, or tool calls to run."""
        where = f"task '{ctx.node}' (iteration {ctx.iteration})"
        if spec.rubric is not None:
            return await self._judge(ctx, spec, spec.rubric, data, where, notes)
        schemas = [load_tool(path).schema for path in spec.tools or []] or None
        asker = _Asker(ctx, spec, where, notes, tools=schemas)
        if turn is None:
            messages = _messages(spec, data)
        else:
            messages = await self._conversation(turn.messages, turn.messages_ref)
            messages += [
                {"role": "tool", "tool_call_id": r.id, "name": r.name, "content": r.content}
                for r in turn.results
            ]
        schema, check = self._output(spec)
        reply = await asker.complete(messages, schema)
        if reply.tool_calls and schemas:
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.text or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments),
                            },
                        }
                        for call in reply.tool_calls
                    ],
                }
            )
            round_no = turn.round if turn is not None else 1
            return TaskResult(tools=await self._round(ctx, round_no, reply, messages))
        if schema is None or check is None:
            return TaskResult(output=reply.text)
        asker.tools = None  # a re-ask is about the answer's shape
        value, problems = await asker.structured(messages, schema, check, reply)
        if problems:
            raise asker.failed(problems)
        return TaskResult(output=value)

    def _output(self, spec: LlmSpec) -> tuple[dict[str, Any] | None, Check | None]:
        if isinstance(spec.output, dict):
            return spec.output, _schema_check(spec.output)
        if isinstance(spec.output, str):
            try:
                model = import_impl(spec.output)
            except ImportError as exc:
                raise ApplicationError(
                    f"cannot import output model '{spec.output}': {exc}",
                    type=FailureType.IMPL_NOT_FOUND,
                    non_retryable=True,
                ) from None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ApplicationError(
                    f"output '{spec.output}' is not a pydantic model",
                    type=FailureType.IMPL_NOT_FOUND,
                    non_retryable=True,
                )
            return model.model_json_schema(), _model_check(model)
        return None, None

    async def _round(
        self, ctx: NodeContext, round_no: int, reply: LlmReply, messages: list[dict[str, Any]]
    ) -> ToolRound:
        calls = [
            ToolRequest(id=c.id, name=c.name, arguments=to_jsonable_python(c.arguments))
            for c in reply.tool_calls
        ]
        data = json.dumps(messages, ensure_ascii=False, default=str).encode()
        if self.blobs is None or len(data) <= INLINE_CONVERSATION_BYTES:
            return ToolRound(calls=calls, messages=messages)
        key = f"llm/{ctx.lifetime_id}/{ctx.idempotency_key.rpartition('/')[2]}.{round_no}.json"
        ref = await self.blobs.put(key, data)
        return ToolRound(calls=calls, messages_ref=ref.uri)

    async def _conversation(
        self, messages: list[dict[str, Any]] | None, ref: str | None
    ) -> list[dict[str, Any]]:
        if messages is not None:
            return list(messages)
        if ref is None or self.blobs is None:
            raise ApplicationError(
                "the conversation of this LLM task is in a blob store this worker does not have",
                type=FailureType.INTERNAL,
                non_retryable=True,
            )
        loaded: list[dict[str, Any]] = json.loads(await self.blobs.get(ref))
        return loaded

    async def _judge(
        self,
        ctx: NodeContext,
        spec: LlmSpec,
        rubric: Rubric,
        data: Any,
        where: str,
        notes: Notes,
    ) -> TaskResult:
        schema = {
            "type": "object",
            "properties": {
                "grades": {
                    "type": "object",
                    "properties": {dim: {"enum": rubric.grades} for dim in rubric.dimensions},
                    "required": rubric.dimensions,
                    "additionalProperties": False,
                },
                "notes": {"type": "string"},
            },
            "required": ["grades"],
        }
        instruction = (
            "Grade the input on each of these dimensions: "
            + ", ".join(rubric.dimensions)
            + ". Grades, best first: "
            + ", ".join(rubric.grades)
            + '. Answer with JSON only: {"grades": {"<dimension>": "<grade>", ...}, '
            '"notes": "<why, briefly>"}.'
        )
        asker = _Asker(ctx, spec, where, notes)
        value, problems = await asker.structured(
            _messages(spec, data, instruction), schema, _schema_check(schema)
        )
        if problems:
            raise asker.failed(problems)
        grades = {dim: value["grades"][dim] for dim in rubric.dimensions}
        overall = rubric.overall(grades)
        return TaskResult(
            output={
                "grades": grades,
                "overall": overall,
                "passed": rubric.passes(overall),
                "notes": str(value.get("notes", "")),
            }
        )

    # -- llm_plan --------------------------------------------------------------------------

    async def plan(
        self,
        ctx: NodeContext,
        spec: LlmSpec,
        results: list[NodeOutput],
        *,
        joined: bool,
        can_finish: bool,
        described: dict[str, str],
        notes: Notes,
    ) -> PlanResult:
        """An ``llm_plan``: the model chooses one declared successor (or ``finish``)."""
        where = f"plan '{ctx.node}' (iteration {ctx.iteration})"
        data = [r.output for r in results] if joined or len(results) != 1 else results[0].output
        choices = [*ctx.successors, *([FINISH] if can_finish else [])]
        schema = {
            "type": "object",
            "properties": {"next": {"enum": choices}, "reason": {"type": "string"}},
            "required": ["next"],
        }
        listed = "\n".join(
            f"- {name}" + (f": {described[name]}" if described.get(name) else "")
            for name in ctx.successors
        )
        instruction = (
            "Choose what runs next, one of:\n"
            + listed
            + (f"\n- {FINISH}: end here with the input as the result" if can_finish else "")
            + '\nAnswer with JSON only: {"next": "<choice>", "reason": "<why, briefly>"}.'
        )
        asker = _Asker(ctx, spec, where, notes)
        value, problems = await asker.structured(
            _messages(spec, data, instruction), schema, _schema_check(schema)
        )
        if problems:
            chosen = [_chosen(r["answer"]) for r in notes.get("reasks", [])] + [
                "(last answer) " + "; ".join(problems)
            ]
            if spec.default is None:
                raise ApplicationError(
                    f"{where}: the model did not choose one of its successors "
                    f"({', '.join(choices)}) in {spec.max_reasks + 1} answers (chose: "
                    f"{', '.join(chosen)}), and the plan has no 'default'",
                    notes,
                    type=FailureType.UNDECLARED_SUCCESSOR,
                    non_retryable=True,
                )
            notes["default_taken"] = spec.default
            choice = spec.default
        else:
            choice = value["next"]
            notes["reason"] = clip(str(value.get("reason", "")), _ANSWER_SHOWN)
        if choice == FINISH:
            return PlanResult(output=data)
        return PlanResult(next_task_names=[choice], data=data)


def _chosen(answer: str) -> str:
    value, problems = _parse_json(answer)
    if not problems and isinstance(value, dict) and "next" in value:
        return repr(value["next"])
    return repr(clip(answer, 80))
