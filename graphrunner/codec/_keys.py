"""The codec key ring: ``<key id>=<base64 32-byte key>`` pairs, the first one encrypts.

Key material never appears in an error message, a ``repr`` or a log line: messages name the
key id (which is written in clear into every payload anyway) and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["KEY_BYTES", "KeyRing", "parse_keys"]

KEY_BYTES = 32
"""AES-256: every key is 32 bytes (44 characters of base64)."""

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys; the first encrypts, every one decrypts.

    Attributes:
        ids: The key ids in order; ``ids[0]`` is the key new data is encrypted with.
    """

    ids: tuple[str, ...]
    _keys: dict[str, bytes] = field(repr=False, compare=False)

    @property
    def current(self) -> str:
        """The id of the key that encrypts."""
        return self.ids[0]

    def key(self, key_id: str) -> bytes | None:
        """The key named ``key_id``, or None when the ring lacks it."""
        return self._keys.get(key_id)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Each key id with its key, in order."""
        return iter(self._keys.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


PUBLISHED_EXAMPLE_KEY = b"EXAMPLE-KEY-replace-before-use!!"
"""The key the compose stack's ``.env`` ships with: refused, so no stack runs on it."""


def parse_keys(text: str) -> KeyRing:
    """Parse ``GRAPHRUNNER_CODEC_KEYS``: comma-separated ``<id>=<base64 key>`` pairs.

    Raises:
        ValueError: The text is empty, a pair has no ``=``, an id is empty, repeated or
            has characters other than letters, digits, ``.``, ``_`` and ``-``, or a key is
            not base64 of exactly 32 bytes. The message names the pair (by position and
            id) but never shows a key.
    """
    pairs = [part.strip() for part in text.split(",")]
    if not any(pairs):
        raise ValueError("no keys: give '<key id>=<base64 32-byte key>', comma-separated")
    keys: dict[str, bytes] = {}
    for number, pair in enumerate(pairs, start=1):
        where = f"key #{number}"
        key_id, eq, encoded = pair.partition("=")
        key_id = key_id.strip()
        if not eq:
            raise ValueError(f"{where} is not '<key id>=<base64 key>' (no '=')")
        if not key_id:
            raise ValueError(f"{where} has an empty key id")
        if not _KEY_ID.match(key_id):
            raise ValueError(
                f"{where} has key id {key_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
            )
        where = f"key #{number} ({key_id!r})"
        if key_id in keys:
            raise ValueError(f"{where} repeats a key id: each id names one key")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"{where} is {len(key)} bytes, not {KEY_BYTES}: generate one with "
                "'graphrunner codec-key'"
            )
        if key == PUBLISHED_EXAMPLE_KEY:
            raise ValueError(
                f"{where} is the example key published in graphrunner's .env, which anyone "
                "can read: generate your own with 'graphrunner codec-key'"
            )
        keys[key_id] = key
    return KeyRing(tuple(keys), keys)
