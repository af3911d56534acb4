"""A wipe never destroys a clinical record silently (issue 12 finding 5, SECURITY.md 28).

Revocation and the wrong-PIN wipe each end with the pending encounter recovered from the
sealed file by `kerbside recover-sealed` and present exactly once on the real reference
server; without a Trust key the wipe says how many records it destroyed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.errors import CacheWiped, UnlockFailed
from app.security import SEALED_SUFFIX, TRUST_KEY_SETTING, Profile, new_keypair
from app.services.syncing import run_sync
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT
from tests.support.sync import UNIDENTIFIED, held_on_server, record_encounters

CANARY = "Synthetic test narrative"


@pytest.fixture
def trust_keys(tmp_path: Path) -> tuple[str, Path]:
    public, private = new_keypair()
    key_file = tmp_path / "trust-private.key"
    key_file.write_text(private + "\n")
    return public, key_file


def _recover(
    key_file: Path,
    sealed: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    monkeypatch.setattr("sys.stdin", io.StringIO(TABLET_CLIENT[1] + "\n"))
    args = [
        "recover-sealed",
        "--key",
        str(key_file),
        str(sealed),
        "--server",
        reference.base_url,
        "--client-id",
        TABLET_CLIENT[0],
        "--token-url",
        reference.token_url,
    ]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _sealed_files(profile: Path) -> list[Path]:
    return sorted((profile / "sealed").rglob(f"*{SEALED_SUFFIX}"))


def _assert_recovered_once(
    client_id: str,
    profile: Path,
    key_file: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (profile / "cache.db").exists()
    files = _sealed_files(profile)
    assert [f.name for f in files] == [f"{client_id}{SEALED_SUFFIX}"]
    assert CANARY.encode() not in files[0].read_bytes()  # unreadable on the tablet
    summary = _recover(key_file, profile / "sealed", reference, monkeypatch, capsys)
    assert summary["uploaded"] == 1 and summary["client_ids"] == [client_id]
    again = _recover(key_file, files[0], reference, monkeypatch, capsys)  # a second run
    assert again["rejected"] == []
    http = reference.session(admin=True)
    held = held_on_server(http, reference.base_url, client_id)
    assert len(held["Encounter"]) == 1  # exactly once
    assert len(held["QuestionnaireResponse"]) == 1


def test_revocation_leaves_the_unsent_encounter_sealed_and_trust_it_recovers_it_once(
    tablet: Any,
    profile_dir: Path,
    reference: ReferenceServer,
    trust_keys: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    public, key_file = trust_keys
    tablet.profile.update_settings(**{TRUST_KEY_SETTING: public})
    [client_id] = record_encounters(tablet, [UNIDENTIFIED])
    reference.revoke(TABLET_CLIENT[0])
    with pytest.raises(CacheWiped, match="1 unsent record"):
        run_sync(tablet)
    reference.reinstate(TABLET_CLIENT[0])
    _assert_recovered_once(client_id, profile_dir, key_file, reference, monkeypatch, capsys)


def test_the_pin_wipe_leaves_the_unsent_encounter_sealed_and_trust_it_recovers_it_once(
    tablet: Any,
    profile_dir: Path,
    reference: ReferenceServer,
    trust_keys: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    public, key_file = trust_keys
    tablet.profile.update_settings(**{TRUST_KEY_SETTING: public})
    [client_id] = record_encounters(tablet, [UNIDENTIFIED])
    tablet.write_status()
    tablet.close()
    profile = Profile.load(profile_dir)
    with pytest.raises(CacheWiped, match="sealed for Trust IT"):
        for _ in range(profile.lockout.max_failures):
            try:
                profile.unlock("pc101", "975310")
            except UnlockFailed:
                continue
    _assert_recovered_once(client_id, profile_dir, key_file, reference, monkeypatch, capsys)


def test_a_record_the_centre_accepted_loses_its_sealed_copy(
    tablet: Any, trust_keys: tuple[str, Path], profile_dir: Path
) -> None:
    tablet.profile.update_settings(**{TRUST_KEY_SETTING: trust_keys[0]})
    record_encounters(tablet, [UNIDENTIFIED])
    assert len(_sealed_files(profile_dir)) == 1
    run_sync(tablet)
    assert _sealed_files(profile_dir) == []


def test_without_a_trust_key_the_wipe_says_how_many_records_it_destroys(
    session: Any, profile_dir: Path
) -> None:
    record_encounters(session, [UNIDENTIFIED, UNIDENTIFIED])
    session.write_status()
    session.close()
    profile = Profile.load(profile_dir)
    with pytest.raises(CacheWiped, match="WARNING: 2 unsent record"):
        for _ in range(profile.lockout.max_failures):
            try:
                profile.unlock("pc101", "975310")
            except UnlockFailed:
                continue


def test_the_site_configuration_can_name_the_trust_key(tmp_path: Path) -> None:
    from app.services.site import SiteConfigError, parse_site_config

    base = {"url": "https://fhir.example.nhs.uk/R4", "client_id": "kerbside-bolton"}
    public, _private = new_keypair()
    site = parse_site_config(
        tmp_path / "site.toml", {"central_record": {**base, "trust_public_key": public}}
    )
    assert site.trust_public_key == public
    with pytest.raises(SiteConfigError, match="trust_public_key"):
        parse_site_config(
            tmp_path / "site.toml", {"central_record": {**base, "trust_public_key": "c2hvcnQ="}}
        )
