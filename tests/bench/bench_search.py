"""Search latency at N cached patients (DESIGN.md section 8: p95 <= 10 ms at 100,000).

    .venv/bin/python tests/bench/bench_search.py [--patients 100000] [--queries 440]
    .venv/bin/python tests/bench/bench_search.py --sources 3 [--patients 100000]
    .venv/bin/python tests/bench/bench_search.py --sources 3 --interleaved 6

Builds (or reuses, under `bench-data/`, gitignored) a SQLCipher cache of N synthetic patients
and their Flags, derives a fixed mix of realistic queries from the cohort (typos, nicknames,
known-as and previous names, swapped order, partial words, dates of birth in several formats,
ages, NHS numbers with and without spaces, a bad check digit, postcodes, address words), each
with the patient it should find, and times `PatientSearch.search` on it (one cold pass, then
`--passes` timed ones). The same mix then runs (a) as the app runs it: on a worker thread, each
search on a connection of its own (`Session.on_worker` opens and closes one per search; the
vocabulary is shared, `SearchWords`), so its pages are decrypted afresh every time; (b) on a
plain (unencrypted) SQLite copy of the same tables through the same code; (c) as a plain Python
scan with rapidfuzz WRatio over every official name (first SCAN_QUERIES queries only: slow).
Unlock-time figures (open + vocabulary load, RSS) come from a fresh subprocess. Top-1 counts
only the intended person: at 100k many queries have namesakes that are equally right, hence
top1_or_tied and top5 too.

`--sources N` (issue 14): the cohort is `kerbside generate --trusts N --overlap 0.2
--patients P` (P people in the region, a fifth known to two or three Trusts), each Trust's
folder imported into its own source through the store's bulk path (`import_ndjson(...,
source=)`, trust-1 as home), so search merges people by verified NHS number. Queries are drawn
from every source's Patients; a result is the intended person when the Patient the query was
made from is one of its members (`PatientHit.is_person`). `--sources N --interleaved ROUNDS`
runs only the typed mix on the one-source and the N-source cache of the same size, a timed
pass of each in turn (ABBA): on a shared box the fair comparison of the two. It also runs the
region's own one-source cache (`build_region_cache`: the same people, places and ids as the
N-source cache, each person once, in one source: `region_*` and `p95_ratio_same_people`), so
what the N sources cost is told apart from what the region's data costs, and the N-source
cache read unmerged (`unmerged_p95_ms`, `merge_p95_ratio`): what the merge costs.
The last line is one JSON object: patients, p50_ms, p95_ms, p99_ms, app_p95_ms,
plain_sqlite_p95_ms, python_scan_p95_ms, top1_hit_rate (and with --sources: sources, rows,
top1_or_tied_rate, top5_hit_rate).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from random import Random
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nicknames import NickNamer  # noqa: E402
from rapidfuzz import fuzz, process  # noqa: E402

from app.fhir import NHS_NUMBER_SYSTEM  # noqa: E402
from app.nhs_number import check_digit, format_nhs_number  # noqa: E402
from app.services.search import PatientSearch, SearchWords  # noqa: E402
from app.store import HOME_SOURCE, PatientIndexer, PatientIndexReader, Store  # noqa: E402
from app.textkeys import fold  # noqa: E402

TODAY = date(2026, 11, 20)  # the generator's default as_of: ages stay stable across runs
BATCH = 5000
SCAN_QUERIES = 220  # ten of each kind
_TABLES = ("patient_index", "search_posting", "search_vocab", "search_state")
OVERLAP = 0.2  # --sources: the fraction of the region's people known to more than one Trust
Expected = tuple[int, str]  # (sid, Patient id) a query was made from


# -- building the cache -----------------------------------------------------------------------


def _new_cache(directory: Path) -> tuple[Store, bytes]:
    """A fresh cache (any earlier one removed) under `directory`, and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    for stale in directory.glob("cache.db*"):
        stale.unlink()
    return Store.create(directory / "cache.db", key), key


def _keep_cache(directory: Path, store: Store, key: bytes, info: dict[str, Any]) -> dict[str, Any]:
    """Close the cache, keep its key and what building it took (`build.json`) for reuse."""
    store.close()
    (directory / "key.bin").write_bytes(key)
    info["cache_mb"] = round((directory / "cache.db").stat().st_size / 1e6, 1)
    (directory / "build.json").write_text(json.dumps(info))
    return info


def build_cache(directory: Path, patients: int, seed: int) -> dict[str, Any]:
    from app.synthetic import iter_cohort

    store, key = _new_cache(directory)
    put_s = 0.0
    counts = {"Patient": 0, "Flag": 0}
    batch: list[dict[str, Any]] = []
    gen_start = time.perf_counter()

    def flush() -> None:
        nonlocal put_s, batch
        t = time.perf_counter()
        store.put_resources(HOME_SOURCE, batch)
        put_s += time.perf_counter() - t
        batch = []

    flags: list[dict[str, Any]] = []
    for res in iter_cohort(patients, seed):  # Patients first, then Flags: the sync's order
        rtype = res["resourceType"]
        if rtype == "Patient":
            counts[rtype] += 1
            batch.append(res)
            if len(batch) >= BATCH:
                flush()
        elif rtype == "Flag":
            counts[rtype] += 1
            flags.append(res)
    if batch:
        flush()
    for start in range(0, len(flags), BATCH):
        batch = flags[start : start + BATCH]
        flush()
    total_s = time.perf_counter() - gen_start
    t = time.perf_counter()
    with store.transaction() as conn:
        PatientIndexer().rebuild(conn)
    rebuild_s = time.perf_counter() - t
    info = {
        "patients": counts["Patient"],
        "flags": counts["Flag"],
        "put_resources_s": round(put_s, 2),
        "generate_and_put_s": round(total_s, 2),
        "rebuild_index_s": round(rebuild_s, 2),
    }
    return _keep_cache(directory, store, key, info)


class _Importing:
    """What `import_ndjson` asks of a session, for a bench that has only the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def mark_refreshed(self, *, synced: bool) -> None:
        pass

    def write_status(self) -> None:
        pass


def build_sources_cache(directory: Path, patients: int, seed: int, sources: int) -> dict[str, Any]:
    """A cache of `sources` Trusts' records of a region of `patients` people, each Trust's
    folder (`generate_trusts`) bulk-loaded into its own source, trust-1 as home."""
    from app.services.importer import import_ndjson
    from app.synthetic import generate_trusts

    region = directory / "region"
    t = time.perf_counter()
    if not (region / f"trust-{sources}" / "Patient.ndjson").exists():
        generate_trusts(sources, OVERLAP, patients, seed, region)
    generate_s = time.perf_counter() - t
    store, key = _new_cache(directory)
    loads = []
    for k in range(1, sources + 1):
        sid = HOME_SOURCE if k == 1 else store.ensure_source(f"trust-{k}", "read-only")
        t = time.perf_counter()
        import_ndjson(_Importing(store), region / f"trust-{k}", source=sid)  # type: ignore[arg-type]
        loads.append(round(time.perf_counter() - t, 2))
    rows = store.patient_index().patient_count()
    merged = store.conn.execute(
        "SELECT count(*) FROM (SELECT person_key FROM patient_index"
        " WHERE person_key LIKE 'nhs:%' GROUP BY person_key HAVING count(*) > 1)"
    ).fetchone()[0]
    info = {
        "patients": patients,
        "sources": sources,
        "rows": rows,
        "people_in_several_sources": merged,
        "generate_s": round(generate_s, 2),
        "import_s": loads,
    }
    return _keep_cache(directory, store, key, info)


def build_region_cache(directory: Path, patients: int, seed: int, sources: int) -> dict[str, Any]:
    """The one-source baseline of the same region: `generate_trusts(sources, 0, ...)` (every
    person known to their home Trust alone, with the address and ids that Trust gives them,
    no id reused across Trusts) with the Trusts' folders joined into one and bulk-loaded as
    the home source. The same people, places and address spread as the N-source cache, once
    each: what spreading them over N sources (and merging them again) costs, alone."""
    from app.services.importer import import_ndjson
    from app.synthetic import generate_trusts, trust_folder

    region, joined = directory / "region", directory / "joined"
    t = time.perf_counter()
    if not (joined / "Patient.ndjson").exists():
        generate_trusts(sources, 0.0, patients, seed, region, collide=False)
        joined.mkdir(exist_ok=True)
        for name in sorted({f.name for f in region.glob("trust-*/*.ndjson")}):
            with open(joined / name, "wb") as out:
                for k in range(1, sources + 1):
                    part = region / trust_folder(k) / name
                    if part.exists():
                        out.write(part.read_bytes())
    generate_s = time.perf_counter() - t
    store, key = _new_cache(directory)
    t = time.perf_counter()
    import_ndjson(_Importing(store), joined)  # type: ignore[arg-type]
    info = {
        "patients": patients,
        "sources": 1,
        "region_of_sources": sources,
        "rows": store.patient_index().patient_count(),
        "generate_s": round(generate_s, 2),
        "import_s": round(time.perf_counter() - t, 2),
    }
    return _keep_cache(directory, store, key, info)


def plain_copy(store: Store, path: Path) -> sqlite3.Connection:
    """The index tables in an unencrypted SQLite file, same schema, for comparison only."""
    if path.exists():
        path.unlink()
    plain = sqlite3.connect(str(path), isolation_level=None)
    plain.execute("BEGIN")
    PatientIndexer().create_schema(plain)
    plain.execute("DELETE FROM search_state")
    # search names a result's sources from the source table
    (ddl,) = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'source'").fetchone()
    plain.execute(ddl)
    for table in (*_TABLES, "source"):
        cols = [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]
        marks = ",".join("?" * len(cols))
        rows = store.conn.execute(f"SELECT {','.join(cols)} FROM {table}")
        while chunk := rows.fetchmany(10_000):
            plain.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})", chunk)
    plain.execute("COMMIT")
    plain.execute("PRAGMA journal_mode = WAL")
    return plain


# -- the query mix ----------------------------------------------------------------------------


def _typo(word: str, rng: Random) -> str:
    """One slip: swap two neighbours, drop or double a letter (never the first letter)."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _sound_alike(word: str) -> str:
    for a, b in (
        ("ph", "f"),
        ("th", "t"),
        ("ck", "k"),
        ("y", "i"),
        ("ll", "l"),
        ("tt", "t"),
        ("ss", "s"),
        ("ie", "y"),
        ("c", "k"),
        ("z", "s"),
    ):
        if a in word[1:]:
            return word[0] + word[1:].replace(a, b, 1)
    return word


def _names(patient: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in patient.get("name", ()):
        use = name.get("use")
        given = (name.get("given") or [""])[0]
        family = name.get("family") or ""
        if use == "official" and "given" not in out:
            out["given"], out["family"] = given, family
        elif use in ("usual", "nickname") and given and "known_as" not in out:
            out["known_as"] = given
        elif use in ("old", "maiden") and family and "previous" not in out:
            out["previous"] = family
    return out


_NOT_STREET_WORDS = frozenset({"flat", "apartment", "lady", "girl", "male", "female", "woman"})

KINDS = (
    "exact",
    "typo_family",
    "typo_both",
    "nickname",
    "known_as",
    "swapped",
    "partial",
    "dob_slash",
    "dob_short",
    "dob_iso",
    "nhs_spaced",
    "nhs_plain",
    "nhs_bad_check",
    "postcode_full",
    "postcode_nospace",
    "outward",
    "age",
    "about_age",
    "year",
    "previous",
    "sound_alike",
    "street",
)


def make_queries(store: Store, count: int, seed: int) -> list[tuple[str, str, Expected]]:
    """(kind, query, expected (sid, patient id)), deterministic for the cache's contents and
    seed; drawn from every source's Patients (one source: the same mix as before)."""
    rng = Random(seed)
    ids = sorted(
        (source.sid, rid)
        for source in store.sources()
        for rid in store.resource_ids(source.sid, "Patient")
    )
    namer = NickNamer()
    out: list[tuple[str, str, str]] = []
    attempts = 0
    while len(out) < count and attempts < count * 20:
        attempts += 1
        kind = KINDS[len(out) % len(KINDS)]
        sid, rid = rng.choice(ids)
        patient = store.get_resource(sid, "Patient", rid)
        assert patient is not None
        n = _names(patient)
        given, family = n.get("given", ""), n.get("family", "")
        if not given or not family:
            continue
        bd = patient.get("birthDate")
        nhs = next(
            (
                i["value"]
                for i in patient.get("identifier", ())
                if i.get("system") == NHS_NUMBER_SYSTEM
            ),
            None,
        )
        address = (patient.get("address") or [{}])[0]
        postcode = address.get("postalCode")
        q = None
        if kind == "exact":
            q = f"{given} {family}"
        elif kind == "typo_family":
            q = f"{given} {_typo(family, rng)}"
        elif kind == "typo_both":
            q = f"{_typo(given, rng)} {_typo(family, rng)}"
        elif kind == "nickname":
            nicks = sorted(namer.nicknames_of(fold(given)))
            if nicks:
                q = f"{rng.choice(nicks)} {family}"
        elif kind == "known_as" and "known_as" in n:
            q = f"{n['known_as']} {family}"
        elif kind == "swapped":
            q = f"{family} {given}"
        elif kind == "partial" and len(given) >= 4 and len(family) >= 4:
            q = f"{given[:4]} {family[:3]}".lower()
        elif kind == "dob_slash" and bd:
            y, m, d = bd.split("-")
            q = f"{family} {int(d)}/{int(m)}/{y}"
        elif kind == "dob_short" and bd:
            y, m, d = bd.split("-")
            q = f"{given} {family} {d}-{m}-{y[2:]}"
        elif kind == "dob_iso" and bd:
            q = f"{given[0]} {family} {bd}"
        elif kind == "nhs_spaced" and nhs:
            q = format_nhs_number(nhs)
        elif kind == "nhs_plain" and nhs:
            q = nhs
        elif kind == "nhs_bad_check" and nhs:
            bad = next(str(c) for c in range(10) if str(c) != nhs[9])
            if check_digit(nhs[:9]) is not None:
                q = f"{given} {nhs[:9]}{bad}"
        elif kind == "postcode_full" and postcode:
            q = f"{family} {postcode}"
        elif kind == "postcode_nospace" and postcode:
            q = f"{given} {family} {postcode.replace(' ', '').lower()}"
        elif kind == "outward" and postcode:
            q = f"{given} {family} {postcode.split()[0]}"
        elif kind == "age" and bd:
            born = date.fromisoformat(bd)
            age = TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))
            q = f"{n.get('known_as', given)} {family} {age}"
        elif kind == "about_age" and bd:
            born = date.fromisoformat(bd)
            age = TODAY.year - born.year + rng.choice((-2, 1, 3))
            q = f"{family} {given[:3]} about {age}"
        elif kind == "year" and bd:
            q = f"{given} {family} {bd[:4]}"
        elif kind == "previous" and "previous" in n:
            q = f"{given} {n['previous']}"
        elif kind == "sound_alike":
            alike = _sound_alike(family)
            if alike != family:
                q = f"{given} {alike}"
        elif kind == "street" and address.get("line"):
            # a word of the street line an officer would say ("Hawthorn"), not "Flat"
            line = address["line"][-1]
            words = [
                w
                for w in line.split()
                if w.isalpha() and len(w) > 3 and fold(w) not in _NOT_STREET_WORDS
            ]
            if words:
                q = f"{family} {words[0]}"
        if q:
            out.append((kind, q, (sid, patient["id"])))
    return out


# -- running ----------------------------------------------------------------------------------


def _percentiles(values_ms: list[float]) -> tuple[float, float, float]:
    qs = statistics.quantiles(values_ms, n=100, method="inclusive")
    return qs[49], qs[94], qs[98]


def run_mix(
    search: PatientSearch, queries: list[tuple[str, str, Expected]], passes: int
) -> dict[str, Any]:
    cold: list[float] = []
    warm: list[float] = []
    top1 = tied = top5 = 0
    by_kind: dict[str, list[int]] = {}
    gc.collect()
    for p in range(passes + 1):
        for kind, q, expected in queries:
            t = time.perf_counter_ns()
            result = search.search(q, limit=20, today=TODAY)
            dt = (time.perf_counter_ns() - t) / 1e6
            (cold if p == 0 else warm).append(dt)
            if p == 0:
                rank = next((i for i, h in enumerate(result.hits) if h.is_person(*expected)), None)
                hit1 = rank == 0
                tie = rank is not None and result.hits[rank].score == result.hits[0].score
                top1 += hit1
                tied += tie
                top5 += rank is not None and rank < 5
                by_kind.setdefault(kind, [0, 0])
                by_kind[kind][0] += hit1 or tie
                by_kind[kind][1] += 1
    p50, p95, p99 = _percentiles(warm)
    n = len(queries)
    return {
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(warm), 3),
        "cold_p95_ms": round(_percentiles(cold)[1], 3),
        "top1_hit_rate": round(top1 / n, 4),
        "top1_or_tied_rate": round(tied / n, 4),
        "top5_hit_rate": round(top5 / n, 4),
        "by_kind": {k: f"{a}/{b}" for k, (a, b) in sorted(by_kind.items())},
    }


class _Unmerged(PatientIndexReader):
    """The N-source cache read as if it held one source: search ranks every source's rows
    but merges none (what the merge itself costs, on the same data)."""

    def source_names(self) -> dict[int, str]:
        return {HOME_SOURCE: "home"}


def run_interleaved(
    caches: list[tuple[str, Path, bytes]], count: int, seed: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """The same typed mix on several caches (one source, N sources, and the N-source cache
    unmerged), one timed pass of each in turn, the order reversed every round (ABBA), so a
    shared box's load falls on all of them alike; hit rates from each arm's first (cold)
    pass. An arm named `..._unmerged` searches through `_Unmerged`."""
    stores = [Store.open(path, key) for _name, path, key in caches]
    try:
        mixes = [make_queries(store, count, seed) for store in stores]
        searches = [
            PatientSearch(_Unmerged(store.conn))
            if name.endswith("_unmerged")
            else PatientSearch(store)
            for (name, _path, _key), store in zip(caches, stores, strict=True)
        ]
        first = [run_mix(search, mix, 1) for search, mix in zip(searches, mixes, strict=True)]
        timings: list[list[float]] = [[] for _ in caches]
        gc.collect()
        for r in range(rounds):
            order = range(len(caches)) if r % 2 == 0 else reversed(range(len(caches)))
            for i in order:
                for _kind, q, _expected in mixes[i]:
                    t = time.perf_counter_ns()
                    searches[i].search(q, limit=20, today=TODAY)
                    timings[i].append((time.perf_counter_ns() - t) / 1e6)
    finally:
        for store in stores:
            store.close()
    out = {}
    for (name, _path, _key), times, rates in zip(caches, timings, first, strict=True):
        p50, p95, p99 = _percentiles(times)
        out[name] = {
            "p50_ms": round(p50, 3),
            "p95_ms": round(p95, 3),
            "p99_ms": round(p99, 3),
            "top1_hit_rate": rates["top1_hit_rate"],
            "top1_or_tied_rate": rates["top1_or_tied_rate"],
            "top5_hit_rate": rates["top5_hit_rate"],
            "by_kind": rates["by_kind"],
        }
    return out


def run_as_the_app(
    path: Path, key: bytes, queries: list[tuple[str, str, Expected]], passes: int
) -> dict[str, float]:
    """Each search as `use_cases.search_op` runs it: on a worker thread, on a Store opened for
    it and closed after it (cold page cache every time), the vocabulary shared."""
    words = SearchWords()
    timings: list[float] = []
    opening: list[float] = []

    def work() -> None:
        with Store.open(path, key) as store:
            words.current(store.patient_index())  # loaded at unlock (load_search_words_op)
        for _ in range(passes):
            for _kind, q, _expected in queries:
                t = time.perf_counter_ns()
                store = Store.open(path, key)
                opened = time.perf_counter_ns()
                try:
                    PatientSearch(store, words=words).search(q, limit=20, today=TODAY)
                finally:
                    store.close()
                timings.append((time.perf_counter_ns() - t) / 1e6)
                opening.append((opened - t) / 1e6)

    gc.collect()
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    p50, p95, p99 = _percentiles(timings)
    return {
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(timings), 3),
        "open_p50_ms": round(_percentiles(opening)[0], 3),
    }


def run_python_scan(store: Store, queries: list[tuple[str, str, Expected]]) -> dict[str, Any]:
    """The naive alternative: every official name in a list, rapidfuzz WRatio over all of it.
    Slow (hundreds of ms a query at 100k), so it runs on the first SCAN_QUERIES of the mix."""
    queries = queries[:SCAN_QUERIES]
    rows = store.conn.execute("SELECT source, id, names FROM patient_index").fetchall()
    ids = [(r[0], r[1]) for r in rows]
    names = [(r[2] or "").split("|")[0] for r in rows]
    times = []
    top1 = 0
    for _kind, q, expected in queries:
        t = time.perf_counter_ns()
        found = process.extract(fold(q), names, scorer=fuzz.WRatio, limit=20)
        times.append((time.perf_counter_ns() - t) / 1e6)
        top1 += bool(found) and ids[found[0][2]] == expected
    p50, p95, _ = _percentiles(times)
    return {
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "top1_hit_rate": round(top1 / len(queries), 4),
    }


_UNLOCK_PROBE = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[3])
from pathlib import Path
import psutil
from app.store import Store
from app.services.search import PatientSearch
t1 = time.perf_counter()
store = Store.open(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
t2 = time.perf_counter()
search = PatientSearch(store)
t3 = time.perf_counter()
search.search("smith", limit=20)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "store_open_s": t2 - t1, "search_init_s": t3 - t2,
                  "first_search_ms": (t4 - t3) * 1000, "vocabulary": search.vocabulary_size,
                  "rss_mb": psutil.Process().memory_info().rss / 1e6}))
"""


def unlock_probe(path: Path, key: bytes) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _UNLOCK_PROBE, str(path), key.hex(), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}


def _cache(
    args: argparse.Namespace, sources: int, *, region_of: int = 0
) -> tuple[Path, dict[str, Any]]:
    """The bench cache of this size, seed and number of sources: built once, then reused.
    `region_of=N`: the one-source cache of the N-Trust region's people (`build_region_cache`)."""
    base = f"search-{args.patients}-{args.seed}"
    if region_of:
        directory = args.cache_dir / f"{base}-region{region_of}"
    elif sources > 1:
        directory = args.cache_dir / f"{base}-sources{sources}"
    else:
        directory = args.cache_dir / base
    if args.rebuild or not (directory / "build.json").exists():
        print(f"building a cache of {args.patients} patients in {directory} ...", flush=True)
        if region_of:
            return directory, build_region_cache(directory, args.patients, args.seed, region_of)
        if sources > 1:
            return directory, build_sources_cache(directory, args.patients, args.seed, sources)
        return directory, build_cache(directory, args.patients, args.seed)
    return directory, json.loads((directory / "build.json").read_text())


def _key(directory: Path) -> bytes:
    return (directory / "key.bin").read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--queries", type=int, default=440)
    parser.add_argument("--passes", type=int, default=3, help="timed passes after a cold one")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench-data")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached cohort")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument(
        "--sources",
        type=int,
        default=1,
        help="N > 1: N Trusts' records of the region (generate --trusts N --overlap 0.2)",
    )
    parser.add_argument(
        "--interleaved",
        type=int,
        metavar="ROUNDS",
        default=0,
        help="with --sources N: only compare search on the one-source and the N-source cache, "
        "ROUNDS timed passes each, alternating (ABBA)",
    )
    args = parser.parse_args()

    if args.interleaved:
        if args.sources < 2:
            parser.error("--interleaved compares one source with --sources N (N >= 2)")
        caches = []
        for name, sources, region_of in (
            ("sources_1", 1, 0),
            ("sources_1_region", 1, args.sources),
            (f"sources_{args.sources}", args.sources, 0),
        ):
            directory, build = _cache(args, sources, region_of=region_of)
            print("build:", json.dumps(build), flush=True)
            caches.append((name, directory / "cache.db", _key(directory)))
        caches.append((f"{caches[-1][0]}_unmerged", caches[-1][1], caches[-1][2]))
        found = run_interleaved(caches, args.queries, args.seed, args.interleaved)
        for name, figures in found.items():
            print(f"{name}:", json.dumps(figures), flush=True)
        one, many = found["sources_1"], found[f"sources_{args.sources}"]
        last: dict[str, Any] = {"patients": args.patients, "sources": args.sources}
        for field in ("p50_ms", "p95_ms", "p99_ms", "top1_hit_rate", "top1_or_tied_rate",
                      "top5_hit_rate"):  # fmt: skip
            last[f"one_{field}"] = one[field]
            last[field] = many[field]
        last["p95_ratio"] = round(many["p95_ms"] / one["p95_ms"], 3)
        region = found["sources_1_region"]
        for field in ("p50_ms", "p95_ms", "top1_hit_rate", "top5_hit_rate"):
            last[f"region_{field}"] = region[field]
        last["p95_ratio_same_people"] = round(many["p95_ms"] / region["p95_ms"], 3)
        unmerged = found[f"sources_{args.sources}_unmerged"]
        last["unmerged_p95_ms"] = unmerged["p95_ms"]
        last["merge_p95_ratio"] = round(many["p95_ms"] / unmerged["p95_ms"], 3)
        print(json.dumps(last))
        return 0

    directory, build = _cache(args, args.sources)
    print("build:", json.dumps(build), flush=True)
    key = (directory / "key.bin").read_bytes()
    unlock = unlock_probe(directory / "cache.db", key)
    print("unlock:", json.dumps(unlock), flush=True)

    store = Store.open(directory / "cache.db", key)
    queries = make_queries(store, args.queries, args.seed)
    search = PatientSearch(store)
    cipher = run_mix(search, queries, args.passes)
    print("sqlcipher:", json.dumps(cipher), flush=True)
    if args.show_misses:
        for kind, q, expected in queries:
            hits = search.search(q, limit=5, today=TODAY).hits
            if not hits or not hits[0].is_person(*expected):
                rank = next((i for i, h in enumerate(hits) if h.is_person(*expected)), None)
                top = hits[0].display_name if hits else None
                print(f"  miss {kind:16} {q!r} rank={rank} top={top}")

    app = run_as_the_app(directory / "cache.db", key, queries, args.passes)
    print("as the app runs it (worker, own connection):", json.dumps(app), flush=True)

    plain_conn = plain_copy(store, directory / "plain.db")
    plain = run_mix(PatientSearch(PatientIndexReader(plain_conn)), queries, args.passes)
    plain_conn.close()
    print("plain sqlite:", json.dumps(plain), flush=True)
    scan = run_python_scan(store, queries)
    print("python scan:", json.dumps(scan), flush=True)
    store.close()

    print(
        f"ratios: plain SQLite p95 / SQLCipher p95 = {plain['p95_ms'] / cipher['p95_ms']:.2f}, "
        f"Python scan p95 / SQLCipher p95 = {scan['p95_ms'] / cipher['p95_ms']:.1f}"
    )
    summary = {
        "patients": build["patients"],
        "queries": len(queries),
        "p50_ms": cipher["p50_ms"],
        "p95_ms": cipher["p95_ms"],
        "p99_ms": cipher["p99_ms"],
        "cold_p95_ms": cipher["cold_p95_ms"],
        "app_p50_ms": app["p50_ms"],
        "app_p95_ms": app["p95_ms"],
        "app_p99_ms": app["p99_ms"],
        "plain_sqlite_p95_ms": plain["p95_ms"],
        "python_scan_p95_ms": scan["p95_ms"],
        "sqlcipher_vs_plain_p95": round(cipher["p95_ms"] / plain["p95_ms"], 2),
        "python_scan_vs_sqlcipher_p95": round(scan["p95_ms"] / cipher["p95_ms"], 1),
        "top1_hit_rate": cipher["top1_hit_rate"],
        "top1_or_tied_rate": cipher["top1_or_tied_rate"],
        "top5_hit_rate": cipher["top5_hit_rate"],
        "python_scan_top1": scan["top1_hit_rate"],
        "sources": args.sources,
        "rows": build.get("rows", build["patients"]),
        "put_resources_s": build.get("put_resources_s"),
        "rebuild_index_s": build.get("rebuild_index_s"),
        "import_s": build.get("import_s"),
        "cache_mb": build["cache_mb"],
        "store_open_s": unlock["store_open_s"],
        "search_init_s": unlock["search_init_s"],
        "vocabulary": unlock["vocabulary"],
        "rss_mb": round(unlock["rss_mb"], 1),
    }
    print("summary:", json.dumps(summary))
    last = {
        "patients": build["patients"],
        "p50_ms": cipher["p50_ms"],
        "p95_ms": cipher["p95_ms"],
        "p99_ms": cipher["p99_ms"],
        "app_p95_ms": app["p95_ms"],
        "plain_sqlite_p95_ms": plain["p95_ms"],
        "python_scan_p95_ms": scan["p95_ms"],
        "top1_hit_rate": cipher["top1_hit_rate"],
    }
    if args.sources > 1:
        last.update(
            sources=args.sources,
            rows=build["rows"],
            top1_or_tied_rate=cipher["top1_or_tied_rate"],
            top5_hit_rate=cipher["top5_hit_rate"],
        )
    print(json.dumps(last))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
