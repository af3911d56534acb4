"""The directory every patient record points into: trusts, their sites and teams, GP practices,
and the clinicians who coordinate care.

Sizes are fixed (a few hundred of each), not scaled with the cohort, so a patient's care team
is the same whatever the cohort size; the pool is built once per seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random
from typing import Any

from app.fhir import GMC_SYSTEM, HCPC_SYSTEM, NMC_SYSTEM, ODS_ORG_SYSTEM
from app.synthetic._common import instant, meta, new_id, ref
from app.synthetic._names import COMMUNITY_TABLE
from app.synthetic._people import person_name
from app.synthetic._places import (
    BLOCK_SUFFIXES,
    GP_NAME_FORMATS,
    HOSPITAL_SUFFIXES,
    HOSPITAL_WORDS,
    TOWNS,
    TRUSTS,
    WARD_NAMES,
    Town,
    Trust,
    landline,
    postcode,
)

# (role, how many per trust, qualification, registration system, title)
_ROLES = (
    ("consultant", 4, "Consultant Psychiatrist (MRCPsych)", GMC_SYSTEM, "Dr"),
    ("doctor", 2, "Specialty Doctor in Psychiatry", GMC_SYSTEM, "Dr"),
    ("nurse", 14, "Registered Mental Health Nurse (RMN)", NMC_SYSTEM, None),
    ("ot", 3, "Occupational Therapist", HCPC_SYSTEM, None),
    ("psychologist", 2, "Clinical Psychologist (DClinPsy)", HCPC_SYSTEM, "Dr"),
    ("crisis", 5, "Registered Mental Health Nurse (RMN), crisis team", NMC_SYSTEM, None),
)
_ALPHANUM = "ABCDEFGHJKLMNPQRSTUVWXY0123456789"


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    phone: str


@dataclass(frozen=True, slots=True)
class Clinician:
    id: str
    display: str
    phone: str
    role: str


@dataclass(slots=True)
class TrustDirectory:
    trust: Trust
    org: Site
    crisis_team: Site
    crisis_line: str
    hospital: Site
    wards: tuple[str, ...]
    cmhts: dict[tuple[int, str], Site] = field(default_factory=dict)
    staff: dict[str, list[Clinician]] = field(default_factory=dict)


@dataclass(slots=True)
class Directory:
    resources: list[dict[str, Any]]
    trusts: dict[str, TrustDirectory]
    gps: dict[int, list[Site]]  # town index -> practices
    eds: dict[int, str]  # town index -> emergency department's hospital


class _Codes:
    """Unique ODS-style codes within one cohort."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def draw(self, make: Any) -> str:
        while True:
            code = make(self._rng)
            if code not in self._used:
                self._used.add(code)
                return code


def _updated(rng: Random, today_epoch: int) -> str:
    return instant(today_epoch - rng.randrange(86_400, 3 * 365 * 86_400))


def _address(rng: Random, town: Town, line: str) -> dict[str, Any]:
    return {"use": "work", "line": [line], "city": town.name, "postalCode": postcode(rng, town)}


def _org(
    rng: Random,
    today_epoch: int,
    code: str,
    name: str,
    kind: str,
    phone: str,
    address: dict[str, Any],
    part_of: Site | None = None,
) -> tuple[Site, dict[str, Any]]:
    oid = new_id(rng)
    res: dict[str, Any] = {
        "resourceType": "Organization",
        "id": oid,
        "meta": meta("Organization", _updated(rng, today_epoch)),
        "identifier": [{"system": ODS_ORG_SYSTEM, "value": code}],
        "active": True,
        "type": [{"text": kind}],
        "name": name,
        "telecom": [{"system": "phone", "value": phone, "use": "work"}],
        "address": [address],
    }
    if part_of:
        res["partOf"] = ref("Organization", part_of.id, part_of.name)
    return Site(oid, name, phone), res


def _clinician(
    rng: Random,
    today_epoch: int,
    role: str,
    qualification: str,
    system: str,
    title: str | None,
    town: Town,
) -> tuple[Clinician, dict[str, Any]]:
    female = rng.random() < (0.75 if role in ("nurse", "ot", "crisis") else 0.5)
    _, given, family = person_name(rng, female, COMMUNITY_TABLE.pick(rng))
    if system == GMC_SYSTEM:
        number = f"{rng.randrange(3_000_000, 7_999_999)}"
    elif system == NMC_SYSTEM:
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        number = (
            f"{rng.randrange(80, 100) if rng.random() < 0.3 else rng.randrange(0, 25):02d}"
            f"{rng.choice(letters)}{rng.randrange(10_000):04d}{rng.choice('ABCDEFGHNOSWY')}"
        )
    else:
        prefix = "PYL" if role == "psychologist" else "OT"
        number = f"{prefix}{rng.randrange(10_000, 99_999)}"
    phone = landline(rng, town)
    cid = new_id(rng)
    name: dict[str, Any] = {"use": "official", "family": family, "given": [given]}
    if title:
        name["prefix"] = [title]
    res = {
        "resourceType": "Practitioner",
        "id": cid,
        "meta": meta("Practitioner", _updated(rng, today_epoch)),
        "identifier": [{"system": system, "value": number}],
        "active": True,
        "name": [name],
        "telecom": [{"system": "phone", "value": phone, "use": "work"}],
        "qualification": [{"code": {"text": qualification}}],
    }
    display = f"{title} {given} {family}" if title else f"{given} {family}"
    return Clinician(cid, display, phone, role), res


def build_directory(rng: Random, today_epoch: int) -> Directory:
    """Organisations first, then practitioners: referenced before referrer, as the sync pulls."""
    orgs: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    trust_codes = _Codes(rng)
    gp_codes = _Codes(rng)
    trusts: dict[str, TrustDirectory] = {}
    towns_of: dict[str, list[int]] = {}
    for index, (town, _) in enumerate(TOWNS):
        towns_of.setdefault(town.trust, []).append(index)

    hospital_words = list(HOSPITAL_WORDS)
    rng.shuffle(hospital_words)
    for n, (key, trust) in enumerate(TRUSTS.items()):
        home = TOWNS[towns_of[key][0]][0]
        code = trust_codes.draw(lambda r: "R" + r.choice(_ALPHANUM[:23]) + r.choice(_ALPHANUM))
        hq, res = _org(
            rng,
            today_epoch,
            code,
            trust.name,
            "NHS trust",
            landline(rng, home),
            _address(rng, home, f"{rng.randrange(1, 200)} {home.name} Road"),
        )
        orgs.append(res)
        site_no = iter(range(1, 100))
        hospital_name = f"{hospital_words[n % len(hospital_words)]} {rng.choice(HOSPITAL_SUFFIXES)}"
        hospital, res = _org(
            rng,
            today_epoch,
            f"{code}{next(site_no):02d}",
            hospital_name,
            "Mental health inpatient unit",
            landline(rng, home),
            _address(rng, home, hospital_name),
            hq,
        )
        orgs.append(res)
        crisis_name = f"Crisis Resolution and Home Treatment Team - {home.name}"
        crisis, res = _org(
            rng,
            today_epoch,
            f"{code}{next(site_no):02d}",
            crisis_name,
            "Crisis resolution and home treatment team",
            landline(rng, home),
            _address(rng, home, hospital_name),
            hq,
        )
        orgs.append(res)
        wards = tuple(rng.sample(WARD_NAMES, 3))
        td = TrustDirectory(
            trust, hq, crisis, "0808 157 0" + f"{rng.randrange(1000):03d}", hospital, wards
        )
        for town_index in towns_of[key]:
            town = TOWNS[town_index][0]
            for area in town.areas:
                name = f"Community Mental Health Team - {area}"
                line = f"{rng.choice(HOSPITAL_WORDS)} {rng.choice(BLOCK_SUFFIXES)}"
                site, res = _org(
                    rng,
                    today_epoch,
                    f"{code}{next(site_no):02d}",
                    name,
                    "Community mental health team",
                    landline(rng, town),
                    _address(rng, town, line),
                    hq,
                )
                orgs.append(res)
                td.cmhts[(town_index, area)] = site
        for role, count, qualification, system, title in _ROLES:
            staff = td.staff.setdefault(role, [])
            for _ in range(count):
                clinician, res = _clinician(
                    rng, today_epoch, role, qualification, system, title, home
                )
                staff.append(clinician)
                people.append(res)
        trusts[key] = td

    gps: dict[int, list[Site]] = {}
    eds: dict[int, str] = {}
    for index, (town, weight) in enumerate(TOWNS):
        letter = TRUSTS[town.trust].gp_letter
        practices = gps.setdefault(index, [])
        for _ in range(max(1, round(weight * 1.2))):
            code = gp_codes.draw(lambda r, letter=letter: f"{letter}{r.randrange(81001, 92999)}")
            street = rng.choice((*HOSPITAL_WORDS, "Park", "Riverside", "Market", "Church"))
            name = rng.choice(GP_NAME_FORMATS).format(street)
            site, res = _org(
                rng,
                today_epoch,
                code,
                name,
                "GP practice",
                landline(rng, town),
                _address(rng, town, f"{rng.randrange(1, 300)} {street} Road"),
            )
            practices.append(site)
            orgs.append(res)
        eds[index] = rng.choice(
            (
                f"{town.name} General Hospital",
                f"{town.name} Royal Infirmary",
                f"Royal {town.name} Hospital",
                f"{town.name} City Hospital",
            )
        )
    return Directory(orgs + people, trusts, gps, eds)
