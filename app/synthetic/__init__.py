"""Deterministic synthetic UK mental-health cohort as FHIR R4 (UK Core) resources.

Contract: plain Python, no Qt, no network, no store; used by the `kerbside generate` command,
benchmarks, tests and the reference server's seeding. Output depends only on (patients, seed,
as_of), and for several Trusts' records (`generate_trusts`) on (trusts, overlap) too.
All people, numbers and organisations are invented: NHS numbers are from the 999 test range,
phone numbers from Ofcom's drama ranges.
"""

from __future__ import annotations

from app.synthetic._cohort import (
    RESOURCE_TYPES,
    generate_cohort,
    iter_cohort,
    iter_patient_records,
)
from app.synthetic._common import DEFAULT_AS_OF
from app.synthetic._people import MAX_PATIENTS, NHS_TEST_PREFIX
from app.synthetic._trusts import MAX_TRUSTS, generate_trusts, memberships, trust_folder

__all__ = [
    "DEFAULT_AS_OF",
    "MAX_PATIENTS",
    "MAX_TRUSTS",
    "NHS_TEST_PREFIX",
    "RESOURCE_TYPES",
    "generate_cohort",
    "generate_trusts",
    "iter_cohort",
    "iter_patient_records",
    "memberships",
    "trust_folder",
]

for _name in (
    "generate_cohort",
    "generate_trusts",
    "iter_cohort",
    "iter_patient_records",
    "memberships",
    "trust_folder",
):
    globals()[_name].__module__ = __name__
del _name
