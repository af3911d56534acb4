"""Controls that could regress silently, each pinned by a test that fails when it is removed
(issue 12 finding 7; checked with a mutation run, see docs/security/threat-model.md).

The SQLCipher connection settings are checked two ways: behaviour where the library lets a
test see it (plain SQLite refused, a malformed key refused before any SQL), and the exact
statements sent where SQLCipher's defaults would hide a removed line (cipher_compatibility,
synchronous).
"""

from __future__ import annotations

import sqlite3
import ssl
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

import app.store._connection as connection
from app.errors import KeyringRefused, StoreUnavailable
from app.security import check_backend
from app.services.session import enrol
from sync import Capabilities, new_http_session
from tests.conftest import TEST_KDF, TEST_PIN

KEY = bytes(range(32))


class Recording:
    """A sqlcipher3 connection that records every statement (and can pretend to be SQLite)."""

    def __init__(self, real: Any, *, plain: bool = False) -> None:
        self.real = real
        self.plain = plain
        self.sql: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.sql.append(sql)
        if self.plain and sql.startswith("PRAGMA cipher_version"):
            return sqlite3.connect(":memory:").execute("PRAGMA cipher_version")  # no row
        return self.real.execute(sql, *args)

    def close(self) -> None:
        self.real.close()


def _recording_connect(monkeypatch: pytest.MonkeyPatch, *, plain: bool = False) -> list[Recording]:
    made: list[Recording] = []
    real_connect = connection.sqlcipher3.connect

    def connect(*args: Any, **kwargs: Any) -> Recording:
        rec = Recording(real_connect(*args, **kwargs), plain=plain)
        made.append(rec)
        return rec

    monkeypatch.setattr(connection.sqlcipher3, "connect", connect)
    return made


def test_a_library_that_is_not_sqlcipher_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _recording_connect(monkeypatch, plain=True)
    with pytest.raises(StoreUnavailable, match="not SQLCipher"):
        connection.connect(tmp_path / "c.db", KEY)


class OddKey(bytes):
    """32 bytes whose hex() is not 64 hex characters: only the regex check stops it."""

    def hex(self, *args: Any) -> str:  # type: ignore[override]
        return "00\"; ATTACH DATABASE '/tmp/x' AS y; --" + "0" * 26


@pytest.mark.parametrize("key", [b"\x00" * 31, b"\x00" * 33, OddKey(b"\x00" * 32)])
def test_a_malformed_key_is_refused_before_any_sql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: bytes
) -> None:
    made = _recording_connect(monkeypatch)
    with pytest.raises(ValueError, match="32 bytes"):
        connection.connect(tmp_path / "c.db", key)
    assert made == []  # not even a connection was opened


def test_the_key_comes_first_and_sqlcipher_4_settings_are_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _recording_connect(monkeypatch)
    conn = connection.connect(tmp_path / "c.db", KEY)
    try:
        sql = [s for s in made[0].sql if not s.startswith("PRAGMA cipher_log_level")]
        assert sql[0] == f"PRAGMA key = \"x'{KEY.hex()}'\""
        for required in (
            "PRAGMA cipher_compatibility = 4",
            "PRAGMA cipher_plaintext_header_size = 0",
            "PRAGMA temp_store = MEMORY",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA trusted_schema = OFF",
            "PRAGMA secure_delete = ON",
        ):
            assert required in sql, required
        assert sql.index("PRAGMA cipher_compatibility = 4") < sql.index(
            "SELECT count(*) FROM sqlite_master"
        )  # settled before the first page is read
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, read back
    finally:
        conn.close()


def test_the_keyring_allow_list_refuses_a_plaintext_file_with_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    plaintext = PlaintextKeyring()
    plaintext.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(plaintext)
    with pytest.raises(KeyringRefused, match="cannot protect the device secret"):
        check_backend()
    with pytest.raises(KeyringRefused, match="cannot protect the device secret"):
        enrol(tmp_path / "p", "pc101", TEST_PIN, kdf=TEST_KDF)
    assert not (tmp_path / "keyring.cfg").exists()  # nothing was stored in it
    assert not (tmp_path / "p" / "cache.db").exists()


def test_records_are_not_sent_to_a_server_without_conditional_create() -> None:
    from sync import Pusher, RunContext

    caps = Capabilities(fhir_version="4.0.1", software=None, transaction=True)
    pusher = Pusher(RunContext(None, None, caps, None, None, None))  # type: ignore[arg-type]
    reason = pusher.blocked_reason({"Encounter"})
    assert reason is not None and "conditional create" in reason
    allowed = Capabilities(
        fhir_version="4.0.1",
        software=None,
        transaction=True,
        conditional_create=frozenset({"Encounter"}),
    )
    unguarded = Pusher(RunContext(None, None, allowed, None, None, None))  # type: ignore[arg-type]
    assert unguarded.blocked_reason({"Encounter"}) is None


def test_tls_below_1_2_is_never_negotiated() -> None:
    adapter = new_http_session().get_adapter("https://central.example/fhir")
    adapter.init_poolmanager(1, 1)
    context = adapter.poolmanager.connection_pool_kw["ssl_context"]
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_tls_1_2_is_set_even_where_the_platform_default_is_lower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Some OpenSSL builds (older Windows images) still allow TLS 1.0 by default: the floor
    must be ours, not the platform's."""
    import types

    import sync._client as client_module

    class Permissive(ssl.SSLContext):
        def __init__(self, protocol: int) -> None:
            super().__init__()
            self.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED

    fake_ssl = types.SimpleNamespace(
        SSLContext=Permissive,
        PROTOCOL_TLS_CLIENT=ssl.PROTOCOL_TLS_CLIENT,
        TLSVersion=ssl.TLSVersion,
    )
    monkeypatch.setattr(client_module, "ssl", fake_ssl)
    assert client_module.tls_context().minimum_version == ssl.TLSVersion.TLSv1_2
