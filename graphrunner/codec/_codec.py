"""`EncryptionCodec`: AES-256-GCM for every Temporal payload, with key ids and rotation.

An encoded payload is::

    metadata: {"encoding": "binary/encrypted", "encryption-key-id": "<key id>"}
    data:     nonce (12 random bytes) + AES-GCM(serialized original payload) + tag (16 bytes)

The associated data is ``binary/encrypted:<key id>``, so a payload cannot be passed off as
encrypted under another key id than the one that encrypted it. Encoding never leaves a
payload in clear: every payload the SDK hands the codec (inputs, results, signals, updates,
queries, memo, activity and workflow summaries, failure details, and, with
``DefaultFailureConverterWithEncodedAttributes``, failure messages and stack traces) is
encrypted. Decoding lets payloads that are not encrypted through unchanged, so histories
written before encryption was turned on still replay and read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from graphrunner.codec._keys import KeyRing
from graphrunner.errors import DecryptionError

__all__ = [
    "ENCODING",
    "KEY_ID_KEY",
    "NONCE_BYTES",
    "Cipher",
    "EncryptionCodec",
    "is_encrypted",
    "with_codec",
]

ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of an encrypted payload."""
KEY_ID_KEY = "encryption-key-id"
"""The metadata key naming the key a payload is encrypted with."""
NONCE_BYTES = 12


def is_encrypted(payload: Payload) -> bool:
    """Whether ``payload`` is one this codec encrypted."""
    return payload.metadata.get("encoding") == ENCODING


class Cipher:
    """AES-256-GCM under a `KeyRing`: the primitive behind payloads and records.

    Args:
        keys: The keys; the first encrypts.
    """

    def __init__(self, keys: KeyRing) -> None:
        # Imported here: a workflow sandbox that re-imports graphrunner cannot import
        # cryptography (SystemError), and a process without keys never needs it.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.keys = keys
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """Encrypt with the current key; return its id and nonce + ciphertext + tag."""
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._aead[key_id].encrypt(nonce, plaintext, aad)

    def open(self, key_id: str, sealed: bytes, aad: bytes, *, what: str) -> bytes:
        """Decrypt ``sealed`` (nonce + ciphertext + tag) encrypted under ``key_id``.

        Args:
            key_id: The key id the data names.
            sealed: Nonce, ciphertext and tag.
            aad: The associated data it was sealed with.
            what: What the data is, for the error message ("a payload", "the result of
                execution X").

        Raises:
            DecryptionError: The key is unknown, or the tag does not verify (another key
                under the same id, or altered data).
        """
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptionError(
                f"{what} is encrypted with key '{key_id}', which is not among the codec keys "
                f"here ({', '.join(self.keys.ids)}): add '{key_id}=<its key>' to "
                "GRAPHRUNNER_CODEC_KEYS (keep a retired key until nothing encrypted with it "
                "remains)",
                key_id=key_id,
            )
        if len(sealed) < NONCE_BYTES + 16:
            raise DecryptionError(
                f"{what} (key '{key_id}') is too short to be encrypted data: it was "
                "truncated or altered",
                key_id=key_id,
            )
        from cryptography.exceptions import InvalidTag

        try:
            return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"{what} (key '{key_id}') does not decrypt: the key named '{key_id}' in "
                "GRAPHRUNNER_CODEC_KEYS is not the one that encrypted it, or the data was "
                "altered; nothing was returned. Check the key under that id",
                key_id=key_id,
            ) from None


def _aad(key_id: str) -> bytes:
    return ENCODING + b":" + key_id.encode()


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the current key; decrypts with any key of the ring.

    Args:
        keys: The key ring (``GRAPHRUNNER_CODEC_KEYS``).
    """

    def __init__(self, keys: KeyRing) -> None:
        self.cipher = Cipher(keys)

    @property
    def keys(self) -> KeyRing:
        """The key ring."""
        return self.cipher.keys

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (never leaves one in clear)."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; others pass through unchanged.

        Raises:
            DecryptionError: A payload's key is unknown or its tag does not verify.
        """
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the current key."""
        key_id, sealed = self.cipher.seal(payload.SerializeToString(), _aad(self.keys.current))
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_KEY: key_id.encode()},
            data=sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted if encrypted (else returned as is).

        Raises:
            DecryptionError: Its key is unknown or its tag does not verify.
        """
        if not is_encrypted(payload):
            return payload
        raw_id = payload.metadata.get(KEY_ID_KEY)
        if raw_id is None:
            raise DecryptionError(
                "an encrypted payload names no key (metadata 'encryption-key-id' is "
                "missing): it was altered, or not written by graphrunner's codec",
                key_id="",
            )
        key_id = raw_id.decode(errors="replace")
        plain = self.cipher.open(key_id, payload.data, _aad(key_id), what="a payload")
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def with_codec(converter: DataConverter, codec: PayloadCodec | None) -> DataConverter:
    """``converter`` encoding every payload with ``codec``, failure messages included.

    `DefaultFailureConverterWithEncodedAttributes` moves each failure's message and stack
    trace into an encoded payload (the server keeps ``Encoded failure``): they often quote
    the data. graphrunner's readers decrypt them again (`graphrunner.codec.HistoryDecoder`,
    and the SDK for errors it raises). None: ``converter`` as it is.
    """
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
