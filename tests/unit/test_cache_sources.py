"""Sources in the cache (issue 14): the home source is sid 1 in every cache, a profile's
source name maps to one sid for as long as it is registered, and sids are never reused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import InvalidInput
from app.store import HOME_SOURCE, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.create(tmp_path / "c.db", os.urandom(32)) as s:
        yield s


def test_a_new_cache_holds_the_home_source_as_sid_1(store: Store) -> None:
    [home] = store.sources()
    assert (home.sid, home.name, home.role) == (HOME_SOURCE, "home", "home")
    assert store.source_id("home") == HOME_SOURCE


def test_a_source_name_keeps_its_sid_and_new_names_get_new_ones(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    east = store.ensure_source("east", "read-only")
    assert HOME_SOURCE < west < east
    assert store.ensure_source("west", "read-only") == west
    assert [(s.sid, s.name, s.role) for s in store.sources()] == [
        (HOME_SOURCE, "home", "home"),
        (west, "west", "read-only"),
        (east, "east", "read-only"),
    ]


def test_the_home_source_is_always_sid_1_and_takes_the_profiles_name(store: Store) -> None:
    assert store.ensure_source("Birmingham and Solihull", "home") == HOME_SOURCE
    assert store.source_id("Birmingham and Solihull") == HOME_SOURCE
    assert store.source_id("home") is None
    assert len(store.sources()) == 1


@pytest.mark.parametrize(
    ("name", "role"), [("home", "read-only"), ("west", "home"), ("", "read-only"), ("x", "admin")]
)
def test_a_role_change_or_a_bad_name_is_refused(store: Store, name: str, role: str) -> None:
    store.ensure_source("west", "read-only")
    before = store.sources()
    with pytest.raises(InvalidInput):
        store.ensure_source(name, role)
    assert store.sources() == before


def test_sources_survive_reopening(tmp_path: Path) -> None:
    key = os.urandom(32)
    with Store.create(tmp_path / "c.db", key) as store:
        west = store.ensure_source("west", "read-only")
    with Store.open(tmp_path / "c.db", key) as store:
        assert store.source_id("west") == west
