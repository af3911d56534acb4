"""NHS number validation (Modulus 11) and display. See DOMAIN.md."""

from __future__ import annotations

import re

_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_SEPARATORS = re.compile(r"[\s-]")


def normalise(raw: str) -> str:
    """Digits only: '943 476 5870' and '943-476-5870' become '9434765870'."""
    return _SEPARATORS.sub("", raw)


def check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for nine digits, or None if no valid number can have them."""
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_well_formed(raw: str) -> bool:
    """Ten digits once spaces are gone, whether or not the check digit is right."""
    digits = normalise(raw)
    return len(digits) == 10 and digits.isdigit()


def is_valid(raw: str) -> bool:
    digits = normalise(raw)
    if len(digits) != 10 or not digits.isdigit():
        return False
    return check_digit(digits[:9]) == int(digits[9])


def format_nhs_number(digits: str) -> str:
    """The 3 3 4 grouping people read aloud: '943 476 5870'."""
    d = normalise(digits)
    return f"{d[:3]} {d[3:6]} {d[6:]}" if len(d) == 10 else d
