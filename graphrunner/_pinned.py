"""Pinned graphs by content hash, shared by the lifetime workflow and the node activities.

A node activity's call names its graph only by hash (see `graphrunner._types.TaskCall`). The
workflow, which holds the pinned graph in its input, leaves it here when a lifetime starts
(this module is passed through the sandbox, so workflow and activities of one worker share
it); an activity on a worker that has not seen the graph reads it from the lifetime's own
history (`graphrunner.activities._graphs`) and leaves it here too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from graphrunner._types import GRAPH_KEY_LENGTH
from graphrunner.graph._model import AgentGraph

__all__ = ["lookup", "pin"]

# Keyed by the first GRAPH_KEY_LENGTH hex digits of the hash, which node calls carry.

_CACHE_SIZE = 256
_graphs: OrderedDict[str, tuple[AgentGraph, str]] = OrderedDict()
_lock = threading.Lock()  # workflows of one worker run on several threads


def pin(graph: AgentGraph, graph_hash: str) -> None:
    """Remember ``graph`` with its full ``graph_hash`` (the caller has checked they match)."""
    key = graph_hash[:GRAPH_KEY_LENGTH]
    with _lock:
        _graphs[key] = graph, graph_hash
        _graphs.move_to_end(key)
        while len(_graphs) > _CACHE_SIZE:
            _graphs.popitem(last=False)


def lookup(key: str) -> tuple[AgentGraph, str] | None:
    """The graph pinned under ``key`` (a hash or its prefix) and its full hash, if any."""
    key = key[:GRAPH_KEY_LENGTH]
    with _lock:
        found = _graphs.get(key)
        if found is not None:
            _graphs.move_to_end(key)
        return found
