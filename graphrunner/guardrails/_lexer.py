"""Tokens of the guardrail expression language, produced lazily from the text.

Lazily, so that a bad character is reported only after everything before it parsed:
errors then come in text order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, NamedTuple

__all__ = ["ParseFailure", "Token", "tokenize"]

_NUMBER = re.compile(r"[0-9](?:_?[0-9])*(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?")
# A word may be a dotted name (state.retries, output.label): the vocabulary judges it.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATORS: Final = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")")
_HINTS: Final = {
    "=": "expected '==' to compare",
    "!": "expected '!=' (write 'not' to negate)",
    "&": "write 'and' instead",
    "|": "write 'or' instead",
    ".": "a dot joins the parts of a name, e.g. state.retries",
}
_STRING_ESCAPES: Final = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}
_WORDISH: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


class ParseFailure(Exception):
    """A syntax or type error at ``offset`` in the expression text (no file position yet)."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class Token(NamedTuple):
    """One token: ``kind`` is number, string, word, op or end."""

    kind: str
    text: str
    start: int
    value: int | float | str | None = None


def tokenize(source: str) -> Iterator[Token]:
    """Yield the tokens of ``source``, ending with an ``end`` token.

    Raises:
        ParseFailure: At the first character that starts no token.
    """
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in " \t\r\n":
            i += 1
        elif ch.isascii() and ch.isdigit():
            token = _number(source, i)
            yield token
            i += len(token.text)
        elif ch in "\"'":
            token = _string(source, i)
            yield token
            i = token.start + len(token.text)
        elif word := _WORD.match(source, i):
            yield Token("word", word.group(), i)
            i = word.end()
        elif op := next((op for op in _OPERATORS if source.startswith(op, i)), None):
            yield Token("op", op, i)
            i += len(op)
        else:
            hint = _HINTS.get(ch, "expected a field, number, string, operator or parenthesis")
            raise ParseFailure(i, f"unexpected character {ch!r}; {hint}")
    # The end sits just after the last character, so "the expression ended" points there
    # rather than at the start of the next line of a YAML block.
    yield Token("end", "", len(source.rstrip(" \t\r\n")))


def _number(source: str, start: int) -> Token:
    match = _NUMBER.match(source, start)
    end = match.end() if match else start
    if end == start or _word_end(source, end) > end:
        bad = source[start : _word_end(source, start)]
        raise ParseFailure(
            start, f"malformed number {bad!r}; expected digits like 1_000, 2.5 or 1e-3"
        )
    text = source[start:end]
    digits = text.replace("_", "")
    value: int | float
    try:
        value = int(digits) if digits.isdigit() else float(digits)
        too_big = float(value) == float("inf")
    except (OverflowError, ValueError):
        too_big = True
    if too_big:
        raise ParseFailure(start, f"number {text!r} is too large")
    return Token("number", text, start, value)


def _word_end(source: str, start: int) -> int:
    end = start
    while end < len(source) and source[end] in _WORDISH:
        end += 1
    return end


def _string(source: str, start: int) -> Token:
    quote, i = source[start], start + 1
    chars: list[str] = []
    while i < len(source) and source[i] not in "\r\n":
        ch = source[i]
        if ch == quote:
            return Token("string", source[start : i + 1], start, "".join(chars))
        if ch == "\\":
            escaped = _STRING_ESCAPES.get(source[i + 1 : i + 2])
            if escaped is None:
                raise ParseFailure(
                    i, "unknown escape in string; expected one of \\\\ \\\" \\' \\n \\r \\t"
                )
            chars.append(escaped)
            i += 2
        else:
            chars.append(ch)
            i += 1
    raise ParseFailure(start, f"unterminated string; expected a closing {quote} on the same line")
