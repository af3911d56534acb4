"""FHIR R4 sync with a central record: client, engine, errors, the storage port, and the
online look-up of a person no cache holds.
Imports nothing from `app` and nothing from Qt; storage is whatever implements `SyncStore`."""

from sync._auth import ClientCredentials, TokenSource
from sync._capabilities import Capabilities, parse_capabilities
from sync._client import (
    Answer,
    FhirClient,
    HttpSession,
    RetryPolicy,
    Timeouts,
    check_url_allowed,
    discover_token_url,
    new_http_session,
    outcome_text,
)
from sync._engine import SyncEngine
from sync._exceptions import (
    AuthFailed,
    BadResponse,
    Cancelled,
    ConnectionLost,
    DeviceRevoked,
    InsecureConnection,
    InvalidRequest,
    NotFound,
    ServerRejected,
    ServerUnavailable,
    SyncError,
    Timeout,
    TransientError,
    Unsupported,
)
from sync._lookup import OnlineHits, OnlineRecord, open_online, search_online, search_query
from sync._pipeline import BulkWorker, Preparer, in_background
from sync._ports import AuditRecord, HeldVersion, OutboxItem, PurposeOfUse, SyncStore
from sync._push import Pusher, audit_event
from sync._report import AuditIdentity, Progress, Rejection, SyncOptions, SyncReport
from sync._run import RunContext

__all__ = [
    "Answer",
    "AuditIdentity",
    "AuditRecord",
    "AuthFailed",
    "BadResponse",
    "BulkWorker",
    "Cancelled",
    "Capabilities",
    "ClientCredentials",
    "ConnectionLost",
    "DeviceRevoked",
    "FhirClient",
    "HeldVersion",
    "HttpSession",
    "InsecureConnection",
    "InvalidRequest",
    "NotFound",
    "OnlineHits",
    "OnlineRecord",
    "OutboxItem",
    "Preparer",
    "Progress",
    "PurposeOfUse",
    "Pusher",
    "Rejection",
    "RetryPolicy",
    "RunContext",
    "ServerRejected",
    "ServerUnavailable",
    "SyncEngine",
    "SyncError",
    "SyncOptions",
    "SyncReport",
    "SyncStore",
    "Timeout",
    "Timeouts",
    "TokenSource",
    "TransientError",
    "Unsupported",
    "audit_event",
    "check_url_allowed",
    "discover_token_url",
    "in_background",
    "new_http_session",
    "open_online",
    "outcome_text",
    "parse_capabilities",
    "search_online",
    "search_query",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sync._"):
        try:
            _obj.__module__ = "sync"
        except (AttributeError, TypeError):
            pass
del _name, _obj
