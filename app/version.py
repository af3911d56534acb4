"""The one version Kerbside shows (`kerbside --version`, Help → About, `kerbside doctor`).

It is read from the installed package's metadata, which pyproject.toml's `version` feeds: a
wheel, the tablet build (which copies the metadata) and an editable install all agree. A bare
source checkout run with `python -m app.cli` has no metadata, so pyproject.toml is read.
"""

from __future__ import annotations

import tomllib
from datetime import date
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

DISTRIBUTION = "kerbside"
# No tablet clock is plausible before this release was made (kerbside doctor); raise it with
# each release.
RELEASED = date(2026, 12, 2)


def version() -> str:
    try:
        return _dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        return f"{data['project']['version']}+source"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
