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

from graphrunner.graph._model import AgentGraph

__all__ = ["lookup", "pin"]

_CACHE_SIZE = 256
_graphs: OrderedDict[str, AgentGraph] = OrderedDict()
_lock = threading.Lock()  # workflows of one worker run on several threads


def pin(graph: AgentGraph, graph_hash: str) -> None:
    """Remember ``graph`` under ``graph_hash`` (the caller has checked that they match)."""
    with _lock:
        _graphs[graph_hash] = graph
        _graphs.move_to_end(graph_hash)
        while len(_graphs) > _CACHE_SIZE:
            _graphs.popitem(last=False)


def lookup(graph_hash: str) -> AgentGraph | None:
    """The graph pinned under ``graph_hash`` in this process, if any."""
    with _lock:
        graph = _graphs.get(graph_hash)
        if graph is not None:
            _graphs.move_to_end(graph_hash)
        return graph
