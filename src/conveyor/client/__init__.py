"""A client of the Batch API, for a Conveyor server and for Mailchimp itself.

from conveyor.client import Client
from conveyor.client import operations as ops

with Client(api_key, base_url="http://127.0.0.1:8000") as client:
    batch = client.submit(ops.upsert_member(list_id, email) for email in emails)
    client.wait(batch.id, progress=True)
    with client.failed(batch.id) as failures:
        for result in failures:
            print(result.operation_id, result.status_code, result.error)
"""

from conveyor.client.client import BatchResults, Client, datacenter_of, normalize_operation
from conveyor.client.dbsync import SyncError, SyncOptions, SyncSummary, sync
from conveyor.client.errors import (
    ArchiveError,
    BatchNotFinished,
    ConfigurationError,
    ConveyorApiError,
    ConveyorConnectionError,
    ConveyorError,
    ExtensionUnavailable,
    FieldError,
    InvalidOperation,
    WaitTimeout,
)
from conveyor.client.models import (
    Batch,
    BatchList,
    BatchResult,
    OperationState,
    ProgressUpdate,
    StreamedResult,
    Webhook,
    WebhookList,
)
from conveyor.client.progress import BatchProgress

__all__ = [
    "ArchiveError",
    "Batch",
    "BatchList",
    "BatchNotFinished",
    "BatchProgress",
    "BatchResult",
    "BatchResults",
    "Client",
    "ConfigurationError",
    "ConveyorApiError",
    "ConveyorConnectionError",
    "ConveyorError",
    "ExtensionUnavailable",
    "FieldError",
    "InvalidOperation",
    "OperationState",
    "ProgressUpdate",
    "StreamedResult",
    "SyncError",
    "SyncOptions",
    "SyncSummary",
    "WaitTimeout",
    "Webhook",
    "WebhookList",
    "datacenter_of",
    "normalize_operation",
    "sync",
]
