"""`kerbside source add|list|remove`: the central records a profile syncs with (issue 14).

Contracts (scripts and Trust IT depend on them; extend, never rename):

    kerbside source add --profile DIR --user U --pin-stdin --name NAME --server URL
        --client-id ID [--token-url URL] [--ca-bundle FILE] [--role read-only|home]
        [--display-name TEXT] [--ods-code CODE]
        stdin: the PIN on the first line, the source's client secret on the second
    kerbside source list --profile DIR [--json]        no PIN; no patient data
    kerbside source remove --profile DIR --user U --pin-stdin NAME

Adding and removing are admin actions (an admin's PIN; audited as source-add/source-remove).
A refused command prints one line on stderr and exits 1, like every other command.
"""

from __future__ import annotations

import argparse
import json
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

ROLES = ("read-only", "home")  # app.security.SOURCE_ROLES, in the order --help shows them


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "source",
        help="the central records this profile syncs with: add, list, remove (admins)",
        description="A source is a FHIR R4 central record: the home Trust's (set by enrol) "
        "or a read-only neighbour or shared record. Adding and removing need an admin's PIN "
        "and are audited; removing a source erases what it brought.",
    )
    actions = p.add_subparsers(dest="source_action", required=True, metavar="ACTION")

    a = actions.add_parser(
        "add",
        help="add a source (stdin: PIN, then its client secret)",
        description="Add a central record. With --pin-stdin the PIN is the first line of "
        "stdin and the source's client secret the second; else both are asked for, hidden.",
    )
    add_user_args(a)
    a.add_argument(
        "--name", required=True, metavar="NAME", help="short name, e.g. trust-2 (a-z 0-9 - _)"
    )
    a.add_argument(
        "--server",
        required=True,
        metavar="BASE_URL",
        help="FHIR base URL of the source (https; http only on this machine)",
    )
    a.add_argument("--client-id", required=True, metavar="ID", help="this device's client id")
    a.add_argument(
        "--token-url",
        metavar="URL",
        default=None,
        help="OAuth token endpoint (default: from the server's .well-known/smart-configuration)",
    )
    a.add_argument(
        "--ca-bundle",
        metavar="FILE",
        type=Path,
        default=None,
        help="CA certificates for this source (a Trust's private CA)",
    )
    a.add_argument(
        "--role",
        choices=ROLES,
        default="read-only",
        help="read-only (default): read, never written to; home: where encounters go (only "
        "on a profile enrolled without a central record)",
    )
    a.add_argument("--display-name", metavar="TEXT", default=None, help="the Trust's name")
    a.add_argument("--ods-code", metavar="CODE", default=None, help="the Trust's ODS code")
    add_site_arg(a)
    a.set_defaults(func=_add)

    ls = actions.add_parser("list", help="list the sources (no PIN, no patient data)")
    add_profile_arg(ls)
    ls.add_argument("--json", action="store_true", help="print one JSON array, home first")
    ls.set_defaults(func=_list)

    r = actions.add_parser(
        "remove", help="remove a read-only source and erase what it brought (stdin: PIN)"
    )
    add_user_args(r)
    r.add_argument("name", metavar="NAME")
    add_site_arg(r)
    r.set_defaults(func=_remove)


def _refuse_if_site_locked(args: argparse.Namespace) -> None:
    """Sources the site configuration locks are Trust IT's: refused before the PIN."""
    from app.errors import InvalidInput
    from app.services.site import load_site_config

    site = load_site_config(args.site_config)
    if site is not None and site.is_locked("sources"):
        raise InvalidInput(
            f"sources are set by the site configuration ({site.path}) and locked; "
            "ask Trust IT to change them",
            field="sources",
        )


def _add(args: argparse.Namespace) -> int:
    from app.services.sources import add_source, make_source

    source = make_source(  # checked before anything is read from stdin
        args.name,
        args.server,
        args.client_id,
        token_url=args.token_url,
        ca_bundle=args.ca_bundle,
        display_name=args.display_name,
        ods_code=args.ods_code,
        role=args.role,
    )
    _refuse_if_site_locked(args)
    secrets = Secrets(args.pin_stdin)
    pin = secrets.next("PIN")
    secret = secrets.next("Client secret")
    added = add_source(profile_dir(args), args.user, pin, source, secret)
    print(f"added source {added.name} ({added.role}): {added.base_url}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from app.services.sources import remove_source

    _refuse_if_site_locked(args)
    removed = remove_source(
        profile_dir(args), args.user, Secrets(args.pin_stdin).next("PIN"), args.name
    )
    print(f"removed source {removed.name}; what it brought is erased")
    return 0


def _list(args: argparse.Namespace) -> int:
    from app.services.sources import list_sources

    rows = list_sources(profile_dir(args))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("no sources: enrol with --server, or kerbside source add --role home")
        return 0
    for row in rows:
        print(plain(_line(row)))
    return 0


def _line(row: dict[str, Any]) -> str:
    label = row["display_name"] or "-"
    if row["ods_code"]:
        label += f" ({row['ods_code']})"
    synced = row["last_sync"] or "never"
    patients = "-" if row["patients"] is None else row["patients"]
    line = (
        f"{row['name']}\t{row['role']}\t{row['base_url']}\t{label}\t"
        f"last sync {synced}\tpatients {patients}"
    )
    if row.get("state") in ("failed", "revoked"):
        line += f"\t{row['state']}"
    return line
