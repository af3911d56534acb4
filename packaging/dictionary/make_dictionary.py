"""Train the zstd dictionary the cache compresses resource JSON with
(app/resources/fhir-r4-<id>.zdict), from synthetic data only:

    .venv/bin/python packaging/dictionary/make_dictionary.py [--id N]

Why a dictionary: one resource is about a kilobyte of JSON, too little for zstd to find much
to reuse within it (1.7x alone); what repeats is across resources (FHIR's element names, code
systems, NHS identifier systems), and a dictionary of those makes it 6 to 7x.

The cohort is `kerbside generate`'s (Faker en_GB), with a seed of its own, not the
benchmarks' (their figures are not measured on what trained it). Never train on real data: the
dictionary ships in every build, readable by anyone.

A dictionary is never changed once released: every cache it wrote needs it to read its rows.
A better one gets the next id (`--id`), is added beside the old ones, and
`app/store/_codec.py` writes with the newest and reads with any.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import zstandard  # noqa: E402

from app.synthetic import generate_cohort  # noqa: E402

PATIENTS = 5_000
SEED = 20261203
SAMPLES = 40_000
SIZE = 112_640  # zstd's default dictionary size: larger gained under 2% here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--id", type=int, default=1, help="the dictionary's id (1 and up)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate_cohort(PATIENTS, SEED, out)
        lines = [
            line
            for path in sorted(out.glob("*.ndjson"))
            for line in path.read_bytes().splitlines()
            if line.strip()
        ]
    samples = random.Random(SEED).sample(lines, min(SAMPLES, len(lines)))
    trained = zstandard.train_dictionary(SIZE, samples, dict_id=args.id, threads=1)
    data = trained.as_bytes()
    target = ROOT / "app" / "resources" / f"fhir-r4-{args.id}.zdict"
    target.write_bytes(data)
    print(
        f"{target.relative_to(ROOT)}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
