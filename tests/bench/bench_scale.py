"""Scale run: a cohort of N patients (1,000,000 included) end to end through the bulk path.

    nice .venv/bin/python tests/bench/bench_scale.py --patients 1000000

1. Generates the cohort (cached under bench-data/, with its generation time and peak memory
   recorded next to it), seeds the reference server with it (its own process, so the figures
   below are the tablet's alone).
2. Enrols a fresh tablet and runs its first sync: FHIR Bulk Data `$export`, the NDJSON files
   streamed into the store's bulk-load path, every index built once at the end (`load_s`,
   with the index build's share as `index_s`).
3. Cache size on disk (`cache_mb`, database + WAL), a no-change sync (`noop_sync_s`, median of
   three), search p50/p95/p99 over the typed query mix of bench_search.py (typos, nicknames,
   dates of birth, NHS numbers, postcodes...), and unlock (`unlock_s`: open the cache and load
   the search vocabulary) with the RSS after a first search (`rss_mb`), both from a fresh
   process as the app starts.

Prints figures, then ONE JSON line with at least: patients, load_s, cache_mb, p50_ms, p95_ms,
p99_ms, unlock_s, rss_mb, noop_sync_s. Targets at 1,000,000 (issue 13): load < 10 min, p95
<= 15 ms, unlock < 1 s, RSS < 500 MB, no-op sync < 1 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_search, bench_sync  # noqa: E402


def _generate(patients: int, seed: int, out: str) -> None:
    from app.synthetic import generate_cohort

    generate_cohort(patients, seed, Path(out))


def cohort(patients: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The cohort directory bench_sync uses, and how long / how much memory generating took
    (measured once, when it was generated, in a child process and its workers)."""
    out = ROOT / "bench-data" / f"sync-cohort-{patients}-{seed}"
    record = out / "generation.json"
    if (out / "Patient.ndjson").exists():
        return out, json.loads(record.read_text()) if record.exists() else {}
    started = time.perf_counter()
    proc = mp.get_context("spawn").Process(target=_generate, args=(patients, seed, str(out)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit("cohort generation failed")
    # ru_maxrss of children: the largest process (the generator or one of its workers).
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = {
        "generate_s": round(time.perf_counter() - started, 1),
        "generate_peak_rss_mb": round(peak_kib / 1024),
        "workers": os.cpu_count(),
    }
    record.write_text(json.dumps(figures))
    return out, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=440)
    parser.add_argument("--passes", type=int, default=2, help="timed passes after a cold one")
    args = parser.parse_args()

    from app.services.search import PatientSearch
    from app.services.session import derive_key
    from app.services.syncing import run_sync, sync_options

    seed_dir, generation = cohort(args.patients, args.seed)
    size = sum(p.stat().st_size for p in seed_dir.glob("*.ndjson"))
    print(f"cohort: {args.patients} patients, {size / 1e6:.0f} MB NDJSON; generation {generation}")
    proc, base_url = bench_sync.start_server(args.patients, args.seed)
    out: dict[str, Any] = {"patients": args.patients, **generation}
    workdir = ROOT / "bench-data" / f"scale-tablet-{args.patients}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        session = bench_sync.tablet(base_url, workdir)
        options = sync_options(session.profile)
        marks: dict[str, float] = {}

        def progress(phase: str, done: int, total: int | None) -> None:
            marks.setdefault(phase, time.perf_counter())

        started = time.perf_counter()
        cpu0 = bench_sync.tablet_cpu()
        report = run_sync(session, options=options, progress=progress)
        ended = time.perf_counter()
        # CPU seconds of the tablet (every thread, and the load's worker process): on a
        # shared machine the wall time is mostly waiting for a core; this is what the load
        # costs the tablet.
        load_cpu_s = bench_sync.tablet_cpu() - cpu0
        assert report.bulk_export, "the first load did not go through $export"
        load_s = ended - started
        index_s = ended - marks.get("index", ended)
        first_file = min((v for k, v in marks.items() if k.startswith("bulk ")), default=started)
        out.update(
            resources=report.pulled,
            load_s=round(load_s, 1),
            load_cpu_s=round(load_cpu_s, 1),
            export_wait_s=round(first_file - started, 1),
            index_s=round(index_s, 1),
            load_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        )
        print(
            f"bulk first load: {report.pulled} resources in {load_s:.1f} s, {load_cpu_s:.1f} s "
            f"of CPU (export on the server {out['export_wait_s']} s, index build "
            f"{index_s:.1f} s)"
        )
        cache = session.store.path
        out["cache_mb"] = round(
            sum(p.stat().st_size for p in cache.parent.glob(cache.name + "*")) / 1e6, 1
        )
        noops = []
        for _ in range(3):
            t = time.perf_counter()
            quiet = run_sync(session, options=options)
            noops.append(time.perf_counter() - t)
            assert quiet.pulled == 0
        out["noop_sync_s"] = round(sorted(noops)[1], 3)
        print(f"cache {out['cache_mb']} MB; no-op sync {[round(n, 3) for n in noops]} s")
        queries = bench_search.make_queries(session.store, args.queries, args.seed)
        mix = bench_search.run_mix(PatientSearch(session.store), queries, args.passes)
        out.update({k: mix[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")})
        out["top1_or_tied_rate"] = mix["top1_or_tied_rate"]
        print(f"search over {len(queries)} typed queries: {mix}")
        session.close()
        _profile, key = derive_key(workdir / "profile", "pc101", "246810")
        probe = bench_search.unlock_probe(cache, key)
        out["unlock_s"] = round(probe["store_open_s"] + probe["search_init_s"], 3)
        out["rss_mb"] = round(probe["rss_mb"], 1)
        print(f"unlock in a fresh process: {probe}")
    finally:
        proc.kill()
        proc.join(10)
    out["cpus"] = os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
