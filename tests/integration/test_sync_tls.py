"""TLS stays verified and plain http stays on this machine (SECURITY.md 15)."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sync import FhirClient, InsecureConnection, check_url_allowed

ROOT = Path(__file__).resolve().parents[2]
_VERIFY_OFF = re.compile(
    r"verify\s*=\s*(False|0|None)\b|CERT_NONE|check_hostname\s*=\s*False|"
    r"_create_unverified_context|disable_warnings"
)


def test_no_code_turns_tls_verification_off() -> None:
    offenders = []
    for folder in ("app", "sync"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _VERIFY_OFF.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://fhir.trust.nhs.uk/R4", True),
        ("http://127.0.0.1:8080/fhir", True),
        ("http://localhost:8080/fhir", True),
        ("http://[::1]:8080/fhir", True),
        ("http://fhir.trust.nhs.uk/R4", False),
        ("http://10.0.0.5/fhir", False),
        ("ftp://fhir.trust.nhs.uk/", False),
        ("fhir.trust.nhs.uk/R4", False),
    ],
)
def test_plain_http_is_refused_except_on_loopback(url: str, allowed: bool) -> None:
    if allowed:
        check_url_allowed(url)
        FhirClient(url, requests.Session())
    else:
        with pytest.raises(InsecureConnection):
            FhirClient(url, requests.Session())


@pytest.fixture
def self_signed_tls_server(tmp_path: Path) -> Iterator[str]:
    """A TLS listener with a certificate no CA signed: what a man in the middle presents."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://localhost:{listener.getsockname()[1]}/fhir"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_an_unverifiable_certificate_stops_sync_loudly(self_signed_tls_server: str) -> None:
    client = FhirClient(self_signed_tls_server, requests.Session())
    with pytest.raises(InsecureConnection, match="TLS certificate could not be verified"):
        client.get(client.url("metadata"), label="capabilities")
