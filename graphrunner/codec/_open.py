"""The codec and the record cipher the settings ask for (``GRAPHRUNNER_CODEC_KEYS``)."""

from __future__ import annotations

from graphrunner._settings import Settings
from graphrunner.codec._codec import EncryptionCodec
from graphrunner.codec._keys import KeyRing, parse_keys
from graphrunner.codec._records import RecordCipher

__all__ = ["codec_from_settings", "key_ring", "record_cipher"]


def key_ring(settings: Settings) -> KeyRing | None:
    """The settings' codec keys, or None when payloads are not encrypted."""
    if settings.codec_keys is None:
        return None
    return parse_keys(settings.codec_keys.get_secret_value())  # validated with the settings


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """The payload codec of every client, worker and replayer, or None without keys."""
    keys = key_ring(settings)
    return EncryptionCodec(keys) if keys is not None else None


def record_cipher(settings: Settings) -> RecordCipher | None:
    """What opens (and, with ``encrypt_records``, seals) execution records; None without keys."""
    keys = key_ring(settings)
    return RecordCipher(keys) if keys is not None else None
