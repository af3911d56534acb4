"""Several Trusts' central records over one population: the test bed for issue 14.

`generate_trusts` writes `out/trust-1` ... `out/trust-N`, each a Bulk Data folder in the shape
`generate_cohort` writes (so `serve-reference --seed out/trust-k` loads it). The population is
`patients` people, patient index i being the same person (name, sex, birth date, NHS number:
`identity` and `nhs_number` keyed by (seed, i)) whichever Trust describes them. Each Trust
renders its people's records from its own RNG stream with the ordinary `CohortBuilder`, narrowed
to its own area, so every Trust has its own Organization (ODS code), sites, practitioners,
care teams, flags and crisis plans, and its own resource ids.

What the multi-source cache must cope with, on purpose:
- a fraction `overlap` of people are known to two Trusts (a tenth of those, with three or more
  Trusts, to three): the same verified NHS number in each, but Trust-specific ids; the
  neighbour's record usually carries another address (an older one, in its own area) and may
  give another known-as name;
- about 2% of the people of trust-2 ... trust-N who are unknown to trust-1 carry, as their
  Patient id, the id trust-1 gave to a different person: the same id on two servers is two
  resources, never one person.
Deterministic for (trusts, overlap, patients, seed, as_of).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from app.errors import InvalidInput
from app.fhir import NHS_NUMBER_SYSTEM, NHS_VERIFICATION_EXT, NHS_VERIFICATION_SYSTEM
from app.synthetic._cohort import _CHUNK, _check, encode, write_ndjson
from app.synthetic._common import DEFAULT_AS_OF, Weighted, codeable
from app.synthetic._people import NHS_NUMBERED, nhs_number
from app.synthetic._places import TOWNS, TRUSTS
from app.synthetic._records import CohortBuilder

# trust-k is the k-th Trust of the region, in TRUSTS order (neighbours come first).
MAX_TRUSTS = len(TRUSTS)
_THIRD_TRUST_PER_MILLE = 100  # of the people shared, those known to a third Trust too
_SAME_ADDRESS_PER_MILLE = 300  # a neighbour's record with the home Trust's current address
_COLLIDE_PER_MILLE = 20  # people of trust-2.. whose Patient id trust-1 gave to someone else
_VERIFIED = ("01", "Number present and verified")


def trust_folder(number: int) -> str:
    """The folder name of Trust `number` (1-based): part of the `generate` contract."""
    return f"trust-{number}"


def _draws(seed: int, index: int) -> tuple[int, int, int, int, int]:
    """Five independent 32-bit draws for person `index`, off every record stream."""
    digest = hashlib.blake2b(f"kerbside:{seed}:trusts:{index}".encode(), digest_size=20).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "big") for i in range(0, 20, 4))  # type: ignore[return-value]


def memberships(seed: int, trusts: int, overlap: float, index: int) -> tuple[int, ...]:
    """The Trusts (0-based) that know person `index`, their home Trust first."""
    overlap_draw, home_draw, second_draw, third_draw, third_pick = _draws(seed, index)
    home = home_draw % trusts
    if trusts == 1 or overlap_draw >= overlap * 2**32:
        return (home,)
    second = (home + 1 + second_draw % (trusts - 1)) % trusts
    if trusts < 3 or third_draw % 1000 >= _THIRD_TRUST_PER_MILLE:
        return (home, second)
    others = [t for t in range(trusts) if t not in (home, second)]
    third = others[third_pick % len(others)]
    return (home, second, third)


def _per_mille(seed: int, trust: int, index: int, what: str) -> int:
    digest = hashlib.blake2b(f"kerbside:{seed}:{what}:{trust}:{index}".encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "big") % 1000


class TrustCohortBuilder(CohortBuilder):
    """The ordinary builder, narrowed to one Trust: its towns, and its own records stream.

    The directory (and so identity, NHS numbers and the street pool) is the region's, built
    from the same seed as for every other Trust; each Trust writes only its own part of it.
    """

    def __init__(self, seed: int, as_of: datetime, trust: int) -> None:
        super().__init__(seed, as_of)
        self.trust = trust
        self.key = list(TRUSTS)[trust]
        self._towns = Weighted(
            (i, weight) for i, (town, weight) in enumerate(TOWNS) if town.trust == self.key
        )

    def records_key(self, index: int) -> str:
        return f"kerbside:{self.seed}:{trust_folder(self.trust + 1)}:{index}"

    def directory_resources(self) -> list[dict[str, Any]]:
        """This Trust's Organizations (itself, its sites, the GP practices of its area) and
        practitioners, in the directory's order."""
        td = self.directory.trusts[self.key]
        keep = {td.org.id, td.hospital.id, td.crisis_team.id}
        keep.update(site.id for site in td.cmhts.values())
        keep.update(c.id for staff in td.staff.values() for c in staff)
        for town_index, (town, _) in enumerate(TOWNS):
            if town.trust == self.key:
                keep.update(gp.id for gp in self.directory.gps[town_index])
        return [r for r in self.directory.resources if r["id"] in keep]

    def nhs_identifier(self, index: int) -> list[dict[str, Any]]:
        """The verified NHS number every Trust that shares person `index` records."""
        return [
            {
                "extension": [
                    {
                        "url": NHS_VERIFICATION_EXT,
                        "valueCodeableConcept": codeable(NHS_VERIFICATION_SYSTEM, *_VERIFIED),
                    }
                ],
                "system": NHS_NUMBER_SYSTEM,
                "value": nhs_number(index, self.nhs_perm),
            }
        ]


def _repoint(node: Any, old: str, new: str) -> None:
    """Point every `Patient/old` reference under `node` at `Patient/new`, in place."""
    if isinstance(node, dict):
        if node.get("reference") == old:
            node["reference"] = new
        for value in node.values():
            _repoint(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _repoint(value, old, new)


class _Region:
    """Every Trust's builder and who belongs where; renders one Trust's people."""

    def __init__(
        self,
        trusts: int,
        overlap: float,
        patients: int,
        seed: int,
        as_of: datetime,
        *,
        collide: bool = True,
    ):
        self.trusts, self.overlap, self.patients, self.seed = trusts, overlap, patients, seed
        self.collide = collide
        self.builders = [TrustCohortBuilder(seed, as_of, t) for t in range(trusts)]

    def members(self, index: int) -> tuple[int, ...]:
        return memberships(self.seed, self.trusts, self.overlap, index)

    def _donors(self, trust: int) -> Iterator[int]:
        """People of trust-1 unknown to `trust`, in index order: whose trust-1 id to reuse."""
        for index in range(self.patients):
            known = self.members(index)
            if 0 in known and trust not in known:
                yield index

    def records(self, trust: int, indexes: range, donors: Iterator[int]) -> list[dict[str, Any]]:
        builder = self.builders[trust]
        out: list[dict[str, Any]] = []
        for index in indexes:
            known = self.members(index)
            if trust not in known:
                continue
            records = builder.patient_records(index)
            patient = records[0]
            if len(known) > 1 and index < NHS_NUMBERED:
                patient["identifier"] = builder.nhs_identifier(index)
                home = known[0]
                if trust != home and (
                    _per_mille(self.seed, trust, index, "address") < _SAME_ADDRESS_PER_MILLE
                ):
                    home_patient = self.builders[home].patient_records(index)[0]
                    if "address" in home_patient:
                        patient["address"] = home_patient["address"]
            if (
                self.collide
                and trust > 0
                and 0 not in known
                and _per_mille(self.seed, trust, index, "collide") < _COLLIDE_PER_MILLE
            ):
                donor = next(donors, None)
                if donor is not None:
                    taken = self.builders[0].patient_records(donor)[0]["id"]
                    _repoint(records, f"Patient/{patient['id']}", f"Patient/{taken}")
                    patient["id"] = taken
            out.extend(records)
        return out

    def chunks(self, trust: int) -> Iterator[tuple[dict[str, bytes], dict[str, int]]]:
        yield encode(self.builders[trust].directory_resources())
        donors = self._donors(trust)
        for start in range(0, self.patients, _CHUNK):
            indexes = range(start, min(start + _CHUNK, self.patients))
            yield encode(self.records(trust, indexes, donors))


def check_trusts(trusts: int, overlap: float) -> None:
    if not 1 <= trusts <= MAX_TRUSTS:
        raise InvalidInput(f"trusts must be between 1 and {MAX_TRUSTS}", field="trusts")
    if not 0.0 <= overlap <= 1.0:
        raise InvalidInput("overlap must be a fraction between 0 and 1", field="overlap")


def generate_trusts(
    trusts: int,
    overlap: float,
    patients: int,
    seed: int,
    out_dir: Path,
    *,
    as_of: datetime = DEFAULT_AS_OF,
    collide: bool = True,
) -> dict[str, dict[str, int]]:
    """Write `out_dir/trust-1` ... `trust-N` and return counts per type for each folder.

    `patients` is the number of people in the region; each Trust holds its own people and
    its share of the overlap, so the folders together hold about patients * (1 + overlap)
    Patient resources. One process: multi-Trust cohorts are for tests and demos.
    `collide=False` leaves out the Patient ids one Trust reuses from another, so that with
    `overlap=0` the folders together are one record of the region (every person once, ids
    unique): the search bench's one-source baseline of the same people.
    """
    _check(patients, as_of)
    check_trusts(trusts, overlap)
    region = _Region(trusts, overlap, patients, seed, as_of, collide=collide)
    return {
        trust_folder(t + 1): write_ndjson(Path(out_dir) / trust_folder(t + 1), region.chunks(t))
        for t in range(trusts)
    }
