"""Long-lived resources nodes share within a worker: an HTTP client, a database pool.

A `resource` is declared once, in code, next to the nodes that use it; each worker creates
it on first use (once, however many executions ask at the same moment), hands the same value
to every later execution, and closes it when the worker shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar, cast

__all__ = ["Resource", "Resources", "resource"]

T = TypeVar("T")


class Resource(Generic[T]):
    """A shared value made by an async context manager: entered once, exited at shutdown.

    Declare one with `resource`; a node gets its value with ``await ctx.resource(r)``.

    Attributes:
        name: The factory's qualified name, for messages.
    """

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[T]], name: str) -> None:
        self.factory = factory
        self.name = name

    def __repr__(self) -> str:
        return f"<resource {self.name}>"


def resource(
    fn: Callable[[], AsyncIterator[T]] | Callable[[], AbstractAsyncContextManager[T]],
) -> Resource[T]:
    """Declare a resource from an async generator (or a function returning an async CM).

    The code before ``yield`` creates the value, the code after it closes it:

    Example:
        >>> @resource
        ... async def http() -> AsyncIterator[httpx.AsyncClient]:
        ...     async with httpx.AsyncClient(timeout=10) as client:
        ...         yield client
        >>> @task
        ... async def fetch(ctx: NodeContext, url: str) -> str:
        ...     client = await ctx.resource(http)
        ...     return (await client.get(url)).text
    """
    name = f"{fn.__module__}:{fn.__qualname__}"
    if inspect.isasyncgenfunction(fn):
        factory = cast(
            "Callable[[], AbstractAsyncContextManager[T]]", contextlib.asynccontextmanager(fn)
        )
    elif callable(fn):
        factory = cast("Callable[[], AbstractAsyncContextManager[T]]", fn)
    else:
        raise TypeError(f"@resource needs an async generator function, not {fn!r}")
    return Resource(factory, name)


class Resources:
    """The resources one worker has created; `aclose` closes them, newest first.

    Safe for concurrent executions on the worker's event loop: a resource asked for by many
    executions at once is created by the first and awaited by the rest. A creation that
    fails is not kept; the next use tries again.
    """

    def __init__(self) -> None:
        self._values: dict[Resource[Any], Any] = {}
        self._locks: dict[Resource[Any], asyncio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()
        self._closed = False

    async def get(self, res: Resource[T]) -> T:
        """The value of ``res``, created on first use.

        Raises:
            RuntimeError: The worker is shutting down (its resources are closed).
        """
        if res in self._values:
            return cast("T", self._values[res])
        lock = self._locks.setdefault(res, asyncio.Lock())
        async with lock:
            if res in self._values:
                return cast("T", self._values[res])
            if self._closed:
                raise RuntimeError(f"resource {res.name}: the worker's resources are closed")
            value = await self._stack.enter_async_context(res.factory())
            self._values[res] = value
            return value

    async def aclose(self) -> None:
        """Close every resource created, newest first; later `get` calls fail."""
        self._closed = True
        self._values.clear()
        await self._stack.aclose()
