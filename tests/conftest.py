"""Shared fixtures.

The OS keyring is outside the product: tests replace it with an in-memory backend (and set
KERBSIDE_ALLOW_INSECURE_KEYRING=1, which the product requires before it accepts any backend
that is not a platform keychain). Everything else is real: SQLCipher files on disk, HTTP on
127.0.0.1, Qt widgets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest

from app.security import KdfParams, LockoutPolicy, MemoryKeyringBase
from app.security import memory_keyring as make_memory_keyring
from sync.reference import Clock, ReferenceConfig, ReferenceServer, wall_clock_us

# Cheap Argon2 for speed in tests; production defaults are exercised in test_security.py.
TEST_KDF = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
TEST_LOCKOUT = LockoutPolicy(max_failures=10, free_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
TEST_PIN = "246810"


# The product's in-memory backend (a KeyringBackend only once made, so nothing registers
# with keyring's automatic choice at import; see app/security/_keyring.py).
MemoryKeyring = MemoryKeyringBase


@pytest.fixture(autouse=True)
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    backend = make_memory_keyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    monkeypatch.setenv("KERBSIDE_ALLOW_INSECURE_KEYRING", "1")
    yield backend  # type: ignore[misc]
    keyring.set_keyring(previous)


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def session(profile_dir: Path) -> Iterator[object]:
    """A freshly enrolled profile (user `pc101`, PIN TEST_PIN) with an empty cache."""
    from app.services.session import enrol

    s = enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    yield s
    s.close()


COHORT_SEED = 7
COHORT_PATIENTS = 40


@pytest.fixture(scope="session")
def cohort_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Generated cohorts (seed COHORT_SEED) by size, each written once per run.

    Keyed by size because a session fixture is computed once: a suite that wants a larger
    cohort asks for its own size instead of overriding a dependency of a cached fixture.
    """
    from app.synthetic import generate_cohort

    made: dict[int, Path] = {}

    def build(patients: int) -> Path:
        if patients not in made:
            out = tmp_path_factory.mktemp(f"cohort-{patients}")
            generate_cohort(patients, COHORT_SEED, out)
            made[patients] = out
        return made[patients]

    return build


@pytest.fixture(scope="session")
def cohort_dir(cohort_of: Callable[[int], Path]) -> Path:
    """The suite's generated cohort as NDJSON (COHORT_PATIENTS people; tests/gui asks for a
    larger one under the same name); `reference` is seeded with it."""
    return cohort_of(COHORT_PATIENTS)


@pytest.fixture
def cohort_session(session: Any, cohort_dir: Path) -> Any:
    """`session` (user pc101, cheap KDF) with the small cohort imported."""
    from app.services.importer import import_ndjson

    import_ndjson(session, cohort_dir)
    return session


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


# -- the reference central record (real HTTP on 127.0.0.1, real disk) -------------------------
TABLET_CLIENT = ("tablet-1", "tablet-secret-0123456789")
ADMIN_CLIENT = ("admin-1", "admin-secret-0123456789")


def reference_config(data_dir: Path, seed_dir: Path | None, **overrides: Any) -> ReferenceConfig:
    """The test server's start-up options; overrides are `ReferenceConfig` fields."""
    return ReferenceConfig(
        data_dir=data_dir,
        seed_dir=seed_dir,
        clients=[TABLET_CLIENT],
        admin_clients=[ADMIN_CLIENT],
        **overrides,
    )


@pytest.fixture
def server_clock() -> Clock:
    """The reference server's clock (µs since the epoch): the wall clock here; a module whose
    tests move time themselves overrides this with a `tests.support.clock.ManualClock`."""
    return wall_clock_us


@pytest.fixture
def reference(tmp_path: Path, cohort_dir: Path, server_clock: Clock) -> Iterator[ReferenceServer]:
    """A running reference server seeded with the small cohort (stopped after the test)."""
    config = reference_config(tmp_path / "central", cohort_dir, clock=server_clock)
    server = ReferenceServer(config).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tablet(session: Any, reference: ReferenceServer) -> Any:
    """`session` (user pc101) enrolled against `reference` as the tablet client."""
    from app.security import ServerSettings, store_client_secret

    session.profile.set_server(
        ServerSettings(
            base_url=reference.base_url,
            client_id=TABLET_CLIENT[0],
            token_url=None,
        )
    )
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    return session


@pytest.fixture
def keychain(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a process in a desktop session whose keychain is unlocked (skips
    when the keychain tools are missing)."""
    from tests.support.keychain import desktop_keychain

    with desktop_keychain(tmp_path) as env:
        yield env


@pytest.fixture
def release_8e74f4c(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of release 8e74f4c's synced tablet (tests/fixtures/README.md), opened an hour
    after it was made: its centre's policy purges a cache not synced for a week, and a test
    must not start failing in a week."""
    from datetime import datetime, timedelta

    from app import times
    from tests.support.releases import EXPECTED_2, FIXTURE_2, install_release

    opened = datetime.fromisoformat(EXPECTED_2["made_at"]) + timedelta(hours=1)
    monkeypatch.setattr(times, "now", lambda **_: opened)
    return install_release(FIXTURE_2, tmp_path, memory_keyring, monkeypatch)
