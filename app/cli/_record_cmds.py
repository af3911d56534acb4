"""`kerbside record`: record street-triage encounters offline from a JSON file.

    kerbside record --profile DIR --user NAME [--pin-stdin] --from-json FILE

FILE holds a JSON array of encounters. The whole file is checked first; if any encounter has
a problem nothing is stored and each problem is printed as `[index].field: reason` (index from
0). Otherwise all the encounters are saved in ONE transaction (all or nothing, even on a disk
error) and queued for sync, and a JSON array of the client identifiers assigned (one per
encounter, in file order) is printed. The same validation runs behind the app's form.

Each encounter is an object with these fields (unknown field names are refused).

Required:
- `patient` (object): exactly one of
  `{"id": "<cached Patient id>"}` (the home source's Patient), or
  `{"id": "<id>", "source": "<source name>"}` (another source's, e.g. a neighbouring Trust's:
  the record still goes home, under home's id when home knows the person, else by their
  verified NHS number, else as an unidentified person described by that Trust's record);
  `{"nhs_number": "<10 digits, spaces allowed>"}`: a valid Modulus 11 number matching exactly
  one cached person;
  `{"unidentified": {...}}`: a person who cannot be identified (a provisional record is made):
  `description` (string, required, up to 1000 characters), `apparent_age` (whole number 0-120,
  required), `sex` (`female`, `male`, `other`, `unknown`; required), `place_found` (string,
  optional, up to 500 characters).
- `start` (string): date-time with a time zone, e.g. `2026-11-20T22:15:00Z`; stored in UTC.
- `end` (string): as `start`; after it, at most 24 hours after it, and not in the future
  (5 minutes' clock skew allowed; `start` neither).
- `location` (string): free text, not empty, up to 500 characters.
- `police_incident_ref` (string): the force's incident/CAD number, not empty, up to 64.
- `presenting_situation` (string): not empty, up to 4000 characters.
- `section_136` (boolean): Mental Health Act s136 used.
- `outcome` (string): `no-further-action`, `advice-signposting`, `referred-crisis-team`,
  `referred-cmht`, `referred-gp`, `voluntary-ed`, `informal-admission`,
  `s136-place-of-safety` (needs `section_136` true), `arrested`, `other`.
- `narrative` (string): free text, may be empty, up to 20000 characters.

Required when `section_136` is true (and refused when it is false, except `location_type`):
- `location_type` (string, otherwise optional): `public-place` or `dwelling`; s136 in a
  dwelling is refused.
- `health_professional_consulted` (boolean).
- `place_of_safety` (string): `hbpos`, `ed`, `police-station`, `other`; a police station is
  refused for a person under 18 (age from the cached date of birth, or the apparent age).
- `conveyance` (string): `ambulance`, `police-vehicle`, `other`, `none`.

Optional:
- `consulted_with` (string, up to 200): only with s136 and a consultation.
- `response_mode` (string): `face-to-face`, `telephone`, `control-room`.
- `known_to_services` (string): `yes`, `no`, `unknown`.
- `crisis_plan_consulted` (boolean).
- `risk_to_self`, `risk_to_others`, `risk_from_others` (string): `none`, `low`, `medium`,
  `high`.
- `referrals` (array of strings, each at most once): `crisis-team`, `cmht`, `gp`,
  `substance-misuse`, `social-care`, `other`.
- `team` (string, up to 200): the street-triage team that attended, recorded as the
  Encounter's `serviceProvider`. Left out, it is the profile's team (`kerbside enrol --team`,
  `kerbside set-team`), identified by its ODS code if one was set; a different name is recorded
  by name only; `null` or `""` records no team.

Optional fields may be left out or given as `null`; nothing is assumed for a missing one
except `team`.
Example:

    [{"patient": {"nhs_number": "943 476 5870"}, "start": "2026-11-20T22:15:00Z",
      "end": "2026-11-20T23:05:00Z", "location": "Bus station, Moor Street",
      "police_incident_ref": "WMP-2026-11-20-1042", "presenting_situation": "Distressed",
      "section_136": false, "outcome": "referred-crisis-team", "narrative": "...",
      "risk_to_self": "high", "referrals": ["crisis-team"]}]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import orjson

from app.cli._common import add_user_args
from app.cli._profile_cmds import _unlock


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "record", help="record encounters offline from a JSON file (queued for sync)"
    )
    add_user_args(p)
    p.add_argument(
        "--from-json", required=True, type=Path, metavar="FILE", help="a JSON array of encounters"
    )
    p.set_defaults(func=_record)


def _read(path: Path) -> list[object]:
    from app.errors import InvalidInput

    try:
        data = orjson.loads(path.read_bytes())
    except OSError:
        raise InvalidInput("the encounter file cannot be read", field="from_json") from None
    except orjson.JSONDecodeError:
        raise InvalidInput("the encounter file is not valid JSON", field="from_json") from None
    if not isinstance(data, list):
        raise InvalidInput("the encounter file must hold a JSON array", field="from_json")
    if not data:
        raise InvalidInput("the encounter file holds no encounters", field="from_json")
    return data


def _record(args: argparse.Namespace) -> int:
    from app.services.encounters import FieldError, parse_encounter, record_many

    items = _read(args.from_json)  # before the PIN: a bad file costs no unlock attempt
    with _unlock(args) as session:
        inputs = []
        errors: list[FieldError] = []
        for index, item in enumerate(items):
            inp, problems = parse_encounter(item, session)
            errors += [FieldError(f"[{index}].{e.field}", e.message) for e in problems]
            inputs.append(inp)
        if errors:
            for error in errors:
                print(f"kerbside: {error}", file=sys.stderr)
            print("kerbside: nothing was stored", file=sys.stderr)
            return 1
        recorded = record_many(session, [i for i in inputs if i is not None])
        session.write_status()
    print(json.dumps([r.client_id for r in recorded]))
    return 0
