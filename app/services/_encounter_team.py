"""The officer's team: a profile setting that is the default team on every record
(set at enrolment, by `kerbside set-team` or in the form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import InvalidInput
from app.security import Profile
from app.services._encounter_fhir import FORM_ITEMS

# Profile settings naming the officer's team (set at enrolment or by `kerbside set-team`).
TEAM_SETTING = "team"
TEAM_CODE_SETTING = "team_code"
ODS_CODE = re.compile(r"[A-Z0-9]{3,10}")  # organisation (e.g. RXV) or site (e.g. RXV01) code


@dataclass(frozen=True, slots=True)
class Team:
    """The street-triage team this device records for; `code` is its ODS code, if known."""

    name: str
    code: str | None = None


def team_of(profile: Profile) -> Team | None:
    """The profile's team, or None if none was set (records then name no team)."""
    settings = profile.settings
    name = settings.get(TEAM_SETTING)
    if not isinstance(name, str) or not name.strip():
        return None
    code = settings.get(TEAM_CODE_SETTING)
    return Team(name.strip(), code if isinstance(code, str) and code else None)


def make_team(name: str, code: str | None = None) -> Team:
    """A team as the officer typed it, checked: one line of at most the form's `team` length,
    and an ODS-shaped code (upper-cased) if any. Messages never echo the value."""
    limit = FORM_ITEMS["team"].max_length or 0
    name = name.strip()
    if not name:
        raise InvalidInput("the team name must not be empty", field=TEAM_SETTING)
    if len(name) > limit:
        raise InvalidInput(f"the team name is longer than {limit} characters", field=TEAM_SETTING)
    if not name.isprintable():
        raise InvalidInput("the team name must be one line of text", field=TEAM_SETTING)
    if code is not None:
        code = code.strip().upper()
        if not ODS_CODE.fullmatch(code):
            raise InvalidInput(
                "the team code must be an ODS code: 3 to 10 letters and digits, e.g. RXV",
                field=TEAM_CODE_SETTING,
            )
    return Team(name, code)


def set_team(profile: Profile, team: Team | None) -> None:
    """Make `team` (from `make_team`; None: no team) the default for new records.

    Name and code are replaced together: a code left over from the previous team would
    identify the wrong organisation on every later record.
    """
    name, code = (team.name, team.code) if team is not None else (None, None)
    profile.update_settings(**{TEAM_SETTING: name, TEAM_CODE_SETTING: code})
