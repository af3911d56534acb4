"""`kerbside generate`: write a deterministic synthetic cohort as FHIR Bulk Data NDJSON."""

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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.synthetic import DEFAULT_AS_OF, generate_cohort

    if args.patients < 0:
        raise InvalidInput("--patients must not be negative", field="patients")
    started = time.perf_counter()
    counts = generate_cohort(args.patients, args.seed, args.out, as_of=args.as_of or DEFAULT_AS_OF)
    elapsed = time.perf_counter() - started
    width = max(len(t) for t in counts)
    for rtype, count in counts.items():
        print(f"{rtype:<{width}}  {count:>9,}")
    print(f"{'total':<{width}}  {sum(counts.values()):>9,}  in {elapsed:.1f} s -> {args.out}")
    return 0
