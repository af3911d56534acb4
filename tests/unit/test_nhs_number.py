import pytest

from app.nhs_number import format_nhs_number, is_valid, is_well_formed, normalise


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        ("943 476 5870", True),
        ("9434765870", True),
        ("485 777 3457", True),
        ("485-777-3457", True),
        ("485 777 3456", False),  # the NHS service manual's sample: wrong check digit
        ("943 476 5871", False),
        ("12345", False),
        ("94347658700", False),
        ("abcdefghij", False),
        ("", False),
    ],
)
def test_nhs_number_check_digit(raw: str, valid: bool) -> None:
    assert is_valid(raw) is valid


def test_a_number_whose_check_would_be_ten_is_never_valid() -> None:
    # 1000000010 -> weights sum 10*1 + 2*1 = 12 -> 11 - 1 = 10: never issued
    assert not any(is_valid(f"100000001{d}") for d in range(10))


def test_well_formed_but_bad_check_digit_is_told_apart() -> None:
    assert is_well_formed("485 777 3456") and not is_valid("485 777 3456")


def test_display_groups_three_three_four() -> None:
    assert format_nhs_number("9434765870") == "943 476 5870"
    assert normalise(" 943 476 5870 ") == "9434765870"
