"""Small hand-made Patients and Flags for tests of the cache keyed by source and of merged
search: an official name, a birth date, optionally an NHS number with its verification
status (`01` verified, `02` not, None: no status)."""

from __future__ import annotations

from typing import Any

from app.fhir import NHS_NUMBER_SYSTEM, NHS_VERIFICATION_EXT, NHS_VERIFICATION_SYSTEM


def patient(
    rid: str,
    family: str = "Okafor",
    *,
    nhs: str | None = None,
    status: str | None = "01",
    version: str = "1",
) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": rid,
        "meta": {"versionId": version, "lastUpdated": f"2026-11-0{version}T10:00:00.000Z"},
        "name": [{"use": "official", "family": family, "given": ["Ada"]}],
        "birthDate": "1980-02-03",
    }
    if nhs is not None:
        ident: dict[str, Any] = {"system": NHS_NUMBER_SYSTEM, "value": nhs}
        if status is not None:
            coding = {"system": NHS_VERIFICATION_SYSTEM, "code": status}
            ident["extension"] = [
                {"url": NHS_VERIFICATION_EXT, "valueCodeableConcept": {"coding": [coding]}}
            ]
        patient["identifier"] = [ident]
    return patient


def flag(fid: str, patient: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": fid,
        "meta": {"versionId": "1", "lastUpdated": "2026-11-01T10:00:00.000Z"},
        "status": "active",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }
