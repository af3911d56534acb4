"""`kerbside generate`: write a deterministic synthetic cohort as FHIR Bulk Data NDJSON.

With `--trusts N` it writes one such folder per Trust, `OUT/trust-1` ... `OUT/trust-N`, over
one population of which a fraction `--overlap` is known to more than one Trust (issue 14).
Without it, the output is what it always was: files straight in OUT.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from app.errors import InvalidInput


def _as_of(raw: str) -> datetime:
    """A date (2026-11-20) or an ISO instant; naive values are taken as UTC."""
    try:
        value = (
            datetime.fromisoformat(raw)
            if "T" in raw
            else datetime.combine(date.fromisoformat(raw), datetime.min.time())
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected a date like 2026-11-20") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write a synthetic UK cohort as FHIR R4 NDJSON (one file per resource type)",
        description="Write a deterministic synthetic cohort: the same --patients, --seed and "
        "--as-of always give byte-identical files. All data is invented.",
    )
    parser.add_argument("--patients", type=int, default=1000, help="number of patients")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        dest="as_of",
        help="the cohort's 'now' (default: a fixed date, for reproducibility)",
    )
    parser.add_argument(
        "--trusts",
        type=int,
        default=None,
        metavar="N",
        help="write N Trusts' central records, OUT/trust-1 ... OUT/trust-N, each loadable by "
        "serve-reference --seed; --patients is then the number of people in the region",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        metavar="F",
        help="with --trusts: the fraction of people known to more than one Trust "
        "(same NHS number, other ids; default 0.2)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.synthetic import DEFAULT_AS_OF, generate_cohort, generate_trusts

    if args.patients < 0:
        raise InvalidInput("--patients must not be negative", field="patients")
    if args.trusts is None and args.overlap is not None:
        raise InvalidInput("--overlap needs --trusts", field="overlap")
    as_of = args.as_of or DEFAULT_AS_OF
    started = time.perf_counter()
    if args.trusts is not None:
        overlap = 0.2 if args.overlap is None else args.overlap
        per_trust = generate_trusts(
            args.trusts, overlap, args.patients, args.seed, args.out, as_of=as_of
        )
        elapsed = time.perf_counter() - started
        for folder, counts in per_trust.items():
            print(f"{folder}: {counts['Patient']:,} patients, {sum(counts.values()):,} resources")
        total = sum(sum(c.values()) for c in per_trust.values())
        print(f"total  {total:,}  in {elapsed:.1f} s -> {args.out}")
        return 0
    counts = generate_cohort(args.patients, args.seed, args.out, as_of=as_of)
    elapsed = time.perf_counter() - started
    width = max(len(t) for t in counts)
    for rtype, count in counts.items():
        print(f"{rtype:<{width}}  {count:>9,}")
    print(f"{'total':<{width}}  {sum(counts.values()):>9,}  in {elapsed:.1f} s -> {args.out}")
    return 0
