"""Several Trusts' cohorts over one population (`generate --trusts N --overlap F`): one Bulk
Data folder per Trust, people shared by NHS number with Trust-specific (sometimes colliding) ids,
each Trust with its own directory; and the one-Trust output unchanged."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.errors import InvalidInput
from app.fhir import NHS_VERIFICATION_EXT, nhs_number_of, patient_ref_of
from app.nhs_number import is_valid
from app.synthetic import (
    MAX_TRUSTS,
    NHS_TEST_PREFIX,
    RESOURCE_TYPES,
    generate_cohort,
    generate_trusts,
)

SEED = 5
PEOPLE = 1000
TRUSTS = 3
OVERLAP = 0.25
# sha256 over (name, NUL, bytes) of each file of `generate --patients 300 --seed 11`, taken
# from the code before `--trusts` existed. A deliberate change to the generator updates it.
ONE_TRUST_SHA256 = "8bab01c12ce7d8d60c33bb73a6358fdcc57f451e2b7aafa023e75357ec4ebc76"


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.ndjson")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _load(folder: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        rtype: [
            orjson.loads(line) for line in (folder / f"{rtype}.ndjson").read_bytes().splitlines()
        ]
        for rtype in RESOURCE_TYPES
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(TRUSTS, OVERLAP, PEOPLE, SEED, out)
    return out


@pytest.fixture(scope="module")
def trusts(region: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {f"trust-{k}": _load(region / f"trust-{k}") for k in range(1, TRUSTS + 1)}


def _by_nhs(trusts: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """NHS number -> {trust folder: that Trust's Patient}."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for folder, data in trusts.items():
        for patient in data["Patient"]:
            number = nhs_number_of(patient)
            if number:
                assert folder not in out[number], "one NHS number twice in one Trust"
                out[number][folder] = patient
    return out


def _shared(trusts: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The people known to more than one Trust, by NHS number."""
    return {n: seen for n, seen in _by_nhs(trusts).items() if len(seen) > 1}


def test_one_bulk_data_folder_per_trust(region: Path) -> None:
    assert sorted(p.name for p in region.iterdir()) == ["trust-1", "trust-2", "trust-3"]
    for folder in region.iterdir():
        assert {p.name for p in folder.iterdir()} == {f"{t}.ndjson" for t in RESOURCE_TYPES}


def test_the_overlap_is_the_fraction_asked_for(trusts: dict[str, Any]) -> None:
    shared = _shared(trusts)
    assert abs(len(shared) / PEOPLE - OVERLAP) < 0.05
    assert any(len(seen) == 3 for seen in shared.values())  # a few known to three Trusts
    patients = sum(len(data["Patient"]) for data in trusts.values())
    assert patients == PEOPLE + sum(len(seen) - 1 for seen in shared.values())


def test_shared_people_carry_the_same_verified_nhs_number_and_identity(
    trusts: dict[str, Any],
) -> None:
    for number, seen in _shared(trusts).items():
        assert is_valid(number) and number.startswith(NHS_TEST_PREFIX)
        for patient in seen.values():
            (ident,) = patient["identifier"]
            (ext,) = ident["extension"]
            assert ext["url"] == NHS_VERIFICATION_EXT
            assert ext["valueCodeableConcept"]["coding"][0]["code"] == "01"  # verified
        official = set()
        for p in seen.values():
            name = next(n for n in p["name"] if n["use"] == "official")
            official.add((p["birthDate"], p["gender"], name["family"], tuple(name["given"])))
        assert len(official) == 1  # one person (a title may differ)
        ids = [p["id"] for p in seen.values()]
        assert len(set(ids)) == len(ids)  # Trust-specific ids


def test_trusts_sometimes_disagree_on_address_and_known_as_name(trusts: dict[str, Any]) -> None:
    def known_as(patient: dict[str, Any]) -> tuple[str, ...]:
        return tuple(n["given"][0] for n in patient["name"] if n["use"] == "usual")

    same_address = other_address = other_known_as = 0
    for seen in _shared(trusts).values():
        patients = list(seen.values())
        addresses = {orjson.dumps(p.get("address")) for p in patients}
        same_address += len(addresses) == 1
        other_address += len(addresses) > 1
        other_known_as += len({known_as(p) for p in patients}) > 1
    assert same_address > 20 and other_address > 20 and other_known_as > 20


def test_patient_ids_collide_across_trusts_for_different_people(trusts: dict[str, Any]) -> None:
    holders: dict[str, dict[str, str | None]] = defaultdict(dict)
    for folder, data in trusts.items():
        ids = [p["id"] for p in data["Patient"]]
        assert len(set(ids)) == len(ids)  # unique within each Trust
        for patient in data["Patient"]:
            holders[patient["id"]][folder] = nhs_number_of(patient)
    collisions = [seen for seen in holders.values() if len(seen) > 1]
    assert len(collisions) >= 3
    for seen in collisions:
        numbers = list(seen.values())
        assert None not in numbers and len(set(numbers)) == len(numbers)  # different people


def test_each_trust_has_its_own_directory_and_references_resolve_inside_it(
    trusts: dict[str, Any],
) -> None:
    ods_codes = []
    practitioners: list[set[str]] = []
    for data in trusts.values():
        (hq,) = [o for o in data["Organization"] if o["type"][0]["text"] == "NHS trust"]
        ods_codes.append(hq["identifier"][0]["value"])
        assert all(
            o.get("partOf", {}).get("reference", f"Organization/{hq['id']}")
            == f"Organization/{hq['id']}"
            for o in data["Organization"]
        )
        practitioners.append({p["id"] for p in data["Practitioner"]})
        present = {f"{t}/{r['id']}" for t, rs in data.items() for r in rs}
        for rtype, resources in data.items():
            for resource in resources:
                if rtype not in ("Patient", "Organization", "Practitioner"):
                    assert f"Patient/{patient_ref_of(resource)}" in present
                for node in _walk(resource):
                    ref = node.get("reference")
                    if isinstance(ref, str):
                        assert ref in present, ref
        for rtype in ("Flag", "CarePlan", "CareTeam"):
            assert data[rtype], rtype
    assert len(set(ods_codes)) == TRUSTS
    assert not set.intersection(*practitioners)


def test_same_arguments_give_the_same_bytes(tmp_path: Path) -> None:
    generate_trusts(2, 0.3, 120, 9, tmp_path / "a")
    generate_trusts(2, 0.3, 120, 9, tmp_path / "b")
    generate_trusts(2, 0.3, 120, 10, tmp_path / "c")
    for k in (1, 2):
        assert _folder_hash(tmp_path / "a" / f"trust-{k}") == _folder_hash(
            tmp_path / "b" / f"trust-{k}"
        )
        assert _folder_hash(tmp_path / "a" / f"trust-{k}") != _folder_hash(
            tmp_path / "c" / f"trust-{k}"
        )


def test_no_overlap_and_one_trust_are_the_edge_cases(tmp_path: Path) -> None:
    generate_trusts(2, 0.0, 200, SEED, tmp_path / "apart")
    apart = {f"trust-{k}": _load(tmp_path / "apart" / f"trust-{k}") for k in (1, 2)}
    assert not _shared(apart)
    assert sum(len(d["Patient"]) for d in apart.values()) == 200
    counts = generate_trusts(1, 1.0, 50, SEED, tmp_path / "alone")
    assert counts["trust-1"]["Patient"] == 50


def test_without_collisions_and_overlap_the_folders_are_one_record_of_the_region(
    tmp_path: Path,
) -> None:
    """The search bench's one-source baseline joins these folders into one source: every
    person once, every id unique across the Trusts, the same people as with an overlap."""

    def people(folder: Path) -> tuple[set[tuple[Any, ...]], set[str | None]]:
        patients = [p for k in (1, 2, 3) for p in _load(folder / f"trust-{k}")["Patient"]]
        return {(p["name"][0].get("family"), p.get("birthDate")) for p in patients}, {
            nhs_number_of(p) for p in patients
        }

    generate_trusts(TRUSTS, 0.0, PEOPLE, SEED, tmp_path / "apart", collide=False)
    apart = {f"trust-{k}": _load(tmp_path / "apart" / f"trust-{k}") for k in (1, 2, 3)}
    for rtype in RESOURCE_TYPES:
        ids = [r["id"] for data in apart.values() for r in data[rtype]]
        assert len(set(ids)) == len(ids), rtype
    assert sum(len(d["Patient"]) for d in apart.values()) == PEOPLE
    generate_trusts(TRUSTS, OVERLAP, PEOPLE, SEED, tmp_path / "shared")
    (names, numbers), (shared_names, shared_numbers) = (
        people(tmp_path / "apart"),
        people(tmp_path / "shared"),
    )
    assert len(names) == PEOPLE and names == shared_names
    # A shared person always carries the NHS number that joins them, even one their home
    # Trust's record would leave out.
    assert numbers - {None} <= shared_numbers
    generate_trusts(TRUSTS, 0.0, PEOPLE, SEED, tmp_path / "colliding")
    colliding = [
        p["id"] for k in (1, 2, 3) for p in _load(tmp_path / "colliding" / f"trust-{k}")["Patient"]
    ]
    assert len(set(colliding)) < len(colliding)  # the default keeps the collisions


@pytest.mark.parametrize(("trusts", "overlap"), [(0, 0.2), (MAX_TRUSTS + 1, 0.2), (2, 1.5)])
def test_out_of_range_arguments_are_refused(tmp_path: Path, trusts: int, overlap: float) -> None:
    with pytest.raises(InvalidInput):
        generate_trusts(trusts, overlap, 10, SEED, tmp_path)


def test_without_trusts_the_output_is_byte_identical_to_before(tmp_path: Path) -> None:
    assert main(["generate", "--patients", "300", "--seed", "11", "--out", str(tmp_path)]) == 0
    assert not list(tmp_path.glob("trust-*"))
    assert _folder_hash(tmp_path) == ONE_TRUST_SHA256


def test_the_parallel_writer_gives_the_serial_bytes(tmp_path: Path) -> None:
    """Two chunks of patients through a process pool, as large cohorts are written."""
    generate_cohort(2001, 11, tmp_path / "pool", workers=2)
    generate_cohort(2001, 11, tmp_path / "one", workers=1)
    assert _folder_hash(tmp_path / "pool") == _folder_hash(tmp_path / "one")


def test_generate_command_writes_one_folder_per_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "--trusts", "2", "--overlap", "0.5", "--patients", "40", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for k in (1, 2):
        patients = (tmp_path / f"trust-{k}" / "Patient.ndjson").read_bytes().count(b"\n")
        assert f"trust-{k}: {patients:,} patients" in printed
    assert not list(tmp_path.rglob("*.part"))


def test_overlap_without_trusts_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "--overlap", "0.2", "--out", str(tmp_path)]) == 1
    assert "--trusts" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
