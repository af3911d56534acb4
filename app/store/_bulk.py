"""Bulk-load preparation: everything a bulk load can work out from NDJSON lines without the
database, run in a worker process (see `sync._pipeline.BulkWorker`) while the writer writes.

One preparer per load, and a load is of one source (the central record the lines come from:
every row it prepares carries that source's sid). Per batch of lines of one type: parse and
check each line (the caller's function, which raises the caller's error), its `resource` row
(the line's bytes as received, never re-serialised), and for Patients their `patient_index`
row, for Flags their `flag_alert` row. Patients get
pids in the order they are prepared, which is the order the writer writes them, and their
postings and vocabulary counts are collected here: the index build at the end of the load
writes them (`BuiltIndex`) instead of reading every Patient back, parsing and deriving it
again on the writer's core. The store checks that what it wrote matches what was prepared
before it uses them (`Store.finish_bulk_load`), and rebuilds from the resource table when not.

Nothing here touches the database, and everything crosses a process boundary, so the classes
are plain data (pickled) and the preparer holds only what the load's index needs.
"""

from __future__ import annotations

import gc
from array import array
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.fhir import patient_ref_of
from app.store import _json
from app.store._patient_index import (
    _TYPECODE,
    NAME_FIELDS,
    Field,
    _Deriver,
    _row,
    encode_sorted,
    flag_alert,
)
from app.store._resources import Row, row_of
from app.textkeys import phonetic_keys

# parse(line, number): the resource of one NDJSON line, checked (raises the caller's error),
# or None for a blank line. `number` counts lines from 1 within the file.
LineParser = Callable[[bytes, int], dict[str, Any] | None]


@dataclass(slots=True)
class Prepared:
    """One batch of one source, ready to write: `rows` for `resource`, and for a Patient batch
    their `patient_index` rows (alerts left empty: Flags fill them at the end), for a Flag
    batch their `flag_alert` rows."""

    rtype: str
    source: int
    rows: list[Row]
    patients: list[tuple[Any, ...]] = field(default_factory=list)
    flags: list[tuple[int, str, str, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class BuiltIndex:
    """The search index of every Patient prepared: postings (term, field, packed pids) and
    vocabulary rows (term, n_name, n_address, metaphone, NYSIIS)."""

    patients: int
    postings: list[tuple[str, int, bytes]]
    vocab: list[tuple[str, int, int, str, str]]


class BulkPreparer:
    """Prepares the batches of one bulk load of `source`, in order, and collects its search
    index."""

    def __init__(self, source: int) -> None:
        self.source = source
        self._pid = 0
        self._postings: dict[tuple[str, int], array] = {}
        self._vocab: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    @staticmethod
    def quiet_gc() -> None:
        """For a worker process: parsed JSON holds no reference cycles, and the cyclic
        collector, woken by every few hundred new dicts, costs more than the parse itself."""
        gc.disable()

    def prepare(
        self, rtype: str, lines: list[bytes], parse: LineParser, first: int = 1
    ) -> Prepared:
        out = Prepared(rtype, self.source, [])
        rows = out.rows
        if rtype == "Patient":
            deriver = _Deriver()
            docs = []
            for number, line in enumerate(lines, start=first):
                res = parse(line, number)
                if res is None:
                    continue
                rows.append(row_of(res, line.strip()))
                docs.append(deriver.derive(res))
            # Pids and postings only once the whole batch is good: a batch that fails is
            # never written, so it must leave no trace in the index either.
            pid = self._pid
            postings = self._postings
            vocab = self._vocab
            for doc in docs:
                pid += 1
                for key in doc.terms:
                    held = postings.get(key)
                    if held is None:
                        held = postings[key] = array(_TYPECODE)
                    held.append(pid)
                names = set()
                for term, f in doc.terms:
                    if f in NAME_FIELDS:
                        names.add(term)
                    elif f == Field.ADDRESS:
                        vocab[term][1] += 1
                for term in names:
                    vocab[term][0] += 1
                out.patients.append(_row(pid, self.source, doc, None))
            self._pid = pid
            return out
        flags = rtype == "Flag"
        for number, line in enumerate(lines, start=first):
            res = parse(line, number)
            if res is None:
                continue
            rows.append(row_of(res, line.strip()))
            if flags:
                patient_id = patient_ref_of(res)
                alert = flag_alert(res) if patient_id else None
                if alert is not None and patient_id:
                    out.flags.append((self.source, res["id"], patient_id, _json.dumps(alert)))
        return out

    def finish(self) -> BuiltIndex:
        postings = [
            (term, f, encode_sorted(pids)) for (term, f), pids in sorted(self._postings.items())
        ]
        vocab = [
            (term, n, a, *phonetic_keys(term))
            for term, (n, a) in sorted(self._vocab.items())
            if n or a
        ]
        built = BuiltIndex(self._pid, postings, vocab)
        self._postings = {}
        self._vocab = defaultdict(lambda: [0, 0])
        return built
