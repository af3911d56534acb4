"""The synthetic cohort: deterministic, valid FHIR R4, self-consistent, and spread the way the
search and the record view need (common surnames, namesakes, aliases, odd characters)."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.errors import InvalidInput
from app.fhir import (
    CRISIS_PLAN_SECTION_SYSTEM,
    CRISIS_PLAN_SECTIONS,
    CRISIS_PLAN_SNOMED,
    LEGAL_STATUS_EXT,
    LEGAL_STATUS_SYSTEM,
    NHS_NUMBER_SYSTEM,
    NHS_VERIFICATION_EXT,
    PROFILE_BASE,
    nhs_number_of,
    patient_ref_of,
)
from app.nhs_number import is_valid
from app.synthetic import (
    DEFAULT_AS_OF,
    MAX_PATIENTS,
    NHS_TEST_PREFIX,
    RESOURCE_TYPES,
    generate_cohort,
    iter_cohort,
    iter_patient_records,
)

SEED = 11
POSTCODE = re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? \d[ABD-HJLNP-UW-Z]{2}$")
# Ofcom drama ranges, plus the real public helplines a crisis plan may name.
DRAMA_PHONE = re.compile(
    r"^(07700 900\d{3}|01\d\d 49[68] 0\d{3}|020 7946 0\d{3}|029 2018 0\d{3}|01632 960\d{3}"
    r"|0808 157 0\d{3})$"
)
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def cohort() -> list[dict[str, Any]]:
    return list(iter_cohort(1000, SEED))


@pytest.fixture(scope="module")
def by_type(cohort: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in RESOURCE_TYPES}
    for resource in cohort:
        out[resource["resourceType"]].append(resource)
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# -- determinism -------------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    generate_cohort(60, SEED, tmp_path / "a")
    generate_cohort(60, SEED, tmp_path / "b")
    first = _files(tmp_path / "a")
    assert sorted(first) == sorted(f"{t}.ndjson" for t in RESOURCE_TYPES)
    assert first == _files(tmp_path / "b")


def test_different_seed_writes_different_people(tmp_path: Path) -> None:
    generate_cohort(60, SEED, tmp_path / "a")
    generate_cohort(60, SEED + 1, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)


def test_a_small_cohort_is_the_start_of_a_large_one() -> None:
    small = list(iter_patient_records(5, SEED))
    large = list(iter_patient_records(40, SEED))[: len(small)]
    assert orjson.dumps(small) == orjson.dumps(large)


def test_as_of_moves_the_dates() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    patients = [r for r in iter_cohort(3, SEED, as_of=later) if r["resourceType"] == "Patient"]
    assert all("2027-01-01" < p["meta"]["lastUpdated"] <= "2030-01-01" for p in patients)


# -- valid FHIR --------------------------------------------------------------------------


def test_every_resource_validates_as_fhir_r4(cohort: list[dict[str, Any]]) -> None:
    # R4B is wire-compatible with R4 for all of these types; fhir.resources' default is R5.
    models = {
        t: getattr(importlib.import_module(f"fhir.resources.R4B.{t.lower()}"), t)
        for t in RESOURCE_TYPES
    }
    first_patients = set()
    validated: Counter[str] = Counter()
    for resource in cohort:
        if resource["resourceType"] == "Patient":
            if len(first_patients) == 150:
                break
            first_patients.add(resource["id"])
        models[resource["resourceType"]].model_validate(resource)
        validated[resource["resourceType"]] += 1
    assert len(first_patients) == 150
    assert set(validated) == set(RESOURCE_TYPES)  # the sample holds every type


def test_every_resource_has_version_one_and_a_uk_core_profile(
    cohort: list[dict[str, Any]],
) -> None:
    as_of = DEFAULT_AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = Counter()
    for resource in cohort:
        meta = resource["meta"]
        assert meta["versionId"] == "1"
        assert meta["profile"] == [PROFILE_BASE + resource["resourceType"]]
        assert INSTANT.match(meta["lastUpdated"]) and meta["lastUpdated"] <= as_of
        ids[resource["id"]] += 1
    assert max(ids.values()) == 1


def test_references_resolve_within_the_cohort(cohort: list[dict[str, Any]]) -> None:
    known = {f"{r['resourceType']}/{r['id']}" for r in cohort}
    refs = [n["reference"] for r in cohort for n in _walk(r) if "reference" in n]
    assert len(refs) > 5 * 1000
    assert [ref for ref in refs if ref not in known] == []


def test_patients_come_before_what_refers_to_them(cohort: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for resource in cohort:
        if resource["resourceType"] == "Patient":
            seen.add(resource["id"])
        owner = patient_ref_of(resource)
        assert owner is None or owner in seen


def test_about_eight_resources_per_patient(by_type: dict[str, list[dict[str, Any]]]) -> None:
    clinical = sum(len(v) for k, v in by_type.items() if k not in ("Organization", "Practitioner"))
    assert 7.0 < clinical / len(by_type["Patient"]) < 9.5
    assert 100 < len(by_type["Practitioner"]) < 1000
    assert 100 < len(by_type["Organization"]) < 1000


# -- patients ----------------------------------------------------------------------------


def test_nhs_numbers_are_valid_unique_test_numbers(by_type: dict[str, Any]) -> None:
    numbers = [nhs_number_of(p) for p in by_type["Patient"]]
    present = [n for n in numbers if n]
    assert all(is_valid(n) and n.startswith(NHS_TEST_PREFIX) for n in present)
    assert len(set(present)) == len(present)
    assert 0.01 < numbers.count(None) / len(numbers) < 0.06  # some people have none on record
    for patient in by_type["Patient"]:
        for ident in patient.get("identifier", ()):
            assert ident["system"] == NHS_NUMBER_SYSTEM
            assert ident["extension"][0]["url"] == NHS_VERIFICATION_EXT


def test_names_have_the_spread_search_must_cope_with(by_type: dict[str, Any]) -> None:
    patients = by_type["Patient"]
    official = [next(n for n in p["name"] if n["use"] == "official") for p in patients]
    families = Counter(n["family"] for n in official)
    assert families["Smith"] >= 5 and families["Jones"] >= 3
    assert any("'" in f for f in families)  # O'Neill, D'Souza
    assert any("-" in f for f in families)  # Smith-Jones
    assert any(f.startswith(("Mc", "Mac")) for f in families)
    all_text = " ".join(f"{' '.join(n['given'])} {n['family']}" for n in official)
    assert any(ord(c) > 127 for c in all_text)  # Zoë, Siân, Łukasz
    same = Counter(
        (n["family"], n["given"][0], p["birthDate"][:4])
        for n, p in zip(official, patients, strict=True)
    )
    assert sum(1 for v in same.values() if v > 1) >= 3  # namesakes born the same year

    uses = Counter(n["use"] for p in patients for n in p["name"])
    assert 0.18 < uses["usual"] / len(patients) < 0.35
    assert 0.05 < uses["old"] / len(patients) < 0.15
    assert 0.02 < uses["nickname"] / len(patients) < 0.09
    old_names = [n for p in patients for n in p["name"] if n["use"] == "old"]
    assert all(n["period"]["end"] < "2026-11-20" for n in old_names)


def test_known_as_names_come_from_the_given_name(by_type: dict[str, Any]) -> None:
    pairs = {
        (next(n for n in p["name"] if n["use"] == "official")["given"][0], n["given"][0])
        for p in by_type["Patient"]
        for n in p["name"]
        if n["use"] == "usual"
    }
    assert len(pairs) > 50
    assert all(usual != given for given, usual in pairs)
    assert {("Christopher", "Chris"), ("David", "Dave"), ("Sarah", "Saz")} <= pairs


def test_addresses_and_phones_are_well_formed(by_type: dict[str, Any]) -> None:
    patients = by_type["Patient"]
    no_fixed_abode = 0
    for p in patients:
        address = p["address"][0]
        if address.get("text") == "No fixed abode":
            no_fixed_abode += 1
            assert "postalCode" not in address
        else:
            assert POSTCODE.match(address["postalCode"]), address["postalCode"]
            assert address["line"][-1][0].isalnum()
    assert 0.02 < no_fixed_abode / len(patients) < 0.09
    phones = [
        n["value"]
        for t in RESOURCE_TYPES
        for r in by_type[t]
        for n in _walk(r)
        if n.get("system") == "phone"
    ]
    assert phones and [p for p in phones if not DRAMA_PHONE.match(p)] == []


def test_gender_and_age_are_realistic(by_type: dict[str, Any]) -> None:
    patients = by_type["Patient"]
    genders = Counter(p["gender"] for p in patients)
    assert set(genders) <= {"male", "female", "other", "unknown"}
    assert genders["male"] > 400 and genders["female"] > 400
    ages = [2026 - int(p["birthDate"][:4]) for p in patients]
    assert min(ages) >= 15 and max(ages) <= 91
    assert sum(18 <= a <= 60 for a in ages) / len(ages) > 0.75


# -- clinical resources ------------------------------------------------------------------


def test_crisis_plans_follow_the_documented_sections(by_type: dict[str, Any]) -> None:
    order = [code for code, _ in CRISIS_PLAN_SECTIONS]
    plans = by_type["CarePlan"]
    assert 0.6 < len({p["subject"]["reference"] for p in plans}) / 1000 < 0.8
    stale = 0
    for plan in plans:
        assert plan["intent"] == "plan" and plan["status"] in ("active", "completed")
        assert plan["category"][0]["coding"][0]["code"] == CRISIS_PLAN_SNOMED
        codes = []
        for activity in plan["activity"]:
            detail = activity["detail"]
            coding = detail["code"]["coding"][0]
            assert coding["system"] == CRISIS_PLAN_SECTION_SYSTEM
            assert detail["status"] == "in-progress" and detail["description"]
            assert "{" not in detail["description"]  # every placeholder filled
            codes.append(coding["code"])
        assert "who-to-contact" in codes
        assert codes == sorted(codes, key=order.index)
        assert plan["created"] == plan["period"]["start"] < plan["period"]["end"]
        if plan["status"] == "active" and plan["period"]["end"] < "2026-11-20":
            stale += 1
    active = sum(p["status"] == "active" for p in plans)
    assert 0.08 < stale / active < 0.25
    assert any(p["status"] == "completed" for p in plans)
    assert len({len(p["activity"]) for p in plans}) > 3  # not every section in every plan


def test_flags_use_alert_codes_and_local_text_codes(by_type: dict[str, Any]) -> None:
    flags = by_type["Flag"]
    assert {f["status"] for f in flags} == {"active", "inactive", "entered-in-error"}
    assert {f["category"][0]["coding"][0]["code"] for f in flags} <= {
        "safety",
        "behavioral",
        "clinical",
    }
    texts = {f["code"]["text"] for f in flags if "coding" not in f["code"]}
    assert texts == {"MAPPA", "MARAC", "Do not visit alone"}
    with_flags = {f["subject"]["reference"] for f in flags}
    assert 0.3 < len(with_flags) / 1000 < 0.5


def test_legal_status_is_the_uk_core_complex_extension(by_type: dict[str, Any]) -> None:
    encounters = by_type["Encounter"]
    with_status = [e for e in encounters if "extension" in e]
    assert 0.12 < len(with_status) / len(encounters) < 0.28
    codes = Counter()
    for encounter in with_status:
        (ext,) = encounter["extension"]
        assert ext["url"] == LEGAL_STATUS_EXT
        parts = {p["url"]: p["valueCodeableConcept"]["coding"][0] for p in ext["extension"]}
        assert parts["legalStatusContext"]["code"] == "admission"
        assert parts["legalStatusClassification"]["system"] == LEGAL_STATUS_SYSTEM
        codes[parts["legalStatusClassification"]["code"]] += 1
    assert codes.most_common(1)[0][0] == "01"  # informal is the commonest
    assert {"20", "02", "03"} <= set(codes)
    assert all(
        e["status"] == "finished" and e["period"]["start"] < e["period"]["end"] for e in encounters
    )


def test_care_teams_name_the_community_team_and_crisis_line(by_type: dict[str, Any]) -> None:
    for team in by_type["CareTeam"]:
        assert team["name"].startswith("Community Mental Health Team - ")
        roles = [p["role"][0]["text"] for p in team["participant"]]
        assert roles[:2] == ["Care coordinator", "Consultant psychiatrist"]
        assert team["telecom"][0]["rank"] == 1 and team["telecom"][0]["value"].startswith("0808")


# -- edges and the command ---------------------------------------------------------------


def test_patient_count_is_checked() -> None:
    with pytest.raises(InvalidInput):
        list(iter_cohort(MAX_PATIENTS + 1, SEED))
    assert [r["resourceType"] for r in iter_cohort(0, SEED)][-1] == "Practitioner"


def test_generate_command_writes_ndjson_and_prints_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cohort"
    assert main(["generate", "--patients", "25", "--seed", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for rtype in RESOURCE_TYPES:
        lines = (out / f"{rtype}.ndjson").read_bytes().splitlines()
        assert all(orjson.loads(line)["resourceType"] == rtype for line in lines)
        assert all(line == orjson.dumps(orjson.loads(line)) for line in lines)  # compact
        assert re.search(rf"^{rtype}\s+{len(lines):,}$", printed, re.MULTILINE)
    assert not list(out.glob("*.part"))


def test_generate_command_refuses_a_negative_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "--patients", "-3", "--out", str(tmp_path)]) == 1
    assert "patients" in capsys.readouterr().err
