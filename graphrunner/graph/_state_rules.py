"""Validation rules for a graph's ``state`` section (see `graphrunner._state`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from graphrunner.graph._model import REDUCERS, STATE_TYPES, AgentGraph

if TYPE_CHECKING:
    from graphrunner.graph._validate import _Collector

__all__ = ["MAX_STATE_FIELDS", "check_state"]

#: Fields of one graph's state: the state travels with every node call.
MAX_STATE_FIELDS: Final = 256
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
# Which types each built-in reducer can hold (replace holds any).
_REDUCER_TYPES: Final = {
    "append": ("any", "array"),
    "merge": ("any", "object"),
    "add": ("any", "number", "integer"),
    "max": ("any", "number", "integer"),
    "min": ("any", "number", "integer"),
}


def check_state(graph: AgentGraph, out: _Collector, *, check_imports: bool) -> None:
    """Field names, types, reducers and defaults of the graph's state."""
    # Imported here: validation imports this module.
    from graphrunner._state import reduce_value, state_type_error
    from graphrunner.graph._validate import _shorten, import_impl

    fields = graph.state
    if fields is None:
        return
    if len(fields) > MAX_STATE_FIELDS:
        out.add(
            "too-large",
            f"{len(fields):,} state fields; at most {MAX_STATE_FIELDS} are allowed",
            loc=("state",),
        )
        return
    for name, spec in fields.items():
        loc: tuple[str | int, ...] = ("state", name)
        where = f"state field '{_shorten(name)}'"
        if not _FIELD_RE.match(name):
            out.add(
                "invalid-name",
                "a state field's name must start with a letter or '_' and use only letters, "
                "digits and '_' (at most 64 characters), so expressions can read state.<name>",
                loc=loc,
                where=where,
            )
        if spec.type not in STATE_TYPES:
            out.add(
                "state-type",
                f"type '{_shorten(spec.type)}' is not one of {', '.join(STATE_TYPES)}",
                loc=loc,
                where=where,
            )
            continue
        reducer = spec.reducer
        if reducer not in REDUCERS:
            if not _FUNCTION_RE.match(reducer) or len(reducer) > 256:
                out.add(
                    "state-reducer",
                    f"reducer '{_shorten(reducer)}' is not one of {', '.join(REDUCERS)}, nor a "
                    "function 'package.module:function'",
                    loc=loc,
                    where=where,
                )
                continue
            if check_imports:
                try:
                    found = import_impl(reducer)
                except Exception as exc:  # the user's import-time failure, shown
                    out.add(
                        "state-reducer",
                        f"cannot import reducer '{_shorten(reducer)}': {exc}",
                        loc=loc,
                        where=where,
                    )
                    continue
                if not callable(found):
                    out.add(
                        "state-reducer",
                        f"reducer '{_shorten(reducer)}' is not a function",
                        loc=loc,
                        where=where,
                    )
                    continue
        elif spec.type not in _REDUCER_TYPES.get(reducer, STATE_TYPES):
            allowed = " or ".join(t for t in _REDUCER_TYPES[reducer] if t != "any")
            out.add(
                "state-reducer",
                f"reducer '{reducer}' needs a field of type {allowed}, not {spec.type}",
                loc=loc,
                where=where,
            )
            continue
        problem = state_type_error(spec, spec.default)
        if problem:
            out.add("state-default", f"default {problem}", loc=loc, where=where)
        elif reducer in REDUCERS and spec.default is not None:
            try:  # the default must be something the reducer can build on
                reduce_value(spec, spec.default, spec.default)
            except ValueError as exc:
                out.add("state-default", f"default: {exc}", loc=loc, where=where)
