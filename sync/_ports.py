"""What sync needs from local storage, declared here so sync/ depends on no app code.

`app/services/syncing.py` provides it over the encrypted Store; a test can provide it over
anything. Every method that writes is one local transaction: the engine relies on that to
leave the cache consistent when a run stops between two calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sync._exceptions import InvalidRequest
from sync._pipeline import Preparer


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A field record waiting for the central record: `payload` is a transaction Bundle."""

    seq: int
    client_id: str
    kind: str
    patient_id: str | None
    payload: bytes
    attempts: int


ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# The purposes of use an online look-up may give (v3-ActReason): emergency treatment, and
# "break the glass" (access beyond the usual rules, to be reviewed).
PURPOSE_CODES: dict[str, str] = {"ETREAT": "Emergency Treatment", "BTG": "break the glass"}
MAX_PURPOSE_TEXT = 1000


@dataclass(frozen=True, slots=True)
class PurposeOfUse:
    """Why a person's record is being looked up: v3-ActReason codes and the officer's own
    words. Checked when made (InvalidRequest), so an AuditEvent never goes without one."""

    text: str
    codes: tuple[str, ...] = ("ETREAT", "BTG")

    def __post_init__(self) -> None:
        if not self.codes or len(set(self.codes)) != len(self.codes):
            raise InvalidRequest("give the purpose of use: ETREAT, BTG or both", field="codes")
        unknown = [c for c in self.codes if c not in PURPOSE_CODES]
        if unknown:
            raise InvalidRequest(
                f"unknown purpose-of-use code; use {' or '.join(PURPOSE_CODES)}", field="codes"
            )
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidRequest(
                "say why the record is needed (the reason is required)", field="text"
            )
        if len(self.text) > MAX_PURPOSE_TEXT:
            raise InvalidRequest(
                f"keep the reason under {MAX_PURPOSE_TEXT} characters", field="text"
            )
        if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in self.text):
            raise InvalidRequest("the reason holds control characters", field="text")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry to upload as an AuditEvent: a local-chain entry, or an online
    look-up's (which carries a `purpose`)."""

    event_id: str
    at: str
    user_id: str
    action: str
    patient_id: str | None
    reason: str | None
    seq: int | None = None  # the per-device sequence number, 1, 2, 3...
    prev_hash: str | None = None  # the chain: hash of entry seq-1
    hash: str | None = None  # this entry's hash
    purpose: PurposeOfUse | None = None  # coded purpose of use (online look-ups)


@dataclass(frozen=True, slots=True)
class HeldVersion:
    version_id: str | None
    last_updated: str | None


class SyncStore(Protocol):
    # -- pull ------------------------------------------------------------------------------
    def cursor(self, rtype: str) -> str | None:
        """The search high-water mark (`meta.lastUpdated` as the server wrote it), or None."""

    def apply_page(
        self,
        rtype: str,
        resources: Sequence[dict[str, Any]],
        cursor: str | None,
        deleted_ids: Sequence[str] = (),
    ) -> int:
        """Store resources (skipping versions already held or older), delete `deleted_ids` and
        set the cursor (None: leave it) in one transaction; returns how many were stored."""

    def held_versions(self, rtype: str, ids: Sequence[str]) -> dict[str, HeldVersion]:
        """What the cache holds for these ids (absent ids are not in the cache)."""

    def known_ids(self, rtype: str) -> Iterable[str]:
        """Every id of this type in the cache (id reconciliation)."""

    def count(self, rtype: str) -> int:
        """How many resources of this type the cache holds."""

    # -- bulk load (first load through FHIR Bulk Data) ---------------------------------------
    def begin_bulk_load(self) -> None:
        """From now on writes skip the secondary and search indexes, and search refuses to
        answer, until `finish_bulk_load` (the mark survives a crash)."""

    def bulk_preparer(self) -> Callable[[], Preparer]:
        """What turns NDJSON lines into what `put_bulk` writes (see `sync._pipeline`). It runs
        in a worker process or thread, never touches the database, and must be picklable by
        reference (a top-level class or function)."""

    def put_bulk(self, prepared: Sequence[Any], *, into_empty: bool) -> int:
        """Store prepared batches in one transaction; returns how many were new or newer.
        `into_empty`: the cache held none of this type when the load began."""

    def finish_bulk_load(self, built: Any = None) -> None:
        """Build every index once and clear the mark (one transaction). `built`: what the
        preparer's `finish()` collected, or None (a load that stopped: derive it all)."""

    def abandon_bulk_load(self) -> None:
        """The load stopped part-way: the mark stays for the next run to finish."""

    def bulk_load_pending(self) -> bool:
        """A bulk load (sync or import) began and its index build has not finished."""

    def holds_search_data(self) -> bool:
        """The cache holds any source's Patient or Flag (search would have something to
        lose while a bulk load runs)."""

    def get_state(self, key: str) -> str | None:
        """Small sync state (deletion cursors, pass markers, counters)."""

    def set_state(self, key: str, value: str | None) -> None:
        """Set (None: remove) a state value in its own transaction."""

    def repoint_patient(self, old_id: str, new_id: str) -> int:
        """A merge: rewrite `Patient/<old_id>` to the surviving id in pending field records;
        returns how many records changed."""

    # -- push ------------------------------------------------------------------------------
    def pending_outbox(self, limit: int) -> list[OutboxItem]:
        """Pending field records, oldest first."""

    def record_attempt(self, seq: int, at: str) -> None:
        """Count a send attempt before the request goes out (a crash still counts it)."""

    def mark_sent(
        self, seq: int, response: bytes, resources: Sequence[dict[str, Any]], at: str
    ) -> None:
        """The server accepted the record: mark it sent, keep its answer, and cache the
        resources the server returned, in one transaction."""

    def mark_rejected(self, seq: int, reason: str, response: bytes | None, at: str) -> None:
        """The server refused the record: keep it, with the server's reason."""

    # -- audit -----------------------------------------------------------------------------
    def pending_audit(self, limit: int) -> list[AuditRecord]:
        """Audit entries not yet uploaded, oldest first."""

    def mark_audit_uploaded(self, event_ids: Sequence[str], at: str) -> None:
        """The server holds these AuditEvents."""
