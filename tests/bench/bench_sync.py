"""Sync benchmark: initial sync of a generated cohort from the reference server on loopback,
the "limit" (the same pages downloaded and parsed by the same client, nothing stored), and an
incremental sync with nothing changed, at 10,000 and at N patients.

    .venv/bin/python tests/bench/bench_sync.py --patients 100000 [--mode both|bulk|paged]
        [--worker process|thread]

`--mode bulk` times the first load through FHIR Bulk Data (`$export`: kick-off, polling, the
NDJSON files streamed into the store's bulk-load path, the index build) against its own limit
(the same export's files downloaded and parsed by the same client, nothing stored); `paged`
the paged first load (the server's `$export` switched off); `both` (default) each into its own
fresh cache. `--worker thread` prepares the bulk load's batches on the download thread
instead of the worker process (the GIL shared with the writer). `initial_s`/`limit_s`/
`ratio_to_limit` are the paged figures (as before), `bulk_initial_s`/`bulk_limit_s`/
`bulk_ratio_to_limit` the bulk ones; null where not run.

The cohort and the seeded server database are cached under bench-data/. The server runs in its
own process, so the figures (and peak RSS) are the tablet's alone. Prints figures, then ONE
JSON line. Targets (DESIGN.md 8): initial < 60 s and >= half the limit's speed; no-op < 1 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TABLET = ("bench-tablet", "bench-tablet-secret-0123456789")
ADMIN = ("bench-admin", "bench-admin-secret-0123456789")


def cohort(patients: int, seed: int) -> Path:
    from app.synthetic import generate_cohort

    out = ROOT / "bench-data" / f"sync-cohort-{patients}-{seed}"
    if not (out / "Patient.ndjson").exists():
        started = time.perf_counter()
        generate_cohort(patients, seed, out)
        print(f"generated {patients} patients in {time.perf_counter() - started:.1f} s")
    return out


def _serve(data_dir: str, seed_dir: str, queue: Any) -> None:
    from sync.reference import ReferenceConfig, ReferenceServer

    server = ReferenceServer(
        ReferenceConfig(
            data_dir=Path(data_dir),
            seed_dir=Path(seed_dir),
            clients=[TABLET],
            admin_clients=[ADMIN],
            token_lifetime_s=3600,
        )
    ).start(timeout_s=7200)
    queue.put(server.base_url)
    while True:
        time.sleep(3600)


def start_server(patients: int, seed: int) -> tuple[mp.Process, str]:
    seed_dir = cohort(patients, seed)
    # "-us": seeded with one microsecond instant per resource (reference schema 2).
    data_dir = ROOT / "bench-data" / f"sync-central-{patients}-{seed}-us"
    queue: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(
        target=_serve, args=(str(data_dir), str(seed_dir), queue), daemon=True
    )
    started = time.perf_counter()
    proc.start()
    base_url = queue.get(timeout=7200)
    print(f"reference server up ({patients} patients) in {time.perf_counter() - started:.1f} s")
    return proc, base_url


def tablet(base_url: str, workdir: Path) -> Any:
    import keyring

    from app.security import KdfParams, ServerSettings, memory_keyring, store_client_secret
    from app.services.session import enrol

    os.environ["KERBSIDE_ALLOW_INSECURE_KEYRING"] = "1"
    keyring.set_keyring(memory_keyring())
    session = enrol(
        workdir / "profile",
        "pc101",
        "246810",
        kdf=KdfParams(time_cost=1, memory_kib=8192, parallelism=1),
    )
    session.profile.set_server(
        ServerSettings(base_url=base_url, client_id=TABLET[0], token_url=None)
    )
    store_client_secret(session.profile.profile_id, TABLET[1])
    return session


def tablet_cpu() -> float:
    """CPU seconds of the tablet: this process (every thread) and the bulk load's worker
    process once it has ended (the server runs apart and is reaped only at the end)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bulk_limit(session: Any) -> tuple[float, int]:
    """Kick off the same export and download + `orjson.loads` every line of its files with
    the same client; store nothing. Includes the server's export time, as the sync does."""
    import orjson

    from app.fhir import CACHED_TYPES
    from app.services.syncing import build_client, sync_options
    from sync import RunContext, SyncReport, parse_capabilities
    from sync._bulk import BulkLoad

    client = build_client(session.profile)
    started = time.perf_counter()
    caps = parse_capabilities(client.get(client.url("metadata"), label="bench").body)
    loader = BulkLoad(
        RunContext(
            client,
            None,  # type: ignore[arg-type]
            caps,
            sync_options(session.profile),
            SyncReport(),
            lambda *_: None,
        )
    )
    status_url = loader._kick_off([t for t in CACHED_TYPES if t in caps.interactions])
    assert status_url is not None
    manifest = loader._poll(status_url)
    count = 0
    for item in manifest.output:
        for line in loader._lines(item.url, manifest.requires_token, "bench"):
            orjson.loads(line)
            count += 1
    elapsed = time.perf_counter() - started
    loader._release(status_url)
    return elapsed, count


def limit(session: Any, page_size: int) -> tuple[float, int]:
    """Download and `orjson.loads` the same pages with the same client; store nothing."""
    from app.fhir import CACHED_TYPES
    from app.services.syncing import build_client

    client = build_client(session.profile)
    started = time.perf_counter()
    count = 0
    for rtype in CACHED_TYPES:
        url: str | None = client.url(rtype)
        params: dict[str, str] | None = {"_count": str(page_size), "_sort": "_lastUpdated"}
        while url:
            body = client.get(url, params=params, label="bench").body
            count += len(body.get("entry", []))
            url = next(
                (
                    client.resolve(link["url"])
                    for link in body.get("link", [])
                    if link["relation"] == "next"
                ),
                None,
            )
            params = None
    return time.perf_counter() - started, count


def first_load(
    base_url: str, page_size: int, *, bulk: bool, worker: str = "process"
) -> dict[str, Any]:
    """One first sync into a fresh cache, then three no-op syncs, then the limit. `worker`:
    where a bulk load prepares its batches (a worker process, or the download thread)."""
    from app.services.syncing import run_sync, sync_options

    with tempfile.TemporaryDirectory(dir=ROOT / "bench-data") as tmp:
        session = tablet(base_url, Path(tmp))
        options = sync_options(
            session.profile, page_size=page_size, bulk=bulk, bulk_process=worker == "process"
        )
        started = time.perf_counter()
        cpu0 = tablet_cpu()
        report = run_sync(session, options=options)
        initial_s = time.perf_counter() - started
        cpu_s = tablet_cpu() - cpu0
        assert report.bulk_export == bulk
        what = "bulk ($export)" if bulk else "paged"
        print(
            f"initial sync, {what}: {report.pulled} resources in {initial_s:.2f} s "
            f"({report.pulled / initial_s:.0f}/s, {report.pages} pages), {cpu_s:.1f} s of CPU"
        )
        noops = []
        for _ in range(3):
            started = time.perf_counter()
            quiet = run_sync(session, options=options)
            noops.append(time.perf_counter() - started)
            assert quiet.pulled == 0 and quiet.deleted == 0
        noop_s = round(sorted(noops)[1], 3)
        print(
            f"no-op sync: median {noop_s:.3f} s of {[round(n, 3) for n in noops]}"
            f" ({quiet.requests} requests, {quiet.received} resources re-sent)"
        )
        if bulk:
            limit_s, seen = bulk_limit(session)
            kind = "export + download + parse"
        else:
            limit_s, seen = limit(session, page_size)
            kind = "download + parse"
        print(
            f"limit ({kind} {seen} resources): {limit_s:.2f} s; sync runs at "
            f"{limit_s / initial_s:.0%} of it"
        )
        session.close()
    return {
        "resources": report.pulled,
        "initial_s": round(initial_s, 2),
        "cpu_s": round(cpu_s, 2),
        "noop_s": noop_s,
        "limit_s": round(limit_s, 2),
        "ratio_to_limit": round(limit_s / initial_s, 3),
        "resources_per_s": round(report.pulled / initial_s),
    }


def measure(
    patients: int,
    seed: int,
    page_size: int,
    *,
    mode: str = "both",
    noop_only: bool = False,
    worker: str = "process",
) -> dict[str, Any]:
    proc, base_url = start_server(patients, seed)
    out: dict[str, Any] = {"patients": patients, "mode": mode, "worker": worker}
    try:
        if noop_only:
            return {**out, **first_load(base_url, page_size, bulk=mode != "paged")}
        bulk = (
            first_load(base_url, page_size, bulk=True, worker=worker)
            if mode in ("both", "bulk")
            else None
        )
        paged = first_load(base_url, page_size, bulk=False) if mode in ("both", "paged") else None
        main = paged or bulk
        assert main is not None
        out.update(
            resources=main["resources"],
            initial_s=paged["initial_s"] if paged else None,
            noop_s=main["noop_s"],
            limit_s=paged["limit_s"] if paged else None,
            ratio_to_limit=paged["ratio_to_limit"] if paged else None,
            resources_per_s=main["resources_per_s"],
            initial_cpu_s=paged["cpu_s"] if paged else None,
            bulk_initial_s=bulk["initial_s"] if bulk else None,
            bulk_initial_cpu_s=bulk["cpu_s"] if bulk else None,
            bulk_limit_s=bulk["limit_s"] if bulk else None,
            bulk_ratio_to_limit=bulk["ratio_to_limit"] if bulk else None,
        )
    finally:
        proc.kill()
        proc.join(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--mode", choices=("both", "bulk", "paged"), default="both")
    parser.add_argument("--skip-10k", action="store_true", help="no 10,000-patient no-op run")
    parser.add_argument(
        "--worker",
        choices=("process", "thread"),
        default="process",
        help="where a bulk load parses and prepares: a worker process (default) or the"
        " download thread (what the GIL costs)",
    )
    args = parser.parse_args()
    result = measure(args.patients, args.seed, args.page_size, mode=args.mode, worker=args.worker)
    if args.skip_10k:
        result["noop_s_10k"] = None
    elif args.patients != 10_000:
        result["noop_s_10k"] = measure(
            10_000, args.seed, args.page_size, mode=args.mode, noop_only=True
        )["noop_s"]
    else:
        result["noop_s_10k"] = result["noop_s"]
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
