"""The central records a profile syncs with (issue 14): add, list and remove sources.

A source is configuration (`app.security.SourceSettings`): a FHIR R4 base URL, this device's
client id (its secret in the OS keyring), an optional token endpoint and CA bundle, the Trust's
display name and ODS code, and a role: `home` (where this team's encounters go; set by enrol)
or `read-only` (a neighbour, or a regional shared record).

Adding and removing are admin actions: an admin's PIN proves who asked, and each is audited
(`source-add`, `source-remove`) naming the source and its URL's host only. Removing a source
erases what it brought (`forget_source`) before its settings and secret go, so the cache never
holds records from a source the profile no longer names. Listing needs no PIN and shows no
patient data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.errors import InvalidInput, ProfileError
from app.security import HOME, READ_ONLY, SOURCE_ROLES, Profile, SourceSettings, check_source_name
from app.services._encounter_team import ODS_CODE
from app.services.session import Session, open_session, read_status, record_admin_action

log = logging.getLogger("kerbside.services")

SOURCE_ADD_ACTION = "source-add"
SOURCE_REMOVE_ACTION = "source-remove"
DISPLAY_NAME_MAX = 80
CLIENT_ID_MAX = 128


def one_line(value: str, what: str, limit: int, field: str | None = None) -> str:
    """`value` stripped, refused when empty, longer than `limit` or more than one line."""
    value = value.strip()
    if not value:
        raise InvalidInput(f"the {what} must not be empty", field=field)
    if len(value) > limit:
        raise InvalidInput(f"the {what} is longer than {limit} characters", field=field)
    if not value.isprintable():
        raise InvalidInput(f"the {what} must be one line of text", field=field)
    return value


def check_ods_code(code: str) -> str:
    """An ODS organisation code, upper-cased (RXV, RXV01)."""
    code = code.strip().upper()
    if not ODS_CODE.fullmatch(code):
        raise InvalidInput(
            "the ODS code must be 3 to 10 letters and digits, e.g. RXV", field="ods_code"
        )
    return code


def make_source(
    name: str,
    base_url: str,
    client_id: str,
    *,
    token_url: str | None = None,
    ca_bundle: str | Path | None = None,
    display_name: str | None = None,
    ods_code: str | None = None,
    role: str = READ_ONLY,
) -> SourceSettings:
    """A source as Trust IT typed it, checked: a safe name, https addresses (http only to
    this machine, as enrol allows), a CA bundle that exists, an ODS-shaped code. Messages
    name the field, never echo a value that failed."""
    from sync import check_url_allowed

    check_source_name(name)
    if role not in SOURCE_ROLES:
        raise InvalidInput(f"a source's role is {' or '.join(SOURCE_ROLES)}", field="role")
    if name == HOME and role != HOME:
        raise InvalidInput("the name 'home' is kept for the home source", field="name")
    base_url = base_url.strip().rstrip("/")
    check_url_allowed(base_url, f"source {name}")
    client_id = one_line(client_id, "client id", CLIENT_ID_MAX, "client_id")
    if token_url is not None:
        token_url = token_url.strip()
        check_url_allowed(token_url, f"source {name}'s token endpoint")
    bundle: str | None = None
    if ca_bundle is not None:
        path = Path(ca_bundle)
        if not path.is_file():
            raise InvalidInput("the CA bundle file does not exist", field="ca_bundle")
        bundle = str(path.resolve())
    if display_name is not None:
        display_name = one_line(display_name, "display name", DISPLAY_NAME_MAX, "display_name")
    if ods_code is not None:
        ods_code = check_ods_code(ods_code)
    return SourceSettings(
        name, base_url, client_id, token_url, bundle, display_name, ods_code, role
    )


def audit_detail(source: SourceSettings) -> str:
    """What the audit trail says of a source: its name and its URL's host, nothing more."""
    return f"{source.name} {urlsplit(source.base_url).hostname or '-'}"


def _refuse_clash(profile: Profile, source: SourceSettings) -> None:
    """The profile's own checks, run before the PIN so a typo costs no attempt."""
    if any(s.name == source.name for s in profile.sources):
        raise ProfileError(f"this profile already has a source named {source.name}")
    home = profile.home_source
    if source.is_home and home is not None:
        raise ProfileError(
            f"this profile already has a home source ({home.name}); re-enrol the tablet to "
            "change it"
        )


def add_source(
    profile_dir: Path,
    by_user: str,
    by_pin: str,
    source: SourceSettings,
    client_secret: str,
    *,
    http: Any = None,
) -> SourceSettings:
    """Add `source` (from `make_source`) with its client secret; returns it as saved.

    The token endpoint, when not given, is found from the server's SMART configuration
    *before* the PIN is checked or anything is written: a wrong address leaves nothing
    half-added and costs no PIN attempt.
    """
    from dataclasses import replace

    from sync import discover_token_url, new_http_session

    if not client_secret.strip():
        raise InvalidInput("the client secret is empty", field="client_secret")
    profile = Profile.load(profile_dir)
    _refuse_clash(profile, source)
    if source.token_url is None:
        own = http is None
        http = http or new_http_session()
        try:
            token_url = discover_token_url(http, source.base_url, ca_bundle=source.ca_bundle)
        finally:
            if own:
                http.close()
        source = replace(source, token_url=token_url)
    data_key = profile.verify_pin(by_user, by_pin)
    profile.require_admin(by_user, "add sources")
    with open_session(profile, by_user, data_key) as session:
        # The cache learns the source's number first: registering is idempotent, so a
        # profile that then fails to save leaves only an unused number behind.
        session.store.ensure_source(source.name, source.role)
        profile.add_source(source, client_secret.strip())
        record_admin_action(session, SOURCE_ADD_ACTION, audit_detail(source))
    log.info("source added (%s)", source.role)
    return source


def remove_source(profile_dir: Path, by_user: str, by_pin: str, name: str) -> SourceSettings:
    """Remove a read-only source: what it brought is erased, then its settings and secret;
    the home source cannot be removed (re-enrol instead). Returns what was removed."""
    profile = Profile.load(profile_dir)
    source = profile.source(name)  # before the PIN: an unknown name costs no attempt
    if source.is_home:
        raise ProfileError("the home source cannot be removed; re-enrol the tablet to change it")
    data_key = profile.verify_pin(by_user, by_pin)
    profile.require_admin(by_user, "remove sources")
    with open_session(profile, by_user, data_key) as session:
        forget_source(session, name)
        record_admin_action(session, SOURCE_REMOVE_ACTION, audit_detail(source))
    log.info("source removed")
    return source


def forget_source(session: Session, name: str) -> SourceSettings:
    """Erase everything source `name` brought into this session's cache, then forget its
    settings and keyring secret. The one place a source is taken out of a profile: `source
    remove` calls it, and so will a read-only source's revocation (issue 14 section 4).

    The cache is erased first: if that fails the source is still listed, and removing it
    again finishes the job; the other order would leave records no source owns.
    """
    source = session.profile.source(name)
    if source.is_home:
        raise ProfileError("the home source cannot be removed; re-enrol the tablet to change it")
    sid = session.store.source_id(name)
    if sid is not None:
        # Its rows, index entries, cursors and sync state, overwritten on disk; its number
        # is forgotten too (never reused), so the name can be added again with another role.
        # Records about its people stay queued for home (`Store.erase_source`).
        session.store.erase_source(sid, unregister=True)
    return session.profile.remove_source(name)


def list_sources(profile_dir: Path) -> list[dict[str, Any]]:
    """Every source, home first, with the status summary's last sync and counts where it has
    them (no PIN, no patient data). Before per-source sync the summary's figures are the
    home source's: it was the only one that synced."""
    profile = Profile.load(profile_dir)
    status = read_status(profile_dir)
    per_source = status.get("sources")
    per_source = per_source if isinstance(per_source, dict) else {}
    rows = []
    for source in profile.sources:
        figures = per_source.get(source.name)
        if not isinstance(figures, dict):
            figures = status if source.is_home else {}
        rows.append(
            {
                "name": source.name,
                "role": source.role,
                "base_url": source.base_url,
                "client_id": source.client_id,
                "token_url": source.token_url,
                "ca_bundle": source.ca_bundle,
                "display_name": source.display_name,
                "ods_code": source.ods_code,
                "last_sync": figures.get("last_sync"),
                "patients": figures.get("patients"),
                "resources": figures.get("resources"),
                # Since multi-source sync (slice 3): ok, failed, revoked or never, and why
                # the last attempt failed (one line, no patient data); None before it ran.
                "state": "revoked" if source.revoked_at else figures.get("state"),
                "error": figures.get("error"),
                "revoked_at": source.revoked_at,
            }
        )
    return rows
