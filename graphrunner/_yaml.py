"""Read and compose definition YAML safely, keeping the line and column of every key and value.

The one YAML front end of both definition loaders (graphs in `graphrunner.graph._loader`,
guardrail policies in `graphrunner.guardrails._policy`); it sits beside them, not in either
package, so neither depends on the other to read a file. Whatever the input, it returns data
or positioned `Problem`s, never another exception, in time and memory bounded by `Limits`:
the file size, the nesting depth and the number of values after aliases are expanded (so a
"billion laughs" alias chain stops at the budget). Only plain YAML is read: the safe scalar
types, string or integer keys, no merge keys (``<<``), no custom tags.

Policies also need the YAML nodes themselves: an error inside a ``when`` expression points at
the character, so `scalar_locator` maps a character of a scalar's value back to its place in
the file, through quotes, escapes and block scalars.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

__all__ = [
    "Composed",
    "Limits",
    "Loc",
    "Locate",
    "Problem",
    "Unreadable",
    "compose",
    "node_position",
    "read_text",
    "scalar_locator",
    "unknown_key",
]

Loc = tuple[str | int, ...]
#: Maps an offset in a scalar's value to its 1-based (line, column) in the file
#: (`graphrunner.guardrails._expr.Locate` has the same shape).
Locate = Callable[[int], tuple[int, int]]

_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_VALUE_TAG: Final = "tag:yaml.org,2002:value"  # a plain '=': PyYAML has no constructor for it
_BREAKS: Final = "\n\x85\u2028\u2029"
_UNREAD: Final = object()  # a mapping key that could not be read (already reported)
_READABLE: Final = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date or time",
    "tag:yaml.org,2002:str": "a string",
}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on one definition file.

    Attributes:
        max_bytes: Size of the file (characters of a text given directly).
        max_depth: Nesting of mappings and lists.
        max_values: Values after aliases are expanded: what an alias chain can multiply to.
    """

    max_bytes: int
    max_depth: int
    max_values: int


@dataclass(frozen=True)
class Problem:
    """A problem found while reading YAML, at a 1-based line and column.

    ``kind`` says what sort: ``syntax`` (not UTF-8 or not YAML), ``duplicate-key``,
    ``value`` (a value or key that plain YAML data cannot hold) or ``limit`` (a `Limits`
    bound was passed).
    """

    kind: Literal["syntax", "duplicate-key", "value", "limit"]
    message: str
    line: int
    column: int


@dataclass
class Composed:
    """A YAML document as plain data, with the node behind every value and mapping key.

    Attributes:
        data: Dicts, lists and scalars (None for an empty document).
        values: The node of the value at each location, ``()`` being the root.
        keys: The key node of each mapping entry, by the entry's location.
        problems: Problems found while composing, each with its position.
        broken: Locations whose value could not be read (it is None in ``data``), and
            mappings that lost keys (a merge key): checks of what is there must not also
            report these.
        complete: False when composing stopped (syntax error, a limit): ``data`` is then
            missing parts, and only ``problems`` should be reported.
    """

    data: Any = None
    values: dict[Loc, yaml.Node] = field(default_factory=dict)
    keys: dict[Loc, yaml.Node] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    broken: set[Loc] = field(default_factory=set)
    complete: bool = True

    def nearest(self, loc: Loc) -> yaml.Node | None:
        """The node at ``loc``, or at its nearest enclosing location that has one."""
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.values:
                return self.values[loc[:cut]]
        return None


class Unreadable(Exception):
    """A definition file that cannot be read as UTF-8 text.

    ``line`` and ``column`` are set for a byte that is not UTF-8; ``limit`` when the file is
    too large.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        limit: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.limit = limit


def node_position(node: yaml.Node) -> tuple[int, int]:
    """The 1-based (line, column) where ``node`` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def unknown_key(key: object, allowed: Iterable[str]) -> str:
    """The message for a key the schema does not know, with the nearest allowed one."""
    names = list(allowed)
    message = f"unknown key {key!r}; expected one of: {', '.join(names)}"
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def read_text(path: str | Path, *, limits: Limits) -> str:
    """The text of a definition file: a regular file of at most ``limits.max_bytes`` of UTF-8.

    Raises:
        Unreadable: What is wrong (missing, a directory, too large, not UTF-8: with the line
            and column of the first bad byte).
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise Unreadable("it is a directory, not a file")
        if not stat.S_ISREG(mode):  # a FIFO or device could block or never end
            raise Unreadable("it is not a regular file")
        with open(path, "rb") as stream:
            raw = stream.read(limits.max_bytes + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise Unreadable(getattr(exc, "strerror", None) or str(exc)) from None
    if len(raw) > limits.max_bytes:
        raise Unreadable(f"the file is larger than {limits.max_bytes:,} bytes", limit=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[start : exc.start].decode("utf-8", "replace")) + 1
        raise Unreadable(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded; save the file as UTF-8",
            line=raw.count(b"\n", 0, exc.start) + 1,
            column=column,
        ) from None


class _OverLimit(yaml.YAMLError):
    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message = message
        self.problem_mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer stops at the limits, before recursing into a crash."""

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self._limits = limits
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > self._limits.max_depth:
                raise _OverLimit(_too_deep(self._limits), self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            if self._nodes > self._limits.max_values:
                raise _OverLimit(_too_many(self._limits), self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep(limits: Limits) -> str:
    return f"nested too deeply: at most {limits.max_depth} levels are allowed"


def _too_many(limits: Limits, *, aliases: bool = False) -> str:
    why = " once aliases are expanded (check for aliases that repeat each other)"
    return f"too large: more than {limits.max_values:,} values{why if aliases else ''}"


def compose(text: str, *, limits: Limits) -> Composed:
    """Compose ``text`` into data; every problem becomes a positioned `Problem`."""
    out = Composed()

    def stop(problem: Problem) -> Composed:
        out.problems.append(problem)
        out.complete = False
        return out

    if len(text) > limits.max_bytes:
        return stop(Problem("limit", f"longer than {limits.max_bytes:,} characters", 1, 1))
    try:
        loader = _Loader(text, limits)
    except yaml.YAMLError as exc:  # a character YAML does not allow, found before parsing
        return stop(_syntax_problem(exc, text))
    try:
        root = loader.get_single_node()
    except _OverLimit as exc:
        line, column = exc.problem_mark.line + 1, exc.problem_mark.column + 1
        return stop(Problem("limit", exc.message, line, column))
    except yaml.YAMLError as exc:
        return stop(_syntax_problem(exc, text))
    finally:
        loader.dispose()
    if root is not None:
        out.data = _Converter(loader, out, limits).convert(root, ())
    return out


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, out: Composed, limits: Limits) -> None:
        self.loader = loader
        self.out = out
        self.limits = limits
        self.budget = limits.max_values
        self.open: set[int] = set()  # collections being converted: an alias to one is a cycle

    def fail(self, message: str, node: yaml.Node, loc: Loc | None = None) -> None:
        self.out.problems.append(Problem("value", message, *node_position(node)))
        if loc is not None:
            self.out.broken.add(loc)

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        if not self.out.complete:
            return None
        self.budget -= 1
        if self.budget < 0 or len(loc) > self.limits.max_depth:
            if self.budget < 0:
                message = _too_many(self.limits, aliases=True)
            else:
                message = _too_deep(self.limits)
            self.out.problems.append(Problem("limit", message, *node_position(node)))
            self.out.complete = False
            return None
        self.out.values[loc] = node
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            message = f"unsupported YAML tag {node.tag!r}; expected a plain mapping or list"
            self.fail(message, node, loc)
            return None
        if id(node) in self.open:
            self.fail(
                "nested too deeply: a YAML alias refers to a mapping or list that contains it",
                node,
                loc,
            )
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str | int, Any]:
        out: dict[str | int, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.fail("merge keys ('<<') are not supported; write the keys out", key_node)
                self.out.broken.add(loc)  # its keys are missing: do not report them missing
                continue
            key = self.scalar(key_node, None) if isinstance(key_node, yaml.ScalarNode) else None
            if key is _UNREAD:
                continue
            # Integer keys pass (free-form config may use them); JSON turns them into strings.
            if not isinstance(key, str | int) or isinstance(key, bool):
                found = _shape(key_node, key)
                self.fail(
                    f"expected a string key, found {found} (mapping keys must be plain names)",
                    key_node,
                )
                continue
            if key in out:
                line = self.out.keys[(*loc, key)].start_mark.line + 1
                self.out.problems.append(
                    Problem(
                        "duplicate-key",
                        f"key {key!r} appears twice in one mapping (first at line {line})",
                        *node_position(key_node),
                    )
                )
                continue
            self.out.keys[(*loc, key)] = key_node
            out[key] = self.convert(value_node, (*loc, key))
        return out

    def scalar(self, node: yaml.ScalarNode, loc: Loc | None) -> Any:
        """The value of ``node``; on failure `_UNREAD` for a key, None for a value (broken)."""
        failed = _UNREAD if loc is None else None
        if node.tag == _VALUE_TAG:
            return node.value
        if node.tag not in self.loader.yaml_constructors:
            self.fail(f"unsupported YAML tag {node.tag!r}; plain values only", node, loc)
            return failed
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors raise ValueError, KeyError, AttributeError...
            what = _READABLE.get(node.tag, node.tag)
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            self.fail(f"cannot read this value as {what}: {shown!r}", node, loc)
            return failed
        if isinstance(value, bytes):
            self.fail("binary values are not supported; use a (base64) string", node, loc)
            return failed
        return value


def _shape(node: yaml.Node, value: object) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "nothing" if value is None else f"{type(value).__name__} {node.value!r}"


def _syntax_problem(exc: yaml.YAMLError, text: str) -> Problem:
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
    return Problem("syntax", f"invalid YAML: {problem}", line, column)


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
