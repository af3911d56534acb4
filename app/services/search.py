"""Find a person in the local cache from whatever the officer can type: offline, instant,
forgiving (DESIGN.md section 4).

Public API (the UI and the `kerbside search` command use only this)::

    search = PatientSearch(store)            # loads the name vocabulary (tens of ms at 100k)
    result = search.search("bill jones 45", limit=20, sex=None, age_range=None, today=None)
    result.hits        # list[PatientHit], best first; each carries its active alerts
    result.notice      # e.g. "NHS number check digit is wrong"; None when all is well
    result.did_you_mean  # a corrected query when nothing (or nothing good) matched
    search.refresh()   # after a sync; cheap when the vocabulary did not change

    words = SearchWords()                    # the UI: one per open cache, shared by threads
    PatientSearch(worker_session, words=words).search(...)  # on each worker's own connection

`PatientHit.score` is in [0, 1]: how much of what was typed the person matches (1.0 = every
word exact and every date/number/postcode typed matches). `sex` ("male"/"female"/...) and
`age_range` ((min, max) years, inclusive) are hard filters from the UI; everything typed in the
query is soft: a matching date of birth, age, postcode or NHS number lifts a person to the top
but a near miss is still listed below, because what people tell an officer is often a little
wrong. Every name word must match something (exact, nickname, prefix, sound-alike or typo, in
any order, in any of the person's current, known-as or previous names or their address); only
when nobody matches all of them is one word allowed to miss.

How: `PatientIndexReader` (app.store) holds an inverted index of packed posting lists. Each
query word is expanded against the in-memory vocabulary (exact, `nicknames` package relations,
prefixes, jellyfish metaphone / NYSIIS keys, rapidfuzz OSA distance within the same first
letter); the posting lists of all expansions are read in one statement, intersected from the
most selective word, scored (match kind x name field), boosted by the structured criteria, and
the best few dozen are fetched and re-ranked with a one-to-one word assignment and rapidfuzz
similarity on the full names. Nothing here logs or raises with query text.

With several central records in the cache (issue 14), a result is a person: the rows of
different sources that share a verified NHS number (`person_key` "nhs:...") are merged after
the re-rank (`_merge_people`), each hit listing its `members` (sid, id) and `sources`; `limit`
counts people. Nothing else merges (docs/design/multi-trust.md section 5; hazards H23, H24).
"""

from __future__ import annotations

import heapq
import threading
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, Protocol

from nicknames import NickNamer
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, Indel

from app.errors import IndexIncomplete
from app.fhir import ALERT_KINDS
from app.nhs_number import check_digit, is_valid
from app.services._query import ParsedQuery, Word, parse_query
from app.store import (
    HOME_SOURCE,
    Field,
    IndexedPatient,
    PatientIndexReader,
    one_per_source,
)
from app.textkeys import phonetic_keys

__all__ = ["HOME_SOURCE", "Alert", "PatientHit", "PatientSearch", "SearchResult", "SearchWords"]

NOTICE_BAD_CHECK_DIGIT = "NHS number check digit is wrong"
NOTICE_NHS_NOT_FOUND = "No one in the cache has this NHS number"


@dataclass(frozen=True, slots=True)
class Alert:
    code: str
    label: str
    kind: str  # one of app.fhir.ALERT_KINDS
    source: str = ""  # the name of the source (central record) whose Flag it is


@dataclass(frozen=True, slots=True)
class PatientHit:
    id: str
    display_name: str
    known_as: str | None
    birth_date: str | None
    age: int | None
    gender: str | None
    nhs_number: str | None  # ten digits; format with app.nhs_number.format_nhs_number
    postcode: str | None
    address: str | None
    alerts: tuple[Alert, ...]  # every member's, each labelled with its source
    score: float
    # One person across sources (docs/design/multi-trust.md section 5). `id` is the home
    # source's Patient id where the home source knows them, else the best-matching member's;
    # `sid` and `source` say whose id it is (open the record with (sid, id): an id means
    # something only within its source). `members` are (sid, id) of every source's Patient of
    # this person and `sources` their names, home first; one member unless a verified NHS
    # number joins them.
    source: str = ""
    sources: tuple[str, ...] = ()
    members: tuple[tuple[int, str], ...] = ()
    sid: int = HOME_SOURCE
    # The Patient `id` names was fetched by an online look-up (kept until its time, then
    # erased; not the cohort's): the result says "Looked up online" (hazard H18).
    looked_up: bool = False

    @property
    def ref(self) -> tuple[int, str]:
        """(sid, id): the Patient this result opens."""
        return (self.sid, self.id)

    def is_person(self, sid: int, patient_id: str) -> bool:
        """Whether (sid, patient_id) is one of this person's Patients."""
        return (sid, patient_id) in self.members or (sid, patient_id) == self.ref


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[PatientHit]
    notice: str | None = None
    did_you_mean: str | None = None


@dataclass(slots=True)
class _Scored:
    """One source's Patient row as the re-rank scored it."""

    row: IndexedPatient
    score: float

    def order(self) -> tuple[float, str, str, int]:
        return (-self.score, self.row.display_name or NO_NAME, self.row.id, self.row.source)


NO_NAME = "(no name recorded)"
MERGED_KEY_PREFIX = "nhs:"  # only a verified NHS number joins Patients of several sources


class _Indexed(Protocol):
    """A Session or a Store: anything that hands out its search index."""

    def patient_index(self) -> PatientIndexReader: ...


# -- weights ----------------------------------------------------------------------------------
# Kind of match (exact > nickname > prefix > sound-alike > typo) times the field it matched in.
EXACT = 1.0
NICKNAME = 0.9
PREFIX_BASE, PREFIX_SPAN = 0.72, 0.08  # + span x typed share of the word
# Sound-alikes and typos share one scale, + span x Indel similarity of the spellings: a one-key
# slip ("nigl" for Nigel) must beat a distant sound-alike ("nigl" ~ Nicola, both NKL).
PHONETIC_BASE, PHONETIC_SPAN = 0.5, 0.2
FUZZY_BASE, FUZZY_SPAN = 0.5, 0.2
INITIAL = 0.6
FIELD_WEIGHT = {
    Field.GIVEN: 1.0,
    Field.FAMILY: 1.0,
    Field.KNOWN_AS: 0.95,
    Field.PREVIOUS: 0.85,
    # An exact address word must outrank a name that only sounds like it (phonetic <= 0.7).
    Field.ADDRESS: 0.7,
    Field.INITIAL: 1.0,
}
_WORD_FIELDS = (Field.GIVEN, Field.FAMILY, Field.KNOWN_AS, Field.PREVIOUS, Field.ADDRESS)
_COLUMN_FIELDS = frozenset({Field.NHS_NUMBER, Field.BIRTH_DATE, Field.POSTCODE_FULL})
MISSING_WORD = 0.6  # penalty when one word is allowed to miss
NAME_SIMILARITY = 0.3  # weight of rapidfuzz full-name similarity in the re-rank
ORDER_BONUS = 0.05  # "john smith" typed given-then-family
NHS_EXACT, NHS_NEAR = 6.0, 3.0
DOB_EXACT, DOB_SWAPPED, DOB_YEAR = 2.5, 1.5, 0.5
YEAR_EXACT, YEAR_NEXT = 1.0, 0.4  # a typed year must not outweigh a name word
AGE = 1.5
POSTCODE_FULL, POSTCODE_SECTOR, POSTCODE_OUTWARD = 2.0, 1.0, 0.6
GENDER_WORD = 0.5
WEAK_SCORE = 0.55  # below this, offer "did you mean"

_PREFIX_SCAN = 400  # vocabulary entries looked at for one prefix
_PREFIX_KEEP = 60  # most common completions kept
_PHONETIC_KEEP = 40
_FUZZY_KEEP = 30
_RERANK_MIN = 30  # rows fetched and re-ranked (each is a page to decrypt when cold) ...
_RERANK_SPARE = 10  # ... or this many more than the hits asked for
_ONE_WORD_FAST_FROM = 3000  # postings of a lone word above which only its best are scored


def warm_up() -> None:
    """Build the per-process tables now (any thread), not in the first search after unlock."""
    _nicknames()


@cache
def _nicknames() -> dict[str, frozenset[str]]:
    """Name -> names it is a nickname of or has as nicknames (the `nicknames` package data)."""
    namer = NickNamer()
    related: dict[str, set[str]] = defaultdict(set)
    for canonical, nicks in namer.nickname_lookup.items():
        for nick in nicks:
            related[canonical].add(nick)
            related[nick].add(canonical)
    return {k: frozenset(v - {k}) for k, v in related.items()}


class _Vocabulary:
    """Distinct indexed words, with what expansion needs: sorted list (prefixes), phonetic
    buckets, and (first letter, length) buckets so typo matching compares a few hundred words
    instead of all of them."""

    def __init__(self, rows: Iterable[tuple[str, int, int, str, str]]) -> None:
        self.count: dict[str, int] = {}
        self.name_count: dict[str, int] = {}
        metaphone: dict[str, list[str]] = defaultdict(list)
        nysiis: dict[str, list[str]] = defaultdict(list)
        buckets: dict[tuple[str, int], list[str]] = defaultdict(list)
        for term, n_name, n_address, mp, ny in rows:
            self.count[term] = n_name + n_address
            if n_name:
                self.name_count[term] = n_name
            if len(mp) >= 2:
                metaphone[mp].append(term)
            if len(ny) >= 2:
                nysiis[ny].append(term)
            buckets[(term[0], len(term))].append(term)
        self.sorted = sorted(self.count)
        self.metaphone = dict(metaphone)
        self.nysiis = dict(nysiis)
        self.buckets = dict(buckets)

    def __len__(self) -> int:
        return len(self.count)

    def prefixed(self, prefix: str) -> list[str]:
        start = bisect_left(self.sorted, prefix)
        out = []
        for term in self.sorted[start : start + _PREFIX_SCAN]:
            if not term.startswith(prefix):
                break
            if term != prefix:
                out.append(term)
        if len(out) > _PREFIX_KEEP:
            out = heapq.nlargest(_PREFIX_KEEP, out, key=self.count.__getitem__)
        return out

    def typo_candidates(self, word: str, max_distance: int) -> list[tuple[str, int]]:
        choices: list[str] = []
        # A three-letter word is only taken as a four-letter one with a key missed ("hoe" for
        # Howe): other slips of three letters hit too many short names.
        shortest = len(word) + 1 if len(word) <= 3 else len(word) - max_distance
        for length in range(shortest, len(word) + max_distance + 1):
            choices.extend(self.buckets.get((word[0], length), ()))
        matches = process.extract(
            word, choices, scorer=OSA.distance, score_cutoff=max_distance, limit=None
        )
        found = [(term, int(dist)) for term, dist, _ in matches if term != word]
        if len(found) > _FUZZY_KEEP:
            found.sort(key=lambda td: (td[1], -self.count[td[0]]))
            found = found[:_FUZZY_KEEP]
        return found


def _max_typos(word: str) -> int:
    if len(word) <= 2:
        return 0
    return 1 if len(word) <= 5 else 2


@dataclass(slots=True)
class _Token:
    word: Word
    initial: bool
    expansions: dict[str, float]  # vocabulary term -> kind weight
    lists: list[tuple[array, float]]  # (posting list, kind x field weight), set after fetch
    size: int = 0


@dataclass(slots=True)
class _Criterion:
    """A typed non-name fact: its posting lists with the bonus each gives, hard or soft."""

    kind: str
    keys: list[tuple[str, int, float]]  # (term, field, bonus)
    best: float
    lists: list[tuple[array, float]]
    age: tuple[int, int] | None = None  # (age, tolerance): re-checked on the exact birth date


class SearchWords:
    """The index's words in memory, for every search of one cache on any thread.

    Loading them takes tens of milliseconds at 100,000 patients, so the UI keeps one of these
    per open cache while each search runs on its worker's own connection (SQLite connections
    are per thread). Loaded on first use and again only when the index's vocabulary
    generation moves forward (a sync or import added words); never mutated once built, so
    readers need no lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[int, _Vocabulary] = (-1, _Vocabulary(()))
        self._people: tuple[int, dict[str, tuple[int, ...]]] = (-1, {})

    def current(self, reader: PatientIndexReader) -> _Vocabulary:
        generation = reader.vocab_generation()
        loaded_generation, vocab = self._loaded
        if generation <= loaded_generation:  # a newer load than this reader's view is fine
            return vocab
        with self._lock:  # two first searches at once load once
            if generation > self._loaded[0]:
                self._loaded = (generation, _Vocabulary(reader.vocabulary()))
            return self._loaded[1]

    def preload(self, reader: PatientIndexReader) -> None:
        """Load now what the first search would (after unlock, off the window thread): the
        vocabulary and, with several sources, who they share."""
        self.current(reader)
        if len(reader.source_names()) > 1:
            self.shared_people(reader)

    def shared_people(self, reader: PatientIndexReader) -> dict[str, tuple[int, ...]]:
        """The people several rows share (`PatientIndexReader.shared_people`), kept like the
        vocabulary: loaded again only when a write moved the index's people generation. Only
        a cache of several sources has any; a one-source cache never loads it."""
        generation = reader.people_generation()
        loaded_generation, shared = self._people
        if generation <= loaded_generation:
            return shared
        with self._lock:
            if generation > self._people[0]:
                self._people = (generation, reader.shared_people())
            return self._people[1]


class PatientSearch:
    """Search over one open cache. Use from the thread that owns the store's connection."""

    def __init__(
        self, source: _Indexed | PatientIndexReader, *, words: SearchWords | None = None
    ) -> None:
        """`source` is a session or an open cache, or (benchmarks) an index reader on any
        connection; `words`, the vocabulary shared with searches on other connections."""
        self._reader = source if isinstance(source, PatientIndexReader) else source.patient_index()
        self._words = words or SearchWords()
        self._vocab = _Vocabulary(())
        _nicknames()  # once per process, now rather than in the first search
        self.refresh()

    def refresh(self) -> None:
        """Reload the vocabulary if the index changed it since the last load."""
        self._vocab = self._words.current(self._reader)

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocab)

    # -- the search -------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        sex: str | None = None,
        age_range: tuple[int, int] | None = None,
        today: date | None = None,
    ) -> SearchResult:
        today = today or date.today()
        if self._reader.bulk_loading():
            raise IndexIncomplete(
                "search is unavailable until the cache finishes loading; sync to complete it"
            )
        self.refresh()
        parsed = parse_query(query, today)
        if limit <= 0 or (parsed.is_empty and sex is None and age_range is None):
            return SearchResult([])
        notices: list[str] = []
        tokens = self._tokens(parsed.words)
        criteria = self._criteria(parsed, today, notices)
        filters = self._filters(sex, age_range, today)
        terms = {t for tok in tokens for t in tok.expansions}
        # Expansions that may not match an address: their ADDRESS posting is never read (for
        # a sound-alike like "road" it is a list of half the cohort).
        no_address = terms - {
            t
            for tok in tokens
            if not tok.initial
            for t in tok.expansions
            if _address_match(tok.word.text, t)
        }
        exact: set[tuple[str, int]] = set()
        for c in (*criteria, *filters):
            for term, f, _ in c.keys:
                if f in _COLUMN_FIELDS:
                    exact.add((term, f))
                else:
                    terms.add(term)
                    no_address.discard(term)
        postings = self._reader.postings(terms, exact, skip_address=no_address)
        self._attach(tokens, criteria, filters, postings)
        if (
            any(c.kind == "nhs" for c in criteria)
            and not any(c.lists for c in criteria if c.kind == "nhs")
            and NOTICE_BAD_CHECK_DIGIT not in notices
        ):
            notices.append(NOTICE_NHS_NOT_FOUND)

        names = self._reader.source_names()
        several = len(names) > 1
        keep = max(_RERANK_MIN, limit + _RERANK_SPARE)
        if len(tokens) == 1 and tokens[0].size > _ONE_WORD_FAST_FROM:
            # With several sources one person may be a row in each: keep enough rows for
            # `limit` people.
            wanted = keep * len(names) if several else keep
            candidates = self._one_common_word(tokens[0], criteria, filters, wanted)
        else:
            candidates = self._candidates(tokens, criteria)
            if not candidates:
                return SearchResult([], _one(notices), self._did_you_mean(query, tokens))
            for hard in filters:
                candidates = _restrict(candidates, hard.lists)
        word_scores = self._word_scores(tokens, candidates)
        bonuses = [_bonus_map(c.lists, candidates) for c in criteria]
        prelim: dict[int, float] = {}
        for pid in candidates:
            total = 0.0
            for scores in word_scores:
                w = scores.get(pid, 0.0)
                total += w if w else -MISSING_WORD
            for b in bonuses:
                total += b.get(pid, 0.0)
            prelim[pid] = total
        scored: list[_Scored] = []
        ranked = 0
        while True:
            top = heapq.nlargest(ranked + keep, prelim, key=prelim.__getitem__)[ranked:]
            rows = self._reader.patients(top)
            scored.extend(self._rerank(rows, tokens, criteria, bonuses, age_range, today))
            ranked += len(top)
            # `limit` counts people: rows that merge into one person leave room for more.
            if not several or ranked >= len(prelim) or _people_count(scored) >= limit:
                break
        hits = self._merge_people(scored, limit, names, today)
        suggestion = None
        if tokens and (not hits or hits[0].score < WEAK_SCORE):
            suggestion = self._did_you_mean(query, tokens)
        return SearchResult(hits, _one(notices), suggestion)

    # -- expansion ----------------------------------------------------------------------------
    def _tokens(self, words: list[Word]) -> list[_Token]:
        vocab = self._vocab
        merged: list[Word] = []
        i = 0
        while i < len(words):
            w = words[i]
            if i + 1 < len(words) and len(w.text) <= 3:
                joined = w.text + words[i + 1].text
                # "o neill", "mc donald", "de souza"; "mac donald" for McDonald too
                if any(v in vocab.name_count for v in _spellings(joined)):
                    merged.append(Word(joined, f"{w.raw} {words[i + 1].raw}"))
                    i += 2
                    continue
            merged.append(w)
            i += 1
        tokens = []
        for w in merged:
            if len(w.text) == 1:
                tokens.append(_Token(w, True, {w.text: INITIAL}, []))
            else:
                tokens.append(_Token(w, False, self._expand(w.text), []))
        return tokens

    def _expand(self, word: str) -> dict[str, float]:
        vocab = self._vocab
        out: dict[str, float] = {}

        def put(term: str, weight: float) -> None:
            if out.get(term, 0.0) < weight:
                out[term] = weight

        if word in vocab.count:
            put(word, EXACT)
        for term in _spellings(word)[1:]:  # Mac/Mc are one name written two ways
            if term in vocab.count:
                put(term, NICKNAME)
        for term in _nicknames().get(word, ()):
            if term in vocab.count:
                put(term, NICKNAME)
        for spelling in _spellings(word):
            for term in vocab.prefixed(spelling):
                put(term, PREFIX_BASE + PREFIX_SPAN * len(spelling) / len(term))
        mp, ny = phonetic_keys(word)
        sounds = set(vocab.metaphone.get(mp, ()) if len(mp) >= 2 else ())
        sounds.update(vocab.nysiis.get(ny, ()) if len(ny) >= 2 else ())
        sounds.discard(word)
        if sounds:
            scored = [(Indel.normalized_similarity(word, t), t) for t in sounds]
            for sim, term in heapq.nlargest(_PHONETIC_KEEP, scored):
                put(term, PHONETIC_BASE + PHONETIC_SPAN * sim)
        k = _max_typos(word)
        if k:
            for term, _ in vocab.typo_candidates(word, k):
                put(term, FUZZY_BASE + FUZZY_SPAN * Indel.normalized_similarity(word, term))
        return out

    # -- structured criteria ------------------------------------------------------------------
    def _criteria(self, parsed: ParsedQuery, today: date, notices: list[str]) -> list[_Criterion]:
        out: list[_Criterion] = []
        nhs_field = int(Field.NHS_NUMBER)
        for digits in dict.fromkeys(parsed.nhs_numbers):
            if is_valid(digits):
                out.append(_Criterion("nhs", [(digits, nhs_field, NHS_EXACT)], NHS_EXACT, []))
            else:
                if NOTICE_BAD_CHECK_DIGIT not in notices:
                    notices.append(NOTICE_BAD_CHECK_DIGIT)
                near = [(n, nhs_field, NHS_NEAR) for n in _near_nhs_numbers(digits)]
                out.append(_Criterion("nhs", near, NHS_EXACT, []))
        dob, year_f = int(Field.BIRTH_DATE), int(Field.BIRTH_YEAR)
        for bd in parsed.birth_dates:
            keys = [(bd.when.isoformat(), dob, DOB_EXACT), (str(bd.when.year), year_f, DOB_YEAR)]
            if bd.swapped is not None:
                keys.append((bd.swapped.isoformat(), dob, DOB_SWAPPED))
            out.append(_Criterion("dob", keys, DOB_EXACT, []))
        for year in dict.fromkeys(parsed.years):
            keys = [
                (str(year), year_f, YEAR_EXACT),
                (str(year - 1), year_f, YEAR_NEXT),
                (str(year + 1), year_f, YEAR_NEXT),
            ]
            out.append(_Criterion("year", keys, YEAR_EXACT, []))
        for age, tolerance in dict.fromkeys(parsed.ages):
            keys = []
            for year in range(today.year - age - 1 - tolerance, today.year - age + tolerance + 1):
                diff = min(abs(today.year - year - 1 - age), abs(today.year - year - age))
                if diff <= tolerance:
                    keys.append((str(year), year_f, AGE * (1 - diff / (tolerance + 1))))
            out.append(_Criterion("age", keys, AGE, [], age=(age, tolerance)))
        pc, full = int(Field.POSTCODE), int(Field.POSTCODE_FULL)
        for kind, key in dict.fromkeys(parsed.postcodes):
            if kind == "full":
                keys = [
                    (key, full, POSTCODE_FULL),
                    (key[:-2], pc, POSTCODE_SECTOR),
                    (key[:-3], pc, POSTCODE_OUTWARD),
                ]
                best = POSTCODE_FULL
            elif kind == "sector":
                keys = [(key, pc, POSTCODE_FULL), (key[:-1], pc, POSTCODE_OUTWARD)]
                best = POSTCODE_FULL
            else:
                keys = [(key, pc, POSTCODE_FULL)]
                best = POSTCODE_FULL
            out.append(_Criterion("postcode", keys, best, []))
        for gender in dict.fromkeys(parsed.genders):
            out.append(
                _Criterion("gender", [(gender, int(Field.GENDER), GENDER_WORD)], GENDER_WORD, [])
            )
        return out

    @staticmethod
    def _filters(
        sex: str | None, age_range: tuple[int, int] | None, today: date
    ) -> list[_Criterion]:
        out = []
        if sex:
            value = {"m": "male", "f": "female"}.get(sex.strip().lower(), sex.strip().lower())
            out.append(_Criterion("sex", [(value, int(Field.GENDER), 1.0)], 0.0, []))
        if age_range is not None:
            low, high = sorted(age_range)
            years = range(today.year - high - 1, today.year - low + 1)
            out.append(
                _Criterion(
                    "age_range",
                    [(str(y), int(Field.BIRTH_YEAR), 1.0) for y in years],
                    0.0,
                    [],
                )
            )
        return out

    @staticmethod
    def _attach(
        tokens: list[_Token],
        criteria: list[_Criterion],
        filters: list[_Criterion],
        postings: dict[tuple[str, int], array],
    ) -> None:
        for tok in tokens:
            fields: tuple[Field, ...] = (Field.INITIAL,) if tok.initial else _WORD_FIELDS
            for term, kind_weight in tok.expansions.items():
                for f in fields:
                    if f == Field.ADDRESS and not _address_match(tok.word.text, term):
                        continue
                    arr = postings.get((term, int(f)))
                    if arr:
                        tok.lists.append((arr, kind_weight * FIELD_WEIGHT[f]))
                        tok.size += len(arr)
        for c in (*criteria, *filters):
            for term, key_field, bonus in c.keys:
                arr = postings.get((term, key_field))
                if arr:
                    c.lists.append((arr, bonus))

    # -- candidates ---------------------------------------------------------------------------
    def _candidates(self, tokens: list[_Token], criteria: list[_Criterion]) -> set[int]:
        """Patients matching every word (or, failing that, all but one); with no words, those
        matching the most typed facts. NHS-number matches always stay in."""
        nhs: set[int] = set()
        for c in criteria:
            if c.kind == "nhs":
                for arr, _ in c.lists:
                    nhs.update(arr)
        if tokens:
            strict = self._strict(tokens)
            if strict:
                return strict | nhs
            if len(tokens) >= 2:
                relaxed = self._relaxed(tokens)
                if relaxed:
                    return relaxed | nhs
            if nhs:
                return nhs
        drivers = [c for c in criteria if c.kind != "gender" and c.lists]
        if not drivers:
            return nhs
        sets = []
        for c in sorted(drivers, key=lambda c: sum(len(a) for a, _ in c.lists)):
            s: set[int] = set()
            for arr, _ in c.lists:
                s.update(arr)
            sets.append(s)
        both = set.intersection(*sets)
        return both or set.union(*sets)

    @staticmethod
    def _one_common_word(
        tok: _Token, criteria: list[_Criterion], filters: list[_Criterion], keep: int
    ) -> set[int]:
        """The candidates that can reach the top `keep` when one common word ("smith",
        "john") is all the name typed: everyone matching a typed fact and the word (NHS-number
        matches whatever the word), plus the `keep` best word matches. Anyone else has no bonus
        and a word weight no higher than those kept, so scoring them all (thousands) would
        change nothing but the time taken."""

        def passes(pid: int) -> bool:
            return all(any(_contains(arr, pid) for arr, _ in f.lists) for f in filters)

        picked: set[int] = set()
        holders: set[int] = set()
        for c in criteria:
            for arr, _ in c.lists:
                if c.kind == "nhs":
                    picked.update(arr)
                else:
                    holders.update(arr)
        if len(holders) > _BISECT_RATIO * tok.size:
            holders.intersection_update(_union(tok.lists))
        else:
            holders = set(_best_weights(holders, tok.lists))
        picked.update(holders)
        picked = {p for p in picked if passes(p)}
        found = 0
        for arr, _ in sorted(tok.lists, key=lambda aw: -aw[1]):
            for pid in arr:
                if pid not in picked and passes(pid):
                    picked.add(pid)
                    found += 1
                    if found >= keep:
                        return picked
        return picked

    @staticmethod
    def _strict(tokens: list[_Token]) -> set[int]:
        order = sorted(tokens, key=lambda t: t.size)
        if not order[0].lists:
            return set()
        cands = _union(order[0].lists)
        for tok in order[1:]:
            cands = _restrict(cands, tok.lists)
            if not cands:
                break
        return cands

    @staticmethod
    def _relaxed(tokens: list[_Token]) -> set[int]:
        counts: Counter[int] = Counter()
        for tok in tokens:
            counts.update(_union(tok.lists))
        need = len(tokens) - 1
        return {p for p, n in counts.items() if n >= need}

    @staticmethod
    def _word_scores(tokens: list[_Token], candidates: set[int]) -> list[dict[int, float]]:
        return [_best_weights(candidates, tok.lists) for tok in tokens]

    # -- re-rank ------------------------------------------------------------------------------
    def _rerank(
        self,
        rows: dict[int, IndexedPatient],
        tokens: list[_Token],
        criteria: list[_Criterion],
        bonuses: list[dict[int, float]],
        age_range: tuple[int, int] | None,
        today: date,
    ) -> list[_Scored]:
        best = sum(c.best for c in criteria)
        if tokens:
            best += len(tokens) + NAME_SIMILARITY + ORDER_BONUS
        best = best or 1.0
        typed = " ".join(t.word.text for t in tokens)
        hits = []
        for pid, row in rows.items():
            age = _age(row.birth_date, today)
            if age_range is not None and (
                age is None or not (min(age_range) <= age <= max(age_range))
            ):
                continue
            total = 0.0
            if tokens:
                total += _assign(tokens, row)
                if row.names:
                    total += (
                        NAME_SIMILARITY
                        * max(fuzz.token_sort_ratio(typed, n) for n in row.names)
                        / 100
                    )
            for c, b in zip(criteria, bonuses, strict=True):
                if c.age is not None:
                    total += _age_bonus(age, *c.age)
                else:
                    total += b.get(pid, 0.0)
            hits.append(_Scored(row, round(min(1.0, max(0.0, total / best)), 4)))
        return hits

    # -- one person per NHS number ------------------------------------------------------------
    def _merge_people(
        self, scored: list[_Scored], limit: int, names: dict[int, str], today: date
    ) -> list[PatientHit]:
        """The best `limit` people: rows of several sources that share a verified NHS number
        (`person_key` "nhs:...") are one person, with the best member's score and rank and
        every source's Patient as a member (also those the query did not reach). Rows
        without one (`src:...`) are never merged, nor are the rows of a number that one
        source holds twice (a data error there: which of its two would be this person?)."""
        scored.sort(key=_Scored.order)
        rows_by_pid = {s.row.pid: s.row for s in scored}
        groups = _group(scored, merge=len(names) > 1, split=frozenset())
        keys = [k for k in list(groups)[:limit] if k.startswith(MERGED_KEY_PREFIX)]
        # Every source's row of these people: most are among the scored rows; the others
        # (a member the query did not reach) are read whole, for their alerts and names.
        shared = self._words.shared_people(self._reader) if keys else {}
        missing = {p for k in keys for p in shared.get(k, ())} - rows_by_pid.keys()
        if missing:
            rows_by_pid.update(self._reader.patients(missing))
        members: dict[str, list[IndexedPatient]] = {}
        for key in keys:
            # The scored rows, and those the in-memory copy names that still are this
            # person (a pid freed by a delete may be another person's by now).
            found = {s.row.pid: s.row for s in groups[key]}
            for p in shared.get(key, ()):
                row = rows_by_pid.get(p)
                if row is not None and row.person_key == key:
                    found[p] = row
            if one_per_source(r.source for r in found.values()):
                members[key] = sorted(found.values(), key=lambda r: (r.source, r.id))  # home 1st
        # A number one source holds twice is not one person: its rows stay apart.
        split = frozenset(k for k in keys if k not in members)
        if split:
            groups = _group(scored, merge=True, split=split)
        kept = list(groups.items())[:limit]
        today_iso = today.isoformat()
        looked_up = self._reader.looked_up(
            [r.pid for _, rows in kept for r in (s.row for s in rows)]
        )
        hits = []
        for key, rows in kept:
            best = rows[0]
            present = members.get(key) or [s.row for s in rows]
            home = next((r for r in present if r.source == HOME_SOURCE), None)
            shown = home or best.row
            alerts: dict[tuple[str, str, str], Alert] = {}
            for r in present:
                for a in _alerts(r, names.get(r.source, ""), today_iso):
                    alerts.setdefault((a.code, a.kind, a.source), a)
            hits.append(
                PatientHit(
                    id=shown.id,
                    display_name=shown.display_name or NO_NAME,
                    known_as=shown.known_as,
                    birth_date=shown.birth_date,
                    age=_age(shown.birth_date, today),
                    gender=shown.gender,
                    nhs_number=shown.nhs_number,
                    postcode=shown.postcode,
                    address=shown.address,
                    alerts=tuple(sorted(alerts.values(), key=_alert_order)),
                    score=best.score,
                    source=names.get(shown.source, ""),
                    sources=tuple(dict.fromkeys(names.get(r.source, "") for r in present)),
                    members=tuple((r.source, r.id) for r in present),
                    sid=shown.source,
                    looked_up=shown.pid in looked_up,
                )
            )
        return hits

    # -- did you mean -------------------------------------------------------------------------
    def _did_you_mean(self, query: str, tokens: list[_Token]) -> str | None:
        vocab = self._vocab
        fixes: dict[str, str] = {}
        for tok in tokens:
            word = tok.word.text
            if tok.initial or word in vocab.count or len(word) <= 3:
                continue
            options = []
            for term, kind_weight in tok.expansions.items():
                if kind_weight < PREFIX_BASE and term in vocab.name_count:
                    options.append((kind_weight, vocab.name_count[term], term))
            if options:
                fixes[tok.word.raw.lower()] = max(options)[2]
        if not fixes:
            return None
        text = query[:200]
        out = []
        for part in text.split():
            out.append(fixes.get(part.lower(), part))
        suggestion = " ".join(out)
        if suggestion == " ".join(text.split()):
            suggestion = " ".join(fixes.get(t.word.raw.lower(), t.word.text) for t in tokens)
        return suggestion


# -- helpers ----------------------------------------------------------------------------------


def _spellings(word: str) -> list[str]:
    """The word and its other Mac/Mc spelling (`macdonald`, `mcdonald`)."""
    if word.startswith("mac") and len(word) > 4:
        return [word, "mc" + word[3:]]
    if word.startswith("mc") and len(word) > 3:
        return [word, "mac" + word[2:]]
    return [word]


def _one(notices: list[str]) -> str | None:
    return "; ".join(notices) if notices else None


def _union(lists: list[tuple[array, float]]) -> set[int]:
    out: set[int] = set()
    for arr, _ in lists:
        out.update(arr)
    return out


def _contains(arr: array, pid: int) -> bool:
    i = bisect_left(arr, pid)
    return i < len(arr) and arr[i] == pid


_BISECT_RATIO = 16  # a Python bisect per candidate costs about this many C-level set probes


def _members(cands: set[int], arr: array) -> Iterable[int]:
    """The candidates in a sorted posting list, by whichever way is cheaper: a C-level walk
    of the list, or a bisect per candidate when the list dwarfs the candidates."""
    if len(arr) > _BISECT_RATIO * len(cands):
        return [p for p in cands if _contains(arr, p)]
    return cands.intersection(arr)


def _best_weights(cands: set[int], lists: list[tuple[array, float]]) -> dict[int, float]:
    """Candidate -> the best weight among the lists holding it (absent: in none). Heaviest
    lists first, and a candidate once found is not looked for again."""
    out: dict[int, float] = {}
    remaining = set(cands)
    for arr, weight in sorted(lists, key=lambda aw: -aw[1]):
        found = _members(remaining, arr)
        out.update(dict.fromkeys(found, weight))
        remaining.difference_update(found)
        if not remaining:
            break
    return out


def _restrict(candidates: set[int], lists: list[tuple[array, float]]) -> set[int]:
    """Candidates present in at least one of the lists (a hard filter; set work in C)."""
    out: set[int] = set()
    remaining = set(candidates)
    for arr, _ in lists:
        found = _members(remaining, arr)
        out.update(found)
        remaining.difference_update(found)
        if not remaining:
            break
    return out


def _bonus_map(lists: list[tuple[array, float]], candidates: set[int]) -> dict[int, float]:
    return _best_weights(candidates, lists)


def _address_match(word: str, term: str) -> bool:
    """Address words match as typed or as a prefix, never by sound or typo: a sound-alike of
    a short name ("Reid", "Lynn") would otherwise hit "road" or "lane" for half the cohort."""
    return term == word or (len(word) >= 3 and term.startswith(word))


def _assign(tokens: list[_Token], row: IndexedPatient) -> float:
    """Best one-to-one matching of typed words to the person's name words (greedy, by weight),
    so "john johnson" does not match a lone "Johnson" twice. Missing words cost a penalty."""
    pairs = []
    for i, tok in enumerate(tokens):
        for term, field in row.terms:
            if field == Field.INITIAL:
                if tok.initial and term == tok.word.text:
                    pairs.append((INITIAL, i, term, field))
                continue
            if tok.initial or field not in FIELD_WEIGHT:
                continue
            if field == Field.ADDRESS and not _address_match(tok.word.text, term):
                continue
            kind_weight = tok.expansions.get(term)
            if kind_weight is None and term.startswith(tok.word.text):
                kind_weight = PREFIX_BASE + PREFIX_SPAN * len(tok.word.text) / len(term)
            if kind_weight:
                pairs.append((kind_weight * FIELD_WEIGHT[Field(field)], i, term, field))
    pairs.sort(reverse=True)
    used_tokens: dict[int, int] = {}
    used_terms: set[str] = set()
    total = 0.0
    for weight, i, term, field in pairs:
        if i in used_tokens or term in used_terms:
            continue
        used_tokens[i] = field
        used_terms.add(term)
        total += weight
    total -= MISSING_WORD * (len(tokens) - len(used_tokens))
    if (
        len(tokens) >= 2
        and used_tokens.get(0) in (Field.GIVEN, Field.KNOWN_AS)
        and (used_tokens.get(len(tokens) - 1) in (Field.FAMILY, Field.PREVIOUS))
    ):
        total += ORDER_BONUS
    return total


def _person_key(row: IndexedPatient, merge: bool, split: frozenset[str]) -> str:
    key = row.person_key
    if merge and key.startswith(MERGED_KEY_PREFIX) and key not in split:
        return key
    return f"pid:{row.pid}"


def _group(
    scored: list[_Scored], *, merge: bool, split: frozenset[str]
) -> dict[str, list[_Scored]]:
    """Person -> their scored rows, best first; people in the order of their best row."""
    groups: dict[str, list[_Scored]] = {}
    for s in scored:  # already in rank order
        groups.setdefault(_person_key(s.row, merge, split), []).append(s)
    return groups


def _people_count(scored: list[_Scored]) -> int:
    return len({_person_key(s.row, True, frozenset()) for s in scored})


_KIND_RANK = {kind: rank for rank, kind in enumerate(ALERT_KINDS)}


def _alert_order(alert: Alert) -> tuple[int, str, str]:
    """Staff safety first (as the index orders one source's badges), then by label."""
    return (_KIND_RANK.get(alert.kind, len(ALERT_KINDS)), alert.label, alert.source)


def _alerts(row: IndexedPatient, source: str, today_iso: str) -> list[Alert]:
    """The row's badges still in force today, labelled with the source they came from."""
    return [
        Alert(code, label, kind if kind in ALERT_KINDS else "other", source)
        for code, label, kind, end in row.alerts
        if end is None or str(end)[:10] >= today_iso
    ]


def _age(birth_date: str | None, today: date) -> int | None:
    if not birth_date or len(birth_date) < 10:
        return None
    try:
        born = date.fromisoformat(birth_date[:10])
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _age_bonus(age: int | None, wanted: int, tolerance: int) -> float:
    if age is None:
        return 0.0
    diff = abs(age - wanted)
    return AGE * (1 - diff / (tolerance + 1)) if diff <= tolerance else 0.0


def _near_nhs_numbers(digits: str) -> list[str]:
    """Valid numbers one typing slip away: one digit changed, or two neighbours swapped."""
    out = []
    for i in range(10):
        for d in "0123456789":
            if d != digits[i]:
                out.append(digits[:i] + d + digits[i + 1 :])
    for i in range(9):
        if digits[i] != digits[i + 1]:
            out.append(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
    return [n for n in dict.fromkeys(out) if check_digit(n[:9]) == int(n[9])]


SEARCH_ACTION = "search"


def audit_search(session: Any, query: str, shown: int) -> None:
    """Audit a search that put people on screen (names, dates of birth, NHS numbers, alerts).

    The query is itself patient data: it is kept only in the encrypted cache's audit chain and
    in the AuditEvent uploaded to the centre (`entity.query`), never in a log.
    """
    if shown <= 0:
        return
    import uuid

    session.store.audit(
        user_id=session.user_id,
        action=SEARCH_ACTION,
        patient_id=None,
        source=None,
        reason=query,
        event_id=str(uuid.uuid4()),
    )
