"""`kerbside doctor`: is this tablet fit to run Kerbside? (app/services/doctor.py)

One line per check, PASS or FAIL with the remedy, then one INFO line per source of the
profile; exit 1 if any check failed. `--json` prints exactly one JSON object, {"ok": bool,
"checks": [{"name", "ok", "detail", "remedy"}], "sources": [{"name", "role", "base_url",
"client_id", "token_url", "ca_bundle", "display_name", "ods_code", "secret_stored"}]}, for
MDM scripts (never a secret).
"""

from __future__ import annotations

import argparse
import json

from app.cli._common import add_profile_arg, add_site_arg, plain, profile_dir


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "doctor",
        help="check this tablet: SQLCipher, keychain, profile folder, clock, time zones, "
        "site configuration, central record",
    )
    add_profile_arg(p)
    add_site_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from app.services.doctor import profile_sources, report, run_checks

    results = run_checks(profile_dir(args), args.site_config)
    sources = profile_sources(profile_dir(args))
    if args.json:
        print(json.dumps(report(results, sources), ensure_ascii=False))
    else:
        for r in results:
            line = f"{'PASS' if r.ok else 'FAIL'}  {r.name}: {r.detail}"
            if not r.ok and r.remedy:
                line += f" -> {r.remedy}"
            print(line)
        for s in sources:
            secret = "client secret in the keyring" if s["secret_stored"] else "NO client secret"
            print(plain(f"INFO  Source {s['name']} ({s['role']}): {s['base_url']}, {secret}"))
    return 0 if all(r.ok for r in results) else 1
