"""Function nodes: `task` and `plan` make plain async functions graph nodes.

The class form (`Task`, `Plan`) and the function form run the same way; `node_body` turns
either into the one coroutine function the node activities call, and tells graph
validation what is wrong with anything else.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import TypeAdapter, ValidationError
from temporalio.exceptions import ApplicationError

from graphrunner._sdk import NodeContext, Plan, Task
from graphrunner.errors import FailureType
from graphrunner.graph._model import NodeKind

__all__ = ["NodeBody", "NodeFunction", "node_body", "plan", "task"]

P = ParamSpec("P")
R = TypeVar("R")

NodeBody = Callable[[NodeContext, Any], Awaitable[Any]]
"""What a node activity calls: ``body(ctx, data)`` (a plan's data is its upstream results)."""

_MAX_SHOWN_ERRORS = 3


class NodeFunction(Generic[P, R]):
    """An async function made a Task or Plan node by `task` or `plan`.

    Calling it calls the function unchanged, so it can be tested directly. A node's ``impl``
    names it like a class (``package.module:fetch``); `GraphBuilder.task` and
    `GraphBuilder.plan` take it as it is.

    Attributes:
        kind: ``task`` or ``plan``.
        fn: The decorated function.
    """

    def __init__(self, fn: Callable[P, Awaitable[R]], kind: NodeKind) -> None:
        name = getattr(fn, "__qualname__", repr(fn))
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@{kind.value} needs an 'async def' function; {name} is not one")
        params = list(inspect.signature(fn).parameters.values())
        positional = [
            p
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        extra = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
        if len(positional) > 2 or extra:
            raise TypeError(
                f"@{kind.value} function {name} must take (ctx, {_data_name(kind)}), "
                f"({_data_name(kind)}) or (ctx); it takes ({', '.join(p.name for p in params)})"
            )
        self.kind = kind
        self.fn = fn
        self._params = positional
        functools.update_wrapper(self, fn)
        # What GraphBuilder names the node's impl by: the function's own module and name.
        self.__module__: str = fn.__module__
        self.__qualname__: str = name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """Call the function itself."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.kind.value} function {self.fn.__module__}:{self.fn.__qualname__}>"

    @functools.cached_property
    def _shape(self) -> tuple[bool, bool, tuple[TypeAdapter[Any], str] | None]:
        """Whether the function takes the context and the data, and the data's validator.

        Resolved on first use, not at decoration: annotations may name types defined later
        in the module.
        """
        hints = typing.get_type_hints(self.fn)
        takes_ctx, takes_data = len(self._params) == 2, len(self._params) >= 1
        if len(self._params) == 1:
            only = self._params[0]
            hint = hints.get(only.name)
            takes_ctx = hint is NodeContext or (hint is None and only.name == "ctx")
            takes_data = not takes_ctx
        check = None
        if takes_data and self.kind is NodeKind.TASK:
            hint = hints.get(self._params[-1].name, Any)
            if hint is not Any:
                check = TypeAdapter(hint), hint.__name__ if isinstance(hint, type) else str(hint)
        return takes_ctx, takes_data, check

    async def run(self, ctx: NodeContext, data: Any) -> Any:
        """Run the function for one execution, the task's input checked against its type."""
        try:
            takes_ctx, takes_data, check = self._shape
        except Exception as exc:  # an annotation that names nothing importable
            raise ApplicationError(
                f"{self.kind.value} '{ctx.node}': cannot read the annotations of "
                f"{self.fn.__qualname__}: {type(exc).__name__}: {exc}",
                type=FailureType.BAD_NODE_INPUT,
                non_retryable=True,
            ) from None
        if check is not None:
            data = self._validated(*check, ctx, data)
        args = ([ctx] if takes_ctx else []) + ([data] if takes_data else [])
        fn: Callable[..., Awaitable[Any]] = self.fn
        return await fn(*args)

    def _validated(
        self, adapter: TypeAdapter[Any], type_name: str, ctx: NodeContext, data: Any
    ) -> Any:
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            shown = "; ".join(_describe(e) for e in errors[:_MAX_SHOWN_ERRORS])
            more = len(errors) - _MAX_SHOWN_ERRORS
            raise ApplicationError(
                f"task '{ctx.node}' (iteration {ctx.iteration}) cannot take its input as "
                f"{type_name} ({self.fn.__module__}:{self.fn.__qualname__}): {shown}"
                + (f"; and {more} more" if more > 0 else ""),
                type=FailureType.BAD_NODE_INPUT,
                non_retryable=True,  # the same input fails every attempt
            ) from None


def _data_name(kind: NodeKind) -> str:
    return "data" if kind is NodeKind.TASK else "results"


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    got = repr(error["input"])
    got = got if len(got) <= 80 else got[:77] + "..."
    where = f"field '{loc}'" if loc else "the input"
    return f"{where}: {error['msg']} (got {got})"


def task(fn: Callable[P, Awaitable[R]]) -> NodeFunction[P, R]:
    """Make an async function a Task node.

    It takes ``(ctx, data)``, ``(data)`` or ``(ctx)``. When ``data`` is annotated (a
    pydantic model or any type pydantic validates), the input is validated into it first; an
    input that does not fit fails the node at once, not retried, with ``BadNodeInput``
    naming the node and the field. It returns a `TaskResult` or any JSON-serialisable value,
    taken as the output.

    Example:
        >>> @task
        ... async def fetch(ctx: NodeContext, query: Query) -> dict[str, Any]:
        ...     return {"hits": await search(query.text)}
    """
    return NodeFunction(fn, NodeKind.TASK)


def plan(fn: Callable[P, Awaitable[R]]) -> NodeFunction[P, R]:
    """Make an async function a Plan node.

    It takes ``(ctx, results)``, ``(results)`` or ``(ctx)``, where ``results`` is the list
    of upstream `NodeOutput`s, and returns a `PlanResult`.

    Example:
        >>> @plan
        ... async def route(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
        ...     return PlanResult.finish(results[0].output)
    """
    return NodeFunction(fn, NodeKind.PLAN)


def node_body(impl: object, kind: NodeKind) -> NodeBody:
    """The coroutine function that runs ``impl`` as a node of ``kind``.

    Raises:
        TypeError: ``impl`` is not a `Task`/`Plan` subclass nor a function decorated with
            `task`/`plan`, or it is of the other kind. The message says which and what to do.
    """
    base: type = Task if kind is NodeKind.TASK else Plan
    wanted = f"a subclass of graphrunner.{base.__name__} or an @{kind.value} function"
    if isinstance(impl, NodeFunction):
        if impl.kind is not kind:
            raise TypeError(
                f"is an @{impl.kind.value} function; a {kind.value} node needs {wanted}"
            )
        return impl.run
    if isinstance(impl, type) and issubclass(impl, Task | Plan):
        if not issubclass(impl, base):
            other = "Plan" if base is Task else "Task"
            raise TypeError(f"is a graphrunner.{other}; a {kind.value} node needs {wanted}")
        if issubclass(impl, Task):
            return lambda ctx, data: impl().run(ctx, data)
        return lambda ctx, data: impl().decide(ctx, data)
    if inspect.isfunction(impl):
        raise TypeError(
            f"is a function not decorated with @graphrunner.{kind.value}; decorate it "
            f"(a {kind.value} node needs {wanted})"
        )
    raise TypeError(
        f"must subclass graphrunner.{base.__name__} or be an @{kind.value} function "
        f"for a {kind.value} node"
    )
