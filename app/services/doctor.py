"""Is this tablet fit to run Kerbside? The checks behind `kerbside doctor` and Help → "Check
this tablet": one result each, pass or fail, with what to do about a failure.

Plain Python with no Qt, so IT can run them over SSH or MDM and the app can run them off its
UI thread. Each check catches its own failures: one broken part never hides the others. No
check reads patient data or needs a PIN.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.errors import KerbsideError

EXPECTED_CIPHER_MAJOR = "4."
# The pushed record types: sync sends them only with conditional create (sync/_push.py).
PUSHED_TYPES = ("Encounter", "Observation", "QuestionnaireResponse", "Provenance", "AuditEvent")
# Path parts of folders a sync client copies off the device (compared case-insensitively).
SYNCED_MARKERS = (
    "onedrive",
    "dropbox",
    "google drive",
    "googledrive",
    "my drive",
    "icloud drive",
    "iclouddrive",
    "mobile documents",
    "box sync",
    "nextcloud",
    "owncloud",
)
CLOCK_HORIZON = timedelta(days=365 * 10)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    remedy: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, remedy: str, fn: Callable[[], str]) -> CheckResult:
    """Run one check: its return value is the detail; a known error fails it with its text."""
    from sync import SyncError

    try:
        return CheckResult(name, True, fn())
    except _Failed as exc:
        return CheckResult(name, False, str(exc), exc.remedy or remedy)
    except (KerbsideError, SyncError, OSError) as exc:
        return CheckResult(name, False, str(exc) or type(exc).__name__, remedy)


class _Failed(Exception):
    def __init__(self, detail: str, remedy: str = "") -> None:
        super().__init__(detail)
        self.remedy = remedy


# -- the checks --------------------------------------------------------------------------------
def check_sqlcipher() -> str:
    from app.store import sqlcipher_version

    version = sqlcipher_version()
    if version is None:
        raise _Failed("the database library is not SQLCipher")
    if not version.startswith(EXPECTED_CIPHER_MAJOR):
        raise _Failed(f"SQLCipher {version}; Kerbside needs SQLCipher 4")
    return f"SQLCipher {version}"


def check_keyring() -> str:
    from app.security import probe_keyring

    kind = probe_keyring()
    if kind.startswith("untrusted:"):
        raise _Failed(
            f"the keyring in use is not an OS keychain ({kind.removeprefix('untrusted:')})",
            "unset KERBSIDE_ALLOW_INSECURE_KEYRING and PYTHON_KEYRING_BACKEND; use the "
            "desktop's keychain",
        )
    return f"{kind}: unlocked, an entry was written, read back and deleted"


def synced_folder(path: Path) -> str | None:
    """The marker of a cloud-synced or backed-up folder `path` is inside, if one is visible."""
    resolved = path.expanduser().resolve()
    for root_env in ("OneDrive", "OneDriveCommercial", "OneDriveConsumer"):
        root = os.environ.get(root_env)
        if root and resolved.is_relative_to(Path(root).resolve()):
            return root_env
    for part in resolved.parts:
        lowered = part.lower()
        for marker in SYNCED_MARKERS:
            if (
                lowered == marker
                or lowered.startswith(marker + " ")
                or lowered.startswith(marker + "-")
            ):
                return part
    return None


def check_profile_dir(profile_dir: Path) -> str:
    marker = synced_folder(profile_dir)
    if marker is not None:
        raise _Failed(
            f"{profile_dir} is inside a synced or backed-up folder ({marker})",
            "keep the profile in the local user data folder (unset KERBSIDE_PROFILE or "
            "--profile), outside OneDrive, Dropbox, Google Drive or iCloud",
        )
    existing = profile_dir
    while not existing.exists():
        if existing.parent == existing:
            raise _Failed(f"no part of {profile_dir} exists")
        existing = existing.parent
    if not existing.is_dir():
        raise _Failed(f"{existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".kerbside-doctor-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _Failed(
            f"{existing} is not writable ({exc.strerror})",
            "give the officer's account write access to its own user data folder",
        ) from None
    if existing == profile_dir and os.name == "posix":
        mode = profile_dir.stat().st_mode & 0o777
        if mode & 0o077:
            raise _Failed(
                f"{profile_dir} can be read by other accounts (mode {mode:o})",
                f"chmod 700 {profile_dir}",
            )
        return f"{profile_dir}: writable, owner-only"
    return f"{profile_dir}: not made yet; {existing} is writable"


def check_clock(now: datetime | None = None) -> str:
    from app.version import RELEASED

    now = now or datetime.now(UTC)
    released = datetime(RELEASED.year, RELEASED.month, RELEASED.day, tzinfo=UTC)
    remedy = "set the date and time automatically (network time) in the system settings"
    if now < released:
        raise _Failed(f"the clock says {now:%Y-%m-%d}, before this release was made", remedy)
    if now > released + CLOCK_HORIZON:
        raise _Failed(f"the clock says {now:%Y-%m-%d}, implausibly far ahead", remedy)
    return f"{now:%Y-%m-%d %H:%M} UTC"


def check_time_zone() -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo("Europe/London")
    except (ZoneInfoNotFoundError, ValueError):
        raise _Failed(
            "no time zone data for Europe/London",
            "reinstall Kerbside (it ships tzdata) or install the system time zone database",
        ) from None
    return "Europe/London found"


def check_site(site_path: Path | None) -> tuple[str, Any]:
    from app.services.site import default_site_path, load_site_config, unprovisioned

    site = load_site_config(site_path)
    if site is None:
        return f"none at {default_site_path()} (enrol names the central record)", None
    if os.name == "posix" and site.path.stat().st_mode & 0o022:
        raise _Failed(
            f"{site.path} can be changed by accounts other than its owner (anyone who can "
            "edit it can point this tablet at another server)",
            f"chmod 644 {site.path} and keep it owned by root",
        )
    missing = unprovisioned(site)
    if "central_record" in missing:
        raise _Failed(
            f"{site.path} is valid but this device has no client secret for {site.client_id}",
            "kerbside provision --secret-stdin (Trust IT)",
        )
    if missing:
        raise _Failed(
            f"{site.path} is valid but this device has no client secret for source(s) "
            f"{', '.join(missing)}",
            "kerbside provision --secret-stdin (Trust IT; one line per central record)",
        )
    if site.sources:
        return f"{site.path}: valid, client secrets provisioned ({len(site.sources) + 1})", site
    return f"{site.path}: valid, client secret provisioned", site


def check_central_record(
    base_url: str, ca_bundle: str | None, *, http: Any = None, timeout_s: float = 8.0
) -> str:
    from app.fhir import CACHED_TYPES
    from sync import (
        FhirClient,
        RetryPolicy,
        Timeouts,
        check_url_allowed,
        new_http_session,
        parse_capabilities,
    )

    check_url_allowed(base_url)
    own = http is None
    http = http or new_http_session()
    try:
        client = FhirClient(
            base_url,
            http,
            ca_bundle=ca_bundle,
            timeouts=Timeouts(connect_s=timeout_s, read_s=timeout_s),
            retry=RetryPolicy(attempts=1, bad_body_attempts=1),
        )
        caps = parse_capabilities(client.get(client.url("metadata"), label="metadata").body)
    finally:
        if own:
            http.close()
    problems = []
    if not (caps.fhir_version or "").startswith("4.0."):
        problems.append(f"FHIR version {caps.fhir_version or 'not stated'} (needs 4.0.x, R4)")
    unsearchable = [t for t in CACHED_TYPES if not caps.can_search(t)]
    if unsearchable:
        problems.append(f"no search for {', '.join(unsearchable)}")
    if not caps.transaction:
        problems.append("no transaction Bundles")
    missing = caps.missing_conditional_create(PUSHED_TYPES)
    if missing:
        problems.append(f"no conditional create for {', '.join(missing)}")
    if problems:
        raise _Failed(
            f"{base_url} answers but is not fit for Kerbside: {'; '.join(problems)}",
            "ask the central record's administrators; Kerbside needs FHIR R4 with search, "
            "transactions and conditional create",
        )
    scheme = "TLS" if base_url.startswith("https:") else "http on this machine"
    return f"{base_url} ({scheme}): FHIR {caps.fhir_version}, {caps.software or 'server'}"


# -- all together ------------------------------------------------------------------------------
def run_checks(
    profile_dir: Path,
    site_path: Path | None = None,
    *,
    now: datetime | None = None,
    http: Any = None,
) -> list[CheckResult]:
    results = [
        _check("SQLCipher", "reinstall Kerbside (it ships SQLCipher 4)", check_sqlcipher),
        _check(
            "Keychain",
            "unlock the desktop keychain (GNOME Keyring, KWallet, Windows Credential Locker "
            "or macOS Keychain) and run this again",
            check_keyring,
        ),
        _check("Profile folder", "", lambda: check_profile_dir(profile_dir)),
        _check("Clock", "", lambda: check_clock(now)),
        _check("Time zone data", "", check_time_zone),
    ]
    results.append(
        _check(
            "Site configuration",
            "correct the file as the message says",
            lambda: check_site(site_path)[0],
        )
    )
    results.append(_central_check(profile_dir, _site_or_none(site_path), http))
    return results


def _site_or_none(site_path: Path | None) -> Any:
    """The site file for the central-record check; its own faults are the site check's."""
    from app.services.site import load_site_config

    try:
        return load_site_config(site_path)
    except KerbsideError:
        return None


def _central_check(profile_dir: Path, site: Any, http: Any) -> CheckResult:
    name = "Central record"
    remedy = "check the network, the address and the CA bundle in the site configuration"
    url, ca_bundle = (site.url, site.ca_bundle) if site is not None else (None, None)
    if url is None:
        from app.security import Profile

        try:
            server = Profile.load(profile_dir).server if Profile.exists(profile_dir) else None
        except KerbsideError as exc:
            return CheckResult(name, False, f"the enrolled server cannot be read: {exc}", remedy)
        if server is not None:
            url, ca_bundle = server.base_url, server.ca_bundle
    if url is None:
        return CheckResult(
            name,
            False,
            "no central record configured (no site configuration, no enrolled server)",
            "provision the site configuration, or enrol with --server",
        )
    result = _check(name, remedy, lambda: check_central_record(url, ca_bundle, http=http))
    if result.ok or result.detail.startswith(url):
        return result
    return CheckResult(name, False, f"{url}: {result.detail}", result.remedy)


def profile_sources(profile_dir: Path) -> list[dict[str, Any]]:
    """The enrolled profile's sources, home first, for IT to read: settings and whether each
    client secret is in the keyring (never the secret). [] with no readable profile (the
    checks above say why)."""
    from app.security import Profile, client_secret

    try:
        if not Profile.exists(profile_dir):
            return []
        profile = Profile.load(profile_dir)
        return [
            {
                "name": s.name,
                "role": s.role,
                "base_url": s.base_url,
                "client_id": s.client_id,
                "token_url": s.token_url,
                "ca_bundle": s.ca_bundle,
                "display_name": s.display_name,
                "ods_code": s.ods_code,
                "secret_stored": client_secret(profile.profile_id, s.keyring_name) is not None,
            }
            for s in profile.sources
        ]
    except KerbsideError:
        return []


def report(
    results: list[CheckResult], sources: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `--json` shape: {"ok": bool, "checks": [{"name", "ok", "detail", "remedy"}],
    "sources": [{"name", "role", "base_url", ..., "secret_stored"}]}."""
    return {
        "ok": all(r.ok for r in results),
        "checks": [r.as_dict() for r in results],
        "sources": sources or [],
    }
