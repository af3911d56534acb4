"""One person per NHS number in search (issue 14 slice 4, docs/design/multi-trust.md section 5),
on real SQLCipher caches holding two or three sources: Patients of several central records
that share a verified NHS number are one result listing its sources; nothing else ever merges
(hazard H23: wrong-person merge; H24: missed merge shown side by side)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.fhir import NHS_NUMBER_SYSTEM
from app.services.importer import import_ndjson
from app.services.search import Alert, PatientSearch, SearchWords
from app.store import HOME_SOURCE, Store
from app.synthetic import generate_trusts
from tests.conftest import TEST_PIN
from tests.support.people import flag as _flag
from tests.support.people import patient as _patient

TODAY = date(2026, 11, 20)
SHARED = "9434765870"  # valid check digit
OTHER = "4857773457"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.create(tmp_path / "c.db", os.urandom(32)) as s:
        yield s


def _search(store: Store, query: str, limit: int = 20) -> list[Any]:
    return PatientSearch(store).search(query, limit=limit, today=TODAY).hits


def _with(patient: dict[str, Any], **fields: Any) -> dict[str, Any]:
    patient.update(fields)
    return patient


# -- merging by a verified NHS number ------------------------------------------------------------
def test_a_person_known_to_two_sources_is_one_result_listing_both(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs=SHARED), _flag("f1", "h7", "MAPPA")])
    store.put_resources(west, [_patient("w3", nhs=SHARED), _flag("f9", "w3", "Do not visit alone")])
    [hit] = _search(store, "ada okafor")
    assert (hit.id, hit.sid, hit.source) == ("h7", HOME_SOURCE, "home")
    assert hit.sources == ("home", "west")
    assert hit.members == ((HOME_SOURCE, "h7"), (west, "w3"))
    assert hit.ref == (HOME_SOURCE, "h7") and hit.is_person(west, "w3")
    # every member's alerts, each labelled with the source whose Flag it is
    assert set(hit.alerts) == {
        Alert("MAPPA", "MAPPA", "staff", "home"),
        Alert("Do not visit alone", "Do not visit alone", "staff", "west"),
    }
    # the NHS number typed finds the same one person
    assert [h.members for h in _search(store, SHARED)] == [hit.members]


def test_the_merged_person_has_every_member_when_the_query_reached_only_one(
    store: Store,
) -> None:
    """Only the neighbour knows her previous name: the result is still the person, with the
    home id (the record the officer's Trust holds) and both sources."""
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs=SHARED), _flag("f1", "h7", "MAPPA")])
    neighbour = _patient("w3", nhs=SHARED)
    neighbour["name"].append({"use": "maiden", "family": "Quennell", "given": ["Ada"]})
    store.put_resources(west, [neighbour])
    [hit] = _search(store, "ada quennell")
    assert (hit.id, hit.sid) == ("h7", HOME_SOURCE)
    assert hit.members == ((HOME_SOURCE, "h7"), (west, "w3"))
    assert hit.alerts == (Alert("MAPPA", "MAPPA", "staff", "home"),)


def test_a_person_only_a_neighbour_knows_carries_the_neighbours_id(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    east = store.ensure_source("east", "read-only")
    store.put_resources(west, [_patient("p1", nhs=SHARED)])
    store.put_resources(east, [_patient("p1", nhs=SHARED)])  # the same id, the same person
    store.put_resources(HOME_SOURCE, [_patient("p1", "Okafor", nhs=OTHER)])  # someone else
    hits = _search(store, "ada okafor")
    assert sorted(h.members for h in hits) == [
        ((HOME_SOURCE, "p1"),),
        ((west, "p1"), (east, "p1")),
    ]
    neighbour = next(h for h in hits if h.sid != HOME_SOURCE)
    assert (neighbour.id, neighbour.sid, neighbour.source) == ("p1", west, "west")
    assert neighbour.sources == ("west", "east")


def test_one_shared_vocabulary_sees_every_change_of_who_is_one_person(store: Store) -> None:
    """The UI keeps one `SearchWords` per open cache, and with it who several rows share: each
    write that changes that (a neighbour's record joining, its number losing verification,
    its deletion, its pid going to someone else, an erased source, a bulk load) shows in the
    next search, never a member that left nor a missing one that joined (H23, H24)."""
    words = SearchWords()

    def members(query: str = "ada okafor") -> list[tuple[tuple[int, str], ...]]:
        hits = PatientSearch(store, words=words).search(query, today=TODAY).hits
        return sorted(h.members for h in hits)

    # The neighbour knows her by another name: "ada okafor" reaches home's row only, so
    # the neighbour's row comes from what `words` holds of who is one person.
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs=SHARED)])
    assert members() == [((HOME_SOURCE, "h7"),)]
    store.put_resources(west, [_patient("w3", "Quennell", nhs=SHARED)])  # joins
    assert members() == [((HOME_SOURCE, "h7"), (west, "w3"))]
    store.put_resources(west, [_patient("w3", "Quennell", nhs=SHARED, status="02", version="2")])
    assert members() == [((HOME_SOURCE, "h7"),)]  # no longer verified
    store.put_resources(west, [_patient("w3", "Quennell", nhs=SHARED, version="3")])
    assert members() == [((HOME_SOURCE, "h7"), (west, "w3"))]
    store.delete_resources(west, "Patient", ["w3"])  # its pid (the highest) is free again
    assert members() == [((HOME_SOURCE, "h7"),)]
    store.put_resources(west, [_patient("w4", "Quennell", nhs=OTHER)])  # another, on that pid
    assert members() == [((HOME_SOURCE, "h7"),)]
    store.put_resources(west, [_patient("w5", "Quennell", nhs=SHARED)])
    assert members() == [((HOME_SOURCE, "h7"), (west, "w5"))]
    store.erase_source(west)
    assert members() == [((HOME_SOURCE, "h7"),)]
    east = store.ensure_source("east", "read-only")
    store.begin_bulk_load()
    store.put_resources(east, [_patient("e2", "Quennell", nhs=SHARED)])
    store.finish_bulk_load()  # every row derived again
    assert members() == [((HOME_SOURCE, "h7"), (east, "e2"))]
    assert members(SHARED) == [((HOME_SOURCE, "h7"), (east, "e2"))]


def test_a_stale_copy_of_who_is_one_person_never_adds_someone_else(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth for H23: were a write ever to miss moving the people generation, a
    pid the in-memory copy names but which now holds another person is left out (at worst
    a member is missed, shown apart: H24), never merged in."""
    from app.store import _patient_index

    words = SearchWords()
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs=SHARED)])
    store.put_resources(west, [_patient("w3", "Quennell", nhs=SHARED)])
    hits = PatientSearch(store, words=words).search("ada okafor", today=TODAY).hits
    assert [h.members for h in hits] == [((HOME_SOURCE, "h7"), (west, "w3"))]
    monkeypatch.setattr(_patient_index, "_people_changed", lambda conn: None)  # the fault
    store.delete_resources(west, "Patient", ["w3"])
    store.put_resources(west, [_patient("w4", "Quennell", nhs=OTHER)])  # w3's pid
    assert store.patient_index().patients([2])[2].id == "w4"
    hits = PatientSearch(store, words=words).search("ada okafor", today=TODAY).hits
    assert [h.members for h in hits] == [((HOME_SOURCE, "h7"),)]


# -- never merged ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nhs", "status"),
    [(SHARED, "02"), (SHARED, None), (None, None)],
    ids=["unverified", "no-verification-status", "no-number"],
)
def test_without_a_verified_number_two_sources_rows_stay_two_people_ranked_together(
    store: Store, nhs: str | None, status: str | None
) -> None:
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs=SHARED)])  # verified at home
    store.put_resources(west, [_patient("w3", nhs=nhs, status=status)])
    store.put_resources(HOME_SOURCE, [_patient("h8", "Okonkwo", nhs=OTHER)])
    hits = _search(store, "ada okafor 3/2/1980")
    assert [h.members for h in hits[:2]] == [((HOME_SOURCE, "h7"),), ((west, "w3"),)]
    assert hits[0].score == hits[1].score  # same name and birth date: side by side
    assert all(len(h.members) == 1 for h in hits)


def test_a_number_one_source_holds_twice_merges_nobody(store: Store) -> None:
    """Two home Patients with one verified number is a data error at home: which of them is
    the neighbour's person? None is merged; all three are shown."""
    west = store.ensure_source("west", "read-only")
    store.put_resources(
        HOME_SOURCE, [_patient("h1", nhs=SHARED), _patient("h2", "Okafor", nhs=SHARED)]
    )
    store.put_resources(west, [_patient("w1", nhs=SHARED)])
    hits = _search(store, "ada okafor")
    assert sorted(h.members for h in hits) == [
        ((HOME_SOURCE, "h1"),),
        ((HOME_SOURCE, "h2"),),
        ((west, "w1"),),
    ]
    assert store.people([f"nhs:{SHARED}"]) == {}  # the rule lives in the store, for the view too


def test_the_record_of_a_number_one_source_holds_twice_is_that_patients_alone(
    session: Any,
) -> None:
    from app.services.records import members_of

    store: Store = session.store
    west = store.ensure_source("west", "read-only")
    store.put_resources(
        HOME_SOURCE, [_patient("h1", nhs=SHARED), _patient("h2", "Okafor", nhs=SHARED)]
    )
    store.put_resources(west, [_patient("w1", nhs=SHARED)])
    assert members_of(session, HOME_SOURCE, "h1") == ((HOME_SOURCE, "h1"),)
    assert members_of(session, west, "w1") == ((west, "w1"),)


def test_one_source_alone_answers_as_before(store: Store) -> None:
    store.put_resources(
        HOME_SOURCE, [_patient("h1", nhs=SHARED), _patient("h2", "Okafor", nhs=SHARED)]
    )
    hits = _search(store, "ada okafor")
    assert [(h.id, h.members, h.sources) for h in hits] == [
        ("h1", ((HOME_SOURCE, "h1"),), ("home",)),
        ("h2", ((HOME_SOURCE, "h2"),), ("home",)),
    ]


# -- the limit counts people ----------------------------------------------------------------------
def _numbers(count: int) -> list[str]:
    from app.nhs_number import check_digit

    out = []
    n = 400_000_000
    while len(out) < count:
        n += 1
        digit = check_digit(str(n))
        if digit is not None:
            out.append(f"{n}{digit}")
    return out


def test_the_limit_counts_people_not_rows(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    east = store.ensure_source("east", "read-only")
    numbers = _numbers(30)
    for i, nhs in enumerate(numbers):
        for source, prefix in ((HOME_SOURCE, "h"), (west, "w"), (east, "e")):
            patient = _patient(f"{prefix}{i}", "Okafor", nhs=nhs)
            patient["birthDate"] = f"19{50 + i}-02-03"
            store.put_resources(source, [patient])
    hits = _search(store, "ada okafor", limit=20)
    assert len(hits) == 20  # 60 rows reached, 20 people
    assert all(len(h.members) == 3 and h.sid == HOME_SOURCE for h in hits)
    assert len({h.id for h in hits}) == 20
    assert len(_search(store, "ada okafor", limit=5)) == 5


# -- the generator's region: overlap and deliberate id collisions -------------------------------
PEOPLE = 300
SEED = 21


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(3, 0.3, PEOPLE, SEED, out)
    return out


def _ndjson(folder: Path, rtype: str) -> list[dict[str, Any]]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def three(region: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("three") / "c.db"
    with Store.create(path, os.urandom(32)) as s:
        for k in (1, 2, 3):
            sid = HOME_SOURCE if k == 1 else s.ensure_source(f"trust-{k}", "read-only")
            for rtype in ("Patient", "Flag"):
                s.put_resources(sid, _ndjson(region / f"trust-{k}", rtype))
        yield s


def _nhs(patient: dict[str, Any]) -> str | None:
    return next(
        (i["value"] for i in patient.get("identifier", ()) if i["system"] == NHS_NUMBER_SYSTEM),
        None,
    )


def test_people_the_trusts_share_are_one_result_each(three: Store, region: Path) -> None:
    by_number: dict[str, list[tuple[int, str]]] = {}
    for k in (1, 2, 3):
        for p in _ndjson(region / f"trust-{k}", "Patient"):
            if _nhs(p) and three.patient_index().people([f"nhs:{_nhs(p)}"]):
                by_number.setdefault(str(_nhs(p)), []).append((k, p["id"]))
    shared = {n: ms for n, ms in by_number.items() if len(ms) >= 2}
    assert shared and any(len(ms) == 3 for ms in shared.values())
    for number, members in sorted(shared.items())[:25]:
        hits = [h for h in _search(three, number) if h.nhs_number == number]
        assert len(hits) == 1, "one person per verified NHS number"
        [hit] = hits
        assert len(hit.members) == len(members)
        home = [rid for k, rid in members if k == 1]
        assert hit.id == (home[0] if home else hit.id) and (hit.sid == HOME_SOURCE) == bool(home)
        assert hit.sources[0] == ("home" if home else f"trust-{members[0][0]}")


def test_the_generators_colliding_ids_stay_two_people(three: Store, region: Path) -> None:
    home = {p["id"]: p for p in _ndjson(region / "trust-1", "Patient")}
    collided = [
        (k, p)
        for k in (2, 3)
        for p in _ndjson(region / f"trust-{k}", "Patient")
        if p["id"] in home and _nhs(p) != _nhs(home[p["id"]])
    ]
    assert collided, "the generator's deliberate collisions"
    for k, patient in collided:
        sid = three.source_id(f"trust-{k}")
        assert sid is not None
        name = next(n for n in patient["name"] if n.get("use") == "official")
        query = f"{name['given'][0]} {name['family']} {patient['birthDate']}"
        hits = _search(three, query)
        theirs = [h for h in hits if h.is_person(sid, patient["id"])]
        assert len(theirs) == 1
        assert not theirs[0].is_person(HOME_SOURCE, patient["id"]), "merged with someone else"
        assert theirs[0].nhs_number == _nhs(patient) or theirs[0].sid == HOME_SOURCE


# -- the command line -----------------------------------------------------------------------------
def test_search_json_lists_each_persons_sources(
    session: Any,
    profile_dir: Path,
    region: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store: Store = session.store
    west = store.ensure_source("trust-2", "read-only")
    import_ndjson(session, region / "trust-1")
    import_ndjson(session, region / "trust-2", source=west)
    home_ids = {p["id"]: _nhs(p) for p in _ndjson(region / "trust-1", "Patient")}
    shared = next(
        p
        for p in _ndjson(region / "trust-2", "Patient")
        if _nhs(p) in set(home_ids.values()) and p["id"] not in home_ids
    )
    home_id = next(rid for rid, n in home_ids.items() if n == _nhs(shared))
    session.close()
    who = ["--profile", str(profile_dir), "--user", "pc101", "--pin-stdin"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{TEST_PIN}\n"))
    code = main(["search", *who, "--json", str(_nhs(shared))])
    out, err = capsys.readouterr()
    assert code == 0, err
    people = [p for p in json.loads(out) if p["nhs_number"] == _nhs(shared)]
    assert len(people) == 1
    assert people[0]["id"] == home_id  # the home id, as before
    assert people[0]["sources"] == ["home", "trust-2"]
