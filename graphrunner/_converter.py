"""Graphrunner's payload conversion: pydantic JSON, with its own wire models kept compact.

Every node call and result crosses into Temporal history twice per step, so their size is
most of what graphrunner adds to a history. `WireModel` values (node calls, results,
telemetry) are written without the fields that hold their defaults; everything else is
written exactly as `temporalio.contrib.pydantic.pydantic_data_converter` writes it, and
anything either wrote reads back with either.
"""

from __future__ import annotations

from typing import Any, Self

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
    SerializationContext,
)

from graphrunner._types import WireModel
from graphrunner.errors import DecryptionError

__all__ = ["GraphrunnerPayloadConverter", "graphrunner_data_converter"]


class _CompactJSON(PydanticJSONPlainPayloadConverter):
    def to_payload(self, value: Any) -> Payload | None:
        if isinstance(value, WireModel):
            data = value.__pydantic_serializer__.to_json(value, exclude_defaults=True)
            return Payload(metadata={"encoding": b"json/plain"}, data=data)
        return super().to_payload(value)


class _Encrypted(EncodingPayloadConverter):
    """Reads no encrypted payload: it says which key it needs (this process has no codec)."""

    @property
    def encoding(self) -> str:
        return "binary/encrypted"

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        key_id = payload.metadata.get("encryption-key-id", b"?").decode(errors="replace")
        raise DecryptionError(
            f"a payload is encrypted (key '{key_id}') and this process has no codec keys: "
            "set GRAPHRUNNER_CODEC_KEYS as the workers have it",
            key_id=key_id,
        )


class GraphrunnerPayloadConverter(CompositePayloadConverter):
    """`temporalio.contrib.pydantic.PydanticPayloadConverter`, with compact wire models.

    One instance per process: the SDK copies a data converter that has external storage for
    every workflow activation and activity task, and each copy used to build its payload
    converter anew, losing the cache of pydantic type adapters (the bench measured the
    external-storage converter at ~4x the CPU of plain pydantic per step for it).
    """

    _shared: GraphrunnerPayloadConverter | None = None
    _ready = False

    def __new__(cls) -> GraphrunnerPayloadConverter:
        shared = cls.__dict__.get("_shared")  # per class: a subclass gets its own
        if shared is None:
            shared = super().__new__(cls)
            cls._shared = shared
        return shared

    def with_context(self, context: SerializationContext) -> Self:
        """This converter: none of its parts use a serialization context.

        (The composite's own would build a new instance and reset the shared one's parts.)
        """
        return self

    def __init__(self) -> None:
        if self._ready:
            return
        self._ready = True
        compact = _CompactJSON()
        super().__init__(
            *(
                compact if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            ),
            _Encrypted(),
        )


graphrunner_data_converter = DataConverter(payload_converter_class=GraphrunnerPayloadConverter)
"""The data converter graphrunner clients, workers and replayers use (before blob storage)."""
