"""Who a cached Patient is across sources (issue 14, docs/design/multi-trust.md section 5):
every source's row with the same verified NHS number. One place for the record view (which
reads every member) and for recording an encounter (whose subject is the home member, when
home knows the person)."""

from __future__ import annotations

from app.fhir import verified_nhs_number
from app.services.session import Session
from app.store import HOME_SOURCE

HOME_TRUST_LABEL = "Home Trust"  # the home source's label when the profile gives no name


def members_of(session: Session, source: int, patient_id: str) -> tuple[tuple[int, str], ...]:
    """Every source's (sid, id) of the person `source`'s Patient `patient_id` is, home first:
    the rows that share its person key (`nhs:<verified number>`; a `src:` key is one row's
    own, never merged; `Store.people` leaves out a number one source holds twice). The row
    itself is always a member, first among its source's (also when it is not cached)."""
    patient = session.store.get_resource(source, "Patient", patient_id)
    number = verified_nhs_number(patient) if patient is not None else None
    if number is None:
        return ((source, patient_id),)
    rows = session.store.people([f"nhs:{number}"]).get(f"nhs:{number}", [])
    members = [(m.source, m.id) for m in rows]
    if (source, patient_id) not in members:  # the index is behind the row (a load under way)
        members.append((source, patient_id))
    members.sort(key=lambda m: (m[0], m != (source, patient_id), m[1]))
    return tuple(members)


def home_member(session: Session, source: int, patient_id: str) -> str | None:
    """The home source's Patient id of this person: `patient_id` itself at home, the one home
    row joined to a neighbour's (by verified NHS number), else None (home does not know them,
    or holds the number twice: never a guess)."""
    if source == HOME_SOURCE:
        return patient_id
    home = [rid for sid, rid in members_of(session, source, patient_id) if sid == HOME_SOURCE]
    return home[0] if len(home) == 1 else None


def source_labels(session: Session) -> dict[int, str]:
    """Each registered source's name as officers know it: the display name the profile's
    source settings give (the Trust's name), else "Home Trust" for the home source and the
    source's name for another."""
    configured = {s.name: s for s in session.profile.sources}
    out: dict[int, str] = {}
    for source in session.store.sources():
        settings = configured.get(source.name)
        fallback = HOME_TRUST_LABEL if source.sid == HOME_SOURCE else source.name
        out[source.sid] = (settings.display_name if settings else None) or fallback
    return out
