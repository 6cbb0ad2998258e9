"""Checks a worker makes on a pinned graph before running it, cached by content hash.

Imported through the sandbox's pass-through, so the cache lives as long as the worker and a
graph is validated once per worker however many lifetimes run it.
"""

from __future__ import annotations

import threading

from graphrunner.errors import GraphIssue
from graphrunner.graph._model import AgentGraph
from graphrunner.graph._validate import validate_graph

__all__ = ["graph_issues", "graph_problems"]

_CACHE_SIZE = 1024
_checked: dict[str, tuple[GraphIssue, ...]] = {}
_lock = threading.Lock()  # workflows of one worker run on several threads


def graph_problems(graph: AgentGraph, graph_hash: str) -> tuple[str, ...]:
    """Every rule ``graph`` breaks (empty when valid), as ``graphrunner validate`` says them."""
    return tuple(str(issue) for issue in graph_issues(graph, graph_hash))


def graph_issues(graph: AgentGraph, graph_hash: str) -> tuple[GraphIssue, ...]:
    """Every rule ``graph`` breaks (empty when valid), checked once per process and hash.

    Node implementations are not imported here (the workflow may not import): the node
    activities check them when they run. Clients starting many lifetimes of one graph use
    the same cache.
    """
    with _lock:
        found = _checked.get(graph_hash)
    if found is None:
        found = tuple(validate_graph(graph, check_imports=False))
        with _lock:
            if len(_checked) >= _CACHE_SIZE:
                _checked.pop(next(iter(_checked)))
            _checked[graph_hash] = found
    return found
