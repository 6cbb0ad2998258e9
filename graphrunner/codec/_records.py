r"""Encrypted execution records: results, state, errors and notes sealed in the state DB.

With ``GRAPHRUNNER_ENCRYPT_RECORDS`` on, the worker's recorder seals what a record says about
the data (``result_inline``, ``state_inline``, ``error``, ``notes`` and the result and state
blobs) with the codec keys; what the state DB needs for queries and costs stays in clear
(ids, lifetime, run, graph, tenant, node, kind, iteration, status, times, tokens, cost,
model, sizes, blob URIs). A marker tells sealed values from plain ones, so rows written
before encryption was turned on (or after it was turned off) read as they are:

- a text column: ``grenc1:`` + base64 of the sealed bytes (plain JSON never starts so);
- ``notes`` (a JSON column): ``{"grenc1": "<sealed text>"}``;
- a blob: the sealed bytes, which start with ``\x00grenc1`` (never JSON, never a payload).

Sealed bytes are ``\x00grenc1`` + key id length (1 byte) + key id + nonce + AES-GCM
ciphertext and tag; the associated data binds the key id, the execution id and the column,
so a sealed value moved to another row or column does not decrypt. Reading a sealed value
without keys raises `DecryptionError` naming the key, never returns ciphertext.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from graphrunner.codec._codec import Cipher
from graphrunner.codec._keys import KeyRing
from graphrunner.errors import DecryptionError

__all__ = ["SEALED_MAGIC", "SEALED_PREFIX", "RecordCipher", "open_blob", "open_fields"]

SEALED_PREFIX = "grenc1:"
"""Prefix of a sealed text column."""
SEALED_MAGIC = b"\x00grenc1"
"""First bytes of sealed bytes (a sealed blob)."""
_NOTES_KEY = "grenc1"
_TEXT_FIELDS = ("result_inline", "state_inline", "error")


def _aad(key_id: str, context: str) -> bytes:
    return SEALED_MAGIC + key_id.encode() + b"\x00" + context.encode()


def _context(execution_id: str, column: str) -> str:
    return f"record/{execution_id}/{column}"


class RecordCipher:
    """Seals and opens the sensitive parts of execution records.

    Args:
        keys: The codec keys; the first seals.
    """

    def __init__(self, keys: KeyRing) -> None:
        self.cipher = Cipher(keys)

    def seal_bytes(self, data: bytes, *, execution_id: str, column: str) -> bytes:
        """``data`` sealed with the current key, for ``column`` of ``execution_id``."""
        key_id = self.cipher.keys.current
        _, sealed = self.cipher.seal(data, _aad(key_id, _context(execution_id, column)))
        raw_id = key_id.encode()
        return SEALED_MAGIC + bytes([len(raw_id)]) + raw_id + sealed

    def seal_text(self, text: str, *, execution_id: str, column: str) -> str:
        """``text`` sealed, as text for a text column."""
        sealed = self.seal_bytes(text.encode(), execution_id=execution_id, column=column)
        return SEALED_PREFIX + base64.b64encode(sealed).decode()

    def seal_fields(self, execution_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The record fields ``fields`` with the sensitive ones sealed (others as given)."""
        sealed = dict(fields)
        for column in _TEXT_FIELDS:
            value = sealed.get(column)
            if isinstance(value, str):
                sealed[column] = self.seal_text(value, execution_id=execution_id, column=column)
        notes = sealed.get("notes")
        if notes is not None:
            text = json.dumps(notes, separators=(",", ":"))
            sealed["notes"] = {
                _NOTES_KEY: self.seal_text(text, execution_id=execution_id, column="notes")
            }
        return sealed


def _open_bytes(
    cipher: RecordCipher | None, data: bytes, *, execution_id: str, column: str, what: str
) -> bytes:
    if not data.startswith(SEALED_MAGIC):
        return data
    rest = data[len(SEALED_MAGIC) :]
    if not rest:
        raise DecryptionError(f"{what} is truncated encrypted data", key_id="")
    size = rest[0]
    key_id = rest[1 : 1 + size].decode(errors="replace")
    if cipher is None:
        raise DecryptionError(
            f"{what} is encrypted (key '{key_id}'): set GRAPHRUNNER_CODEC_KEYS with that key "
            "to read it",
            key_id=key_id,
        )
    aad = _aad(key_id, _context(execution_id, column))
    return cipher.cipher.open(key_id, rest[1 + size :], aad, what=what)


def _open_text(cipher: RecordCipher | None, text: str, *, execution_id: str, column: str) -> str:
    if not text.startswith(SEALED_PREFIX):
        return text
    what = f"the {column} of execution {execution_id}"
    try:
        data = base64.b64decode(text[len(SEALED_PREFIX) :], validate=True)
    except ValueError:
        raise DecryptionError(f"{what} is altered encrypted data (bad base64)", key_id="") from None
    plain = _open_bytes(cipher, data, execution_id=execution_id, column=column, what=what)
    return plain.decode()


def open_fields(cipher: RecordCipher | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A record row (or attempt row) with its sealed fields opened; plain ones as they are.

    Raises:
        DecryptionError: A field is sealed and ``cipher`` is None or lacks its key, or it
            does not decrypt.
    """
    execution_id = str(fields.get("execution_id"))
    opened = dict(fields)
    for column in _TEXT_FIELDS:
        value = opened.get(column)
        if isinstance(value, str):
            opened[column] = _open_text(cipher, value, execution_id=execution_id, column=column)
    notes = opened.get("notes")
    if isinstance(notes, dict) and set(notes) == {_NOTES_KEY}:
        text = _open_text(cipher, str(notes[_NOTES_KEY]), execution_id=execution_id, column="notes")
        opened["notes"] = json.loads(text)
    return opened


def open_blob(cipher: RecordCipher | None, data: bytes, *, execution_id: str, column: str) -> bytes:
    """A record blob's content, opened if sealed (``column``: ``result`` or ``state``).

    Raises:
        DecryptionError: It is sealed and ``cipher`` is None or lacks its key, or it does
            not decrypt.
    """
    what = f"the {column} blob of execution {execution_id}"
    return _open_bytes(cipher, data, execution_id=execution_id, column=column, what=what)
