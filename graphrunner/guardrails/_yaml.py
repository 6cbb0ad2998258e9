"""Compose policy YAML into plain data, keeping the line and column of every key and value.

`graphrunner.graph._loader` does the same for graphs but keeps lines only and reports
`GraphIssue`; policies need columns (an error inside a ``when`` expression points at the
character), so this module keeps the YAML nodes themselves and can map a character of a
scalar's value back to its place in the file, through quotes, escapes and block scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from graphrunner.errors import PolicyError
from graphrunner.guardrails._expr import Locate

__all__ = ["Composed", "Loc", "compose", "node_position", "scalar_locator"]

Loc = tuple[str | int, ...]

# A policy is a short list of short rules; these bound the work an alias bomb can cause.
_MAX_NODES: Final = 10_000
_MAX_DEPTH: Final = 20
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_BREAKS: Final = "\n\x85\u2028\u2029"


@dataclass
class Composed:
    """A YAML document as plain data, with the node behind every value and mapping key.

    Attributes:
        data: Dicts, lists and scalars (None for an empty document).
        values: The node of the value at each location, ``()`` being the root.
        keys: The key node of each mapping entry, by the entry's location.
        errors: Problems found while composing, each with its position.
    """

    data: Any = None
    values: dict[Loc, yaml.Node] = field(default_factory=dict)
    keys: dict[Loc, yaml.Node] = field(default_factory=dict)
    errors: list[PolicyError] = field(default_factory=list)


def node_position(node: yaml.Node) -> tuple[int, int]:
    """The 1-based (line, column) where ``node`` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def compose(text: str, file: str) -> Composed:
    """Compose ``text`` into data; syntax errors and duplicate keys become positioned errors."""
    out = Composed()
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow, found before parsing
        out.errors.append(_syntax_error(exc, text, file))
        return out
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        out.errors.append(_syntax_error(exc, text, file))
        return out
    except RecursionError:
        out.errors.append(PolicyError("YAML nested too deeply", file=file, line=1, column=1))
        return out
    finally:
        loader.dispose()
    if root is not None:
        out.data = _Converter(loader, out, file).convert(root, ())
    return out


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, out: Composed, file: str) -> None:
        self.loader = loader
        self.out = out
        self.file = file
        self.budget = _MAX_NODES

    def fail(self, message: str, node: yaml.Node) -> None:
        line, column = node_position(node)
        self.out.errors.append(PolicyError(message, file=self.file, line=line, column=column))

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0 or len(loc) > _MAX_DEPTH:
            if self.budget >= -1:  # report once, then stop composing
                self.fail("YAML too large or nested too deeply (check for repeating aliases)", node)
                self.budget = -2
            return None
        self.out.values[loc] = node
        if isinstance(node, yaml.ScalarNode):
            return self.construct(node)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            self.fail(f"unsupported YAML tag {node.tag!r}; expected a plain mapping or list", node)
            return None
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail("expected a string key", key_node)
                continue
            if key in mapping:
                line = self.out.keys[(*loc, key)].start_mark.line + 1
                self.fail(
                    f"key {key!r} appears twice in one mapping (first at line {line})", key_node
                )
                continue
            self.out.keys[(*loc, key)] = key_node
            mapping[key] = self.convert(value_node, (*loc, key))
        return mapping

    def construct(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's constructors raise ValueError and others, too
            problem = getattr(exc, "problem", None) or str(exc)
            self.fail(f"cannot read this value: {problem}", node)
            return None


def _syntax_error(exc: yaml.YAMLError, text: str, file: str) -> PolicyError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    else:
        index = getattr(exc, "position", 0) or 0
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"character {chr(exc.character)!r} is not allowed in YAML"
    return PolicyError(f"invalid YAML: {problem}", file=file, line=line, column=column)


def scalar_locator(text: str, node: yaml.ScalarNode) -> Locate:
    """Map offsets in a scalar's value to 1-based (line, column) positions in ``text``.

    The value is aligned with the scalar's source: quotes, block headers and indentation are
    skipped, an escape maps to its backslash, and a folded line break to the break. If the
    alignment ever fails, the rest of the value maps to the scalar's start.
    """
    cache: list[tuple[int, int]] = []

    def locate(offset: int) -> tuple[int, int]:
        if not cache:
            cache.extend(_align(text, node))
        line, column = cache[max(0, min(offset, len(cache) - 1))]
        return line + 1, column + 1

    return locate


def _align(text: str, node: yaml.ScalarNode) -> list[tuple[int, int]]:
    start, end = node.start_mark.index, node.end_mark.index
    src = text[start:end]
    places = [(node.start_mark.line, node.start_mark.column)]
    for i, ch in enumerate(src):
        line, column = places[-1]
        if ch in _BREAKS or (ch == "\r" and src[i + 1 : i + 2] != "\n"):
            places.append((line + 1, 0))
        else:
            places.append((line, column if ch == "\ufeff" else column + 1))
    p = 0
    if node.style in ("'", '"'):
        p = 1
    elif node.style in ("|", ">"):
        p = next((i + 1 for i, ch in enumerate(src) if ch in _BREAKS + "\r"), len(src))
    mapped: list[tuple[int, int]] = []
    for ch in node.value:
        found = None
        while p < len(src) and found is None:
            here = src[p]
            if node.style == '"' and here == "\\":
                follower = src[p + 1 : p + 2]
                if follower and follower in _BREAKS + "\r":  # escaped line break: no character
                    p += 2
                    continue
                found, p = p, p + {"x": 4, "u": 6, "U": 10}.get(follower, 2)
            elif here == ch or (ch == " " and here in _BREAKS + "\r"):
                found, p = p, p + (2 if node.style == "'" and src.startswith("''", p) else 1)
            else:
                p += 1
        if found is None:
            break
        mapped.append(places[found])
    while len(mapped) < len(node.value):
        mapped.append(places[0])
    mapped.append(places[min(p, len(src))])
    return mapped
