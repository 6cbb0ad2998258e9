"""graphrunner's Temporal search attributes: what the Web UI and ``--query`` filter on.

The client sets them when it starts a lifetime; the lifetime keeps ``GraphrunnerStatus``
and ``GraphrunnerCostUsd`` current as it runs (`graphrunner.workflows._phase`). A server
needs them registered first: ``graphrunner dev`` does it for its embedded server,
``graphrunner setup`` on an existing one.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from graphrunner._types import LifetimePhase

__all__ = [
    "COST_KEY",
    "FORK_KEY",
    "GRAPH_KEY",
    "SEARCH_ATTRIBUTES",
    "STATUS_KEY",
    "TENANT_KEY",
    "VERSION_KEY",
    "start_attributes",
    "type_name",
]

GRAPH_KEY = SearchAttributeKey.for_keyword("GraphrunnerGraph")
VERSION_KEY = SearchAttributeKey.for_keyword("GraphrunnerVersion")
TENANT_KEY = SearchAttributeKey.for_keyword("GraphrunnerTenant")
#: running, waiting, paused, completed, failed, aborted, cancelled (`LifetimePhase`).
STATUS_KEY = SearchAttributeKey.for_keyword("GraphrunnerStatus")
#: What the lifetime's executions (children included) reported spending so far, in USD.
COST_KEY = SearchAttributeKey.for_float("GraphrunnerCostUsd")
#: Set on a fork only: the lifetime and step it was forked from, ``<parent id>#<step>``.
FORK_KEY = SearchAttributeKey.for_keyword("GraphrunnerForkOf")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    GRAPH_KEY,
    VERSION_KEY,
    TENANT_KEY,
    STATUS_KEY,
    COST_KEY,
    FORK_KEY,
)

_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def type_name(value_type: SearchAttributeIndexedValueType | int) -> str:
    """A search attribute type as the ``temporal`` CLI spells it (``Keyword``, ``Double``)."""
    return _TYPE_NAMES.get(SearchAttributeIndexedValueType(value_type), str(value_type))


def start_attributes(
    graph: str, version: str, tenant: str, *, only: set[str] | None = None
) -> TypedSearchAttributes:
    """The search attributes a lifetime starts with (``only``: those of these names)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(GRAPH_KEY, graph),
        SearchAttributePair(VERSION_KEY, version),
        SearchAttributePair(TENANT_KEY, tenant),
        SearchAttributePair(STATUS_KEY, LifetimePhase.RUNNING.value),
        SearchAttributePair(COST_KEY, 0.0),
    ]
    return TypedSearchAttributes([p for p in pairs if only is None or p.key.name in only])
