"""Encryption at rest: an AES-256-GCM payload codec with key ids and rotation, and records.

- `EncryptionCodec` encrypts every Temporal payload (history and external-storage blobs)
  with the first of ``GRAPHRUNNER_CODEC_KEYS`` and decrypts with any of them;
- `HistoryDecoder` gives graphrunner's history readers clear step summaries and failure
  texts;
- `RecordCipher` seals results, state, errors and notes of execution records
  (``GRAPHRUNNER_ENCRYPT_RECORDS``);
- ``graphrunner codec-server`` (`graphrunner.codec._server`) serves Temporal's codec server
  protocol to the Web UI and the ``temporal`` CLI.
"""

from graphrunner.codec._codec import (
    ENCODING,
    KEY_ID_KEY,
    EncryptionCodec,
    is_encrypted,
    with_codec,
)
from graphrunner.codec._history import HistoryDecoder
from graphrunner.codec._keys import KEY_BYTES, KeyRing, parse_keys
from graphrunner.codec._open import codec_from_settings, key_ring, record_cipher
from graphrunner.codec._records import RecordCipher, open_blob, open_fields
from graphrunner.errors import DecryptionError

__all__ = [
    "ENCODING",
    "KEY_BYTES",
    "KEY_ID_KEY",
    "DecryptionError",
    "EncryptionCodec",
    "HistoryDecoder",
    "KeyRing",
    "RecordCipher",
    "codec_from_settings",
    "is_encrypted",
    "key_ring",
    "open_blob",
    "open_fields",
    "parse_keys",
    "record_cipher",
    "with_codec",
]
