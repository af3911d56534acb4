"""The app's name for the NHS number rules, which live in the shared `nhs` package (the sync
library validates numbers too, and may not import `app`)."""

from nhs.number import check_digit, format_nhs_number, is_valid, is_well_formed, normalise

__all__ = ["check_digit", "format_nhs_number", "is_valid", "is_well_formed", "normalise"]
