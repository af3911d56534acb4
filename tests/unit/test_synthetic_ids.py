"""Identifier tricks the generator relies on for speed, checked as properties."""

from __future__ import annotations

import uuid
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from app.nhs_number import is_valid
from app.synthetic import NHS_TEST_PREFIX
from app.synthetic._common import new_id
from app.synthetic._people import NHS_NUMBERED, nhs_number, nhs_number_permutation


@given(st.integers(0, NHS_NUMBERED - 1), st.integers(0, 2**64))
def test_every_patient_index_gets_a_valid_test_range_nhs_number(index: int, seed: int) -> None:
    number = nhs_number(index, nhs_number_permutation(Random(seed)))
    assert is_valid(number) and number.startswith(NHS_TEST_PREFIX)


@given(
    st.integers(0, 2**64),
    st.lists(st.integers(0, NHS_NUMBERED - 1), min_size=2, max_size=50, unique=True),
)
def test_different_patients_never_share_an_nhs_number(seed: int, indexes: list[int]) -> None:
    perm = nhs_number_permutation(Random(seed))
    numbers = [nhs_number(i, perm) for i in indexes]
    assert len(set(numbers)) == len(numbers)


@given(st.integers(0, 2**64))
def test_fast_ids_are_the_version_4_uuids_the_rng_would_give(seed: int) -> None:
    fast = new_id(Random(seed))
    slow = uuid.UUID(int=Random(seed).getrandbits(128), version=4)
    assert fast == str(slow)
