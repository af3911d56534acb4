"""Options and secret input shared by the subcommands."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from app.errors import InvalidInput

PROFILE_ENV = "KERBSIDE_PROFILE"


def default_profile_dir() -> Path:
    if os.environ.get(PROFILE_ENV):
        return Path(os.environ[PROFILE_ENV])
    import platformdirs

    return Path(platformdirs.user_data_dir("kerbside", appauthor=False)) / "profiles" / "default"


def add_profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"profile directory (default: ${PROFILE_ENV} or the user data dir)",
    )


def add_site_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="the site configuration Trust IT provisions (default: $KERBSIDE_SITE_CONFIG, "
        "else /etc/kerbside/site.toml, %%ProgramData%%\\Kerbside\\site.toml or "
        "/Library/Application Support/Kerbside/site.toml)",
    )


def add_user_args(parser: argparse.ArgumentParser) -> None:
    add_profile_arg(parser)
    parser.add_argument("--user", required=True, metavar="NAME", help="enrolled user name")
    parser.add_argument(
        "--pin-stdin",
        action="store_true",
        help="read the PIN (and any further secret) one per line from stdin",
    )


def profile_dir(args: argparse.Namespace) -> Path:
    return args.profile if args.profile is not None else default_profile_dir()


class Secrets:
    """Secrets in order: lines of stdin with --pin-stdin, else hidden prompts."""

    def __init__(self, from_stdin: bool) -> None:
        self._lines: Iterator[str] | None = iter(sys.stdin) if from_stdin else None

    def next(self, prompt: str) -> str:
        if self._lines is None:
            value = getpass.getpass(f"{prompt}: ")
        else:
            try:
                value = next(self._lines).rstrip("\r\n")
            except StopIteration:
                raise InvalidInput(f"stdin ended before the {prompt.lower()} was given") from None
        if not value:
            raise InvalidInput(f"the {prompt.lower()} is empty")
        return value


_CONTROL = {c: None for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (0x09,)}
_CONTROL.update({c: None for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def plain(text: object) -> str:
    """Text from outside (a name from the central record, a query) made safe for a terminal:
    control characters, ANSI escapes (ESC) and bidi overrides removed (SECURITY.md 29)."""
    return str(text).translate(_CONTROL)
