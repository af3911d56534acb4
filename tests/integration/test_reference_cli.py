"""`kerbside serve-reference` and `kerbside reference-admin` as real processes.

The server prints its base URL as the first stdout line once it listens, answers over HTTP,
is managed by the admin CLI while it runs, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from sync import parse_capabilities

KERBSIDE = str(Path(sys.executable).parent / "kerbside")
TABLET = ("a", "b")
ADMIN = ("adm", "admin-secret-7890")


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"serve-reference ignored {sig.name}") from None
        return self.proc.returncode, err


@contextmanager
def serving(tmp_path: Path, cohort_dir: Path, *extra: str) -> Iterator[Served]:
    proc = subprocess.Popen(
        [
            KERBSIDE,
            "serve-reference",
            "--data",
            str(tmp_path / "central"),
            "--seed",
            str(cohort_dir),
            "--client",
            ":".join(TABLET),
            "--admin-client",
            ":".join(ADMIN),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline().strip() if ready else ""
        if not first:
            proc.kill()
            raise AssertionError(f"no base URL printed: {proc.communicate()[1][-2000:]}")
        yield Served(proc, first)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def served(tmp_path: Path, cohort_dir: Path) -> Iterator[Served]:
    with serving(tmp_path, cohort_dir) as started:
        yield started


def admin_cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            KERBSIDE,
            "reference-admin",
            "--url",
            served.url,
            "--admin-client",
            ":".join(ADMIN),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def token(served: Served, credentials: tuple[str, str]) -> requests.Response:
    smart = requests.get(f"{served.url}/.well-known/smart-configuration", timeout=30).json()
    return requests.post(
        smart["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=credentials,
        timeout=30,
    )


def test_serve_reference_prints_its_url_serves_and_stops_on_sigterm(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/fhir")
    cs = requests.get(f"{served.url}/metadata", timeout=30)
    assert cs.status_code == 200 and cs.json()["resourceType"] == "CapabilityStatement"
    access = token(served, TABLET).json()["access_token"]
    bundle = requests.get(
        f"{served.url}/Patient",
        params={"_total": "accurate", "_count": "1"},
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    ).json()
    assert bundle["total"] == 40  # seeded from the generated cohort

    code, err = served.stop(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{served.url}/metadata", timeout=5)


def test_reference_admin_revokes_a_device_and_switches_faults(served: Served) -> None:
    assert token(served, TABLET).status_code == 200
    revoked = admin_cli(served, "revoke-device", TABLET[0])
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked"] is True
    refused = token(served, TABLET)
    assert refused.status_code == 400 and refused.json()["error_description"] == "device-revoked"

    bulk = admin_cli(served, "settings", "--bulk-export", "off", "--export-fault", "fail")
    assert bulk.returncode == 0, bulk.stderr
    changed = json.loads(bulk.stdout)
    assert changed["bulk_export"] is False and changed["export_fault"] == "fail"
    caps = requests.get(f"{served.url}/metadata", timeout=30).json()
    assert all(op["name"] != "export" for op in caps["rest"][0]["operation"])

    devices = admin_cli(served, "list-devices")
    listed = {c["client_id"]: c for c in json.loads(devices.stdout)}
    assert listed[TABLET[0]]["revoked"] is True and listed[ADMIN[0]]["role"] == "admin"
    assert "secret" not in devices.stdout

    added = admin_cli(served, "faults", "add", "unavailable", "path=/fhir/metadata", "count=1")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["status"] == 503
    statuses = [requests.get(f"{served.url}/metadata", timeout=30).status_code for _ in range(2)]
    assert statuses == [503, 200]

    # A record read with no purpose of use given first shows in the access report.
    admin_cli(served, "reinstate-device", TABLET[0])
    read = requests.get(
        f"{served.url}/Patient",
        params={"family": "a"},
        headers={"Authorization": f"Bearer {token(served, TABLET).json()['access_token']}"},
        timeout=30,
    )
    assert read.status_code == 200
    window = admin_cli(served, "settings", "--purpose-window", "60")
    assert json.loads(window.stdout)["purpose_window_s"] == 60
    access = admin_cli(served, "access")
    assert access.returncode == 0, access.stderr
    report = json.loads(access.stdout)
    assert report["reads"] == {"audited": 0, "unaudited": 1} and report["window_s"] == 60
    assert report["unaudited"][0]["kind"] == "search"

    missing = admin_cli(served, "remove-client", "no-such-client")
    assert missing.returncode == 1 and "404" in missing.stderr

    code, err = served.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in err


def test_serve_reference_without_bulk_export_says_so_and_refuses_it(
    tmp_path: Path, cohort_dir: Path
) -> None:
    """`--no-bulk-export`: a central record without FHIR Bulk Data (tablets page)."""
    with serving(tmp_path, cohort_dir, "--no-bulk-export") as server:
        cs = requests.get(f"{server.url}/metadata", timeout=30).json()
        assert not parse_capabilities(cs).bulk_export  # what a tablet reads it by
        access = token(server, TABLET).json()["access_token"]
        kick_off = requests.get(
            f"{server.url}/$export",
            headers={"Authorization": f"Bearer {access}", "Prefer": "respond-async"},
            timeout=30,
        )
        assert 400 <= kick_off.status_code < 500
    (tmp_path / "with").mkdir()
    with serving(tmp_path / "with", cohort_dir) as server:
        cs = requests.get(f"{server.url}/metadata", timeout=30).json()
        assert parse_capabilities(cs).bulk_export
