"""Profile commands: enrol, users and PINs, the team, import, search, status."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from app.cli._common import (
    Secrets,
    add_profile_arg,
    add_site_arg,
    add_user_args,
    plain,
    profile_dir,
)
from app.cli._sync_cmds import add_server_args, prepare_server, save_server

TEAM_HELP = "street-triage team named on each new encounter, e.g. 'Bolton Street Triage'"
TEAM_CODE_HELP = "the team's ODS organisation code, e.g. RXV (needs a team name)"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("enrol", help="create a profile, its encrypted cache and first user")
    add_user_args(p)
    add_server_args(p)
    p.add_argument(
        "--max-pin-failures",
        type=int,
        default=None,
        metavar="N",
        help="wrong PINs in a row before the cache is wiped (default: the site's, else 10)",
    )
    p.add_argument(
        "--idle-minutes",
        type=float,
        default=None,
        metavar="M",
        help="lock the app after this many idle minutes (default: the site's, else 5)",
    )
    p.add_argument("--team", metavar="NAME", help=TEAM_HELP)
    p.add_argument("--team-code", metavar="CODE", help=TEAM_CODE_HELP)
    p.add_argument(
        "--trust-key",
        type=Path,
        metavar="FILE",
        default=None,
        help="the Trust's public key (kerbside trust-keygen): unsent records are sealed to it "
        "and survive a wipe",
    )
    add_site_arg(p)
    p.set_defaults(func=_enrol)

    p = subparsers.add_parser(
        "provision",
        help="Trust IT: keep this device's client secret in the OS keyring (once per device)",
        description="Check the site configuration and store the central record's client "
        "secret for its client id in the OS keyring. Each `kerbside enrol` (or first-run "
        "screen) on this device then takes the server, client, team and policies from the "
        "site file and the secret from the keyring.",
    )
    add_site_arg(p)
    p.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the client secret from the first line of stdin (else a hidden prompt); "
        "with [[sources]] in the site file, one more line per source, in file order",
    )
    p.set_defaults(func=_provision)

    p = subparsers.add_parser(
        "set-team", help="set or clear the team every new encounter is recorded for"
    )
    add_user_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("team", nargs="?", metavar="NAME", help=TEAM_HELP)
    which.add_argument("--clear", action="store_true", help="record no team from now on")
    p.add_argument("--team-code", metavar="CODE", help=TEAM_CODE_HELP)
    add_site_arg(p)
    p.set_defaults(func=_set_team)

    p = subparsers.add_parser("add-user", help="enrol another user on an existing profile")
    add_user_args(p)
    p.add_argument("--new-user", required=True, metavar="NAME")
    p.add_argument(
        "--admin", action="store_true", help="the new user may add and remove users (admins only)"
    )
    p.set_defaults(func=_add_user)

    p = subparsers.add_parser("remove-user", help="remove a user's key slot")
    add_user_args(p)
    p.add_argument("--remove", required=True, metavar="NAME")
    p.set_defaults(func=_remove_user)

    p = subparsers.add_parser("change-pin", help="change a user's PIN (no re-encryption)")
    add_user_args(p)
    p.set_defaults(func=_change_pin)

    p = subparsers.add_parser("import", help="load FHIR NDJSON files into the cache")
    add_user_args(p)
    p.add_argument("directory", type=Path, metavar="GENDIR")
    p.set_defaults(func=_import)

    p = subparsers.add_parser("search", help="search the cache for a person")
    add_user_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON array, best first")
    p.add_argument("--limit", type=int, default=10, metavar="K")
    p.add_argument("query", nargs="+")
    p.set_defaults(func=_search)

    p = subparsers.add_parser(
        "audit", help="list this tablet's audit trail, oldest first, and verify its chain"
    )
    add_user_args(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per entry, then {"verified", "entries", "problems"}',
    )
    p.set_defaults(func=_audit)

    p = subparsers.add_parser("status", help="counts, schema, last sync, outbox (no PIN)")
    add_profile_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)


def _unlock(args: argparse.Namespace, secrets: Secrets | None = None):  # type: ignore[no-untyped-def]
    from app.services.session import unlock

    secrets = secrets or Secrets(args.pin_stdin)
    return unlock(profile_dir(args), args.user, secrets.next("PIN"))


def _enrol(args: argparse.Namespace) -> int:
    from app.errors import InvalidInput
    from app.security import LockoutPolicy
    from app.services.encounters import make_team, set_team
    from app.services.session import enrol
    from app.services.site import load_site_config

    if args.max_pin_failures is not None and not 3 <= args.max_pin_failures <= 20:
        raise InvalidInput("--max-pin-failures must be between 3 and 20", field="max_pin_failures")
    if args.idle_minutes is not None and not 0.5 <= args.idle_minutes <= 30:
        raise InvalidInput("--idle-minutes must be between 0.5 and 30", field="idle_minutes")
    if args.team_code is not None and args.team is None:
        raise InvalidInput("--team-code needs --team", field="team_code")
    team = make_team(args.team, args.team_code) if args.team is not None else None
    site = load_site_config(args.site_config)
    if site is not None:
        return _enrol_provisioned(args, site)
    secrets = Secrets(args.pin_stdin)
    pin = _new_pin(args, secrets)
    if pin is None:
        return 1
    server = prepare_server(args, secrets)  # the client secret is the next secret read
    lockout = LockoutPolicy(max_failures=args.max_pin_failures or 10)
    with enrol(profile_dir(args), args.user, pin, lockout=lockout) as session:
        session.profile.update_settings(idle_lock_minutes=args.idle_minutes or 5.0)
        if args.trust_key is not None:
            from app.security import TRUST_KEY_SETTING as KEY_SETTING
            from app.security import read_key

            key = read_key(args.trust_key.read_text().strip(), "trust key")
            session.profile.update_settings(**{KEY_SETTING: base64.b64encode(key).decode()})
        if team is not None:
            set_team(session.profile, team)
        if server is not None:
            save_server(session.profile, server)
        print(f"enrolled {args.user} on profile {session.profile.profile_id}")
    return 0


def _new_pin(args: argparse.Namespace, secrets: Secrets) -> str | None:
    pin = secrets.next("PIN")
    if not args.pin_stdin and secrets.next("PIN again") != pin:
        print("kerbside: the PINs do not match", file=sys.stderr)
        return None
    return pin


_ENROL_FLAGS = {
    "url": "--server",
    "client_id": "--client-id",
    "token_url": "--token-url",
    "ca_bundle": "--ca-bundle",
    "team_name": "--team",
    "team_code": "--team-code",
    "idle_lock_minutes": "--idle-minutes",
    "wipe_after_failures": "--max-pin-failures",
}


def _enrol_provisioned(args: argparse.Namespace, site: Any) -> int:
    """Enrol on a device Trust IT provisioned: the site file gives what flags do not, and a
    flag that contradicts a locked setting is refused before anything is asked."""
    from app.services.site import EnrolChoices, enrol_from_site, refuse_locked

    choices = EnrolChoices(
        url=args.server.rstrip("/") if args.server else None,
        client_id=args.client_id,
        token_url=args.token_url,
        ca_bundle=str(args.ca_bundle.resolve()) if args.ca_bundle else None,
        team_name=args.team,
        team_code=args.team_code,
        idle_lock_minutes=args.idle_minutes,
        wipe_after_failures=args.max_pin_failures,
    )
    refuse_locked(site, choices, _ENROL_FLAGS)
    pin = _new_pin(args, Secrets(args.pin_stdin))
    if pin is None:
        return 1
    with enrol_from_site(profile_dir(args), site, args.user, pin, choices) as session:
        print(f"enrolled {args.user} on profile {session.profile.profile_id} ({site.path})")
    return 0


def _provision(args: argparse.Namespace) -> int:
    from app.errors import InvalidInput
    from app.security import check_backend
    from app.services.site import default_site_path, load_site_config, provision

    site = load_site_config(args.site_config)
    if site is None:
        raise InvalidInput(
            f"no site configuration at {default_site_path()}; write it first (README: Install)",
            field="site_config",
        )
    check_backend()  # before the secret is read: a refused keychain asks for nothing
    secrets = Secrets(args.secret_stdin)
    home = secrets.next("Client secret")
    others = [secrets.next(f"Client secret for source {s.name}") for s in site.sources]
    provision(site, home, others)
    print(f"provisioned client {site.client_id} for {site.url} (secret in the OS keyring)")
    for source in site.sources:
        print(f"provisioned source {source.name}: client {source.client_id} for {source.base_url}")
    return 0


def _set_team(args: argparse.Namespace) -> int:
    """Change the default team; the PIN proves an enrolled user asked (a wrong one counts)."""
    from app.errors import InvalidInput
    from app.services.encounters import make_team, set_team
    from app.services.site import load_site_config

    if args.clear and args.team_code is not None:
        raise InvalidInput("--clear takes no --team-code", field="team_code")
    site = load_site_config(args.site_config)
    if site is not None and site.is_locked("team"):
        raise InvalidInput(
            f"the team is set by the site configuration ({site.path}) and locked; "
            "ask Trust IT to change it",
            field="team",
        )
    team = None if args.clear else make_team(args.team, args.team_code)  # before the PIN
    from app.services.session import audit_team_change

    with _unlock(args) as session:
        audit_team_change(session, "no team" if team is None else f"{team.name} {team.code or ''}")
        set_team(session.profile, team)
    if team is None:
        print("no team: new encounters will name none")
    else:
        print(f"team set to {team.name}" + (f" ({team.code})" if team.code else ""))
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from app.services.session import add_user

    secrets = Secrets(args.pin_stdin)
    add_user(
        profile_dir(args),
        args.user,
        secrets.next("PIN"),
        args.new_user,
        secrets.next("New user's PIN"),
        admin=args.admin,
    )
    print(f"enrolled {args.new_user}" + (" (admin)" if args.admin else ""))
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    from app.services.session import remove_user

    remove_user(profile_dir(args), args.user, Secrets(args.pin_stdin).next("PIN"), args.remove)
    print(f"removed {args.remove}")
    return 0


def _change_pin(args: argparse.Namespace) -> int:
    from app.security import Profile

    secrets = Secrets(args.pin_stdin)
    profile = Profile.load(profile_dir(args))
    profile.change_pin(args.user, secrets.next("PIN"), secrets.next("New PIN"))
    print("PIN changed")
    return 0


def _import(args: argparse.Namespace) -> int:
    from app.services.importer import import_ndjson

    def progress(rtype: str, done: int) -> None:
        print(f"\r{rtype}: {done}", end="", file=sys.stderr, flush=True)

    with _unlock(args) as session:
        counts = import_ndjson(session, args.directory, progress)
    print(file=sys.stderr)
    print(json.dumps(counts, sort_keys=True))
    return 0


def _search(args: argparse.Namespace) -> int:
    from app.nhs_number import format_nhs_number
    from app.services.search import PatientSearch, audit_search
    from app.store import HOME_SOURCE

    with _unlock(args) as session:
        session.check_fresh()
        query = " ".join(args.query)
        result = PatientSearch(session.store).search(query, limit=args.limit)
        audit_search(session, query, len(result.hits))
    if result.notice:
        print(f"note: {result.notice}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": h.id,
                        "name": h.display_name,
                        "known_as": h.known_as,
                        "birth_date": h.birth_date,
                        "age": h.age,
                        "gender": h.gender,
                        "nhs_number": h.nhs_number,
                        "postcode": h.postcode,
                        "score": round(h.score, 3),
                        "alerts": [
                            {"code": a.code, "label": a.label, "kind": a.kind, "source": a.source}
                            for a in h.alerts
                        ],
                        # issue 14: the central records that know this person, home first
                        "sources": list(h.sources),
                    }
                    for h in result.hits
                ],
                ensure_ascii=False,
            )
        )
        return 0
    if not result.hits:
        hint = f" (did you mean {result.did_you_mean}?)" if result.did_you_mean else ""
        print(f"no matches{hint}")
        return 0
    for h in result.hits:
        nhs = format_nhs_number(h.nhs_number) if h.nhs_number else "no NHS number"
        alerts = ", ".join(a.label for a in h.alerts)
        known = f' "{h.known_as}"' if h.known_as else ""
        # Named only when someone other than the home source knows them (issue 14).
        sources = (
            f"  (from {', '.join(h.sources)})" if h.sid != HOME_SOURCE or len(h.sources) > 1 else ""
        )
        print(
            plain(
                f"{h.display_name}{known}  {h.birth_date or '?'}  {nhs}  {h.postcode or ''}"
                f"{'  [' + alerts + ']' if alerts else ''}{sources}"
            )
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    from app.services.session import read_status
    from app.services.sources import list_sources

    status = read_status(profile_dir(args))
    if args.json:
        print(json.dumps(status, sort_keys=True))
        return 0
    print(f"profile {status['profile_id']}  users: {', '.join(status['users']) or '-'}")
    if status.get("wiped"):
        print(f"WIPED: {status['wiped'].get('reason')}")
    print(f"schema version {status['schema_version']}  patients {status['patients']}")
    print(f"last sync {status['last_sync'] or 'never'}  server {status['server'] or '-'}")
    ob = status["outbox"]
    print(f"outbox: {ob['pending']} waiting, {ob['rejected']} rejected, {ob['sent']} sent")
    for row in list_sources(profile_dir(args)):
        print(plain(_source_status_line(row)))
    return 0


def _source_status_line(row: dict[str, Any]) -> str:
    """One line per central record (a `source list` row), so Trust IT sees which Trust a
    tablet has fallen behind with, a source added since the last sync included."""
    patients = "-" if row["patients"] is None else row["patients"]
    line = (
        f"source {row['name']} ({row['role']}): {row['state'] or 'never'}, "
        f"last sync {row['last_sync'] or 'never'}, patients {patients}"
    )
    if row["error"]:
        line += f", error: {row['error']}"
    return line


def _audit(args: argparse.Namespace) -> int:
    """The trail and its check; exit 1 when the chain is broken (issue 12 contract)."""
    with _unlock(args) as session:
        entries = session.store.audit_entries(limit=2**62)
        problems = session.audit_problems()
    for e in entries:
        row = {
            "seq": e.seq,
            "at": e.at,
            "user": e.user_id,
            "action": e.action,
            "patient_id": e.patient_id,
            "reason": e.reason,
            "event_id": e.event_id,
            "uploaded_at": e.uploaded_at,
            "hash": e.hash,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            fields = (e.seq, e.at, e.user_id, e.action, e.patient_id or "-", e.reason or "-")
            print("\t".join(plain(f) for f in fields))
    verified = not problems
    if args.json:
        print(json.dumps({"verified": verified, "entries": len(entries), "problems": problems}))
    else:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        print(f"{len(entries)} entries; chain {'verified' if verified else 'BROKEN'}")
    return 0 if verified else 1
