"""Who the synthetic people are: names, sex, dates of birth, NHS numbers.

Each patient's identity comes from its own RNG stream keyed by (seed, index), so patient 123
is the same person in a cohort of 1,000 and of 100,000, and a later patient can be made a
namesake of an earlier one (same name and birth year, different person) without keeping the
whole cohort in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from random import Random

from app.nhs_number import check_digit
from app.synthetic._common import FastRandom, Weighted
from app.synthetic._names import (
    ACCENTED,
    COMMUNITY_TABLE,
    Community,
    gendered_surname,
    hyphenated,
)

# NHS England reserves numbers starting 999 for testing: synthetic records must not carry a
# number that could be a real person's. 999 + six digits leaves 1,000,000 prefixes, paired
# (last digit 2k, 2k+1) so that every pair holds at least one valid Modulus 11 number.
NHS_TEST_PREFIX = "999"
_NHS_PAIRS = 500_000
# Patients with an index at or beyond the pair space (a 1,000,000 scale run) carry no NHS
# number, as many street-triage contacts do not: the test range has no more unique numbers.
NHS_NUMBERED = _NHS_PAIRS
MAX_PATIENTS = 1_000_000

GENDERS = Weighted([("female", 49.0), ("male", 49.0), ("other", 1.2), ("unknown", 0.8)])
# Street triage sees mostly working-age adults; a few 16-17 year olds and older people.
_AGE_BANDS = Weighted(
    [
        ((16, 17), 4),
        ((18, 25), 18),
        ((26, 35), 25),
        ((36, 45), 20),
        ((46, 60), 20),
        ((61, 75), 9),
        ((76, 90), 4),
    ]
)
_NAMESAKE_PER_MILLE = 20
_NAMESAKE_WINDOW = 200


@dataclass(frozen=True, slots=True)
class Identity:
    gender: str
    community: Community
    given: tuple[str, ...]
    family: str
    birth: int  # ordinal


def nhs_number_permutation(rng: Random) -> tuple[int, int]:
    """(a, b) of a per-seed affine permutation of the pair space: unique numbers, no lookups."""
    while True:
        a = rng.randrange(1, _NHS_PAIRS)
        if a % 2 and a % 5:
            return a, rng.randrange(_NHS_PAIRS)


def nhs_number(index: int, perm: tuple[int, int]) -> str:
    """The NHS number of patient `index`: valid Modulus 11, unique within the cohort."""
    a, b = perm
    pair = (a * index + b) % _NHS_PAIRS
    for last in (0, 1):
        nine = f"{NHS_TEST_PREFIX}{2 * pair + last:06d}"
        check = check_digit(nine)
        if check is not None:
            return f"{nine}{check}"
    raise AssertionError("unreachable: one of a pair always has a check digit")


def sex_for_names(rng: Random, gender: str) -> bool:
    """True for a female name pool. People recorded as other/unknown get either."""
    if gender == "female":
        return True
    if gender == "male":
        return False
    return rng.random() < 0.5


def given_name(rng: Random, community: Community, female: bool) -> str:
    name = (community.female if female else community.male).pick(rng)
    accented = ACCENTED.get(name)
    if accented and rng.random() < 0.4:
        return accented
    return name


def family_name(rng: Random, community: Community, female: bool) -> str:
    if community.key == "british" and rng.random() < 0.03:
        return hyphenated(rng)
    return gendered_surname(community.surnames.pick(rng), female)


def person_name(
    rng: Random,
    female: bool,
    community: Community | None = None,
) -> tuple[Community, str, str]:
    """(community, given, family) for a relative, clinician or anyone else."""
    community = community or COMMUNITY_TABLE.pick(rng)
    return community, given_name(rng, community, female), family_name(rng, community, female)


def _base_identity(seed: int, index: int, today: int) -> Identity:
    rng = FastRandom(f"kerbside:{seed}:{index}:identity")
    gender = GENDERS.pick(rng)
    female = sex_for_names(rng, gender)
    community = COMMUNITY_TABLE.pick(rng)
    first = given_name(rng, community, female)
    given: tuple[str, ...] = (first,)
    if rng.random() < 0.5:
        middle = given_name(rng, community, female)
        if middle != first:
            given = (first, middle)
    family = family_name(rng, community, female)
    lo, hi = _AGE_BANDS.pick(rng)
    age = rng.randint(lo, hi)
    birth = today - int(age * 365.25) - rng.randrange(365)
    return Identity(gender, community, given, family, birth)


def _namesake_target(seed: int, index: int) -> int | None:
    """The earlier patient this one shares a name and birth year with, if any (~2%)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big")
    if index == 0 or u % 1000 >= _NAMESAKE_PER_MILLE:
        return None
    return index - 1 - (u >> 10) % min(index, _NAMESAKE_WINDOW)


def identity(seed: int, index: int, today: int) -> Identity:
    """Patient `index`'s identity; namesakes copy name, sex and birth year from an earlier one."""
    own = _base_identity(seed, index, today)
    target = _namesake_target(seed, index)
    if target is None:
        return own
    while (earlier := _namesake_target(seed, target)) is not None:
        target = earlier  # copy a real base identity, never another copy
    other = _base_identity(seed, target, today)
    born = date.fromordinal(other.birth)
    mine = date.fromordinal(own.birth)
    day = min(mine.day, 28)
    birth = date(born.year, mine.month, day).toordinal()
    if birth == other.birth:
        birth = date(born.year, mine.month % 12 + 1, day).toordinal()
    return Identity(other.gender, other.community, other.given[:1], other.family, birth)
