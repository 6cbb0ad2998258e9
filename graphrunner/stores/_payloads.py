"""Temporal external payload storage backed by a `BlobStore`.

Any payload at or over a size threshold is written to the blob store, content-addressed, and
history carries only a small reference (URI and SHA-256) in its place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from graphrunner.stores._blobs import BlobIntegrityError, BlobStore

__all__ = ["DEFAULT_PAYLOAD_THRESHOLD", "BlobPayloadDriver", "with_external_storage"]

DEFAULT_PAYLOAD_THRESHOLD = 256 * 1024
"""Payloads of this many serialized bytes or more leave history (Temporal warns at 512 KiB)."""

_DRIVER_TYPE = "graphrunner.blobs"


class BlobPayloadDriver(StorageDriver):
    """Stores Temporal payloads in a `BlobStore` under ``<key_prefix>/<sha256>``.

    The key is the SHA-256 of the serialized payload, so a payload seen twice (a large input
    passed on to an activity, say) is written once. Retrieval checks that hash.

    Args:
        blobs: Where payloads go. Every worker and client must open the same store.
        name: Driver name recorded in each reference; keep it stable across deployments.
        key_prefix: Key folder of the payload blobs.
    """

    def __init__(
        self, blobs: BlobStore, *, name: str = _DRIVER_TYPE, key_prefix: str = "payloads"
    ) -> None:
        self._blobs = blobs
        self._name = name
        self._key_prefix = key_prefix.strip("/")

    def name(self) -> str:
        """The driver name recorded in references."""
        return self._name

    def type(self) -> str:
        """The driver type, the same for every instance."""
        return _DRIVER_TYPE

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload unless an identical one is stored already; return its claim."""
        # Equal payloads in one batch are written once (and never raced against each other).
        encoded = [p.SerializeToString(deterministic=True) for p in payloads]
        digests = await asyncio.to_thread(lambda: [_sha256(data) for data in encoded])
        unique = dict(zip(digests, encoded, strict=True))
        stored = await asyncio.gather(*(self._store_one(d, data) for d, data in unique.items()))
        claims = dict(zip(unique, stored, strict=True))
        return [claims[digest] for digest in digests]

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read each claimed payload back and check its SHA-256.

        Raises:
            BlobNotFound: A claimed blob is gone.
            BlobIntegrityError: A blob's content differs from what was stored, or a claim is
                not one of this driver's.
        """
        return list(await asyncio.gather(*(self._retrieve_one(c) for c in claims)))

    async def _store_one(self, digest: str, data: bytes) -> StorageDriverClaim:
        # Serialized deterministically so equal payloads (metadata is a map) hash equal.
        key = f"{self._key_prefix}/{digest}"
        uri = self._blobs.uri(key)
        if not await self._blobs.exists(uri):
            await self._blobs.put(key, data)
        return StorageDriverClaim(claim_data={"uri": uri, "sha256": digest, "size": str(len(data))})

    async def _retrieve_one(self, claim: StorageDriverClaim) -> Payload:
        uri = claim.claim_data.get("uri")
        expected = claim.claim_data.get("sha256")
        if not uri or not expected:
            raise BlobIntegrityError(
                f"external payload reference {dict(claim.claim_data)!r} lacks 'uri' or "
                f"'sha256': it was not written by {type(self).__name__}"
            )
        data = await self._blobs.get(uri)
        actual = await asyncio.to_thread(_sha256, data)
        if actual != expected:
            raise BlobIntegrityError(
                f"external payload {uri} is corrupt: SHA-256 {actual} but history "
                f"expects {expected}; restore the blob or reset the workflow before its use"
            )
        payload = Payload()
        payload.ParseFromString(data)
        return payload


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_external_storage(
    converter: DataConverter,
    blobs: BlobStore,
    *,
    threshold: int = DEFAULT_PAYLOAD_THRESHOLD,
) -> DataConverter:
    """A copy of ``converter`` that keeps payloads of ``threshold`` bytes or more in ``blobs``.

    Give the result to the client that workers are built from and to every client that
    starts workflows or reads results, e.g.
    ``with_external_storage(pydantic_data_converter, open_blob_store(url))``.

    Args:
        converter: The converter to extend; its payload converter and codec are kept.
        blobs: Where large payloads go.
        threshold: Size in bytes of a serialized payload from which it is stored externally.

    Raises:
        ValueError: ``converter`` already has external storage, or ``threshold`` < 0.
    """
    if converter.external_storage is not None:
        raise ValueError(
            "the data converter already has external storage; "
            "call with_external_storage on the converter without it"
        )
    storage = ExternalStorage(drivers=[BlobPayloadDriver(blobs)], payload_size_threshold=threshold)
    return dataclasses.replace(converter, external_storage=storage)
