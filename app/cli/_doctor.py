"""`kerbside doctor`: is this tablet fit to run Kerbside? (app/services/doctor.py)

One line per check, PASS or FAIL with the remedy; exit 1 if any check failed. `--json`
prints exactly one JSON object, {"ok": bool, "checks": [{"name", "ok", "detail",
"remedy"}]}, for MDM scripts.
"""

from __future__ import annotations

import argparse
import json

from app.cli._common import add_profile_arg, add_site_arg, profile_dir


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
    from app.services.doctor import report, run_checks

    results = run_checks(profile_dir(args), args.site_config)
    if args.json:
        print(json.dumps(report(results), ensure_ascii=False))
    else:
        for r in results:
            line = f"{'PASS' if r.ok else 'FAIL'}  {r.name}: {r.detail}"
            if not r.ok and r.remedy:
                line += f" -> {r.remedy}"
            print(line)
    return 0 if all(r.ok for r in results) else 1
