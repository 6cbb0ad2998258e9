"""State DB (execution records) and blob store (large results and payloads)."""

from graphrunner.stores._blobs import (
    BlobIntegrityError,
    BlobNotFound,
    BlobOutsideStore,
    BlobRef,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    open_blob_store,
)
from graphrunner.stores._models import ReserveOutcome, UsageReservation, UsageSettlement
from graphrunner.stores._open import data_converter, open_blobs, open_records, stream_result
from graphrunner.stores._payloads import (
    DEFAULT_PAYLOAD_THRESHOLD,
    BlobPayloadDriver,
    with_external_storage,
)
from graphrunner.stores._records import (
    CostRow,
    DecisionRecord,
    ExecutionRecord,
    ExecutionStatus,
    LifetimeSummary,
    RecordStore,
    SchemaError,
    UsageDelta,
    UsageTotals,
)
from graphrunner.stores._schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_PAYLOAD_THRESHOLD",
    "SCHEMA_VERSION",
    "BlobIntegrityError",
    "BlobNotFound",
    "BlobOutsideStore",
    "BlobPayloadDriver",
    "BlobRef",
    "BlobStore",
    "CostRow",
    "DecisionRecord",
    "ExecutionRecord",
    "ExecutionStatus",
    "LifetimeSummary",
    "LocalBlobStore",
    "RecordStore",
    "ReserveOutcome",
    "S3BlobStore",
    "SchemaError",
    "UsageDelta",
    "UsageReservation",
    "UsageSettlement",
    "UsageTotals",
    "data_converter",
    "open_blob_store",
    "open_blobs",
    "open_records",
    "stream_result",
    "with_external_storage",
]
