"""Reading a typed query: dates of birth, ages, NHS numbers, postcodes and name words; and no
input, however odd, makes the parser or the search raise (SECURITY.md 24)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services._query import (
    APPROX_AGE_TOLERANCE,
    PLAIN_AGE_TOLERANCE,
    BirthDate,
    parse_query,
)
from app.services.search import PatientSearch
from app.store import HOME_SOURCE, Store

TODAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    ("text", "when", "swapped"),
    [
        ("3/4/1988", date(1988, 4, 3), date(1988, 3, 4)),
        ("03-04-88", date(1988, 4, 3), date(1988, 3, 4)),
        ("3.4.88", date(1988, 4, 3), date(1988, 3, 4)),
        ("25/12/1990", date(1990, 12, 25), None),  # no 25th month: one reading
        ("3 april 1988", date(1988, 4, 3), None),
        ("April 3rd, 1988", date(1988, 4, 3), None),
        ("1988-04-03", date(1988, 4, 3), None),
        ("03041988", date(1988, 4, 3), date(1988, 3, 4)),
        ("28/2/01", date(2001, 2, 28), None),  # two-digit years up to today are this century
        ("1/1/30", date(1930, 1, 1), None),
    ],
)
def test_dates_of_birth_are_read_the_british_way_first(
    text: str, when: date, swapped: date | None
) -> None:
    parsed = parse_query(f"smith {text}", TODAY)
    assert parsed.birth_dates == [BirthDate(when, swapped)]
    assert [w.text for w in parsed.words] == ["smith"]


@pytest.mark.parametrize(
    ("text", "ages", "years"),
    [
        ("35", [(35, PLAIN_AGE_TOLERANCE)], []),
        ("~35", [(35, APPROX_AGE_TOLERANCE)], []),
        ("about 35", [(35, APPROX_AGE_TOLERANCE)], []),
        ("35ish", [(35, APPROX_AGE_TOLERANCE)], []),
        ("35 ish", [(35, APPROX_AGE_TOLERANCE)], []),
        ("aged 35", [(35, PLAIN_AGE_TOLERANCE)], []),
        ("35yo", [(35, PLAIN_AGE_TOLERANCE)], []),
        ("1988", [], [1988]),
        ("2031", [], []),  # a year in the future is nobody's birth year
        ("007", [], []),
    ],
)
def test_ages_and_birth_years(text: str, ages: list, years: list) -> None:
    parsed = parse_query(text, TODAY)
    assert (parsed.ages, parsed.years) == (ages, years)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("943 476 5870", ["9434765870"]),
        ("9434765870", ["9434765870"]),
        ("943-476-5870", ["9434765870"]),
        ("485 777 3456", ["4857773456"]),  # well-formed, bad check digit: search reports it
        ("943 476 587", []),
    ],
)
def test_nhs_numbers_with_or_without_spaces(text: str, numbers: list[str]) -> None:
    assert parse_query(text, TODAY).nhs_numbers == numbers


@pytest.mark.parametrize(
    ("text", "postcodes"),
    [
        ("B15 2TT", [("full", "b152tt")]),
        ("b152tt", [("full", "b152tt")]),
        ("SW1A 1AA", [("full", "sw1a1aa")]),
        ("b15 2", [("sector", "b152")]),
        ("smith b15", [("outward", "b15")]),
    ],
)
def test_postcodes_with_or_without_the_space(text: str, postcodes: list) -> None:
    assert parse_query(text, TODAY).postcodes == postcodes


def test_name_words_are_folded_and_titles_dropped() -> None:
    parsed = parse_query("Mrs Zoë O’Neill-Brontë aka Liz, female", TODAY)
    assert [w.text for w in parsed.words] == ["zoe", "oneill", "bronte", "liz"]
    assert parsed.genders == ["female"]


# -- nothing raises ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatientSearch]:
    from app.synthetic import iter_cohort

    path: Path = tmp_path_factory.mktemp("fuzz") / "c.db"
    with Store.create(path, os.urandom(32)) as store:
        store.put_resources(
            HOME_SOURCE, [r for r in iter_cohort(60, 5) if r["resourceType"] in ("Patient", "Flag")]
        )
        yield PatientSearch(store)


# Query-like text: pieces of names, dates, numbers and postcodes run together.
QUERYISH = st.lists(
    st.sampled_from(
        [*"abcjnosty 0123456789/-.~'’,éłß", "smith", " 1988", "943 476 5870", "b15", "about"]
    ),
    max_size=25,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), QUERYISH))
def test_parser_never_raises(text: str) -> None:
    parsed = parse_query(text, TODAY)
    assert len(parsed.words) <= 8


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=120), QUERYISH), limit=st.integers(-1, 30))
def test_search_never_raises_and_keeps_its_promises(
    small_search: PatientSearch, text: str, limit: int
) -> None:
    result = small_search.search(text, limit=limit, today=TODAY)
    assert len(result.hits) <= max(limit, 0)
    assert all(0.0 <= h.score <= 1.0 for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
