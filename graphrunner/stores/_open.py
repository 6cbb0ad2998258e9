"""Open the stores and the data converter the way settings say (shared by client and worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.converter import DataConverter

from graphrunner._converter import graphrunner_data_converter
from graphrunner._settings import Settings
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

    Raises:
        SchemaError: The database is unreachable, or its schema is behind or ahead.
    """
    store = RecordStore(settings.state_db_url())
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


def data_converter(settings: Settings, blobs: BlobStore) -> DataConverter:
    """Pydantic conversion, with payloads over the threshold kept in ``blobs``."""
    return with_external_storage(
        graphrunner_data_converter, blobs, threshold=settings.payload_threshold_bytes
    )


async def stream_result(record: ExecutionRecord, blobs: BlobStore) -> AsyncIterator[bytes]:
    """The JSON bytes of a recorded result: inline ones at once, large ones from ``blobs``."""
    if record.result_uri is None:
        yield (record.result_inline or "null").encode()
        return
    async for chunk in blobs.stream(record.result_uri):
        yield chunk
