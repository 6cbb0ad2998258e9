"""Acting on many lifetimes at once: ``graphrunner pause|resume|abort|cancel --query Q``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError

from graphrunner.errors import GraphrunnerError
from graphrunner.workflows import LIFETIME_WORKFLOW

__all__ = ["BULK_LIMIT", "BulkOutcome", "matching_lifetimes", "run_bulk"]

#: Default bound on the lifetimes one bulk action touches.
BULK_LIMIT = 1000
_CONCURRENCY = 16  # actions in flight at once


@dataclass(frozen=True)
class BulkOutcome:
    """What one action of a bulk control did to one lifetime.

    Attributes:
        lifetime_id: The lifetime.
        ok: Whether the action was carried out.
        detail: Why it was refused (the lifetime's own answer), or what was done.
    """

    lifetime_id: str
    ok: bool
    detail: str


def lifetime_query(query: str) -> str:
    """``query`` narrowed to running lifetimes (what pause, resume, abort and cancel act on)."""
    return f"({query}) AND WorkflowType = '{LIFETIME_WORKFLOW}' AND ExecutionStatus = 'Running'"


async def matching_lifetimes(temporal: Client, query: str, *, limit: int) -> list[str]:
    """Ids of the running lifetimes ``query`` matches (a Temporal visibility query).

    Raises:
        GraphrunnerError: The query is invalid, or more than ``limit`` lifetimes match
            (nothing is done: narrow the query or raise the limit).
    """
    ids: list[str] = []
    try:
        async for found in temporal.list_workflows(lifetime_query(query), limit=limit + 1):
            ids.append(found.id)
    except RPCError as exc:
        raise GraphrunnerError(f"invalid --query {query!r}: {exc.message}") from None
    if len(ids) > limit:
        raise GraphrunnerError(
            f"more than {limit} running lifetimes match {query!r}; nothing was done: narrow "
            "the query or raise --limit"
        )
    return ids


async def run_bulk(
    ids: list[str],
    act: Callable[[str], Awaitable[str]],
    *,
    concurrency: int = _CONCURRENCY,
) -> list[BulkOutcome]:
    """Run ``act`` on every lifetime, ``concurrency`` at a time; one outcome each, in order.

    ``act`` returns what it did; a `GraphrunnerError` it raises is that lifetime's refusal.
    """
    slots = asyncio.Semaphore(concurrency)

    async def one(lifetime_id: str) -> BulkOutcome:
        async with slots:
            try:
                return BulkOutcome(lifetime_id, True, await act(lifetime_id))
            except GraphrunnerError as exc:  # ControlRefused says the lifetime's own answer
                return BulkOutcome(lifetime_id, False, getattr(exc, "reason", str(exc)))

    return list(await asyncio.gather(*(one(i) for i in ids)))
