"""Errors of the sync engine. Texts name the request kind, status and reason, never patient data
or full URLs (a search URL can carry an identifier).

    SyncError                      a sync run could not finish; nothing half-applied locally
     +-- TransientError            worth retrying later (the client already retried with backoff)
     |    +-- ConnectionLost       refused, reset or dropped connection, truncated body
     |    +-- Timeout              connect or read timeout
     |    +-- ServerUnavailable    5xx, 429 or 408 after the retries ran out
     +-- ServerRejected            a 4xx with an OperationOutcome for the run as a whole
     |    +-- NotFound             the resource asked for is not (or no longer) on the server
     +-- BadResponse               the answer is not the FHIR we asked for (shape, JSON, size)
     +-- AuthFailed                no token, or the server refused ours twice
     +-- DeviceRevoked             the central record revoked this device: wipe the cache
     +-- Unsupported               the server lacks a FHIR feature sync relies on
     +-- InsecureConnection        plain http to a non-loopback host, or a bad TLS setting
     +-- Cancelled                 the caller's cancel event was set
     +-- InvalidRequest            the caller's request cannot be sent as given (a bad NHS
                                   number, no reason given); nothing was sent

A rejected *record* is not an exception: it is a normal outcome (kept in the outbox with the
server's reason and counted in the SyncReport).
"""

from __future__ import annotations


class SyncError(Exception):
    """A sync run stopped; the message is one line safe to show to an officer."""


class TransientError(SyncError):
    """The network or the server failed in a way that a later retry may fix."""


class ConnectionLost(TransientError):
    pass


class Timeout(TransientError):
    pass


class ServerUnavailable(TransientError):
    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class ServerRejected(SyncError):
    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class NotFound(ServerRejected):
    pass


class BadResponse(SyncError):
    pass


class AuthFailed(SyncError):
    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class DeviceRevoked(SyncError):
    pass


class Unsupported(SyncError):
    pass


class InsecureConnection(SyncError):
    pass


class Cancelled(SyncError):
    pass


class InvalidRequest(SyncError):
    """Refused before anything was sent; `field` names the input at fault (the message is
    about its form, never its value)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field
