"""Resource JSON packed against the shipped dictionary (app/store/_codec.py): lossless, read
back from a real SQLCipher cache beside rows written before packing, refused clearly when a
newer release's dictionary wrote it, and the dictionary itself pinned (a changed dictionary
would make every cache it wrote unreadable)."""

from __future__ import annotations

import hashlib
import threading
from importlib import resources
from pathlib import Path

import orjson
import pytest
import zstandard

from app.errors import SchemaTooNew, StoreUnavailable
from app.store import HOME_SOURCE, Store, _codec
from tests.support.people import patient

# Released dictionaries, by id: never edit a line here (see packaging/dictionary).
RELEASED = {1: "e5b5ca32669563d30f8a0a461a78a703fca66c66581ce280f540ee908ab351ce"}


def test_released_dictionaries_are_shipped_unchanged() -> None:
    for dict_id, digest in RELEASED.items():
        data = (resources.files("app") / "resources" / f"fhir-r4-{dict_id}.zdict").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert zstandard.ZstdCompressionDict(data).dict_id() == dict_id
    assert _codec.WRITE_DICTIONARY in RELEASED


def test_packing_is_lossless_and_several_times_smaller() -> None:
    raw = orjson.dumps(patient("p1", "Okonkwo", nhs="9434765919"))
    packed = _codec.pack(raw)
    assert _codec.unpack(packed) == raw
    assert _codec.loads(packed) == orjson.loads(raw)
    assert len(packed) * 3 < len(raw)
    assert zstandard.get_frame_parameters(packed).dict_id == _codec.WRITE_DICTIONARY


def test_a_cache_reads_packed_rows_beside_rows_written_before_packing(tmp_path: Path) -> None:
    first = patient("p1", "Okonkwo", nhs="9434765919")
    second = patient("p2", "Hughes", nhs="9434765870")
    with Store.create(tmp_path / "cache.db", bytes(range(32))) as store:
        store.put_resources(HOME_SOURCE, [first, second])
        # p1 as an earlier release stored it: its JSON as it is, not packed.
        store.conn.execute("UPDATE resource SET json = ? WHERE id = 'p1'", (orjson.dumps(first),))
        stored = dict(store.conn.execute("SELECT id, json FROM resource"))
        assert bytes(stored["p1"]).startswith(b"{")
        assert not bytes(stored["p2"]).startswith(b"{")
        assert store.get_resource(HOME_SOURCE, "Patient", "p1") == first
        assert store.get_resource(HOME_SOURCE, "Patient", "p2") == second
        # Written again (a newer version), the old row is packed like any other.
        store.put_resources(HOME_SOURCE, [patient("p1", "Okonkwo", nhs="9434765919", version="2")])
        (blob,) = store.conn.execute("SELECT json FROM resource WHERE id = 'p1'").fetchone()
        assert not bytes(blob).startswith(b"{")
        assert store.get_resource(HOME_SOURCE, "Patient", "p1")["meta"]["versionId"] == "2"


def test_a_row_packed_by_a_newer_release_is_refused_with_a_clear_error() -> None:
    newer = zstandard.train_dictionary(
        4096,
        [orjson.dumps({"resourceType": "Patient", "id": f"x{i}"}) for i in range(400)],
        dict_id=999,
    )
    blob = zstandard.ZstdCompressor(dict_data=newer).compress(b'{"resourceType":"Patient"}')
    with pytest.raises(SchemaTooNew, match="newer release"):
        _codec.unpack(blob)


def test_a_damaged_frame_is_a_clear_error_not_garbage() -> None:
    packed = _codec.pack(orjson.dumps(patient("p1", nhs="9434765919")))
    with pytest.raises(StoreUnavailable, match="could not be read"):
        _codec.unpack(packed[:-5])


def test_threads_pack_and_unpack_at_once() -> None:
    """Each thread its own zstd objects: two threads digesting one shared dictionary at once
    crashed the process (found by the bulk load's thread worker)."""
    raw = [orjson.dumps(patient(f"p{i}", nhs="9434765919")) for i in range(200)]
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def work() -> None:
        try:
            start.wait()
            for _ in range(5):
                for r in raw:
                    assert _codec.unpack(_codec.pack(r)) == r
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
