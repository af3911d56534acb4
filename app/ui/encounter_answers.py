"""The encounter form's answers as data: read from its controls as the JSON input shape of
`kerbside record` (what drafts hold), filled back into them from a draft or a refused record,
and turned into the service's `EncounterInput`.

Unset fields are left out rather than guessed; s136 details are kept in the widgets but left
out while s136 is not used, as the service requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app import times
from app.fhir import RISK_TOPICS
from app.services import encounters
from app.times import iso_instant, parse_instant
from app.ui.encounter_sections import NO_SOURCE, EncounterSections


def iso(when: datetime | None) -> str | None:
    return None if when is None else iso_instant(when)


class EncounterAnswers(EncounterSections):
    """Reading and filling the controls; `EncounterForm` inherits it (see EncounterSections)."""

    def data(self) -> dict[str, Any]:
        """The form as the JSON input shape of `kerbside record` (what drafts hold)."""
        out: dict[str, Any] = {}
        mode = self.person_mode.value()
        if mode == "known" and self._patient_id:
            out["patient"] = {"id": self._patient_id}
            if self._subject_sid() != 1:  # another Trust's Patient (issue 14)
                name = encounters.source_name(self._session, self._subject_sid())
                out["patient"]["source"] = name or self._patient_source_name or "unknown"
        elif mode == "nhs":
            out["patient"] = {"nhs_number": self.nhs_number.text().strip()}
        elif mode == "unknown":
            person: dict[str, Any] = {
                "description": self.description.toPlainText(),
                "sex": self.sex.value(),
                "apparent_age": self.apparent_age.value(),
            }
            if self.place_found.text().strip():
                person["place_found"] = self.place_found.text().strip()
            out["patient"] = {"unidentified": {k: v for k, v in person.items() if v is not None}}
        out["start"] = iso(self.start.value())
        if self.end.value() is not None:
            out["end"] = iso(self.end.value())
        for name, edit in (
            ("location", self.location),
            ("police_incident_ref", self.police_incident_ref),
        ):
            out[name] = edit.text()
        out["team"] = self.team.text().strip()  # kept even when cleared: "" records no team
        out["presenting_situation"] = self.presenting_situation.toPlainText()
        out["narrative"] = self.narrative.toPlainText()
        for name, choice in (
            ("response_mode", self.response_mode),
            ("location_type", self.location_type),
            ("known_to_services", self.known_to_services),
            ("outcome", self.outcome),
            *self.risk.items(),
        ):
            if choice.value() is not None:
                out[name] = choice.value()
        if self.crisis_plan_consulted.value() is not None:
            out["crisis_plan_consulted"] = self.crisis_plan_consulted.value() == "yes"
        s136 = self.section_136.value() == "yes" and self.section_136.isEnabled()
        out["section_136"] = s136
        if s136:
            hpc = self.health_professional_consulted.value()
            if hpc is not None:
                out["health_professional_consulted"] = hpc == "yes"
            if hpc == "yes" and self.consulted_with.text().strip():
                out["consulted_with"] = self.consulted_with.text().strip()
            for name, choice in (
                ("place_of_safety", self.place_of_safety),
                ("conveyance", self.conveyance),
            ):
                if choice.value() is not None:
                    out[name] = choice.value()
            for name, field in (
                ("s136_detained_at", self.s136_detained_at),
                ("s136_arrived_at", self.s136_arrived_at),
            ):
                if field.value() is not None:
                    out[name] = iso(field.value())
        out["referrals"] = self.referrals.values()
        return out

    def fill(self, data: Mapping[str, Any]) -> None:
        """Set the controls from the JSON input shape; unknown keys are ignored. Setting a
        control this way is not a change of the officer's (no `changed` signal is relied on)."""
        patient = data.get("patient") or {}
        if "id" in patient:
            self._patient_id = str(patient["id"])
            source = patient.get("source")
            self._patient_source_name = str(source) if source else None
            sid = encounters.source_sid(self._session, str(source)) if source else None
            self._patient_source = (sid if sid is not None else NO_SOURCE) if source else None
            self.patient_name.setText(self._patient_display or "Person picked before")
            self.person_mode.set_value("known")
        elif "unidentified" in patient:
            person = patient["unidentified"] or {}
            self.person_mode.set_value("unknown")
            self.description.setPlainText(str(person.get("description", "")))
            age = person.get("apparent_age")
            self.apparent_age.set_value(age if isinstance(age, int) else None)
            self.sex.set_value(person.get("sex"))
            self.place_found.setText(str(person.get("place_found", "")))
        else:
            self.person_mode.set_value("nhs")
            self.nhs_number.setText(str(patient.get("nhs_number", "")))
        self.start.set_value(parse_instant(data.get("start"), naive="reject"))
        self.end.set_value(parse_instant(data.get("end"), naive="reject"))
        self.location.setText(str(data.get("location", "")))
        self.police_incident_ref.setText(str(data.get("police_incident_ref", "")))
        if "team" in data:  # else keep the profile's team the form opened with
            self.team.setText(str(data["team"] or ""))
        self.presenting_situation.setPlainText(str(data.get("presenting_situation", "")))
        self.narrative.setPlainText(str(data.get("narrative", "")))
        for name, choice in (
            ("response_mode", self.response_mode),
            ("location_type", self.location_type),
            ("known_to_services", self.known_to_services),
            ("outcome", self.outcome),
            ("place_of_safety", self.place_of_safety),
            ("conveyance", self.conveyance),
            *self.risk.items(),
        ):
            choice.set_value(data.get(name))
        for name, choice in (
            ("crisis_plan_consulted", self.crisis_plan_consulted),
            ("health_professional_consulted", self.health_professional_consulted),
        ):
            value = data.get(name)
            choice.set_value(None if value is None else ("yes" if value else "no"))
        self.section_136.set_value("yes" if data.get("section_136") else "no")
        self.consulted_with.setText(str(data.get("consulted_with", "")))
        self.s136_detained_at.set_value(parse_instant(data.get("s136_detained_at"), naive="reject"))
        self.s136_arrived_at.set_value(parse_instant(data.get("s136_arrived_at"), naive="reject"))
        self.referrals.set_values(data.get("referrals") or ())

    def to_input(self, now: datetime | None = None) -> encounters.EncounterInput:
        """The form as an EncounterInput; unset required values get neutral stand-ins that
        `errors()` then reports as missing (so validate can still check everything else)."""
        now = now or times.now()
        data = self.data()
        patient = data.get("patient") or {}
        person: encounters.PatientChoice
        if "id" in patient:
            person = encounters.KnownPatient(patient["id"], source=self._subject_sid())
        elif "unidentified" in patient:
            raw = patient["unidentified"]
            person = encounters.UnidentifiedPerson(
                description=raw.get("description", ""),
                apparent_age=raw.get("apparent_age", -1),
                sex=raw.get("sex", ""),
                place_found=raw.get("place_found"),
            )
        else:
            person = encounters.PatientByNhsNumber(patient.get("nhs_number", ""))
        optional = {name: data[name] for name in (
            "location_type", "response_mode", "known_to_services", "crisis_plan_consulted",
            *RISK_TOPICS, "health_professional_consulted", "consulted_with", "place_of_safety",
            "conveyance") if name in data}  # fmt: skip
        return encounters.EncounterInput(
            patient=person,
            start=self.start.value() or now,
            end=self.end_at(now),
            location=data["location"],
            police_incident_ref=data["police_incident_ref"],
            presenting_situation=data["presenting_situation"],
            section_136=data["section_136"],
            outcome=data.get("outcome", "other"),
            narrative=data["narrative"],
            referrals=tuple(data["referrals"]),
            team=data["team"] or None,
            s136_detained_at=self.s136_detained_at.value() if data["section_136"] else None,
            s136_arrived_at=self.s136_arrived_at.value() if data["section_136"] else None,
            **optional,
        )

    def end_at(self, now: datetime) -> datetime:
        """The end time to record: as set, else "now" (at least a minute after the start,
        so a record saved straight after opening is not refused for ending as it began)."""
        end = self.end.value()
        if end is not None:
            return end
        start = self.start.value() or now
        return max(now, start + timedelta(minutes=1))
