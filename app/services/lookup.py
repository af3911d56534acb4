"""Online look-up ("break the glass", issue 14 slice 7): find a person no cache holds at one of
the profile's sources, then open their record; docs/design/multi-trust.md section 7.

`look_up(session, source, query, reason)` searches the source; `open_looked_up(session, source,
hit, reason)` fetches the record of the person the officer picked and stores it with the
look-up mark, kept until `_lookups.keep_until` and then erased (`expire_lookups`).

1. The reason is mandatory: a purpose of use (`ETREAT` emergency treatment or `BTG` break
   the glass) and the officer's own words. An NHS number must pass its Modulus 11 check
   (`app.nhs_number`) and a name search needs the family name and the whole date of birth;
   nothing is written or sent before that.
2. Audit first, fail closed: the entry goes into the local audit chain (actions
   `lookup-search`, `lookup-open`; the reason column holds the source, the codes and the
   words, and for a search the query as the source receives it), then the same event (same
   id, same time) is POSTed to the source (`sync.search_online` / `sync.open_online`); if
   that POST fails, nothing is asked. The local entry stays either way: the chain records
   every attempt, also one the source never saw. When the source is home, where the chain is
   uploaded, the event carries its chain link, so the copy the home record holds under that
   id is the chained one (the later upload of the local entry is then a no-op there, not a
   gap).
3. An opened record is stored in one transaction with `lookup_expires_at` (nothing is kept
   from an opening that fails part-way), and read back as the record card with
   `looked_up_until` set: the screens say "Looked up online — kept until HH:MM".

Errors are `LookupFailed` (a `KerbsideError`, one line, never patient data) saying what
happened and that nothing was kept: no connection, credentials refused, not found, refused
by the source, or an answer Kerbside cannot use; `offline` tells the screen to show the
source as unreachable. Bad input is `InvalidInput` naming the field.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from app.errors import InvalidInput, KerbsideError, ProfileError
from app.fhir import display_name_of
from app.nhs_number import is_valid, is_well_formed, normalise
from app.security import SourceSettings
from app.services import records
from app.services._lookups import (
    DEFAULT_KEEP_HOURS,
    KEEP_CHOICES,
    KEEP_HOURS_SETTING,
    KEEP_SETTING,
    KEEP_SHIFT,
    KEEP_SYNC,
    expire_lookups,
    keep_until,
    stamp,
    trusted_now,
)
from app.services.session import Session
from app.services.syncing import build_client, revoked_text, sync_options
from app.store import HOME_SOURCE
from sync import (
    AuthFailed,
    BadResponse,
    DeviceRevoked,
    FhirClient,
    HttpSession,
    InvalidRequest,
    NotFound,
    PurposeOfUse,
    RetryPolicy,
    SyncError,
    Timeouts,
    TransientError,
    open_online,
    search_online,
    search_query,
)

log = logging.getLogger("kerbside.services")

__all__ = [
    "DEFAULT_KEEP_HOURS",
    "KEEP_CHOICES",
    "KEEP_HOURS_SETTING",
    "KEEP_SETTING",
    "KEEP_SHIFT",
    "KEEP_SYNC",
    "LOOKUP_OPEN_ACTION",
    "LOOKUP_PURPOSES",
    "LOOKUP_SEARCH_ACTION",
    "LookupFailed",
    "LookupHit",
    "LookupQuery",
    "LookupReason",
    "LookupResult",
    "LookupSource",
    "expire_lookups",
    "look_up",
    "lookup_sources",
    "open_looked_up",
]

LOOKUP_SEARCH_ACTION = "lookup-search"
LOOKUP_OPEN_ACTION = "lookup-open"
# The purposes an officer may give (v3-ActReason), as the reason sheet offers them.
LOOKUP_PURPOSES: tuple[tuple[str, str], ...] = (
    ("ETREAT", "Emergency treatment"),
    ("BTG", "Break the glass"),
)
# An officer waits on scene: two tries, short timeouts, then a clear "no connection".
LOOKUP_RETRY = RetryPolicy(attempts=2, base_s=0.5, cap_s=2.0, bad_body_attempts=1)
LOOKUP_TIMEOUTS = Timeouts(connect_s=5.0, read_s=20.0)


class LookupFailed(KerbsideError):
    """A look-up that did not happen or did not complete; nothing from it was kept.
    `offline`: the source could not be reached (the screen shows it unreachable)."""

    def __init__(self, message: str, *, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True, slots=True)
class LookupSource:
    """A source the officer can look a person up at: its profile name and the Trust's name."""

    name: str
    trust: str
    is_home: bool


@dataclass(frozen=True, slots=True)
class LookupReason:
    """Why: one of LOOKUP_PURPOSES' codes and the officer's own words (both required)."""

    code: str
    text: str

    def purpose(self) -> PurposeOfUse:
        if self.code not in dict(LOOKUP_PURPOSES):
            raise InvalidInput("choose emergency treatment or break the glass", field="reason_code")
        try:
            return PurposeOfUse(self.text.strip(), (self.code,))
        except InvalidRequest as exc:
            raise InvalidInput(str(exc), field="reason_text") from None


@dataclass(frozen=True, slots=True)
class LookupQuery:
    """NHS number alone, or family name and date of birth (given name optional)."""

    nhs_number: str | None = None
    family: str | None = None
    given: str | None = None
    birth_date: date | str | None = None  # a date, or as typed: DD/MM/YYYY (or YYYY-MM-DD)


@dataclass(frozen=True, slots=True)
class LookupHit:
    """Only enough to pick the person (and to warn about a record not to open)."""

    source: str  # the profile's name of the source
    patient_id: str  # the source's Patient id
    name: str
    birth_date: date | None
    gender: str | None
    area: str | None  # partial address: town and the postcode's outward part
    inactive: bool  # the source marks the record inactive
    deceased: bool
    replaced: bool  # linked to another record (merged): open that one instead


@dataclass(frozen=True, slots=True)
class LookupResult:
    source: str
    hits: tuple[LookupHit, ...]
    more: bool  # the source holds more matches: narrow the search
    audit_event_id: str


def lookup_sources(session: Session) -> list[LookupSource]:
    """The sources a look-up can ask, home first (one look-up asks one source); not one
    that revoked this device."""
    return [
        LookupSource(s.name, trust_name(s), s.is_home)
        for s in sorted(session.profile.sources, key=lambda s: not s.is_home)
        if not s.revoked_at
    ]


def trust_name(source: SourceSettings) -> str:
    """What officers call the source: the Trust's display name, else "the central record"
    for home and the source's name for another."""
    return source.display_name or ("the central record" if source.is_home else source.name)


# -- searching ------------------------------------------------------------------------------
def look_up(
    session: Session,
    source: str,
    query: LookupQuery,
    reason: LookupReason,
    *,
    http: HttpSession | None = None,
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
) -> LookupResult:
    """Search `source` (a profile source name) for the person `query` describes, audited
    here and at the source first."""
    purpose = reason.purpose()
    criteria = _criteria(query)
    try:
        sent = search_query(**criteria)
    except InvalidRequest as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
    settings = session.profile.source(source)
    trust = trust_name(settings)
    with _failures(trust, opening=False):
        client = _client(session, settings, http, retry)
        event_id, at, chain = _audit_here(
            session,
            LOOKUP_SEARCH_ACTION,
            None,
            None,
            f"{_reason_text(source, purpose)}\nquery: {sent}",
            now,
            home=settings.is_home,
        )
        found = search_online(
            client,
            purpose=purpose,
            audit=sync_options(session.profile).audit,
            user_id=session.user_id,
            event_id=event_id,
            at=at,
            chain=chain,
            **criteria,
        )
    hits = tuple(_hit(source, p) for p in found.patients)
    log.info("online look-up search at %s: %d hit(s)", source, len(hits))
    return LookupResult(source, hits, found.more, event_id)


# -- opening --------------------------------------------------------------------------------
def open_looked_up(
    session: Session,
    source: str,
    hit: LookupHit,
    reason: LookupReason,
    *,
    http: HttpSession | None = None,
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
) -> records.PatientRecord:
    """Fetch the record of the person `hit` names from `source`, audited here and there
    first; store it with the look-up mark and return its record card."""
    purpose = reason.purpose()
    if hit.source != source:
        raise InvalidInput("that person was found at another source", field="source")
    settings = session.profile.source(source)
    trust = trust_name(settings)
    sid = HOME_SOURCE if settings.is_home else session.store.ensure_source(source, settings.role)
    current = trusted_now(session.store, now)
    with _failures(trust, opening=True):
        client = _client(session, settings, http, retry)
        event_id, at, chain = _audit_here(
            session,
            LOOKUP_OPEN_ACTION,
            hit.patient_id,
            sid,
            _reason_text(source, purpose),
            now,
            home=settings.is_home,
        )
        record = open_online(
            client,
            hit.patient_id,
            purpose=purpose,
            audit=sync_options(session.profile).audit,
            user_id=session.user_id,
            event_id=event_id,
            at=at,
            chain=chain,
        )
    until = keep_until(session.profile.settings, current)
    session.store.put_resources(sid, record.resources, lookup_expires_at=stamp(until))
    log.info("online look-up opened a record at %s", source)
    return records.read_opened_record(session, hit.patient_id, event_id, source=sid, now=now)


# -- the parts ------------------------------------------------------------------------------
def _criteria(query: LookupQuery) -> dict[str, Any]:
    """The search's criteria, checked as far as the app can (the NHS number's check digit)."""
    number = (query.nhs_number or "").strip()
    if number:
        if any((query.family, query.given, query.birth_date)):
            raise InvalidInput(
                "search by NHS number alone, or by name and date of birth", field="nhs_number"
            )
        if not is_well_formed(number):
            raise InvalidInput("an NHS number is 10 digits", field="nhs_number")
        if not is_valid(number):
            raise InvalidInput(
                "that NHS number's check digit is wrong: check the number", field="nhs_number"
            )
        return {"nhs_number": normalise(number)}
    born = query.birth_date
    if isinstance(born, str):
        born = parse_birth_date(born) if born.strip() else None
    if not (query.family or "").strip() or born is None:
        raise InvalidInput(
            "give the family name and date of birth, or the NHS number",
            field="family" if not (query.family or "").strip() else "birth_date",
        )
    return {"family": query.family, "given": query.given or None, "birth_date": born}


_UK_DATE = re.compile(r"^\s*(\d{1,2})[/.\- ](\d{1,2})[/.\- ](\d{4})\s*$")


def parse_birth_date(text: str) -> date:
    """A whole date of birth as an officer types it: DD/MM/YYYY (also with `-`, `.` or a
    space), or YYYY-MM-DD; InvalidInput otherwise (a look-up needs the whole date)."""
    match = _UK_DATE.match(text)
    try:
        if match:
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
        return date.fromisoformat(text.strip())
    except ValueError:
        pass
    raise InvalidInput("give the whole date of birth as DD/MM/YYYY", field="birth_date")


def _reason_text(source: str, purpose: PurposeOfUse) -> str:
    """The local entry's reason column: which source, which codes, the officer's words."""
    return f"{source} {'+'.join(purpose.codes)}: {purpose.text.strip()}"


def _audit_here(
    session: Session,
    action: str,
    patient_id: str | None,
    sid: int | None,
    reason: str,
    now: datetime | None,
    *,
    home: bool,
) -> tuple[str, str, tuple[int, str, str] | None]:
    """The local audit entry: its event id and time for the source's copy, and its chain
    link when the source is home (see the module docstring)."""
    event_id = str(uuid.uuid4())
    seq = session.store.audit(
        user_id=session.user_id,
        action=action,
        patient_id=patient_id,
        source=sid,
        reason=reason,
        event_id=event_id,
        at=now,
    )
    entry = session.store.audit_entry(seq)
    if entry is None or entry.event_id != event_id:  # pragma: no cover - the chain's own write
        raise KerbsideError("the audit entry for the look-up could not be read back")
    chain = (entry.seq, entry.prev_hash, entry.hash) if home else None
    return event_id, entry.at, chain


def _client(
    session: Session,
    settings: SourceSettings,
    http: HttpSession | None,
    retry: RetryPolicy | None,
) -> FhirClient:
    if settings.revoked_at:  # its secret is gone too: say why, not "no client secret"
        raise ProfileError(revoked_text(settings))
    return build_client(
        session.profile,
        http,
        retry=retry or LOOKUP_RETRY,
        timeouts=LOOKUP_TIMEOUTS,
        source=None if settings.is_home else settings.name,
    )


class _failures:
    """Sync's errors as the officer should read them (the source's own words are left out:
    they may echo what was searched for)."""

    def __init__(self, trust: str, *, opening: bool) -> None:
        self.trust = trust
        self.opening = opening

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if exc is None or not isinstance(exc, SyncError):
            return
        what = "the record was not opened" if self.opening else "nobody was looked up"
        trust = self.trust
        if isinstance(exc, TransientError):
            raise LookupFailed(
                f"No connection to {trust}: {what}. Try again when the tablet is online.",
                offline=True,
            ) from None
        if isinstance(exc, AuthFailed | DeviceRevoked):
            raise LookupFailed(
                f"{trust} did not accept this tablet: {what}. Ask Trust IT to check this "
                f"tablet's access to {trust}."
            ) from None
        if isinstance(exc, NotFound):
            raise LookupFailed(
                f"{trust} no longer holds that record: search again."
                if self.opening
                else f"{trust} does not offer online look-up: nobody was looked up."
            ) from None
        if isinstance(exc, InvalidRequest):
            raise InvalidInput(str(exc), field=exc.field) from None
        if isinstance(exc, BadResponse):
            raise LookupFailed(
                f"{trust} sent an answer Kerbside cannot use: {what}; nothing was kept."
            ) from None
        raise LookupFailed(f"{trust} refused the look-up: {what}; nothing was kept.") from None


def _hit(source: str, patient: dict[str, Any]) -> LookupHit:
    birth = records.full_date(patient.get("birthDate"))
    deceased = bool(patient.get("deceasedBoolean")) or bool(patient.get("deceasedDateTime"))
    return LookupHit(
        source=source,
        patient_id=str(patient["id"]),
        name=display_name_of(patient),
        birth_date=birth,
        gender=patient.get("gender") if isinstance(patient.get("gender"), str) else None,
        area=_area(patient.get("address")),
        inactive=patient.get("active") is False,
        deceased=deceased,
        replaced=any(
            isinstance(link, dict) and link.get("type") == "replaced-by"
            for link in patient.get("link") or ()
        ),
    )


def _area(addresses: Any) -> str | None:
    """Town and the postcode's outward part ("Leeds LS6"): enough to tell two people apart,
    not where either lives."""
    if not isinstance(addresses, list):
        return None
    usable = [
        a for a in addresses if isinstance(a, dict) and a.get("use") not in ("old", "billing")
    ]
    usable.sort(key=lambda a: a.get("use") != "home")
    for address in usable:
        town = address.get("city") or address.get("district")
        postcode = str(address.get("postalCode") or "").strip().upper()
        outward = (
            postcode.split()[0] if " " in postcode else postcode[:-3] if len(postcode) > 4 else ""
        )
        parts = [str(p) for p in (town, outward) if p]
        if parts:
            return " ".join(parts)
    return None


def describe(hit: LookupHit) -> Sequence[str]:
    """Warnings to show beside a hit."""
    notes = []
    if hit.deceased:
        notes.append("recorded as deceased")
    if hit.inactive:
        notes.append("record marked inactive")
    if hit.replaced:
        notes.append("record replaced by another")
    return notes
