"""`kerbside serve-reference` (the reference central record) and `kerbside reference-admin`.

`serve-reference` prints its FHIR base URL as the first stdout line once it listens, so a
script can start it on port 0 and read the address; it stops cleanly on SIGINT or SIGTERM.
`reference-admin` turns the running server's knobs over HTTP (`/admin`, see
`sync/reference/_admin.py`) with an admin client's token, and prints the answer as JSON.

Client secrets given as flags are visible to other local users (`ps`): this is a
development and test stand-in, run it with synthetic data only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from app.errors import InvalidInput


def _credentials(raw: str) -> tuple[str, str]:
    client_id, sep, secret = raw.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError("expected ID:SECRET")
    return client_id, secret


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _fault(raw: str) -> dict[str, Any]:
    from sync.reference import parse_fault_spec

    try:
        return parse_fault_spec(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    _register_serve(subparsers)
    _register_admin(subparsers)


# -- serve-reference ---------------------------------------------------------------------


def _register_serve(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve-reference",
        help="run the reference FHIR R4 central record (development and test stand-in)",
        description="Serve a FHIR R4 central record stored in --data. Prints the FHIR base "
        "URL as the first stdout line once listening; stops on SIGINT/SIGTERM. Synthetic "
        "data only.",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="data directory (created if missing; kept across restarts)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; tablets accept plain http only on loopback)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="port (default 0: any free port, see the printed URL)",
    )
    p.add_argument(
        "--seed",
        type=Path,
        default=None,
        metavar="DIR",
        help="`kerbside generate` output (NDJSON per type) loaded into an empty store",
    )
    p.add_argument(
        "--client",
        type=_credentials,
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="register a tablet client: reads the cohort, creates field records (repeatable)",
    )
    p.add_argument(
        "--admin-client",
        type=_credentials,
        action="append",
        default=[],
        metavar="ID:SECRET",
        dest="admin_client",
        help="register an admin client: may also change and delete central data "
        "and use /admin (repeatable)",
    )
    p.add_argument(
        "--paging",
        choices=("keyset", "offset"),
        default="keyset",
        help="keyset: stable opaque next links (default); offset: naive "
        "_offset paging whose pages shift when data changes mid-pull",
    )
    p.add_argument(
        "--no-history",
        action="store_false",
        dest="history",
        help="serve no _history (and say so in the CapabilityStatement)",
    )
    p.add_argument(
        "--history-order",
        choices=("newest-first", "oldest-first"),
        default="newest-first",
        dest="history_order",
    )
    p.add_argument(
        "--no-bulk-export",
        action="store_false",
        dest="bulk_export",
        help="offer no FHIR Bulk Data $export (and say so in the CapabilityStatement), as a "
        "server without it: tablets page their first load",
    )
    p.add_argument(
        "--timestamp-precision",
        choices=("us", "ms", "s"),
        default="us",
        dest="timestamp_precision",
        help="meta.lastUpdated precision: us gives every write its own instant (default); "
        "ms and s truncate, as coarser servers do (many resources then share one)",
    )
    p.add_argument(
        "--token-lifetime",
        type=_positive,
        default=300.0,
        metavar="S",
        dest="token_lifetime",
        help="access token lifetime in seconds (default 300)",
    )
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SPEC",
        help="start with a fault rule, e.g. 'unavailable,rate=0.1' or "
        "'drop,path=/fhir/Patient,after_bytes=2000' (repeatable)",
    )
    p.add_argument(
        "--fault-seed",
        type=int,
        default=0,
        dest="fault_seed",
        metavar="N",
        help="seed of the fault rules' random draws (default 0)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request (path only)")
    p.set_defaults(func=_serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    from sync.reference import FaultInjector, FaultRule, FhirError, ReferenceConfig, serve

    if not 0 <= args.port <= 65535:
        raise InvalidInput("--port must be 0-65535", field="port")
    if args.seed is not None and not args.seed.is_dir():
        raise InvalidInput("--seed must be a directory of NDJSON files", field="seed")
    if not _is_loopback(args.host):
        print(
            "kerbside: warning: serving plain http beyond this machine; tablets refuse it "
            "(put a TLS proxy in front)",
            file=sys.stderr,
        )
    logging.getLogger("sync.reference").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # a failed start-up is reported below, once, without a traceback
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    config = ReferenceConfig(
        data_dir=args.data,
        host=args.host,
        port=args.port,
        seed_dir=args.seed,
        clients=list(args.client),
        admin_clients=list(args.admin_client),
        paging=args.paging,
        history=args.history,
        history_order=args.history_order,
        bulk_export=args.bulk_export,
        timestamp_precision=args.timestamp_precision,
        token_lifetime_s=args.token_lifetime,
        fault_seed=args.fault_seed,
    )
    faults = FaultInjector(args.fault_seed)
    for spec in args.fault:
        faults.add(FaultRule.from_json(spec))

    def ready(base_url: str) -> None:
        print(base_url, flush=True)
        if not config.clients and not config.admin_clients:
            print(
                "kerbside: warning: no --client or --admin-client given; only clients "
                "registered earlier in this data directory can log in",
                file=sys.stderr,
            )

    try:
        serve(config, ready, faults=faults)
    except FhirError as exc:  # a seed file the server cannot load
        raise InvalidInput(f"cannot load --seed: {exc.diagnostics}", field="seed") from None
    except OSError as exc:  # e.g. the port is taken
        raise InvalidInput(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", field="port"
        ) from None
    return 0


# -- reference-admin ---------------------------------------------------------------------


def _register_admin(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reference-admin",
        help="manage a running reference server: clients, devices, settings, faults",
        description="Talk to a running `serve-reference` through its /admin endpoint with an "
        "admin client's credentials. Answers are printed as JSON.",
    )
    p.add_argument(
        "--url", required=True, metavar="BASE_URL", help="the FHIR base URL serve-reference printed"
    )
    p.add_argument(
        "--admin-client", type=_credentials, required=True, metavar="ID:SECRET", dest="admin_client"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = actions.add_parser("add-client", help="register (or update) a client")
    a.add_argument("client_id", metavar="ID")
    a.add_argument("--secret", default=None, help="its secret (required for a new client)")
    a.add_argument("--admin", action="store_true", help="an admin client, not a tablet")
    a.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="KEY=N",
        help="device policy: cache-ttl-hours, purge-after-hours, idle-lock-minutes",
    )
    a = actions.add_parser("remove-client", help="forget a client and its tokens")
    a.add_argument("client_id", metavar="ID")
    actions.add_parser("list-devices", help="every registered client (never secrets)")
    a = actions.add_parser("revoke-device", help="revoke a device: it wipes on next contact")
    a.add_argument("client_id", metavar="ID")
    a = actions.add_parser("reinstate-device", help="undo a revocation")
    a.add_argument("client_id", metavar="ID")
    a = actions.add_parser("expire-tokens", help="expire access tokens (all, or one client's)")
    a.add_argument("client_id", metavar="ID", nargs="?", default=None)

    a = actions.add_parser("settings", help="show or change live settings")
    a.add_argument("--paging", choices=("keyset", "offset"))
    a.add_argument("--history", choices=("on", "off"))
    a.add_argument(
        "--history-order", choices=("newest-first", "oldest-first"), dest="history_order"
    )
    a.add_argument("--token-lifetime", type=_positive, metavar="S", dest="token_lifetime")
    a.add_argument("--bulk-export", choices=("on", "off"), dest="bulk_export")
    a.add_argument("--export-ranges", choices=("on", "off"), dest="export_ranges")
    a.add_argument("--export-fault", choices=("none", "fail", "error-file"), dest="export_fault")
    a.add_argument("--export-retry-after", type=int, metavar="S", dest="export_retry_after")
    a.add_argument(
        "--purpose-window",
        type=_positive,
        metavar="S",
        dest="purpose_window",
        help="how long a purpose-of-use AuditEvent covers that device's record reads",
    )

    a = actions.add_parser("faults", help="list, add or remove fault rules")
    fa = a.add_subparsers(dest="fault_action", metavar="list|add|remove|clear")
    fa.add_parser("list", help="rules with hits and remaining")
    add = fa.add_parser("add", help="add a rule: KIND [key=value ...]")
    add.add_argument("kind")
    add.add_argument(
        "params",
        nargs="*",
        metavar="key=value",
        help="e.g. path=/fhir/Patient after_bytes=100 rate=0.2 count=3",
    )
    rm = fa.add_parser("remove", help="remove one rule")
    rm.add_argument("rule_id", type=int, metavar="N")
    fa.add_parser("clear", help="remove every rule")

    actions.add_parser("stats", help="live resource counts per type")
    actions.add_parser(
        "access", help="purposes of use recorded, and record reads that arrived without one"
    )
    p.set_defaults(func=_admin)


class _AdminClient:
    """HTTP calls to `/admin` with a bearer token from the server's advertised endpoint."""

    def __init__(self, base_url: str, client_id: str, secret: str) -> None:
        import requests

        from sync import check_url_allowed, discover_token_url, new_http_session

        check_url_allowed(base_url)
        self._requests = requests
        self.http = new_http_session()
        base = base_url.rstrip("/")
        parts = urlsplit(base)
        self.root = f"{parts.scheme}://{parts.netloc}"
        token_url = discover_token_url(self.http, base)
        resp = self.http.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30,
        )
        if resp.status_code != 200:
            raise InvalidInput(
                f"the admin client was refused (HTTP {resp.status_code})", field="admin-client"
            )
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.http.request(method, f"{self.root}/admin/{path}", json=body, timeout=30)
        if resp.status_code >= 400:
            raise InvalidInput(f"the server answered {resp.status_code}: {_diagnostics(resp)}")
        return None if resp.status_code == 204 or not resp.content else resp.json()


def _diagnostics(resp: Any) -> str:
    try:
        issues = resp.json().get("issue") or []
        return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues) or "?"
    except ValueError:
        return "(no OperationOutcome)"


def _policy(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise InvalidInput("--policy takes KEY=N", field="policy")
        out[key] = int(value)
    return out


def _admin(args: argparse.Namespace) -> int:
    client = _AdminClient(args.url, *args.admin_client)
    action, cid = args.action, quote(getattr(args, "client_id", None) or "", safe="")
    result: Any
    if action == "add-client":
        body: dict[str, Any] = {"role": "admin" if args.admin else "tablet"}
        if args.secret:
            body["secret"] = args.secret
        if args.policy:
            body["policy"] = _policy(args.policy)
        result = client.call("PUT", f"clients/{cid}", body)
    elif action == "remove-client":
        client.call("DELETE", f"clients/{cid}")
        result = {"removed": args.client_id}
    elif action == "list-devices":
        result = client.call("GET", "clients")
    elif action == "revoke-device":
        result = client.call("POST", f"clients/{cid}/revoke")
    elif action == "reinstate-device":
        result = client.call("POST", f"clients/{cid}/reinstate")
    elif action == "expire-tokens":
        result = client.call(
            "POST", "tokens/expire", {"client_id": args.client_id} if args.client_id else {}
        )
    elif action == "settings":
        changes: dict[str, Any] = {}
        if args.paging:
            changes["paging"] = args.paging
        if args.history:
            changes["history"] = args.history == "on"
        if args.history_order:
            changes["history_order"] = args.history_order
        if args.token_lifetime:
            changes["token_lifetime_s"] = args.token_lifetime
        for flag in ("bulk_export", "export_ranges"):
            if getattr(args, flag):
                changes[flag] = getattr(args, flag) == "on"
        if args.export_fault:
            changes["export_fault"] = args.export_fault
        if args.export_retry_after is not None:
            changes["export_retry_after_s"] = args.export_retry_after
        if args.purpose_window:
            changes["purpose_window_s"] = args.purpose_window
        result = client.call("PATCH" if changes else "GET", "settings", changes or None)
    elif action == "faults":
        fault_action = args.fault_action or "list"
        if fault_action == "add":
            from sync.reference import fault_params  # the server stack: only when needed

            try:
                spec = {"kind": args.kind, **fault_params(args.params)}
            except ValueError as exc:
                raise InvalidInput(str(exc), field="fault") from None
            result = client.call("POST", "faults", spec)
        elif fault_action == "remove":
            result = client.call("DELETE", f"faults/{args.rule_id}")
        elif fault_action == "clear":
            result = client.call("DELETE", "faults")
        else:
            result = client.call("GET", "faults")
    elif action == "access":
        result = client.call("GET", "access")
    else:  # stats
        result = client.call("GET", "stats")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
