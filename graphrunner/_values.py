"""The values a lifetime can carry: JSON, bounded so that every part of Temporal can take it.

Lifetime inputs, task outputs and plan data travel through workflow history as JSON, and the
workflow decodes them with pydantic's parser, which refuses integers of more than about 4,300
digits and nesting deeper than about 200 levels; a value it cannot decode would fail every
workflow task and hang the lifetime. JSON itself has no NaN or Infinity (pydantic writes
``null`` or the non-standard ``NaN``, the state DB kept ``NaN``), so graphrunner refuses them
at the edges instead of changing them silently:

- numbers must be finite;
- integers must have at most `MAX_INT_DIGITS` digits;
- containers may nest at most `MAX_DEPTH` levels.

Values that are not plain JSON (pydantic models, dataclasses, datetimes ...) are checked in the
JSON form pydantic gives them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic_core import to_jsonable_python

from graphrunner.errors import GraphrunnerError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "BadValue", "check_value", "clip", "parse_json"]

MAX_DEPTH = 100
MAX_INT_DIGITS = 4000
_INT_BOUND = 10**MAX_INT_DIGITS
_PLAIN = (bool, type(None))


class BadValue(GraphrunnerError, ValueError):
    """A value a lifetime cannot carry; the message names where in it the problem is."""


def check_value(value: Any, what: str) -> None:
    """Raise `BadValue` if ``value`` is not JSON a lifetime can carry (see the module doc).

    Args:
        value: The value to check.
        what: What it is, for the message (e.g. ``"--input"``, ``"task 'x' output"``).
    """
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _PLAIN):
            continue
        if isinstance(item, str):
            _check_text(item, what, path)
            continue
        if isinstance(item, int):
            if not -_INT_BOUND < item < _INT_BOUND:
                raise BadValue(
                    f"{what}: the integer at {path} has more than {MAX_INT_DIGITS:,} digits"
                )
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise BadValue(
                    f"{what}: {path} is {item!r}; JSON has no NaN or Infinity (send null, a "
                    "string, or a finite number)"
                )
            continue
        if isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise BadValue(f"{what}: {path} nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str):
                        _check_text(key, what, f"{path} (a key)")
                stack.extend((v, f"{path}.{k}", depth + 1) for k, v in item.items())
            else:
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
            continue
        try:
            plain = to_jsonable_python(item, inf_nan_mode="constants")
        except Exception as exc:  # pydantic's PydanticSerializationError and friends
            raise BadValue(f"{what}: {path} is not JSON-serialisable: {exc}") from None
        if plain is item:  # an unknown type pydantic hands back as is
            raise BadValue(f"{what}: {path} is a {type(item).__name__}, not JSON")
        stack.append((plain, path, depth))


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut.

    Failure messages must stay well under Temporal's 2 MiB payload limit.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters cut)"


def _check_text(text: str, what: str, path: str) -> None:
    r"""Refuse a string UTF-8 cannot encode (a lone surrogate such as ``"\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadValue(
            f"{what}: {path} holds {text[exc.start]!r}, a lone surrogate, which is not text "
            "UTF-8 (and so JSON on the wire) can carry"
        ) from None


def parse_json(text: str, what: str) -> Any:
    """Parse JSON text into a value a lifetime can carry, or raise `BadValue`.

    ``NaN``, ``Infinity`` and numbers too large for a float (``1e999``) are refused, as are
    integers of more than `MAX_INT_DIGITS` digits and nesting deeper than `MAX_DEPTH`.
    """

    def refuse(constant: str) -> Any:
        raise BadValue(f"{what}: {constant} is not JSON (send null, a string, or a number)")

    try:
        value = json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise BadValue(f"{what}: nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadValue(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # Python's own limit on integer digits
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"{what}: {exc}") from None
    check_value(value, what)
    return value
