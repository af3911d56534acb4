"""The store's bulk-load path (resources first, every index once at the end) builds exactly the
indexes the incremental path builds, and a load stopped part-way never answers searches from
half an index. Real SQLCipher files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from app.errors import IndexIncomplete, InvalidInput
from app.services import importer
from app.services.importer import import_ndjson, ndjson_files
from app.services.search import PatientSearch
from app.services.session import enrol
from app.store import HOME_SOURCE, Store, row_of
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.support.sync import index_contents


def resources(cohort_dir: Path) -> list[dict[str, Any]]:
    out = []
    for _rtype, path in ndjson_files(cohort_dir):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return out


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_bulk_load_builds_the_same_indexes_as_incremental_writes(
    session: Any, cohort_dir: Path, tmp_path: Path, worker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bulk path: lines prepared (rows, search terms, postings) in a worker process, or
    # on the reading thread for a small import.
    monkeypatch.setattr(importer, "PROCESS_MIN_BYTES", 0 if worker == "process" else 1 << 40)
    import_ndjson(session, cohort_dir)
    other = enrol(tmp_path / "incremental", "pc102", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        everything = resources(cohort_dir)
        for start in range(0, len(everything), 97):  # the incremental path, odd batches
            other.store.put_resources(HOME_SOURCE, everything[start : start + 97])
        bulk, incremental = index_contents(session.store), index_contents(other.store)
        assert bulk["rows"] and bulk["postings"] and bulk["vocab"]
        assert bulk == incremental
        assert bulk["by_patient"] == 1
        assert not session.store.bulk_load_pending()
    finally:
        other.close()


def test_a_load_stopped_part_way_refuses_search_until_a_load_finishes(
    session: Any, cohort_dir: Path
) -> None:
    store: Store = session.store
    everything = resources(cohort_dir)
    patients = [r for r in everything if r["resourceType"] == "Patient"]
    store.begin_bulk_load()
    store.put_rows(HOME_SOURCE, [row_of(r) for r in patients[:10]], into_empty=True)
    # As after a crash: the mark is in the file, not in this process.
    assert store.conn.execute("SELECT value FROM search_state WHERE key = 'bulk-load'").fetchone()
    assert store.bulk_load_pending()
    search = PatientSearch(store)
    with pytest.raises(IndexIncomplete):
        search.search(patients[0]["name"][0]["family"])
    # Incremental writes during the mark leave the derived tables to the build.
    store.put_resources(HOME_SOURCE, patients[10:12])
    assert store.conn.execute("SELECT count(*) FROM patient_index").fetchone()[0] == 0
    import_ndjson(session, cohort_dir)  # resumes: held versions are skipped, one build
    assert not store.bulk_load_pending()
    hits = search.search(patients[0]["name"][0]["family"], limit=50).hits
    assert patients[0]["id"] in [h.id for h in hits]
    count = store.conn.execute("SELECT count(*) FROM patient_index").fetchone()[0]
    assert count == len(patients)


def test_a_bad_line_in_the_worker_process_stops_the_import_with_its_line_number(
    session: Any, cohort_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "PROCESS_MIN_BYTES", 0)
    broken = tmp_path / "broken"
    broken.mkdir()
    for _rtype, path in ndjson_files(cohort_dir):
        (broken / path.name).write_bytes(path.read_bytes())
    lines = (broken / "Patient.ndjson").read_bytes().splitlines()
    lines[29] = b'{"resourceType": "Patient", "id": "bad id!"}'
    (broken / "Patient.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InvalidInput, match=r"Patient\.ndjson line 30: the resource has no valid"):
        import_ndjson(session, broken)
    store: Store = session.store
    # The file's batch with the bad line is not written, and the index is still built over
    # what was (derived again from the resource table, not from the worker's half count).
    assert not store.bulk_load_pending()
    held = store.count_by_type("Patient").get("Patient", 0)
    assert held == store.conn.execute("SELECT count(*) FROM patient_index").fetchone()[0]
