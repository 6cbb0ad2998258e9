"""Lifetime state: a graph's declared fields, their reducers, and updates applied to them.

Pure functions of JSON values and the pinned graph, so the lifetime workflow (which holds the
state), the node activities (which check an update before it leaves the worker) and the
client (which rebuilds the state after a step from its records) all reduce the same way.

A reducer never changes the value it is given: it returns a new one, so a fan-out's
branches can share the state they started from.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from graphrunner.graph._model import AgentGraph, StateField

__all__ = [
    "StateError",
    "apply_update",
    "check_update",
    "initial_state",
    "reduce_value",
    "state_type_error",
]

State = dict[str, Any]


class StateError(ValueError):
    """An update the lifetime state cannot take.

    An undeclared field, or a value of the wrong type for its field or reducer; the message
    names the field.
    """


def _empty(spec: StateField) -> Any:
    """A field's starting value: its default, or the reducer's identity when none is set."""
    if spec.default is not None:
        return copy.deepcopy(spec.default)
    return {"append": [], "merge": {}, "add": 0}.get(spec.reducer)


def initial_state(graph: AgentGraph) -> State | None:
    """The state a lifetime starts with (None when the graph declares no state)."""
    if graph.state is None:
        return None
    return {name: _empty(spec) for name, spec in graph.state.items()}


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "any": lambda value: True,
    "string": lambda value: isinstance(value, str),
    "number": _is_number,
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


def state_type_error(spec: StateField, value: Any) -> str | None:
    """Why ``value`` cannot be the value of a field declared as ``spec`` (None: it can).

    null is a value of every type (a field may be unset).
    """
    check = _TYPE_CHECKS.get(spec.type)
    if value is None or check is None or check(value):
        return None
    return f"must be {'an' if spec.type[0] in 'aeiou' else 'a'} {spec.type}, not {_kind(value)}"


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


@functools.lru_cache(maxsize=256)
def _named(path: str) -> Callable[[Any, Any], Any]:
    # Imported here: the loader's import helper is not needed by built-in reducers.
    from graphrunner.graph._validate import import_impl

    found = import_impl(path)
    if not callable(found):
        raise StateError(f"reducer '{path}' is not a function")
    return found


def reduce_value(spec: StateField, current: Any, update: Any) -> Any:
    """The field's new value: its reducer applied to ``current`` and ``update``."""
    reducer = spec.reducer
    if reducer == "replace":
        return update
    if reducer == "append":
        base = [] if current is None else current
        if not isinstance(base, list):
            raise StateError(f"holds {_kind(base)}, and only an array can be appended to")
        return [*base, *update] if isinstance(update, list) else [*base, update]
    if reducer == "merge":
        base = {} if current is None else current
        if not isinstance(base, dict) or not isinstance(update, dict):
            raise StateError(
                f"merges objects only; it holds {_kind(base)} and the update is {_kind(update)}"
            )
        return {**base, **update}
    if reducer in ("add", "max", "min"):
        if not _is_number(update):
            raise StateError(f"takes numbers ({reducer}); the update is {_kind(update)}")
        if current is None:
            return update
        if not _is_number(current):
            raise StateError(f"holds {_kind(current)}, not a number to {reducer}")
        if reducer == "add":
            total = current + update
            if isinstance(total, float) and not math.isfinite(total):
                raise StateError(f"would overflow: {current} + {update}")
            return total
        return max(current, update) if reducer == "max" else min(current, update)
    try:
        # A named function gets copies: it cannot change what other branches share.
        return _named(reducer)(copy.deepcopy(current), copy.deepcopy(update))
    except StateError:
        raise
    except Exception as exc:  # the reducer's own failure, named
        raise StateError(f"reducer '{reducer}' raised {type(exc).__name__}: {exc}") from exc


def check_update(graph: AgentGraph, update: Mapping[str, Any]) -> None:
    """Raise `StateError` when ``update`` names a field the graph does not declare."""
    fields = graph.state
    if fields is None:
        raise StateError(
            "returned a state update, but the graph declares no state (add a 'state:' section)"
        )
    unknown = [name for name in update if name not in fields]
    if unknown:
        raise StateError(
            f"updated undeclared state field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n[:64]) for n in unknown[:5])}; the graph declares "
            f"{', '.join(fields) or 'none'}"
        )


def apply_update(graph: AgentGraph, state: Mapping[str, Any], update: Mapping[str, Any]) -> State:
    """The state after ``update``: each field's reducer, then its type, checked.

    Raises:
        StateError: An undeclared field, a reducer that cannot take the value, or a
            result of the wrong type; the message names the field.
    """
    check_update(graph, update)
    fields = graph.state or {}
    new = dict(state)
    for name, value in update.items():
        spec = fields[name]
        try:
            reduced = reduce_value(spec, new.get(name), value)
        except StateError as exc:
            raise StateError(f"state field '{name}' ({spec.reducer}) {exc}") from None
        problem = state_type_error(spec, reduced)
        if problem:
            raise StateError(f"state field '{name}' {problem} (after its {spec.reducer} reducer)")
        new[name] = reduced
    return new
