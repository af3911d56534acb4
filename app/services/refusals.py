"""What an officer can do about a record the central record refused.

The server's reason is written for systems ("Encounter.subject refers to a Patient that does
not exist on this server (Bundle.entry[0].resource.subject)"). On scene, or at the end of a
shift, the officer needs what happened in plain words and the next step; the technical text
stays available behind "Details" for the team at base. Hazard H8 (a refused record nobody acts
on) in docs/clinical-safety/hazard-log.md.

Matching is on the words servers use for each kind of refusal (FHIR issue codes and their
usual diagnostics), most specific first; anything else gets the general advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Advice:
    """`what`: what happened, in plain English; `todo`: what to do next."""

    what: str
    todo: str


PERSON_GONE = Advice(
    "This person was merged or removed on the central record.",
    "Pick the person again (Review and correct), or record them as an unknown person.",
)
SEVERAL_PEOPLE = Advice(
    "The central record holds more than one person with this NHS number, so it cannot tell "
    "which one this record is about.",
    "Do not pick one: the team at base asks the records team which is right. The record "
    "stays on this tablet until then.",
)
_RULES: tuple[tuple[re.Pattern[str], Advice], ...] = (
    # A record naming its person by NHS number (a neighbour Trust's patient, sent home) that
    # matched several home Patients: 412 `multiple-matches` (HAPI: "...matched 2 resources").
    (
        re.compile(r"more than one|multiple[- ]match|matched \d+ resources", re.I),
        SEVERAL_PEOPLE,
    ),
    (
        re.compile(r"patient.*(does not exist|not found|no longer|deleted|merged|gone)", re.I),
        PERSON_GONE,
    ),
    (
        re.compile(r"duplicate|already (exists|recorded|held)", re.I),
        Advice(
            "The central record already holds this record.",
            "Check it is the same encounter, then discard this copy as a duplicate.",
        ),
    ),
    (
        re.compile(r"forbidden|not (allowed|permitted)|may only|security|scope", re.I),
        Advice(
            "The central record does not let this tablet send this kind of record.",
            "Keep it on the tablet and ask your team lead or IT to check the tablet's access.",
        ),
    ),
    (
        re.compile(r"conflict|version|if-match|changed", re.I),
        Advice(
            "Someone changed the same information on the central record at the same time.",
            "Send it again; if it is refused again, review it with the team at base.",
        ),
    ),
    (
        re.compile(r"required|must (have|be)|missing|invalid|business-rule|not valid", re.I),
        Advice(
            "Something the central record needs is missing or was not accepted.",
            "Review and correct the record, then it is sent again.",
        ),
    ),
)
GENERAL = Advice(
    "The central record did not accept this record.",
    "Review it (with the team at base if needed), then correct and send it again, or "
    "discard it with a reason.",
)


def advice_for(reason: str | None, *, person_gone: bool = False) -> Advice:
    """Plain advice for a refusal: the person being gone from this tablet decides it first
    (whatever words the server used), then the server's reason."""
    if person_gone:
        return PERSON_GONE
    for pattern, advice in _RULES:
        if reason and pattern.search(reason):
            return advice
    return GENERAL


_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"certificate|tls|ssl", re.I),
        "The central record's identity could not be checked. Do not sync on this network; tell IT.",
    ),
    (
        re.compile(r"did not answer|timed? ?out|timeout", re.I),
        "The central record did not answer in time. Records stay on this tablet and go at "
        "the next sync.",
    ),
    (
        re.compile(r"token|credential|401|403|sign|secret|unauthori[sz]ed|revoked", re.I),
        "The tablet could not sign in to the central record. Records stay on this tablet; "
        "tell IT if this happens again.",
    ),
    (
        re.compile(r"connect|network|resolve|unreachable|refused|offline|dns", re.I),
        "No connection to the central record (no signal?). Records stay on this tablet and "
        "go when the signal is back.",
    ),
)


def plain_failure(message: str) -> str:
    """A sync failure in plain words with what happens next (the technical message goes
    behind "Details")."""
    for pattern, text in _FAILURES:
        if pattern.search(message or ""):
            return text
    return "Sync stopped. Records stay on this tablet and go at the next sync."
