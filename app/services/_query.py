"""Turn what an officer types into search criteria: name words, NHS number, dates of birth as
people say them, a year, an age, a postcode, a sex word.

Pure functions of the text and today's date (no store, no vocabulary), so they are easy to
table-test. Dates are read the British way first (`3/4/88` is 3 April 1988); the swapped
reading is kept as a weaker alternative because American order does turn up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from app.textkeys import fold

MAX_QUERY_CHARS = 200
MAX_WORDS = 8

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_MONTH_RE = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"

_NHS = re.compile(r"(?<![\d/.-])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![\d/.-])")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_UK_DATE = re.compile(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})(?!\d)")
_SPACED_DATE = re.compile(r"(?<!\d)(\d{1,2}) (\d{1,2}) (\d{4})(?!\d)")
_DAY_MONTH = re.compile(
    rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?[ ./-]*{_MONTH_RE}[ ,./-]*(\d{{4}}|\d{{2}})(?!\d)"
)
_MONTH_DAY = re.compile(rf"\b{_MONTH_RE} (\d{{1,2}})(?:st|nd|rd|th)?,? (\d{{4}})(?!\d)")
_POSTCODE = re.compile(r"(?<![a-z0-9])([a-z]{1,2}\d[a-z\d]?) ?(\d[a-z]{2})(?![a-z0-9])")
_SECTOR = re.compile(r"(?<![a-z0-9])([a-z]{1,2}\d[a-z\d]?) (\d)(?![a-z0-9])")
_OUTWARD = re.compile(r"[a-z]{1,2}\d[a-z\d]?")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|~")
_AGE_SUFFIX = re.compile(r"(\d{1,3})(ish|yo|yrs?|y|years?)")

_APPROX_WORDS = frozenset(
    {
        "about",
        "approx",
        "approximately",
        "around",
        "roughly",
        "circa",
        "ca",
        "c",
        "~",
        "maybe",
        "perhaps",
        "abt",
    }
)
_ISH = "ish"
_AGE_WORDS = frozenset({"age", "aged"})
_SKIP_WORDS = frozenset(
    {
        "ish",
        "yo",
        "yrs",
        "yr",
        "years",
        "year",
        "old",
        "dob",
        "born",
        "nhs",
        "no",
        "number",
        "postcode",
        "mr",
        "mrs",
        "miss",
        "ms",
        "mx",
        "dr",
        "called",
        "named",
        "aka",
        "the",
        "and",
        "of",
        "in",
        "at",
        "flat",  # address words the index leaves out (ADDRESS_STOPWORDS)
        "apartment",
    }
)
_GENDER_WORDS = {
    "male": "male",
    "man": "male",
    "boy": "male",
    "gentleman": "male",
    "female": "female",
    "woman": "female",
    "girl": "female",
    "lady": "female",
}

PLAIN_AGE_TOLERANCE = 2  # "35": officers estimate
APPROX_AGE_TOLERANCE = 5  # "about 35", "~35", "35ish"


@dataclass(frozen=True, slots=True)
class Word:
    text: str  # folded, apostrophes removed: what the index holds
    raw: str  # as typed, for "did you mean"


@dataclass(frozen=True, slots=True)
class BirthDate:
    when: date
    swapped: date | None  # the day/month-swapped reading when both are possible


@dataclass(slots=True)
class ParsedQuery:
    words: list[Word] = field(default_factory=list)
    nhs_numbers: list[str] = field(default_factory=list)  # ten digits, valid or not
    birth_dates: list[BirthDate] = field(default_factory=list)
    years: list[int] = field(default_factory=list)
    ages: list[tuple[int, int]] = field(default_factory=list)  # (age, tolerance in years)
    postcodes: list[tuple[str, str]] = field(default_factory=list)  # (kind, compact key)
    genders: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (
            self.words
            or self.nhs_numbers
            or self.birth_dates
            or self.years
            or self.ages
            or self.postcodes
        )


def _year(raw: str, today: date) -> int:
    if len(raw) == 4:
        return int(raw)
    yy = int(raw)
    return 2000 + yy if 2000 + yy <= today.year else 1900 + yy


def _birth_date(
    year: int, first: int, second: int, today: date, *, month_first: bool = False
) -> BirthDate | None:
    """A date from day/month (or month/day) numbers; impossible readings are dropped."""
    day, month = (second, first) if month_first else (first, second)
    candidates = []
    for d, m in ((day, month), (month, day)):
        try:
            when = date(year, m, d)
        except ValueError:
            continue
        if when <= today and when not in candidates:
            candidates.append(when)
    if not candidates:
        return None
    return BirthDate(candidates[0], candidates[1] if len(candidates) > 1 else None)


def _cut(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def parse_query(query: str, today: date) -> ParsedQuery:
    """Split a free-text query into criteria. Never raises on any input."""
    out = ParsedQuery()
    raw_text = query[:MAX_QUERY_CHARS]
    text = fold(raw_text)
    if len(text) != len(raw_text):  # folding changed lengths: raw spans no longer line up
        raw_text = text
    text = text.replace("~", " ~ ")
    raw_text = raw_text.replace("~", " ~ ")

    for m in list(_NHS.finditer(text)):
        out.nhs_numbers.append("".join(m.groups()))
        text = _cut(text, m)
    for m in list(_DAY_MONTH.finditer(text)):
        _add_date(out, _year(m.group(3), today), int(m.group(1)), _MONTHS[m.group(2)[:3]], today)
        text = _cut(text, m)
    for m in list(_MONTH_DAY.finditer(text)):
        _add_date(out, int(m.group(3)), int(m.group(2)), _MONTHS[m.group(1)[:3]], today)
        text = _cut(text, m)
    for m in list(_ISO_DATE.finditer(text)):
        y, mo, d = (int(g) for g in m.groups())
        _add_date(out, y, d, mo, today)
        text = _cut(text, m)
    for pattern in (_UK_DATE, _SPACED_DATE):
        for m in list(pattern.finditer(text)):
            bd = _birth_date(_year(m.group(3), today), int(m.group(1)), int(m.group(2)), today)
            if bd is not None:
                out.birth_dates.append(bd)
            text = _cut(text, m)
    for m in list(_POSTCODE.finditer(text)):
        out.postcodes.append(("full", m.group(1) + m.group(2)))
        text = _cut(text, m)
    for m in list(_SECTOR.finditer(text)):
        out.postcodes.append(("sector", m.group(1) + m.group(2)))
        text = _cut(text, m)

    approx = False
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        raw = raw_text[m.start() : m.end()] if raw_text is not text else token
        if len(out.words) >= MAX_WORDS and token.isalpha():
            continue
        if token in _APPROX_WORDS:
            approx = True
            continue
        if token in _AGE_WORDS:  # "aged 35": a plain age, tolerance as typed
            continue
        if token.isdigit():
            _number(out, token, today, approx)
            approx = False
            continue
        if (suffix := _AGE_SUFFIX.fullmatch(token)) is not None:
            age = int(suffix.group(1))
            if age <= 120:
                tolerance = (
                    APPROX_AGE_TOLERANCE
                    if approx or suffix.group(2) == "ish"
                    else (PLAIN_AGE_TOLERANCE)
                )
                out.ages.append((age, tolerance))
            approx = False
            continue
        if token == _ISH and out.ages:
            age, _ = out.ages[-1]
            out.ages[-1] = (age, APPROX_AGE_TOLERANCE)
            continue
        if any(c.isdigit() for c in token):
            if _OUTWARD.fullmatch(token):
                out.postcodes.append(("outward", token))
            continue
        if token in _GENDER_WORDS:
            out.genders.append(_GENDER_WORDS[token])
            continue
        if token in _SKIP_WORDS:
            continue
        word = token.replace("'", "")
        if word:
            out.words.append(Word(word, raw))
        approx = False
    return out


def _add_date(out: ParsedQuery, year: int, day: int, month: int, today: date) -> None:
    """A date whose order is not in doubt (ISO, or a month written as a word)."""
    try:
        when = date(year, month, day)
    except ValueError:
        return
    if when <= today:
        out.birth_dates.append(BirthDate(when, None))


def _number(out: ParsedQuery, digits: str, today: date, approx: bool) -> None:
    """A bare number: a compact date, a birth year, an age or an NHS number."""
    if len(digits) == 10:
        out.nhs_numbers.append(digits)
    elif len(digits) == 8:
        bd = None
        if 1900 <= int(digits[:4]) <= today.year:
            bd = _birth_date(int(digits[:4]), int(digits[6:]), int(digits[4:6]), today)
        if bd is None:
            bd = _birth_date(int(digits[4:]), int(digits[:2]), int(digits[2:4]), today)
        if bd is not None:
            out.birth_dates.append(bd)
    elif len(digits) == 6:
        bd = _birth_date(_year(digits[4:], today), int(digits[:2]), int(digits[2:4]), today)
        if bd is not None:
            out.birth_dates.append(bd)
    elif len(digits) == 4:
        year = int(digits)
        if 1880 <= year <= today.year:
            out.years.append(year)
    elif len(digits) <= 3 and not (len(digits) > 1 and digits.startswith("0")):
        age = int(digits)
        if age <= 120:
            out.ages.append((age, APPROX_AGE_TOLERANCE if approx else PLAIN_AGE_TOLERANCE))
