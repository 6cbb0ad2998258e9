"""A graph's state declared as a pydantic model: `reducer` marks each field's reducer.

>>> class Research(BaseModel):
...     notes: Annotated[list[str], reducer("append")] = []
...     rounds: Annotated[int, reducer("add")] = 0
...     best: Annotated[float | None, reducer("max")] = None
>>> GraphBuilder("research").state(Research)

The model becomes the same plain ``state`` section a YAML graph declares (the pinned graph
holds JSON, never a class), so both forms validate, hash and run alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from graphrunner.graph._model import STATE_TYPES, StateField

__all__ = ["Reducer", "reducer", "state_fields"]


@dataclass(frozen=True)
class Reducer:
    """How a state field combines updates (see `graphrunner.graph.StateField`)."""

    name: str


def reducer(how: str | Callable[[Any, Any], Any]) -> Reducer:
    """Mark how a state model field combines updates (inside ``Annotated[...]``).

    Args:
        how: ``replace``, ``append``, ``merge``, ``add``, ``max``, ``min``, a module-level
            function ``(current, update) -> new`` (pure: it runs in the lifetime workflow), or
            its import path ``package.module:function``.
    """
    if callable(how):
        return Reducer(f"{how.__module__}:{how.__qualname__}")
    return Reducer(how)


def _json_type(schema: Mapping[str, Any]) -> str:
    """The one JSON type a property schema names (``any`` when it names none or several)."""
    kind = schema.get("type")
    if isinstance(kind, str) and kind in STATE_TYPES and kind != "null":
        return kind
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        return _json_type(options[0])
    return "any"


def state_fields(model: type[BaseModel]) -> dict[str, StateField]:
    """The ``state`` section a pydantic model declares: each field's type, reducer, default."""
    properties = model.model_json_schema(mode="serialization").get("properties", {})
    fields: dict[str, StateField] = {}
    for name, info in model.model_fields.items():
        key = info.serialization_alias or info.alias or name
        marks = [m for m in info.metadata if isinstance(m, Reducer)]
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = None
        fields[key] = StateField(
            type=_json_type(properties.get(key, {})),
            reducer=marks[-1].name if marks else "replace",
            default=to_jsonable_python(default),
            description=info.description or "",
        )
    return fields
