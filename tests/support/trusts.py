"""A cache holding two Trusts' central records, as the record view and encounter tests need
it: the region of `generate_trusts` imported into the home source and a read-only one, each
source named in the profile with the Trust's display name (what the view labels things with),
and the people both Trusts know (verified NHS number, so one person in the cache)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.security import SourceSettings
from app.services.importer import import_ndjson
from app.store import HOME_SOURCE

HOME_TRUST = "North Moor NHS Foundation Trust"
WEST_TRUST = "West Vale Partnership NHS Trust"
WEST = "trust-2"


def ndjson(folder: Path, rtype: str) -> list[dict[str, Any]]:
    path = folder / f"{rtype}.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def name_sources(
    session: Any,
    *,
    home_url: str = "https://home.invalid/fhir",
    west_url: str = "https://west.invalid/fhir",
    client: tuple[str, str] = ("tablet", "secret"),
) -> int:
    """Name the home and the west source in the profile (display names as officers know the
    Trusts; `client`: the device's id and secret at each) and register the west one in the
    cache; its sid."""
    profile = session.profile
    client_id, secret = client
    if profile.home_source is None:
        profile.add_source(
            SourceSettings("home", home_url, client_id, display_name=HOME_TRUST, role="home"),
            secret,
        )
    profile.add_source(
        SourceSettings(WEST, west_url, client_id, display_name=WEST_TRUST, role="read-only"),
        secret,
    )
    return int(session.store.ensure_source(WEST, "read-only"))


def import_two_trusts(session: Any, region: Path) -> int:
    """trust-1 into home, trust-2 into the west source (named in the profile); its sid."""
    west = name_sources(session)
    import_ndjson(session, region / "trust-1")
    import_ndjson(session, region / "trust-2", source=west)
    return west


@dataclass(frozen=True, slots=True)
class Shared:
    """A person both Trusts know: each Trust's Patient id."""

    nhs_number: str
    home_id: str
    west_id: str


def shared_people(region: Path, *, with_types: tuple[str, ...] = ()) -> list[Shared]:
    """People both Trusts hold under the same verified NHS number, those with a resource of
    each of `with_types` at both Trusts first (in NHS number order within each group)."""
    from app.fhir import verified_nhs_number

    def by_number(folder: Path) -> dict[str, str]:
        out = {}
        for patient in ndjson(folder, "Patient"):
            number = verified_nhs_number(patient)
            if number:
                out[number] = patient["id"]
        return out

    def subjects(folder: Path, rtype: str) -> set[str]:
        return {
            str((r.get("subject") or r.get("patient") or {}).get("reference", "")).split("/")[-1]
            for r in ndjson(folder, rtype)
        }

    home, west = by_number(region / "trust-1"), by_number(region / "trust-2")
    both = [Shared(n, home[n], west[n]) for n in sorted(home.keys() & west.keys())]

    def complete(person: Shared) -> bool:
        return all(
            person.home_id in subjects(region / "trust-1", t)
            and person.west_id in subjects(region / "trust-2", t)
            for t in with_types
        )

    return sorted(both, key=lambda p: not complete(p))


def west_only(region: Path) -> list[str]:
    """Ids of west Patients with a verified NHS number home does not hold."""
    from app.fhir import verified_nhs_number

    home = {verified_nhs_number(p) for p in ndjson(region / "trust-1", "Patient")}
    return sorted(
        p["id"]
        for p in ndjson(region / "trust-2", "Patient")
        if (number := verified_nhs_number(p)) and number not in home
    )


__all__ = [
    "HOME_SOURCE",
    "HOME_TRUST",
    "WEST",
    "WEST_TRUST",
    "Shared",
    "import_two_trusts",
    "name_sources",
    "ndjson",
    "shared_people",
    "sync_read_only",
    "west_only",
]


def sync_read_only(session: Any, server: Any, source: int) -> Any:
    """One pull of a read-only source from its reference server, through the sync port scoped
    to it (what the multi-source run does for each read-only source); its SyncReport."""
    from app.services.syncing import StoreSyncPort, sync_options
    from sync import ClientCredentials, FhirClient, SyncEngine, new_http_session
    from tests.conftest import TABLET_CLIENT

    client = FhirClient(
        server.base_url,
        new_http_session(),
        auth=ClientCredentials(server.token_url, TABLET_CLIENT[0], TABLET_CLIENT[1]),
    )
    options = sync_options(session.profile, push=False)
    return SyncEngine(client, StoreSyncPort(session.store, source=source), options).run()
