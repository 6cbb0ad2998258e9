"""Open the stores and the data converter the way settings say (shared by client and worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.converter import DataConverter

from graphrunner._converter import graphrunner_data_converter
from graphrunner._settings import Settings
from graphrunner.codec import (
    RecordCipher,
    codec_from_settings,
    open_blob,
    record_cipher,
    with_codec,
)
from graphrunner.codec._records import SEALED_MAGIC
from graphrunner.stores._blobs import BlobStore, open_blob_store
from graphrunner.stores._payloads import with_external_storage
from graphrunner.stores._records import ExecutionRecord, RecordStore

__all__ = ["data_converter", "open_blobs", "open_records", "stream_result"]


def open_blobs(settings: Settings) -> BlobStore:
    """The blob store named by ``GRAPHRUNNER_BLOB_URL`` (default: a directory under home)."""
    return open_blob_store(
        settings.blob_store_url(),
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
    )


def open_records(settings: Settings) -> RecordStore:
    """The state DB named by ``GRAPHRUNNER_DATABASE_URL``, with its schema checked.

    With ``GRAPHRUNNER_CODEC_KEYS`` it opens encrypted records as it reads them.

    Raises:
        SchemaError: The database is unreachable, or its schema is behind or ahead.
    """
    store = RecordStore(settings.state_db_url(), cipher=record_cipher(settings))
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


def data_converter(settings: Settings, blobs: BlobStore) -> DataConverter:
    """Pydantic conversion, with payloads over the threshold kept in ``blobs``.

    With ``GRAPHRUNNER_CODEC_KEYS``, every payload is encrypted (before it goes to ``blobs``)
    and failure messages too.
    """
    converter = with_codec(graphrunner_data_converter, codec_from_settings(settings))
    return with_external_storage(converter, blobs, threshold=settings.payload_threshold_bytes)


async def stream_result(
    record: ExecutionRecord, blobs: BlobStore, cipher: RecordCipher | None = None
) -> AsyncIterator[bytes]:
    """The JSON bytes of a recorded result: inline ones at once, large ones from ``blobs``.

    An encrypted result blob is read whole and opened with ``cipher`` (the state DB's):
    AES-GCM checks its tag only at the end, and nothing unchecked is handed out.

    Raises:
        DecryptionError: The result is encrypted and ``cipher`` is None or lacks its key.
    """
    if record.result_uri is None:
        yield (record.result_inline or "null").encode()
        return
    chunks = blobs.stream(record.result_uri)
    first = await anext(chunks, b"")
    if not first.startswith(SEALED_MAGIC):
        yield first
        async for chunk in chunks:
            yield chunk
        return
    sealed = first + b"".join([chunk async for chunk in chunks])
    yield open_blob(cipher, sealed, execution_id=record.execution_id, column="result")
