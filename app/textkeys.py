"""Search text keys: how a name, address or postcode becomes the words search matches on.

Pure functions of text (no SQL, no Qt): the store uses them to build the index and search uses
them to read a query, and both must fold text the same way or a name stops finding itself.
That is why they live here, below both, rather than inside the store's index module.

Folding is lowercase with accents dropped and every apostrophe form made `'`; name terms keep
hyphen and apostrophe parts and the joined form; postcodes give full, sector and outward keys;
phonetic keys are (metaphone, NYSIIS) for sound-alike matches.
"""

from __future__ import annotations

import re
import unicodedata

import jellyfish

_APOSTROPHES = "'’‘`´ʼ"
_SPECIAL = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "œ": "oe",
        "Œ": "oe",
        "þ": "th",
        "Þ": "th",
        "ð": "d",
        "ı": "i",
        **{a: "'" for a in _APOSTROPHES},
    }
)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
# Address words too common to help; queries treat them as optional.
ADDRESS_STOPWORDS = frozenset({"the", "of", "and", "flat", "apartment"})


def fold(text: str) -> str:
    """Lowercase, accents dropped (`Zoë` -> `zoe`), every apostrophe form made `'`."""
    if text.isascii():  # the common case, ten times cheaper than translate + NFKD
        return text.lower().replace("`", "'")
    text = text.translate(_SPECIAL)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower()


def words(text: str) -> list[str]:
    """The folded words of `text` as written (apostrophes kept inside, everything else splits)."""
    return _WORD.findall(fold(text))


def name_terms(text: str) -> list[str]:
    """Index terms for one name string: `O'Neill` -> oneill, neill; `Smith-Jones` -> smith,
    jones, smithjones; `de la Cruz` -> de, la, cruz, delacruz. Single letters are left out."""
    out: list[str] = []
    parts: list[str] = []
    for word in words(text):
        if "'" in word:
            joined = word.replace("'", "")
            parts.append(joined)
            out.append(joined)
            out.extend(p for p in word.split("'") if len(p) >= 2)
        else:
            parts.append(word)
            out.append(word)
    if 1 < len(parts) <= 4:
        out.append("".join(parts))
    return list(dict.fromkeys(t for t in out if len(t) >= 2))


def postcode_terms(postcode: str) -> list[str]:
    """Full (`b152tt`), sector (`b152`) and outward (`b15`) keys of a UK postcode."""
    compact = "".join(c for c in postcode.lower() if c.isalnum())
    if not 5 <= len(compact) <= 7 or not compact[-3].isdigit():
        return [compact] if compact else []
    outward = compact[:-3]
    return [compact, compact[:-2], outward]


def phonetic_keys(term: str) -> tuple[str, str]:
    """(metaphone, NYSIIS) of a folded word; jellyfish wants letters, so others are dropped."""
    letters = "".join(c for c in term if "a" <= c <= "z")
    if not letters:
        return "", ""
    return jellyfish.metaphone(letters), jellyfish.nysiis(letters)
