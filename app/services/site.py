"""The machine-wide site configuration Trust IT provisions, and enrolment from it.

One TOML file per device, written by IT or MDM, read by every user's Kerbside:

    # /etc/kerbside/site.toml  (Windows: %ProgramData%\\Kerbside\\site.toml;
    # macOS: /Library/Application Support/Kerbside/site.toml; or the path in
    # KERBSIDE_SITE_CONFIG, which MDM may set)
    locked = ["central_record", "team", "wipe_after_failures"]   # users may not change these

    [central_record]
    url = "https://fhir.example.nhs.uk/R4"
    client_id = "kerbside-bolton"
    token_url = "https://fhir.example.nhs.uk/oauth/token"   # optional: else discovered
    ca_bundle = "/etc/kerbside/trust-ca.pem"                # optional: a Trust's private CA
    cohort_group = "street-triage-cohort"                   # optional: first load via
                                                            # Group/[id]/$export (Bulk Data)
    trust_public_key = "base64 of 32 bytes"                 # optional: unsent records are
                                                            # sealed to it before any wipe

    display_name = "Bolton NHS Foundation Trust"            # optional: the Trust's name
    ods_code = "RMC"                                        # optional: the Trust's ODS code

    [[sources]]                         # optional, repeatable: read-only central records
    name = "trust-2"                    # (a neighbouring Trust, a regional shared record)
    url = "https://fhir.trust2.example.nhs.uk/R4"
    client_id = "kerbside-bolton"
    token_url = "https://fhir.trust2.example.nhs.uk/oauth/token"   # optional: else discovered
    ca_bundle = "/etc/kerbside/trust2-ca.pem"               # optional
    display_name = "Neighbouring NHS Trust"                 # optional
    ods_code = "RXY"                                        # optional
    role = "read-only"                                      # optional: the only role here

    [team]
    name = "Bolton Street Triage"
    ods_code = "RXV"                                        # optional

    [policies]                                              # all optional
    idle_lock_minutes = 5
    pin_min_length = 6
    cache_ttl_hours = 72
    wipe_after_failures = 10

Validation is strict because a typo here is silent otherwise: an unknown key, a wrong type or
a value out of range is refused with the file, the key and what is expected. The client secret
is not in the file (a file readable by every user is no place for it): `kerbside provision
--secret-stdin` puts it in the OS keyring once per device (one stdin line per central record:
[central_record]'s first, then each [[sources]] entry's in file order), and each enrolment
copies them to the new profile. `locked = ["sources"]` stops users adding or removing sources.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InvalidInput, KerbsideError, ProfileError
from app.security import (
    HOME,
    READ_ONLY,
    KdfParams,
    LockoutPolicy,
    SourceSettings,
    check_pin,
    check_source_name,
    site_client_secret,
    store_site_client_secret,
)
from app.security import MIN_PIN_LENGTH as PIN_FLOOR

SITE_ENV = "KERBSIDE_SITE_CONFIG"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# What `locked` may name: a whole table, or one setting.
LOCKABLE = frozenset(
    {
        "central_record",
        "url",
        "client_id",
        "token_url",
        "ca_bundle",
        "team",
        "idle_lock_minutes",
        "pin_min_length",
        "cache_ttl_hours",
        "wipe_after_failures",
        "sources",
    }
)
_PARTS = {
    "central_record": ("url", "client_id", "token_url", "ca_bundle"),
    "team": ("team",),
}


class SiteConfigError(KerbsideError):
    """The site configuration is unreadable or wrong; the text names the file and key."""


def default_site_path() -> Path:
    """Where IT puts the file on this platform (KERBSIDE_SITE_CONFIG wins)."""
    if os.environ.get(SITE_ENV):
        return Path(os.environ[SITE_ENV])
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Kerbside" / "site.toml"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/Kerbside/site.toml")
    return Path("/etc/kerbside/site.toml")


@dataclass(frozen=True, slots=True)
class Policies:
    idle_lock_minutes: float = 5.0
    pin_min_length: int = PIN_FLOOR
    cache_ttl_hours: float = 72.0
    wipe_after_failures: int = 10


@dataclass(frozen=True, slots=True)
class SiteConfig:
    path: Path
    url: str
    client_id: str
    token_url: str | None = None
    ca_bundle: str | None = None
    team_name: str | None = None
    team_code: str | None = None
    cohort_group: str | None = None
    trust_public_key: str | None = None  # base64 X25519 key (kerbside trust-keygen)
    policies: Policies = field(default_factory=Policies)
    locked: frozenset[str] = frozenset()
    display_name: str | None = None  # the home Trust's name and ODS code, for labels
    ods_code: str | None = None
    sources: tuple[SourceSettings, ...] = ()  # read-only central records, in file order

    def is_locked(self, setting: str) -> bool:
        """`setting` is one of LOCKABLE's single settings (url, team, idle_lock_minutes...)."""
        if setting in self.locked:
            return True
        return any(setting in _PARTS[group] for group in self.locked if group in _PARTS)


# -- loading -----------------------------------------------------------------------------------
class _Reader:
    """Typed access to one table, naming the file and key in every complaint."""

    def __init__(self, path: Path, table: str, data: Mapping[str, Any], keys: set[str]) -> None:
        self.path, self.table, self.data = path, table, data
        unknown = sorted(set(data) - keys)
        if unknown:
            raise self.error(unknown[0], f"a known key ({', '.join(sorted(keys))})", "unknown key")

    def where(self, key: str) -> str:
        return f"{self.table}.{key}" if self.table else key

    def error(self, key: str, expected: str, got: str | None = None) -> SiteConfigError:
        text = f"site configuration {self.path}: {self.where(key)}: expected {expected}"
        return SiteConfigError(text + (f" ({got})" if got else ""))

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "a text value", "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "a non-empty text value", f"got {type(value).__name__}")
        return value.strip()

    def number(self, key: str, default: float, low: float, high: float, *, whole: bool) -> float:
        value = self.data.get(key, default)
        kind = "a whole number" if whole else "a number"
        ok_type = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not low <= value <= high:
            raise self.error(key, f"{kind} from {low:g} to {high:g}", f"got {value!r}")
        return value


def _check(reader: _Reader, key: str, value: str | None, check: Callable[[str], object]) -> None:
    if value is None:
        return
    from sync import SyncError

    try:
        check(value)
    except (KerbsideError, SyncError) as exc:
        raise SiteConfigError(
            f"site configuration {reader.path}: {reader.where(key)}: {exc}"
        ) from None


def load_site_config(path: Path | None = None) -> SiteConfig | None:
    """The site configuration at `path`, else at the platform's place; None when there is none
    at the platform's place (an unprovisioned device). An explicit or KERBSIDE_SITE_CONFIG path
    that does not exist is an error: IT meant something."""
    explicit = path is not None or bool(os.environ.get(SITE_ENV))
    path = path if path is not None else default_site_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise SiteConfigError(f"site configuration {path}: no such file") from None
        return None
    except OSError as exc:
        raise SiteConfigError(
            f"site configuration {path}: cannot be read ({exc.strerror})"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SiteConfigError(f"site configuration {path}: not valid TOML ({exc})") from None
    return parse_site_config(path, data)


def parse_site_config(path: Path, data: Mapping[str, Any]) -> SiteConfig:
    from sync import check_url_allowed

    top = _Reader(path, "", data, {"locked", "central_record", "team", "policies", "sources"})
    tables: dict[str, Mapping[str, Any]] = {}
    for name in ("central_record", "team", "policies"):
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            raise top.error(name, f"a table [{name}]", f"got {type(value).__name__}")
        tables[name] = value
    if "central_record" not in data:
        raise top.error("central_record", "a table [central_record] with url and client_id")

    server = _Reader(
        path,
        "central_record",
        tables["central_record"],
        set(_PARTS["central_record"])
        | {"cohort_group", "trust_public_key", "display_name", "ods_code"},
    )
    url = server.text("url", required=True)
    assert url is not None
    _check(server, "url", url, check_url_allowed)
    client_id = server.text("client_id", required=True)
    assert client_id is not None
    token_url = server.text("token_url")
    _check(server, "token_url", token_url, check_url_allowed)
    cohort_group = server.text("cohort_group")
    if cohort_group is not None and not _FHIR_ID.fullmatch(cohort_group):
        raise server.error("cohort_group", "a FHIR Group id (letters, digits, - and .)")
    trust_key = server.text("trust_public_key")
    if trust_key is not None:
        from app.security import read_key

        try:
            read_key(trust_key, "trust_public_key")
        except InvalidInput:
            raise server.error(
                "trust_public_key", "the Trust's public key: 32 bytes, base64 (trust-keygen)"
            ) from None
    ca_bundle = server.text("ca_bundle")
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise server.error("ca_bundle", "the path of a CA certificate file", "no such file")
    home_labels = _labels(server)
    sources = _sources(path, top, data.get("sources", []))

    team = _Reader(path, "team", tables["team"], {"name", "ods_code"})
    team_name = team.text("name")
    team_code = team.text("ods_code")
    if team_code is not None and team_name is None:
        raise team.error("name", "a team name beside ods_code", "missing")
    if team_name is not None:
        from app.services.encounters import make_team

        try:
            made = make_team(team_name, team_code)
        except InvalidInput as exc:
            key = team.where("ods_code" if exc.field == "team_code" else "name")
            raise SiteConfigError(f"site configuration {path}: {key}: {exc}") from None
        team_name, team_code = made.name, made.code

    pol = _Reader(path, "policies", tables["policies"], set(Policies.__slots__))  # type: ignore[attr-defined]
    policies = Policies(
        idle_lock_minutes=pol.number("idle_lock_minutes", 5.0, 0.5, 30, whole=False),
        pin_min_length=int(pol.number("pin_min_length", PIN_FLOOR, PIN_FLOOR, 12, whole=True)),
        cache_ttl_hours=pol.number("cache_ttl_hours", 72.0, 1, 24 * 30, whole=False),
        wipe_after_failures=int(pol.number("wipe_after_failures", 10, 3, 20, whole=True)),
    )

    locked = data.get("locked", [])
    if not isinstance(locked, list) or not all(isinstance(x, str) for x in locked):
        raise top.error("locked", "a list of setting names", f"got {type(locked).__name__}")
    for name in locked:
        if name not in LOCKABLE:
            raise top.error("locked", f"names from {', '.join(sorted(LOCKABLE))}", f"got {name!r}")
    return SiteConfig(
        path=path,
        url=url.rstrip("/"),
        client_id=client_id,
        token_url=token_url,
        ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
        team_name=team_name,
        team_code=team_code,
        cohort_group=cohort_group,
        trust_public_key=trust_key,
        policies=policies,
        locked=frozenset(locked),
        display_name=home_labels[0],
        ods_code=home_labels[1],
        sources=sources,
    )


def _labels(table: _Reader) -> tuple[str | None, str | None]:
    """A central record's optional display name and ODS code, checked as `source add` does."""
    from app.services.sources import DISPLAY_NAME_MAX, check_ods_code, one_line

    name = table.text("display_name")
    if name is not None:
        _check(table, "display_name", name, lambda v: one_line(v, "display name", DISPLAY_NAME_MAX))
    code = table.text("ods_code")
    if code is not None:
        _check(table, "ods_code", code, check_ods_code)
        code = code.upper()
    return name, code


def _sources(path: Path, top: _Reader, raw: Any) -> tuple[SourceSettings, ...]:
    """The [[sources]] array of tables: read-only central records, names unique."""
    from sync import check_url_allowed

    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise top.error("sources", "an array of tables [[sources]]", f"got {type(raw).__name__}")
    keys = {"name", "url", "client_id", "token_url", "ca_bundle", "display_name", "ods_code"}
    made: list[SourceSettings] = []
    for number, table in enumerate(raw, start=1):
        entry = _Reader(path, f"sources[{number}]", table, keys | {"role"})
        name = entry.text("name", required=True)
        assert name is not None
        _check(entry, "name", name, check_source_name)
        if name == HOME:
            raise entry.error("name", "another name: 'home' is [central_record]'s")
        if any(s.name == name for s in made):
            raise entry.error("name", "a name no other [[sources]] entry has", f"{name} again")
        role = entry.text("role") or READ_ONLY
        if role != READ_ONLY:
            raise entry.error("role", f'"{READ_ONLY}" (the home source is [central_record])')
        url = entry.text("url", required=True)
        assert url is not None
        _check(entry, "url", url, check_url_allowed)
        client_id = entry.text("client_id", required=True)
        assert client_id is not None
        token_url = entry.text("token_url")
        _check(entry, "token_url", token_url, check_url_allowed)
        ca_bundle = entry.text("ca_bundle")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise entry.error("ca_bundle", "the path of a CA certificate file", "no such file")
        display_name, ods_code = _labels(entry)
        made.append(
            SourceSettings(
                name,
                url.rstrip("/"),
                client_id,
                token_url,
                str(Path(ca_bundle).resolve()) if ca_bundle else None,
                display_name,
                ods_code,
                READ_ONLY,
            )
        )
    return tuple(made)


# -- provisioning and enrolment ----------------------------------------------------------------
def needs_first_run(profile_dir: Path, site: SiteConfig | None) -> bool:
    """The app should offer first-run enrolment: a provisioned device with no profile yet."""
    from app.security import Profile

    return site is not None and not Profile.exists(profile_dir)


def provision(site: SiteConfig, client_secret: str, source_secrets: Sequence[str] = ()) -> None:
    """Keep the device's client secrets in the OS keyring (once per device, by IT): the
    central record's, then one per [[sources]] entry in file order. All are checked before
    any is stored."""
    if len(source_secrets) != len(site.sources):
        raise InvalidInput(
            f"the site configuration lists {len(site.sources)} source(s) beside the central "
            f"record, and {len(source_secrets)} secret(s) were given for them",
            field="client_secret",
        )
    if not client_secret.strip() or not all(s.strip() for s in source_secrets):
        raise InvalidInput("a client secret is empty", field="client_secret")
    store_site_client_secret(site.client_id, client_secret.strip())
    for source, secret in zip(site.sources, source_secrets, strict=True):
        store_site_client_secret(source.client_id, secret.strip(), source.name)


def unprovisioned(site: SiteConfig) -> list[str]:
    """Which central records of the site have no client secret on this device (the home's
    as "central_record", the others by source name)."""
    missing = [] if site_client_secret(site.client_id) else ["central_record"]
    return missing + [s.name for s in site.sources if not site_client_secret(s.client_id, s.name)]


def is_provisioned(site: SiteConfig) -> bool:
    return not unprovisioned(site)


@dataclass(frozen=True, slots=True)
class EnrolChoices:
    """What the enrolling user asked for beyond the site file (None: the site's value)."""

    url: str | None = None
    client_id: str | None = None
    token_url: str | None = None
    ca_bundle: str | None = None
    team_name: str | None = None
    team_code: str | None = None
    idle_lock_minutes: float | None = None
    wipe_after_failures: int | None = None


_CHOICE_SETTING = {
    "url": "url",
    "client_id": "client_id",
    "token_url": "token_url",
    "ca_bundle": "ca_bundle",
    "team_name": "team",
    "team_code": "team",
    "idle_lock_minutes": "idle_lock_minutes",
    "wipe_after_failures": "wipe_after_failures",
}


def refuse_locked(site: SiteConfig, choices: EnrolChoices, flag_names: Mapping[str, str]) -> None:
    """A choice that differs from a locked site setting is refused, naming the flag."""
    site_values = {
        "url": site.url,
        "client_id": site.client_id,
        "token_url": site.token_url,
        "ca_bundle": site.ca_bundle,
        "team_name": site.team_name,
        "team_code": site.team_code,
        "idle_lock_minutes": site.policies.idle_lock_minutes,
        "wipe_after_failures": site.policies.wipe_after_failures,
    }
    for name, setting in _CHOICE_SETTING.items():
        value = getattr(choices, name)
        if value is not None and value != site_values[name] and site.is_locked(setting):
            raise InvalidInput(
                f"{flag_names.get(name, name)} is set by the site configuration ({site.path}) "
                "and locked; ask Trust IT to change it",
                field=name,
            )


def enrol_from_site(
    profile_dir: Path,
    site: SiteConfig,
    user_id: str,
    pin: str,
    choices: EnrolChoices | None = None,
    *,
    kdf: KdfParams | None = None,
) -> Any:
    """Enrol the first user of a profile on a provisioned device; returns the open Session.

    The token endpoint is found and the PIN checked against the site's minimum *before* a
    profile is made, so a wrong address or a short PIN leaves nothing half-enrolled.
    """
    from app.services.encounters import make_team, set_team
    from app.services.session import enrol
    from sync import discover_token_url, new_http_session

    choices = choices or EnrolChoices()
    refuse_locked(site, choices, {})
    check_pin(pin, min_length=site.policies.pin_min_length)
    secret = site_client_secret(site.client_id if choices.client_id is None else choices.client_id)
    source_secrets = [site_client_secret(s.client_id, s.name) for s in site.sources]
    if secret is None or None in source_secrets:
        which = "the central record" if secret is None else "every source of the site"
        raise ProfileError(
            f"this device has no client secret for {which}; ask Trust IT to run "
            "`kerbside provision --secret-stdin`"
        )
    url = choices.url or site.url
    ca_bundle = choices.ca_bundle or site.ca_bundle
    token_url = choices.token_url or site.token_url
    if token_url is None:
        token_url = discover_token_url(new_http_session(), url, ca_bundle=ca_bundle)
    team_name = choices.team_name if choices.team_name is not None else site.team_name
    team_code = choices.team_code if choices.team_name is not None else site.team_code
    team = make_team(team_name, team_code) if team_name else None
    failures = choices.wipe_after_failures or site.policies.wipe_after_failures
    session = enrol(
        profile_dir, user_id, pin, kdf=kdf, lockout=LockoutPolicy(max_failures=failures)
    )
    try:
        profile = session.profile
        profile.update_settings(
            idle_lock_minutes=choices.idle_lock_minutes or site.policies.idle_lock_minutes,
            cache_ttl_hours=site.policies.cache_ttl_hours,
            min_pin_length=site.policies.pin_min_length,
        )
        if site.cohort_group is not None:
            profile.update_settings(cohort_group=site.cohort_group)
        if site.trust_public_key is not None:
            from app.security import TRUST_KEY_SETTING

            profile.update_settings(**{TRUST_KEY_SETTING: site.trust_public_key})
        if team is not None:
            set_team(profile, team)
        home = SourceSettings(
            HOME,
            url,
            choices.client_id or site.client_id,
            token_url,
            ca_bundle,
            site.display_name,
            site.ods_code,
            HOME,
        )
        profile.add_source(home, secret)
        for source, source_secret in zip(site.sources, source_secrets, strict=True):
            assert source_secret is not None
            # Token endpoints of read-only sources are found at their first sync: a
            # neighbour that is down today must not stop an officer enrolling.
            session.store.ensure_source(source.name, source.role)
            profile.add_source(source, source_secret)
    except BaseException:
        session.close()
        raise
    return session
