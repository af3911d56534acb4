"""`kerbside doctor` and its checks (app/services/doctor.py), against the real reference
server, real SQLCipher and real files; an unfit central record is a real HTTP server on
127.0.0.1 serving an R3-era CapabilityStatement."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring
import keyring.backend
import pytest

import app.security._keyring as kr
import app.security._profile as profile_module
from app.cli import main
from app.security import MemoryKeyringBase
from app.services.doctor import (
    check_clock,
    check_profile_dir,
    run_checks,
    synced_folder,
)
from app.services.site import SITE_ENV, load_site_config, provision
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, MemoryKeyring

NAMES = [
    "SQLCipher",
    "Keychain",
    "Profile folder",
    "Clock",
    "Time zone data",
    "Site configuration",
    "Central record",
]


@pytest.fixture(autouse=True)
def no_site_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SITE_ENV, raising=False)
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)


@pytest.fixture
def trusted(memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat the test's in-memory keyring as an OS keychain (the real one is tested in
    tests/integration/test_real_keychain.py)."""
    name = kr.backend_name(memory_keyring)  # type: ignore[arg-type]
    monkeypatch.setattr(kr, "STORE_KINDS", {**kr.STORE_KINDS, name: "secret-service"})
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")


def site_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[central_record]\nurl = "{url}"\nclient_id = "{TABLET_CLIENT[0]}"\n', encoding="utf-8"
    )
    path.chmod(0o644)  # as IT installs it, whatever this machine's umask
    return path


def doctor(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def test_a_fit_tablet_passes_every_check_and_json_is_one_object(
    tmp_path: Path,
    reference: ReferenceServer,
    trusted: None,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = site_file(tmp_path, reference.base_url)
    loaded = load_site_config(site)
    assert loaded is not None
    provision(loaded, TABLET_CLIENT[1])
    prof = tmp_path / "prof"
    args = ["--profile", str(prof), "--site-config", str(site)]
    code, out = doctor([*args, "--json"], monkeypatch, capsys)
    body = json.loads(out)  # exactly one JSON document
    assert code == 0, out
    assert body["ok"] is True
    assert [c["name"] for c in body["checks"]] == NAMES
    assert all(set(c) == {"name", "ok", "detail", "remedy"} for c in body["checks"])
    assert "FHIR 4.0.1" in body["checks"][-1]["detail"]
    assert body["checks"][1]["detail"].startswith("secret-service")
    assert not [k for k in memory_keyring.secrets if k[1].startswith("doctor-probe")]

    code, out = doctor(args, monkeypatch, capsys)
    assert code == 0
    assert [line.split("  ", 1)[0] for line in out.splitlines()] == ["PASS"] * len(NAMES)


def test_failures_say_what_to_do_and_exit_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test keyring is not an OS keychain, the site file is not provisioned."""
    site = site_file(tmp_path, "https://fhir.invalid/R4")
    code, out = doctor(
        ["--profile", str(tmp_path / "p"), "--site-config", str(site), "--json"],
        monkeypatch,
        capsys,
    )
    body = json.loads(out)
    assert code == 1 and body["ok"] is False
    checks = {c["name"]: c for c in body["checks"]}
    assert not checks["Keychain"]["ok"] and "not an OS keychain" in checks["Keychain"]["detail"]
    assert not checks["Site configuration"]["ok"]
    assert checks["Site configuration"]["remedy"] == "kerbside provision --secret-stdin (Trust IT)"
    central = checks["Central record"]
    assert not central["ok"] and "https://fhir.invalid/R4" in central["detail"]
    assert central["remedy"]
    code, out = doctor(
        ["--profile", str(tmp_path / "p"), "--site-config", str(site)], monkeypatch, capsys
    )
    assert code == 1
    assert any(line.startswith("FAIL  Keychain: ") and " -> " in line for line in out.splitlines())


def test_a_site_file_others_can_edit_fails(tmp_path: Path, trusted: None) -> None:
    site = site_file(tmp_path, "https://fhir.example.org")
    loaded = load_site_config(site)
    assert loaded is not None
    provision(loaded, "secret")
    site.chmod(0o666)
    result = run_checks(tmp_path / "p", site)[-2]
    assert not result.ok and "can be changed by accounts other than its owner" in result.detail
    site.chmod(0o644)
    assert run_checks(tmp_path / "p", site)[-2].ok


def test_a_bad_site_file_fails_its_check_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "site.toml"
    bad.write_text('[central_record]\nurl = "https://x.example"\nclient_id = 3\n')
    results = {r.name: r for r in run_checks(tmp_path / "p", bad)}
    assert not results["Site configuration"].ok
    assert "central_record.client_id" in results["Site configuration"].detail


class _OldServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "resourceType": "CapabilityStatement",
                "fhirVersion": "3.0.2",
                "rest": [{"mode": "server", "resource": [{"type": "Patient"}]}],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def old_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OldServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_central_record_unfit_for_kerbside_is_named(
    tmp_path: Path, old_server: str, trusted: None
) -> None:
    site = site_file(tmp_path, old_server)
    loaded = load_site_config(site)
    assert loaded is not None
    provision(loaded, "secret")
    central = run_checks(tmp_path / "p", site)[-1]
    assert not central.ok
    assert "FHIR version 3.0.2" in central.detail and "no transaction Bundles" in central.detail
    assert "no search for Organization" in central.detail
    assert "no conditional create for AuditEvent" in central.detail


def test_profile_folder_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = tmp_path / "OneDrive - NHS" / "kerbside"
    assert synced_folder(synced) == "OneDrive - NHS"
    assert synced_folder(tmp_path / "Library" / "Mobile Documents" / "x") == "Mobile Documents"
    assert synced_folder(tmp_path / "Dropbox" / "p") == "Dropbox"
    assert synced_folder(tmp_path / "local" / "kerbside") is None
    monkeypatch.setenv("OneDrive", str(tmp_path / "corp"))
    assert synced_folder(tmp_path / "corp" / "Documents" / "p") == "OneDrive"
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(Exception, match="can be read by other accounts"):
        check_profile_dir(open_dir)
    open_dir.chmod(0o700)
    assert check_profile_dir(open_dir).endswith("writable, owner-only")


def test_clock_before_the_release_or_far_ahead_fails() -> None:
    with pytest.raises(Exception, match="before this release"):
        check_clock(datetime(2001, 1, 1, tzinfo=UTC))
    with pytest.raises(Exception, match="implausibly far ahead"):
        check_clock(datetime(2099, 1, 1, tzinfo=UTC))
    assert check_clock(datetime(2027, 3, 1, 12, 0, tzinfo=UTC)).startswith("2027-03-01")


def test_a_keychain_that_does_not_keep_an_entry_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: None
) -> None:
    class Forgetful(MemoryKeyringBase, keyring.backend.KeyringBackend):
        def get_password(self, service: str, username: str) -> str | None:
            return None

    forgetful = Forgetful()
    name = kr.backend_name(forgetful)
    monkeypatch.setattr(kr, "STORE_KINDS", {**kr.STORE_KINDS, name: "secret-service"})
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    keyring.set_keyring(forgetful)
    result = run_checks(tmp_path / "p")[1]
    assert not result.ok and "did not give back" in result.detail


def test_json_lists_the_profiles_sources_and_whether_each_secret_is_kept_never_the_secret(
    tmp_path: Path,
    trusted: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 14: IT sees which central records a tablet reads from, without a PIN."""
    from app.security import READ_ONLY, ServerSettings, SourceSettings, store_client_secret
    from app.security._keyring import delete_client_secret
    from app.services.session import enrol

    prof = tmp_path / "prof"
    with enrol(prof, "pc101", "246810") as session:
        profile = session.profile
        profile.set_server(ServerSettings("https://fhir.bolton.example/R4", "tablet-1"))
        store_client_secret(profile.profile_id, "home-secret-1")
        for name in ("trust-2", "shared"):
            source = SourceSettings(name, f"https://{name}.example/R4", "t", role=READ_ONLY)
            profile.add_source(source, f"{name}-secret-2")
        delete_client_secret(profile.profile_id, "shared")  # as if the keychain was reset
    _, out = doctor(["--profile", str(prof), "--json"], monkeypatch, capsys)
    body = json.loads(out)
    assert {"ok", "checks"} <= set(body) and [c["name"] for c in body["checks"]] == NAMES
    assert [(s["name"], s["role"], s["secret_stored"]) for s in body["sources"]] == [
        ("home", "home", True),
        ("trust-2", "read-only", True),
        ("shared", "read-only", False),
    ]
    assert body["sources"][1]["base_url"] == "https://trust-2.example/R4"
    assert "secret-1" not in out and "secret-2" not in out
    _, out = doctor(["--profile", str(prof)], monkeypatch, capsys)
    kept = "client secret in the keyring"
    assert out.splitlines()[-3:] == [
        f"INFO  Source home (home): https://fhir.bolton.example/R4, {kept}",
        f"INFO  Source trust-2 (read-only): https://trust-2.example/R4, {kept}",
        "INFO  Source shared (read-only): https://shared.example/R4, NO client secret",
    ]
