"""Search index tables derived from Patient and Flag resources, and the reads search needs.

Layout (all rebuilt from the `resource` table by `PatientIndexer.rebuild`):

- `patient_index`: one row per patient of each source (`source`, `id`) with what a result line
  shows (name, known-as, birth date, gender, NHS number, postcode, address, active alerts as
  JSON), `person_key` (who the row is, across sources: see `person_key`) and `terms`, the
  postings the row contributes, so an update or delete knows which postings to take it out of.
- `search_posting(term, field, pids)`: an inverted index with one row per (term, field) whose
  `pids` blob is a sorted packed uint32 array of `patient_index.pid`. One row per term instead
  of one per (term, patient) because a query then reads a handful of rows and decodes them in
  C (`array.frombytes`), instead of materialising thousands of Python tuples: that is what
  keeps p95 under 10 ms at 100k patients inside SQLCipher. Writes merge per batch.
- `search_vocab`: the distinct name and address words with patient counts and phonetic keys;
  search loads it on open for prefix, nickname, phonetic and typo expansion.
- `flag_alert`: each active Flag's (source, patient) and badge (code, label, kind, end), so
  alerts are recomputed set-wise from small rows rather than re-parsing Flag JSON, and a Flag
  that moves to another patient or is deleted also refreshes the patient it used to point at.
- `search_state`: generation numbers a reader compares with its in-memory copies:
  `vocab_generation` moves whenever the vocabulary changes, `people_generation` whenever a
  patient_index row is written or removed (which rows share a person may have changed; absent
  in a cache no write has touched since, read as 0).

Terms are ASCII-folded lowercase words (accents and apostrophes dropped, hyphen parts and the
joined form both kept), and for the non-name fields postcodes (full, sector, outward, no
spaces), birth year, birth date, gender and NHS number. `Field` tells them apart. The text keys
themselves (folding, name and postcode terms, phonetic keys) are in `app/textkeys.py`.
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from app.fhir import (
    ALERT_CODES,
    ALERT_KINDS,
    SNOMED,
    nhs_number_of,
    obj,
    objs,
    patient_ref_of,
    staff_safety_note,
    strs,
    verified_nhs_number,
)
from app.nhs_number import normalise as normalise_nhs_number
from app.store import _codec, _json
from app.store._connection import Connection, run_script
from app.textkeys import ADDRESS_STOPWORDS, name_terms, phonetic_keys, postcode_terms, words

# The current layout (schema version 5, `_migrations._v5`); a cache gets it through MIGRATIONS,
# `create_schema` is for copies of the index (the search benchmark's plain SQLite).
SCHEMA = """
CREATE TABLE patient_index (
    pid INTEGER PRIMARY KEY,
    source INTEGER NOT NULL,
    id TEXT NOT NULL,
    person_key TEXT NOT NULL,
    display_name TEXT,
    known_as TEXT,
    birth_date TEXT,
    gender TEXT,
    nhs_number TEXT,
    postcode TEXT,
    postcode_key TEXT,
    address TEXT,
    alerts BLOB,
    names TEXT NOT NULL,
    terms BLOB NOT NULL
);
CREATE UNIQUE INDEX patient_index_key ON patient_index (source, id);
CREATE INDEX patient_index_person ON patient_index (person_key);
CREATE INDEX patient_index_nhs_number ON patient_index (nhs_number)
    WHERE nhs_number IS NOT NULL;
CREATE INDEX patient_index_birth_date ON patient_index (birth_date) WHERE birth_date IS NOT NULL;
CREATE INDEX patient_index_postcode ON patient_index (postcode_key)
    WHERE postcode_key IS NOT NULL;
CREATE TABLE search_posting (
    term TEXT NOT NULL,
    field INTEGER NOT NULL,
    pids BLOB NOT NULL,
    PRIMARY KEY (term, field)
) WITHOUT ROWID;
CREATE TABLE search_vocab (
    term TEXT PRIMARY KEY,
    n_name INTEGER NOT NULL,
    n_address INTEGER NOT NULL,
    metaphone TEXT NOT NULL,
    nysiis TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE flag_alert (
    source INTEGER NOT NULL,
    flag_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    alert BLOB NOT NULL,
    PRIMARY KEY (source, flag_id)
) WITHOUT ROWID;
CREATE INDEX flag_alert_by_patient ON flag_alert (source, patient_id);
CREATE TABLE search_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO search_state (key, value) VALUES ('vocab_generation', 0)
"""

_CHUNK = 500  # bound parameters per IN (...) list; SQLite allows far more, this keeps plans cheap


class Field(IntEnum):
    """What a posting's term was taken from. Name fields come first (search weights them)."""

    GIVEN = 0  # official given names
    FAMILY = 1  # official family name
    KNOWN_AS = 2  # usual / nickname names
    PREVIOUS = 3  # old / maiden names
    ADDRESS = 4  # words of address lines and town
    POSTCODE = 5  # postcode sector (`b152`) and outward code (`b15`)
    BIRTH_YEAR = 6
    BIRTH_DATE = 7
    GENDER = 8
    NHS_NUMBER = 9
    INITIAL = 10  # first letter of the first given name (official and known-as)
    POSTCODE_FULL = 11  # `b152tt`


# Near-unique keys are looked up through an index on a patient_index column rather than
# kept as one-patient postings (a third of the posting rows, and of the indexing time).
COLUMN_FIELDS = {
    Field.BIRTH_DATE: "birth_date",
    Field.NHS_NUMBER: "nhs_number",
    Field.POSTCODE_FULL: "postcode_key",
}


NAME_FIELDS = frozenset({Field.GIVEN, Field.FAMILY, Field.KNOWN_AS, Field.PREVIOUS})
WORD_FIELDS = NAME_FIELDS | {Field.ADDRESS}

# -- packed posting lists ---------------------------------------------------------------------

_TYPECODE = next(t for t in ("I", "L") if array(t).itemsize == 4)
_SWAP = sys.byteorder == "big"  # stored little-endian whatever the device


def decode_pids(blob: bytes) -> array:
    """The sorted pids of a posting blob as an `array` (C-level decode, no per-item Python)."""
    arr = array(_TYPECODE)
    arr.frombytes(blob)
    if _SWAP:
        arr.byteswap()
    return arr


def encode_pids(pids: Iterable[int]) -> bytes:
    arr = array(_TYPECODE, sorted(pids))
    if _SWAP:
        arr.byteswap()
    return arr.tobytes()


def encode_sorted(pids: array) -> bytes:
    """`encode_pids` of an array already in order (a bulk load hands pids out rising)."""
    if _SWAP:
        pids = array(_TYPECODE, pids)
        pids.byteswap()
    return pids.tobytes()


# -- what one patient contributes -------------------------------------------------------------


def person_key(source: int, rid: str, verified_nhs: str | None) -> str:
    """Who a Patient row is, across sources: `nhs:<number>` for a valid NHS number whose
    verification status is 01 (`app.fhir.verified_nhs_number`), which every source's row of
    that person shares, else `src:<sid>:<id>`, which no other row has. People without a
    verified number are never merged automatically (docs/design/multi-trust.md section 5)."""
    return f"nhs:{verified_nhs}" if verified_nhs else f"src:{source}:{rid}"


def _people_changed(conn: Connection) -> None:
    """Rows were written or removed: who shares a person may have changed, so search's
    in-memory copy of the shared people (`PatientIndexReader.shared_people`) is stale. Every
    write of patient_index rows calls this in its transaction."""
    conn.execute(
        "INSERT INTO search_state (key, value) VALUES ('people_generation', 1)"
        " ON CONFLICT (key) DO UPDATE SET value = value + 1"
    )


@dataclass(slots=True)
class _Doc:
    id: str
    verified_nhs: str | None
    display_name: str | None
    known_as: str | None
    birth_date: str | None
    gender: str | None
    nhs_number: str | None
    postcode: str | None
    postcode_key: str | None
    address: str | None
    names: str  # folded full names, "|"-separated, official first (for the re-rank)
    terms: dict[tuple[str, int], None]  # ordered set of (term, field)


MAX_NAME_CHARS = 100  # per indexed name part: longer ones are cut (SECURITY.md 29)
MAX_GIVEN_NAMES = 8


def _name_text(name: dict[str, Any]) -> tuple[list[str], str]:
    given = strs(name.get("given"))
    family = name.get("family") if isinstance(name.get("family"), str) else ""
    if not given and not family and isinstance(name.get("text"), str):
        *given, family = name["text"][: MAX_NAME_CHARS * (MAX_GIVEN_NAMES + 1)].split() or [""]
    given = [g[:MAX_NAME_CHARS] for g in given[:MAX_GIVEN_NAMES]]
    return given, (family or "")[:MAX_NAME_CHARS]


def _pick_address(patient: dict[str, Any]) -> dict[str, Any] | None:
    addresses = objs(patient.get("address"))
    current = [a for a in addresses if not obj(a.get("period")).get("end")]
    for pool in (current, addresses):
        for a in pool:
            if a.get("use") in (None, "home", "temp"):
                return a
        if pool:
            return pool[0]
    return None


_GIVEN, _FAMILY, _KNOWN_AS, _PREVIOUS, _ADDRESS = 0, 1, 2, 3, 4
_POSTCODE, _BIRTH_YEAR, _GENDER, _INITIAL = 5, 6, 8, 10


class _Deriver:
    """Derives index rows for one batch. Names repeat (a few thousand distinct words cover
    most of a cohort), so text work is memoised for the batch only: nothing outlives it."""

    def __init__(self) -> None:
        self._names: dict[str, list[str]] = {}
        self._words: dict[str, list[str]] = {}
        self._address: dict[str, list[str]] = {}

    def name_terms(self, text: str) -> list[str]:
        found = self._names.get(text)
        if found is None:
            found = self._names[text] = name_terms(text)
        return found

    def words(self, text: str) -> list[str]:
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = words(text)
        return found

    def address_terms(self, text: str) -> list[str]:
        found = self._address.get(text)
        if found is None:
            found = self._address[text] = [
                w
                for w in (w.replace("'", "") for w in words(text))
                if len(w) >= 2 and w not in ADDRESS_STOPWORDS
            ]
        return found

    def derive(self, patient: dict[str, Any]) -> _Doc:
        """Display fields and index terms of one Patient resource."""
        names = objs(patient.get("name"))
        official = None
        for n in names:
            if n.get("use") == "official":
                official = n
                break
        if official is None:
            official = next((n for n in names if n.get("use") in (None, "usual")), None)
        if official is None and names:
            official = names[0]
        terms: dict[tuple[str, int], None] = {}
        full_names: list[str] = []
        display_name = known_as = None
        official_given: list[str] = []
        if official is not None:
            official_given, family = _name_text(official)
            display_name = " ".join([*official_given, family]).strip() or None
            for g in official_given:
                for t in self.name_terms(g):
                    terms[(t, _GIVEN)] = None
            if len(official_given) > 1:
                joined = "".join(w.replace("'", "") for g in official_given for w in self.words(g))
                if len(joined) >= 2:
                    terms[(joined, _GIVEN)] = None
            for t in self.name_terms(family):
                terms[(t, _FAMILY)] = None
            if official_given and (w := self.words(official_given[0])):
                terms[(w[0][0], _INITIAL)] = None
            full_names.append(
                " ".join(w for part in [*official_given, family] for w in self.words(part))
            )
        strong = {t for t, f in terms if f <= _FAMILY}
        first_given = self.words(official_given[0])[:1] if official_given else []
        for name in names:
            if name is official:
                continue
            use = name.get("use")
            field = _KNOWN_AS if use in ("usual", "nickname", None) else _PREVIOUS
            given, family = _name_text(name)
            if field == _KNOWN_AS and given:
                first = self.words(given[0])[:1]
                if known_as is None and first != first_given:
                    known_as = " ".join(given)
                if first:
                    terms[(first[0][0], _INITIAL)] = None
            for part in [*given, family]:
                for t in self.name_terms(part):
                    if t not in strong:
                        terms[(t, field)] = None
            text = " ".join(w for part in [*given, family] for w in self.words(part))
            if text and text not in full_names:
                full_names.append(text)

        address = _pick_address(patient)
        postcode = postcode_key = address_text = None
        if address is not None:
            lines = strs(address.get("line"))
            if not lines and isinstance(address.get("text"), str):
                lines = [address["text"]]  # e.g. "No fixed abode"
            city = address.get("city") if isinstance(address.get("city"), str) else None
            places = [*lines, *([city] if city else [])]
            address_text = ", ".join(places) or None
            if isinstance(address.get("district"), str):
                places.append(address["district"])
            for part in places:
                for word in self.address_terms(part):
                    terms[(word, _ADDRESS)] = None
            raw_postcode = address.get("postalCode")
            if isinstance(raw_postcode, str) and raw_postcode.strip():
                postcode = raw_postcode.strip().upper()
                keys = postcode_terms(postcode)
                postcode_key = keys[0] if keys else None
                for t in keys[1:]:
                    terms[(t, _POSTCODE)] = None

        birth_date = patient.get("birthDate")
        if not isinstance(birth_date, str):
            birth_date = None
        if birth_date:
            birth_date = birth_date[:10]
            if birth_date[:4].isdigit():
                terms[(birth_date[:4], _BIRTH_YEAR)] = None
        gender = patient.get("gender") if isinstance(patient.get("gender"), str) else None
        if gender:
            terms[(gender, _GENDER)] = None
        nhs = nhs_number_of(patient)
        if nhs:
            nhs = normalise_nhs_number(nhs)
        return _Doc(
            id=patient["id"],
            verified_nhs=verified_nhs_number(patient) if nhs else None,
            display_name=display_name,
            known_as=known_as,
            birth_date=birth_date,
            gender=gender,
            nhs_number=nhs or None,
            postcode=postcode,
            postcode_key=postcode_key,
            address=address_text,
            names="|".join(n for n in full_names if n),
            terms=terms,
        )


def derive(patient: dict[str, Any]) -> _Doc:
    """Display fields and index terms of one Patient resource."""
    return _Deriver().derive(patient)


def parse_terms(blob: bytes | str) -> list[tuple[str, int]]:
    """`patient_index.terms` (JSON [[term, field], ...]) back into (term, field) pairs."""
    return [(t, f) for t, f in orjson.loads(blob)]


# -- alerts -----------------------------------------------------------------------------------

_KIND_ORDER = {kind: rank for rank, kind in enumerate(ALERT_KINDS)}  # staff safety first


def flag_alert(flag: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    """(code, label, kind, period end) of a Flag worth showing, or None.

    Only `active` flags count: `inactive` and `entered-in-error` never reach a result. The end
    date is kept so search can hide a flag whose period ran out since it was indexed.
    """
    if flag.get("status") != "active":
        return None
    code = obj(flag.get("code"))
    codings = objs(code.get("coding"))
    end = obj(flag.get("period")).get("end")
    for c in codings:
        if c.get("system") == SNOMED and c.get("code") in ALERT_CODES:
            label, kind = ALERT_CODES[c["code"]]
            return c["code"], label, kind, end
    text = code.get("text")
    first = codings[0] if codings else {}
    local = text or first.get("display") or first.get("code")
    if not local:
        return None
    kind = "staff" if staff_safety_note(str(local)) else "other"
    return str(first.get("code") or local), str(local), kind, end


def _alerts_json(alerts: Iterable[tuple[str, str, str, str | None]]) -> bytes | None:
    """One patient's badges, de-duplicated by code, ordered as ALERT_KINDS (staff first)."""
    seen: dict[tuple[str, str], tuple[str, str, str, str | None]] = {}
    for alert in alerts:
        key = (alert[0], alert[2])
        old = seen.get(key)
        # Two active flags with one code: keep the later end (None = open-ended wins).
        if old is None or (old[3] is not None and (alert[3] is None or alert[3] > old[3])):
            seen[key] = alert
    if not seen:
        return None
    ordered = sorted(seen.values(), key=lambda a: (_KIND_ORDER.get(a[2], 9), a[1]))
    return _json.dumps(ordered)


_COLUMNS = (
    "patient_index (pid, source, id, person_key, display_name, known_as, birth_date, gender,"
    " nhs_number, postcode, postcode_key, address, alerts, names, terms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ROW = f"INSERT INTO {_COLUMNS}"  # a `_row` (new pids: a bulk load, a rebuild)
_REPLACE_ROW = f"INSERT OR REPLACE INTO {_COLUMNS}"  # held pids keep their number


def _row(pid: int, source: int, doc: _Doc, alerts: bytes | None) -> tuple[Any, ...]:
    """One `patient_index` row, in the column order of `INSERT_ROW`."""
    return (
        pid,
        source,
        doc.id,
        person_key(source, doc.id, doc.verified_nhs),
        doc.display_name,
        doc.known_as,
        doc.birth_date,
        doc.gender,
        doc.nhs_number,
        doc.postcode,
        doc.postcode_key,
        doc.address,
        alerts,
        doc.names,
        _json.dumps(list(doc.terms)),
    )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _alerts_for(
    conn: Connection, source: int, patient_ids: Sequence[str]
) -> dict[str, bytes | None]:
    """Alert JSON per patient of one source, from the `flag_alert` rows of their active Flags."""
    found: dict[str, list[tuple[str, str, str, str | None]]] = defaultdict(list)
    for chunk in _chunks(list(patient_ids)):
        marks = ",".join("?" * len(chunk))
        for pid, alert in conn.execute(
            "SELECT patient_id, alert FROM flag_alert"
            f" WHERE source = ? AND patient_id IN ({marks})",
            (source, *chunk),
        ):
            found[pid].append(tuple(orjson.loads(alert)))  # type: ignore[arg-type]
    return {p: _alerts_json(found.get(p, ())) for p in patient_ids}


# -- the indexer ------------------------------------------------------------------------------


class PatientIndexer:
    """Keeps the search tables in step with Patient and Flag rows, set-wise per batch."""

    types = frozenset({"Patient", "Flag"})

    def create_schema(self, conn: Connection) -> None:
        run_script(conn, SCHEMA)

    def index(self, conn: Connection, source: int, resources: Sequence[dict[str, Any]]) -> None:
        if not resources:
            return
        if resources[0].get("resourceType") == "Patient":
            self._index_patients(conn, source, resources)
        else:
            self._index_flags(conn, source, resources)

    def remove(
        self,
        conn: Connection,
        source: int,
        rtype: str,
        ids: Sequence[str],
        patient_ids: Sequence[str],
    ) -> None:
        if rtype == "Patient":
            self._remove_patients(conn, source, ids)
        elif rtype == "Flag":
            old = self._drop_flags(conn, source, ids)
            self._refresh_alerts(conn, source, set(patient_ids) | old)

    def erase(self, conn: Connection, source: int) -> None:
        """Take one source's patients out of the postings and the vocabulary, then drop its
        rows: one pass over the posting lists its patients are in, whatever their number."""
        gone: set[int] = set()
        keys: set[tuple[str, int]] = set()
        vocab_delta: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        cursor = conn.execute("SELECT pid, terms FROM patient_index WHERE source = ?", (source,))
        while rows := cursor.fetchmany(5000):
            for pid, blob in rows:
                gone.add(pid)
                terms = set(parse_terms(blob))
                keys.update(terms)
                _vocab_change(vocab_delta, terms, -1)
        _drop_pids(conn, keys, gone)
        conn.execute("DELETE FROM patient_index WHERE source = ?", (source,))
        conn.execute("DELETE FROM flag_alert WHERE source = ?", (source,))
        _apply_vocab(conn, vocab_delta)
        _people_changed(conn)

    def clear(self, conn: Connection) -> None:
        """Empty every search table (the start of a bulk load and of a rebuild)."""
        run_script(
            conn,
            """
            DELETE FROM patient_index; DELETE FROM search_posting; DELETE FROM search_vocab;
            DELETE FROM flag_alert""",
        )
        conn.execute("UPDATE search_state SET value = value + 1 WHERE key = 'vocab_generation'")
        _people_changed(conn)

    def rebuild(self, conn: Connection, batch: int = 500, flush_every: int = 100_000) -> None:
        """Re-derive every index row from the resource table: the one index build of a bulk
        load (sync's first load, `kerbside import`), and after a schema or rule change.

        Built for an empty index, so nothing is read back per batch: pids are handed out in
        order, postings are collected in memory and appended every `flush_every` patients
        (each common term's blob is rewritten a few times, not once per batch), and the
        vocabulary is written once. Call inside a transaction (`with store.transaction()`).

        `batch`: rows fetched at a time, kept small because `fetchmany` holds the GIL from
        row to row, and the window's thread shares it: packed rows are a few hundred bytes,
        so SQLite's steps are too short to hand the GIL over, and 5,000 of them froze the
        window for up to 260 ms (bench_ui_stall.py --paged: 200 ms stalls at 5,000, 52 ms at
        500, and the build no slower).
        """
        self.clear(conn)
        sources = [int(sid) for (sid,) in conn.execute("SELECT sid FROM source ORDER BY sid")]
        for source in sources:
            cursor = conn.execute(
                "SELECT json FROM resource WHERE source = ? AND type = 'Flag'", (source,)
            )
            while rows := cursor.fetchmany(batch):
                self._store_flags(conn, source, [_codec.loads(r[0]) for r in rows])
        alerts = _all_alerts(conn)
        adds: dict[tuple[str, int], array] = {}
        vocab_delta: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        pid = 0
        pending = 0
        for source in sources:
            # In (source, type, id) index order: `ORDER BY rid` would sort every Patient's
            # JSON in a temp B-tree first (in memory: temp_store), a gigabyte at 1,000,000
            # patients. Any order works: pids are handed out as rows come, so postings stay
            # sorted.
            cursor = conn.execute(
                "SELECT json FROM resource WHERE source = ? AND type = 'Patient'", (source,)
            )
            while raw := cursor.fetchmany(batch):
                deriver = _Deriver()
                rows = []
                for (blob,) in raw:
                    doc = deriver.derive(_codec.loads(blob))
                    pid += 1
                    for key in doc.terms:
                        held = adds.get(key)
                        if held is None:
                            held = adds[key] = array(_TYPECODE)
                        held.append(pid)
                    _vocab_change(vocab_delta, set(doc.terms), +1)
                    found = alerts.get((source, doc.id))
                    rows.append(_row(pid, source, doc, _alerts_json(found) if found else None))
                conn.executemany(INSERT_ROW, rows)
                pending += len(rows)
                if pending >= flush_every:
                    _merge_postings(conn, adds, {})  # type: ignore[arg-type]
                    adds = {}
                    pending = 0
        _merge_postings(conn, adds, {})  # type: ignore[arg-type]
        _apply_vocab(conn, vocab_delta)

    # -- patients -------------------------------------------------------------------------
    def _index_patients(
        self, conn: Connection, source: int, patients: Sequence[dict[str, Any]]
    ) -> None:
        deriver = _Deriver()
        docs: dict[str, _Doc] = {}
        for res in patients:
            docs[res["id"]] = deriver.derive(res)
        ids = list(docs)
        held: dict[str, tuple[int, bytes, bytes | None]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for pid, rid, terms, alerts in conn.execute(
                "SELECT pid, id, terms, alerts FROM patient_index"
                f" WHERE source = ? AND id IN ({marks})",
                (source, *chunk),
            ):
                held[rid] = (pid, terms, alerts)
        next_pid = (conn.execute("SELECT max(pid) FROM patient_index").fetchone()[0] or 0) + 1
        # A changed Patient keeps its alerts (Flags have their own path); a new one may have
        # Flags that arrived before it.
        new_alerts = _alerts_for(conn, source, [rid for rid in ids if rid not in held])
        adds: dict[tuple[str, int], list[int]] = defaultdict(list)
        drops: dict[tuple[str, int], list[int]] = defaultdict(list)
        vocab_delta: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        rows = []
        for rid, doc in docs.items():
            new_set = set(doc.terms)
            if rid in held:
                pid, old_blob, alerts = held[rid]
                old_set = set(parse_terms(old_blob))
                for key in old_set - new_set:
                    drops[key].append(pid)
                for key in new_set - old_set:
                    adds[key].append(pid)
                _vocab_change(vocab_delta, old_set, -1)
            else:
                pid, next_pid = next_pid, next_pid + 1
                alerts = new_alerts.get(rid)
                for key in new_set:
                    adds[key].append(pid)
            _vocab_change(vocab_delta, new_set, +1)
            rows.append(_row(pid, source, doc, alerts))
        conn.executemany(_REPLACE_ROW, rows)
        _people_changed(conn)
        _merge_postings(conn, adds, drops)
        _apply_vocab(conn, vocab_delta)

    def _remove_patients(self, conn: Connection, source: int, ids: Sequence[str]) -> None:
        drops: dict[tuple[str, int], list[int]] = defaultdict(list)
        vocab_delta: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        pids = []
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for pid, terms in conn.execute(
                f"SELECT pid, terms FROM patient_index WHERE source = ? AND id IN ({marks})",
                (source, *chunk),
            ):
                pids.append(pid)
                old = set(parse_terms(terms))
                for key in old:
                    drops[key].append(pid)
                _vocab_change(vocab_delta, old, -1)
        for chunk in _chunks(pids):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM patient_index WHERE pid IN ({marks})", tuple(chunk))
        _people_changed(conn)
        _merge_postings(conn, {}, drops)
        _apply_vocab(conn, vocab_delta)

    # -- flags ----------------------------------------------------------------------------
    def _index_flags(self, conn: Connection, source: int, flags: Sequence[dict[str, Any]]) -> None:
        old = self._drop_flags(conn, source, [f["id"] for f in flags])
        new = self._store_flags(conn, source, flags)
        self._refresh_alerts(conn, source, old | new)

    @staticmethod
    def _store_flags(conn: Connection, source: int, flags: Sequence[dict[str, Any]]) -> set[str]:
        """Record the active ones; returns every patient (of `source`) the batch's Flags are
        about."""
        rows = []
        patients = set()
        for flag in flags:
            patient_id = patient_ref_of(flag)
            if not patient_id:
                continue
            patients.add(patient_id)
            alert = flag_alert(flag)
            if alert is not None:
                rows.append((source, flag["id"], patient_id, _json.dumps(alert)))
        put_flag_rows(conn, rows)
        return patients

    @staticmethod
    def _drop_flags(conn: Connection, source: int, flag_ids: Sequence[str]) -> set[str]:
        """Forget these Flags' alerts; returns the patients they were about."""
        patients: set[str] = set()
        for chunk in _chunks(list(flag_ids)):
            marks = ",".join("?" * len(chunk))
            patients.update(
                pid
                for (pid,) in conn.execute(
                    f"SELECT patient_id FROM flag_alert WHERE source = ? AND flag_id IN ({marks})",
                    (source, *chunk),
                )
            )
            conn.execute(
                f"DELETE FROM flag_alert WHERE source = ? AND flag_id IN ({marks})",
                (source, *chunk),
            )
        return patients

    @staticmethod
    def _refresh_alerts(conn: Connection, source: int, patient_ids: Iterable[str]) -> None:
        alerts = _alerts_for(conn, source, sorted(patient_ids))
        conn.executemany(
            "UPDATE patient_index SET alerts = ? WHERE source = ? AND id = ?",
            [(body, source, pid) for pid, body in alerts.items()],
        )


def put_flag_rows(conn: Connection, rows: Sequence[tuple[int, str, str, bytes]]) -> None:
    """(source, flag id, patient id, alert JSON) of active Flags, as `flag_alert` keeps
    them."""
    conn.executemany(
        "INSERT OR REPLACE INTO flag_alert (source, flag_id, patient_id, alert)"
        " VALUES (?, ?, ?, ?)",
        rows,
    )


def _all_alerts(
    conn: Connection,
) -> dict[tuple[int, str], list[tuple[str, str, str, str | None]]]:
    """Every patient's alerts, keyed (source, patient id)."""
    alerts: dict[tuple[int, str], list[tuple[str, str, str, str | None]]] = defaultdict(list)
    for source, patient_id, alert in conn.execute(
        "SELECT source, patient_id, alert FROM flag_alert"
    ):
        alerts[(source, patient_id)].append(tuple(orjson.loads(alert)))  # type: ignore[arg-type]
    return alerts


def write_built(
    conn: Connection,
    postings: Sequence[tuple[str, int, bytes]],
    vocab: Sequence[tuple[str, int, int, str, str]],
) -> None:
    """The end of a bulk load whose patient_index and flag_alert rows were written as it went
    (`Store.put_prepared`): its postings and vocabulary, collected while it was prepared, into
    the empty tables, and each patient's alerts from the Flags. The same tables `rebuild`
    derives from the resource table."""
    conn.executemany("INSERT INTO search_posting (term, field, pids) VALUES (?, ?, ?)", postings)
    conn.executemany(
        "INSERT INTO search_vocab (term, n_name, n_address, metaphone, nysiis)"
        " VALUES (?, ?, ?, ?, ?)",
        vocab,
    )
    conn.execute("UPDATE search_state SET value = value + 1 WHERE key = 'vocab_generation'")
    _people_changed(conn)  # the rows the load wrote as it went
    conn.executemany(
        "UPDATE patient_index SET alerts = ? WHERE source = ? AND id = ?",
        [(_alerts_json(found), *key) for key, found in _all_alerts(conn).items()],
    )


def _vocab_change(delta: dict[str, list[int]], terms: set[tuple[str, int]], sign: int) -> None:
    """Count each word once per patient for names and once for address."""
    name_words = {t for t, f in terms if f in NAME_FIELDS}
    for t in name_words:
        delta[t][0] += sign
    for t, f in terms:
        if f == Field.ADDRESS:
            delta[t][1] += sign


def _merge_postings(
    conn: Connection,
    adds: dict[tuple[str, int], list[int]],
    drops: dict[tuple[str, int], list[int]],
) -> None:
    keys = set(adds) | set(drops)
    if not keys:
        return
    held: dict[tuple[str, int], bytes] = {}
    terms = sorted({t for t, _ in keys})
    for chunk in _chunks(terms):
        marks = ",".join("?" * len(chunk))
        for term, field, blob in conn.execute(
            f"SELECT term, field, pids FROM search_posting WHERE term IN ({marks})", tuple(chunk)
        ):
            if (term, field) in keys:
                held[(term, field)] = blob
    upserts = []
    deletes = []
    for key in keys:
        added = adds.get(key, ())
        dropped = drops.get(key, ())
        blob = held.get(key)
        if blob is None:
            if added:
                upserts.append((*key, encode_pids(added)))
            continue
        current = decode_pids(blob)
        if not dropped and added and min(added) > current[-1]:
            # New patients get rising pids: the common bulk-load case appends in order.
            current.extend(sorted(added))
            if _SWAP:
                current.byteswap()
            upserts.append((*key, current.tobytes()))
            continue
        merged = set(current)
        merged.difference_update(dropped)
        merged.update(added)
        if merged:
            upserts.append((*key, encode_pids(merged)))
        else:
            deletes.append(key)
    conn.executemany(
        "INSERT OR REPLACE INTO search_posting (term, field, pids) VALUES (?, ?, ?)", upserts
    )
    conn.executemany("DELETE FROM search_posting WHERE term = ? AND field = ?", deletes)


def _drop_pids(conn: Connection, keys: set[tuple[str, int]], gone: set[int]) -> None:
    """Take the pids in `gone` out of the posting lists of `keys` (removing emptied lists)."""
    upserts = []
    deletes = []
    for chunk in _chunks(sorted({t for t, _ in keys})):
        marks = ",".join("?" * len(chunk))
        for term, field, blob in conn.execute(
            f"SELECT term, field, pids FROM search_posting WHERE term IN ({marks})", tuple(chunk)
        ).fetchall():
            if (term, field) not in keys:
                continue
            kept = [p for p in decode_pids(blob) if p not in gone]
            if kept:
                upserts.append((term, field, encode_pids(kept)))
            else:
                deletes.append((term, field))
    conn.executemany(
        "INSERT OR REPLACE INTO search_posting (term, field, pids) VALUES (?, ?, ?)", upserts
    )
    conn.executemany("DELETE FROM search_posting WHERE term = ? AND field = ?", deletes)


def _apply_vocab(conn: Connection, delta: dict[str, list[int]]) -> None:
    changes = [(t, n, a) for t, (n, a) in delta.items() if n or a]
    if not changes:
        return
    held: dict[str, tuple[int, int]] = {}
    terms = [t for t, _, _ in changes]
    for chunk in _chunks(terms):
        marks = ",".join("?" * len(chunk))
        for term, n, a in conn.execute(
            f"SELECT term, n_name, n_address FROM search_vocab WHERE term IN ({marks})",
            tuple(chunk),
        ):
            held[term] = (n, a)
    upserts: list[tuple[str, int, int, str | None, str | None]] = []
    deletes = []
    created = False
    for term, dn, da in changes:
        n, a = held.get(term, (0, 0))
        n, a = max(0, n + dn), max(0, a + da)
        if n or a:
            if term in held:
                upserts.append((term, n, a, None, None))
            else:
                created = True
                upserts.append((term, n, a, *phonetic_keys(term)))
        elif term in held:
            deletes.append((term,))
    conn.executemany(
        "INSERT INTO search_vocab (term, n_name, n_address, metaphone, nysiis)"
        " VALUES (?, ?, ?, coalesce(?, ''), coalesce(?, ''))"
        " ON CONFLICT (term) DO UPDATE SET n_name = excluded.n_name,"
        " n_address = excluded.n_address",
        upserts,
    )
    conn.executemany("DELETE FROM search_vocab WHERE term = ?", deletes)
    if created or deletes:
        conn.execute("UPDATE search_state SET value = value + 1 WHERE key = 'vocab_generation'")


# -- reads for search -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedPatient:
    """One `patient_index` row as search re-ranks and shows it."""

    pid: int
    id: str
    display_name: str | None
    known_as: str | None
    birth_date: str | None
    gender: str | None
    nhs_number: str | None
    postcode: str | None
    address: str | None
    alerts: tuple[tuple[str, str, str, str | None], ...]
    names: tuple[str, ...]
    terms: tuple[tuple[str, int], ...]
    source: int  # the sid of the central record the row came from
    person_key: str  # `person_key`: rows of one person across sources share it


def one_per_source(sources: Iterable[int]) -> bool:
    """Whether rows sharing a person key may be merged: at most one from each source. A key
    one source holds for two Patients is a data error there (which of its two would another
    source's row be?), so none of them is merged (hazard H23)."""
    seen: set[int] = set()
    for source in sources:
        if source in seen:
            return False
        seen.add(source)
    return True


@dataclass(frozen=True, slots=True)
class Member:
    """One source's row of a person (see `PatientIndexReader.people`)."""

    source: int
    id: str
    pid: int


class PatientIndexReader:
    """The queries search runs. Needs only a DB-API connection, so a benchmark can point it at
    a plain SQLite copy of the same tables."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def bulk_loading(self) -> bool:
        """A bulk load has not finished building the index (see `Store.begin_bulk_load`)."""
        row = self._conn.execute(
            "SELECT value FROM search_state WHERE key = 'bulk-load'"
        ).fetchone()
        return row is not None

    def vocab_generation(self) -> int:
        row = self._conn.execute(
            "SELECT value FROM search_state WHERE key = 'vocab_generation'"
        ).fetchone()
        return int(row[0]) if row else 0

    def vocabulary(self) -> list[tuple[str, int, int, str, str]]:
        """(term, patients with it in a name, in an address, metaphone, NYSIIS)."""
        return self._conn.execute(
            "SELECT term, n_name, n_address, metaphone, nysiis FROM search_vocab"
        ).fetchall()

    def postings(
        self,
        terms: Iterable[str],
        keys: Iterable[tuple[str, int]] = (),
        *,
        skip_address: Iterable[str] = (),
    ) -> dict[tuple[str, int], array]:
        """Posting lists, keyed (term, field): every field of each of `terms` (but not the
        ADDRESS field of those also in `skip_address`: a common address word's list is large
        and costly to decrypt), plus the exact (value, field) `keys` of `COLUMN_FIELDS` (NHS
        number, birth date, full postcode)."""
        out: dict[tuple[str, int], array] = {}
        wanted = set(terms)
        skipped = wanted.intersection(skip_address)
        for group, extra in ((wanted - skipped, ""), (skipped, " AND field != ?")):
            params: tuple[Any, ...] = (int(Field.ADDRESS),) if extra else ()
            for chunk in _chunks(sorted(group)):
                marks = ",".join("?" * len(chunk))
                for term, field, blob in self._conn.execute(
                    f"SELECT term, field, pids FROM search_posting WHERE term IN ({marks}){extra}",
                    (*chunk, *params),
                ):
                    out[(term, field)] = decode_pids(blob)
        by_field: dict[int, set[str]] = defaultdict(set)
        for value, field in keys:
            by_field[field].add(value)
        for field, values in by_field.items():
            column = COLUMN_FIELDS[Field(field)]
            found: dict[str, list[int]] = defaultdict(list)
            for chunk in _chunks(sorted(values)):
                marks = ",".join("?" * len(chunk))
                for value, pid in self._conn.execute(
                    f"SELECT {column}, pid FROM patient_index WHERE {column} IN ({marks})",
                    tuple(chunk),
                ):
                    found[value].append(pid)
            for value, pids in found.items():
                out[(value, field)] = array(_TYPECODE, sorted(pids))
        return out

    def patients(self, pids: Iterable[int]) -> dict[int, IndexedPatient]:
        wanted = sorted(set(pids))
        out: dict[int, IndexedPatient] = {}
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                "SELECT pid, id, display_name, known_as, birth_date, gender, nhs_number, postcode,"
                " address, alerts, names, terms, source, person_key FROM patient_index"
                f" WHERE pid IN ({marks})",
                tuple(chunk),
            ):
                alerts = tuple(tuple(a) for a in orjson.loads(row[9])) if row[9] else ()
                pid, rid, display_name, known_as, birth_date, gender, nhs, postcode, address = row[
                    :9
                ]
                out[pid] = IndexedPatient(
                    pid=pid,
                    id=rid,
                    display_name=display_name,
                    known_as=known_as,
                    birth_date=birth_date,
                    gender=gender,
                    nhs_number=nhs,
                    postcode=postcode,
                    address=address,
                    alerts=alerts,  # type: ignore[arg-type]
                    names=tuple(row[10].split("|")) if row[10] else (),
                    terms=tuple(parse_terms(row[11])),
                    source=row[12],
                    person_key=row[13],
                )
        return out

    def people(self, person_keys: Iterable[str]) -> dict[str, list[Member]]:
        """Every source's row of each person (by `person_key`), home source first: what a
        merged search result and record view are made of. Keys nobody has are absent, and so
        is a key one source holds for two or more Patients: a data error at that source
        (which of its two would another source's row be?), so none of them is merged
        (hazard H23)."""
        out: dict[str, list[Member]] = {}
        for chunk in _chunks(sorted(set(person_keys))):
            marks = ",".join("?" * len(chunk))
            for key, source, rid, pid in self._conn.execute(
                "SELECT person_key, source, id, pid FROM patient_index"
                f" WHERE person_key IN ({marks}) ORDER BY person_key, source, id",
                tuple(chunk),
            ):
                out.setdefault(key, []).append(Member(source, rid, pid))
        return {k: ms for k, ms in out.items() if one_per_source(m.source for m in ms)}

    def people_generation(self) -> int:
        row = self._conn.execute(
            "SELECT value FROM search_state WHERE key = 'people_generation'"
        ).fetchone()
        return int(row[0]) if row else 0

    def shared_people(self) -> dict[str, tuple[int, ...]]:
        """The pids of every person more than one row shares (`nhs:` keys held twice or more),
        read from the index on `person_key` alone: what search keeps in memory to find a
        merged person's other rows without a query per search (tens of milliseconds at
        100,000 patients in three sources). Check `one_per_source` on the rows' sources."""
        out: dict[str, tuple[int, ...]] = {}
        for key, pids in self._conn.execute(
            "SELECT person_key, group_concat(pid) FROM patient_index"
            " WHERE person_key >= 'nhs:' AND person_key < 'nhs;'"
            " GROUP BY person_key HAVING count(*) > 1"
        ):
            out[key] = tuple(int(p) for p in pids.split(","))
        return out

    def looked_up(self, pids: Iterable[int]) -> set[int]:
        """Which of these index rows are Patients an online look-up fetched (and keeps until
        their time): what search labels "looked up online"."""
        if self._conn.execute("SELECT 1 FROM resource_lookup LIMIT 1").fetchone() is None:
            return set()  # the usual case: no look-up held
        out: set[int] = set()
        for chunk in _chunks(sorted(set(pids))):
            marks = ",".join("?" * len(chunk))
            out.update(
                int(pid)
                for (pid,) in self._conn.execute(
                    "SELECT p.pid FROM patient_index p JOIN resource r ON r.source = p.source"
                    " AND r.type = 'Patient' AND r.id = p.id"
                    " JOIN resource_lookup l ON l.rid = r.rid"
                    f" WHERE p.pid IN ({marks})",
                    tuple(chunk),
                )
            )
        return out

    def source_names(self) -> dict[int, str]:
        """Every registered source's name by sid, home (sid 1) first: what a merged search
        result names its sources by."""
        return {
            int(sid): str(name)
            for sid, name in self._conn.execute("SELECT sid, name FROM source ORDER BY sid")
        }

    def patient_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM patient_index").fetchone()[0])
