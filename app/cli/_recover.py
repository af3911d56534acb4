"""`kerbside recover-sealed` and `kerbside trust-keygen`: Trust IT's side of sealed records.

A wiped tablet (revoked, too many wrong PINs, purged) leaves its unsent records sealed to the
Trust's public key (app/security/_sealed.py). Trust IT, holding the private key, uploads them
with the same push path as sync: each record is a transaction Bundle whose every entry is a
conditional create on the record's client identifier, so a record the tablet had already sent,
or a second run of this command, creates nothing twice. The summary is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cli._common import Secrets


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "recover-sealed",
        help="upload records sealed to the Trust by a wiped tablet (client secret on stdin)",
    )
    p.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="FILE",
        help="the Trust's private key (base64), from trust-keygen",
    )
    p.add_argument(
        "sealed",
        nargs="+",
        type=Path,
        metavar="SEALED",
        help=".sealed files, or folders holding them (a profile's sealed/ folder)",
    )
    p.add_argument("--server", required=True, metavar="URL", help="FHIR base URL")
    p.add_argument("--client-id", required=True, metavar="ID", help="OAuth client id")
    p.add_argument(
        "--token-url",
        metavar="URL",
        default=None,
        help="OAuth token endpoint (default: the server's SMART configuration)",
    )
    p.add_argument("--ca-bundle", metavar="FILE", default=None, help="CA certificates")
    p.set_defaults(func=_recover)

    p = subparsers.add_parser(
        "trust-keygen",
        help="make the Trust's key pair for sealed records (public key for tablets)",
    )
    p.add_argument("--public", required=True, type=Path, metavar="FILE")
    p.add_argument("--private", required=True, type=Path, metavar="FILE")
    p.set_defaults(func=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    import os

    from app.security import new_keypair

    public, private = new_keypair()
    fd = os.open(args.private, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private + "\n")
    args.public.write_text(public + "\n")
    print(json.dumps({"public": str(args.public), "private": str(args.private)}))
    return 0


def _sealed_files(paths: list[Path]) -> list[Path]:
    from app.security import SEALED_SUFFIX as SUFFIX

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob(f"*{SUFFIX}"))
        else:
            found.append(path)
    return found


@dataclass
class SealedOutbox:
    """The push path's store for recovered records: in memory, nothing written locally."""

    items: list[Any]
    sent: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)

    def pending_outbox(self, limit: int) -> list[Any]:
        return [i for i in self.items if i.seq not in self.done][:limit]

    def record_attempt(self, seq: int, at: str) -> None:
        pass

    def mark_sent(self, seq: int, response: bytes, resources: Any, at: str) -> None:
        self.done.add(seq)
        self.sent.append(self.items[seq - 1].client_id)

    def mark_rejected(self, seq: int, reason: str, response: bytes | None, at: str) -> None:
        self.done.add(seq)
        self.rejected.append({"client_id": self.items[seq - 1].client_id, "reason": reason})


def _recover(args: argparse.Namespace) -> int:
    import base64

    from app.errors import InvalidInput
    from app.security import read_key, unseal
    from sync import (
        ClientCredentials,
        FhirClient,
        OutboxItem,
        Pusher,
        RunContext,
        SyncOptions,
        SyncReport,
        discover_token_url,
        new_http_session,
        parse_capabilities,
    )

    private = read_key(args.key.read_text().strip(), "key")
    secret = Secrets(True).next("Client secret")
    records: dict[str, dict[str, Any]] = {}
    files = _sealed_files(args.sealed)
    if not files:
        raise InvalidInput("no .sealed files found", field="sealed")
    for path in files:
        record = unseal(private, path.read_bytes())
        records[str(record["client_id"])] = record  # one record sealed twice counts once
    http = new_http_session()
    token_url = args.token_url or discover_token_url(http, args.server, ca_bundle=args.ca_bundle)
    client = FhirClient(
        args.server,
        http,
        auth=ClientCredentials(token_url, args.client_id, secret),
        ca_bundle=args.ca_bundle,
    )
    caps = parse_capabilities(client.get(client.url("metadata"), label="capabilities").body)
    items = [
        OutboxItem(
            n, r["client_id"], r["kind"], r.get("patient_id"), base64.b64decode(r["payload"]), 0
        )
        for n, r in enumerate(records.values(), start=1)
    ]
    store = SealedOutbox(items)
    report = SyncReport()
    run = RunContext(client, store, caps, SyncOptions(types=()), report, lambda *_: None)  # type: ignore[arg-type]
    Pusher(run).push_outbox()
    summary = {
        "files": len(files),
        "records": len(items),
        "uploaded": len(store.sent),
        "rejected": store.rejected,
        "blocked": report.push_blocked,
        "client_ids": sorted(store.sent),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if not store.rejected and not report.push_blocked else 1
