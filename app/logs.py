"""Logging that never carries patient data.

Log ids we mint, counts, durations, resource types and status codes; never names, NHS numbers,
dates of birth, free text, search queries, tokens or keys. Libraries that log URLs (urllib3
logs every request path and query at DEBUG) are raised to WARNING: a FHIR search URL can hold
an identifier.
"""

from __future__ import annotations

import logging
import os

_QUIET_LIBRARIES = ("urllib3", "requests", "uvicorn.access", "faker", "asyncio")


def configure_logging(*, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose or os.environ.get("KERBSIDE_DEBUG") else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=False
    )
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
