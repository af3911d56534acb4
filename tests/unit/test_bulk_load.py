"""The store's bulk-load path (resources first, every index once at the end) builds exactly the
indexes the incremental path builds, and a load stopped part-way never answers searches from
half an index. Real SQLCipher files."""

from __future__ import annotations

from functools import partial
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
from app.store._bulk import BulkPreparer
from sync._bulk import parse_line
from sync._pipeline import BulkWorker
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


@pytest.mark.parametrize("process", [True, False])
def test_a_batch_of_whole_lines_as_one_block_prepares_as_its_lines(
    cohort_dir: Path, process: bool
) -> None:
    """Sync's bulk load hands the worker blocks of whole lines as they arrived (blank lines,
    the file's last line without its newline) instead of lists of lines: what is prepared,
    and how many lines each batch is said to hold, is the same."""
    lines = [
        line.strip()
        for line in (cohort_dir / "Patient.ndjson").read_bytes().splitlines()
        if line.strip()
    ]
    halves = (lines[: len(lines) // 2], lines[len(lines) // 2 :])
    blocks = [
        b"\n\n".join(halves[0]) + b"\n  \n",  # blank and white lines between and after
        b"\n".join(halves[1]),  # the file's end: no newline after the last line
    ]
    parse = partial(parse_line, rtype="Patient", label="bulk Patient")

    def run(batches: list[Any]) -> tuple[list[Any], Any]:
        with BulkWorker(partial(BulkPreparer, HOME_SOURCE), process=process) as worker:
            answers = list(worker.map("Patient", iter(batches), parse))
            return answers, worker.finish()

    as_lines, built_from_lines = run(list(halves))
    as_blocks, built_from_blocks = run(blocks)
    assert [size for _p, size in as_blocks] == [len(h) for h in halves]
    assert [p.rows for p, _s in as_blocks] == [p.rows for p, _s in as_lines]
    assert [p.patients for p, _s in as_blocks] == [p.patients for p, _s in as_lines]
    assert built_from_blocks == built_from_lines
    assert built_from_blocks.patients == len(lines)


def test_a_restarted_download_skips_exactly_the_lines_it_handed_over() -> None:
    """A server without ranges sends the file again from its start: the lines already handed
    over are skipped, across as many blocks as they span, and not one more."""
    from sync._bulk import _skip_lines

    assert _skip_lines(b"a\nb\nc\n", 2) == (b"c\n", 0)
    assert _skip_lines(b"a\nb\n", 3) == (b"", 1)  # one more to skip in the next block
    assert _skip_lines(b"a\n\nb\n", 2) == (b"b\n", 0)  # a blank line counts as a line
    assert _skip_lines(b"a\nb", 1) == (b"b", 0)
