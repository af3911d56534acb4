"""A real reference central record on 127.0.0.1 for integration tests (real HTTP, real disk).

`reference` is a fresh server per test seeded from the session's small generated cohort;
`tablet` is an enrolled profile pointed at it (client secret in the in-memory test keyring).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.reference import ReferenceConfig, ReferenceServer

TABLET_CLIENT = ("tablet-1", "tablet-secret-0123456789")
ADMIN_CLIENT = ("admin-1", "admin-secret-0123456789")


def reference_config(data_dir: Path, seed_dir: Path | None, **overrides: Any) -> ReferenceConfig:
    """The test server's start-up options; overrides are `ReferenceConfig` fields."""
    return ReferenceConfig(
        data_dir=data_dir, seed_dir=seed_dir, clients=[TABLET_CLIENT],
        admin_clients=[ADMIN_CLIENT], **overrides,
    )


@pytest.fixture
def reference(tmp_path: Path, cohort_dir: Path) -> Iterator[ReferenceServer]:
    """A running reference server seeded with the small cohort (stopped after the test)."""
    server = ReferenceServer(reference_config(tmp_path / "central", cohort_dir)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tablet(session: Any, reference: ReferenceServer) -> Any:
    """`session` (user pc101) enrolled against `reference` as the tablet client."""
    from app.security import ServerSettings, store_client_secret

    session.profile.set_server(ServerSettings(
        base_url=reference.base_url, client_id=TABLET_CLIENT[0], token_url=None,
    ))
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    return session
