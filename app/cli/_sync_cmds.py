"""Sync commands: `kerbside sync`, and the central-record options `enrol` takes.

`sync` prints progress on stderr and, as its last stdout line, one JSON object with the
counts; a failed run prints one line on stderr and exits 1.

Contract (extend, never rename): the last line's keys are the totals over every source
(before issue 14 they were the one central record's, and with only a home source they still
are), plus `"sources": {NAME: {"pulled", "pushed", "rejected", "deleted", "ok", "error",
"state"}}` (`error`: one line without patient data, null when ok; `state`: ok,
failed or revoked). Exit status: 1 when the home source failed (one line on stderr, no JSON,
as before) or records could not be sent; a read-only source failing or revoking this device
does not change it (0): its entry says `"ok": false` and a `warning:` line on stderr names it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.cli._common import Secrets, add_user_args, profile_dir
from app.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("sync", help="push records and audit, then pull the cohort")
    add_user_args(p)
    p.add_argument(
        "--page-size",
        type=int,
        default=None,
        metavar="N",
        help="resources per page asked of the server (default 1000)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_sync)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """`enrol` options naming the central record (the secret is read like the PIN)."""
    parser.add_argument(
        "--server",
        metavar="BASE_URL",
        default=None,
        help="FHIR base URL of the central record (https; http only on this machine)",
    )
    parser.add_argument(
        "--client-id", metavar="ID", default=None, help="this device's OAuth client id"
    )
    parser.add_argument(
        "--token-url",
        metavar="URL",
        default=None,
        help="OAuth token endpoint (default: from the server's .well-known/smart-configuration)",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="FILE",
        type=Path,
        default=None,
        help="CA certificates for the central record (a Trust's private CA)",
    )


@dataclass
class PendingServer:
    base_url: str
    client_id: str
    token_url: str
    ca_bundle: str | None
    secret: str = field(repr=False)


def prepare_server(args: argparse.Namespace, secrets: Secrets) -> PendingServer | None:
    """Read the client secret and find the token endpoint *before* a profile is made, so a
    wrong address leaves nothing half-enrolled."""
    if args.server is None and args.client_id is None:
        return None
    if not args.server or not args.client_id:
        raise InvalidInput("--server and --client-id go together", field="server")
    from sync import check_url_allowed, discover_token_url, new_http_session

    base_url = args.server.rstrip("/")
    check_url_allowed(base_url)
    ca_bundle = None
    if args.ca_bundle is not None:
        if not args.ca_bundle.is_file():
            raise InvalidInput("the CA bundle file does not exist", field="ca_bundle")
        ca_bundle = str(args.ca_bundle.resolve())
    secret = secrets.next("Client secret")
    token_url = args.token_url
    if token_url:
        check_url_allowed(token_url, "the token endpoint")
    else:
        token_url = discover_token_url(new_http_session(), base_url, ca_bundle=ca_bundle)
    return PendingServer(base_url, args.client_id, token_url, ca_bundle, secret)


def save_server(profile: object, pending: PendingServer) -> None:
    """The secret goes to the OS keyring; profile.json gets only the non-secret settings."""
    from app.security import Profile, ServerSettings, store_client_secret

    assert isinstance(profile, Profile)
    store_client_secret(profile.profile_id, pending.secret)
    profile.set_server(
        ServerSettings(pending.base_url, pending.client_id, pending.token_url, pending.ca_bundle)
    )


def _sync(args: argparse.Namespace) -> int:
    from app.services.session import unlock
    from app.services.syncing import run_sync, sync_options

    progress = None if args.quiet else _ProgressPrinter()
    with unlock(profile_dir(args), args.user, Secrets(args.pin_stdin).next("PIN")) as session:
        overrides = {"page_size": args.page_size} if args.page_size else {}
        # Home failing still fails the command (exit 1, the error's line last on stderr), but
        # only after the last line has said how every source went: the neighbours were asked.
        report = run_sync(
            session,
            progress=progress,
            options=sync_options(session.profile, **overrides),
            raise_home_failure=False,
        )
    for rejection in report.rejections:
        print(
            f"rejected {rejection.kind} {rejection.client_id}: {rejection.reason}", file=sys.stderr
        )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    summary = {
        "pulled": report.pulled,
        "pushed": report.pushed,
        "rejected": report.rejected,
        "deleted": report.deleted,
        "seconds": report.seconds,
        "audit_uploaded": report.audit_uploaded,
        "merged": report.merged,
        "received": report.received,
        "pages": report.pages,
        "rescans": report.rescans,
        "requests": report.requests,
        "retries": report.retries,
        "reconciled": report.reconciled,
        "policy": report.policy,
        "push_blocked": report.push_blocked,
        "rejections": [
            {"client_id": r.client_id, "kind": r.kind, "status": r.status, "reason": r.reason}
            for r in report.rejections
        ],
        "sources": {
            name: {
                "pulled": part.report.pulled,
                "pushed": part.report.pushed,
                "rejected": part.report.rejected,
                "deleted": part.report.deleted,
                "ok": part.ok,
                "error": part.error,
                "state": part.state,
            }
            for name, part in report.sources.items()
        },
    }
    print(json.dumps(summary, sort_keys=True), flush=True)
    if report.home_failure is not None:
        print(f"kerbside: {report.home_failure}", file=sys.stderr)
        return 1
    if report.push_blocked:
        print(f"kerbside: records were not sent: {report.push_blocked}", file=sys.stderr)
        return 1
    return 0


class _ProgressPrinter:
    """One stderr line per phase change, then at most a few per second."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if phase == self._phase and now - self._last < 0.25:
            return
        self._phase, self._last = phase, now
        of = f"/{total}" if total is not None else ""
        print(f"{phase}: {done}{of}", file=sys.stderr, flush=True)
