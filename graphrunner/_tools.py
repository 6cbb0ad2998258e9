"""Tools of built-in LLM tasks: plain Python functions the model may call.

A tool is ``package.module:function``, sync or async, with typed parameters. Its JSON Schema
(what the model is shown) comes from its signature through pydantic, its description from
its docstring's first paragraph; a call's arguments are validated by the same model before
the function runs. Imports user code: validation and the tool activity call this, never the
workflow.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

__all__ = ["Tool", "load_tool", "tool_schema"]


@dataclass(frozen=True)
class Tool:
    """A loaded tool: its function, argument model and OpenAI tool schema."""

    path: str
    fn: Callable[..., Any]
    args: type[BaseModel]
    schema: dict[str, Any]

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Validate ``arguments`` and call the function (a sync one in a thread).

        Raises:
            ValueError: The arguments do not fit the signature (the model is told why).
        """
        import asyncio

        try:
            parsed = self.args.model_validate(arguments)
        except ValidationError as exc:
            shown = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            name = self.schema["function"]["name"]
            raise ValueError(f"bad arguments for {name}: {shown}") from None
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)


@functools.lru_cache(maxsize=256)
def load_tool(path: str) -> Tool:
    """Import the tool ``path`` names and derive its schema.

    Raises:
        ImportError: The path is malformed, or its module or function cannot be imported.
        TypeError: It is not a function, or a parameter is not typed / not keyword-able.
    """
    from graphrunner.graph._llm import tool_name
    from graphrunner.graph._validate import import_impl

    fn = import_impl(path)
    if not inspect.isfunction(fn):
        raise TypeError(f"a tool is a plain function (sync or async); found {type(fn).__name__}")
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn, eval_str=True).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"parameter '{param.name}' cannot be passed by name from JSON")
        if param.annotation is param.empty:
            raise TypeError(f"parameter '{param.name}' has no type annotation")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (param.annotation, default)
    name = tool_name(path)
    args = create_model(f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields)
    doc = inspect.getdoc(fn) or ""
    parameters = args.model_json_schema()
    parameters.pop("title", None)
    schema = {
        "type": "function",
        "function": {
            "name": name,
            "description": doc.split("\n\n", 1)[0].strip()[:1024],
            "parameters": parameters,
        },
    }
    return Tool(path=path, fn=fn, args=args, schema=schema)


def tool_schema(path: str) -> dict[str, Any]:
    """The OpenAI tool schema of the tool ``path`` names (see `load_tool`)."""
    return load_tool(path).schema
