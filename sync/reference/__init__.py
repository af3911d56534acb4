"""The reference central record: a FHIR R4 server with the semantics Kerbside's sync relies on,
OAuth2 client credentials, a device registry and switchable fault injection (tests, demo).

Imports nothing from `app` (it may be run without the tablet code); seeding reads NDJSON.
"""

from sync.reference._app import create_app
from sync.reference._faults import (
    FaultInjector,
    FaultRule,
    fault_params,
    parse_fault_spec,
)
from sync.reference._model import Clock, FhirError, wall_clock_us
from sync.reference._server import ReferenceServer, serve
from sync.reference._state import ReferenceConfig, ReferenceState

__all__ = [
    "Clock",
    "FaultInjector",
    "FaultRule",
    "FhirError",
    "ReferenceConfig",
    "ReferenceServer",
    "ReferenceState",
    "create_app",
    "fault_params",
    "parse_fault_spec",
    "serve",
    "wall_clock_us",
]
