"""The `kerbside` command: one entry point for the app, the demo, sync, the reference server
and benchmark data. Each area registers its subcommands from its own module below.

Known errors (`app.services.known_errors`: KerbsideError, SyncError) print one line on stderr
and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Each module has `register(subparsers)`; its commands set `func(args) -> int`.
_COMMAND_MODULES = (
    "app.cli._profile_cmds",
    "app.cli._generate",
    "app.cli._record_cmds",
    "app.cli._sync_cmds",
    "app.cli._source_cmds",
    "app.cli._recover",
    "app.cli._reference",
    "app.cli._gui",
    "app.cli._doctor",
)

# What the demo, the cohort generator and the reference server need beyond the app. The tablet
# build (packaging/kerbside.spec) leaves these out; so may an install without the extras.
_OPTIONAL_MODULES = ("faker", "starlette", "uvicorn", "app.synthetic", "sync.reference")
NOT_IN_THIS_BUILD = (
    "kerbside: `{command}` is not part of this build (the tablet build leaves out the demo, "
    "the cohort generator and the reference server; a developer install has them)"
)
# An install from the wheel without the extra (pyproject.toml's optional dependencies).
NOT_IN_THIS_INSTALL = (
    "kerbside: `{command}` is not part of this install: install kerbside[{extra}] "
    "(pip install 'kerbside[{extra}]')"
)
_EXTRA_OF_COMMAND = {"serve-reference": "reference"}  # the rest (generate, demo...): demo


def _is_optional(module: str | None) -> bool:
    return module is not None and any(
        module == name or module.startswith(name + ".") for name in _OPTIONAL_MODULES
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerbside", description="Street-triage encrypted cache, search and FHIR sync."
    )
    from app.version import version

    parser.add_argument("--version", action="version", version=f"kerbside {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=getattr(args, "verbose", False))
    from app.services.known_errors import KNOWN_ERRORS as known

    try:
        return int(args.func(args) or 0)
    except known as exc:
        print(f"kerbside: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if not _is_optional(exc.name):
            raise
        if getattr(sys, "frozen", False):
            print(NOT_IN_THIS_BUILD.format(command=args.command), file=sys.stderr)
        else:
            extra = _EXTRA_OF_COMMAND.get(args.command, "demo")
            print(NOT_IN_THIS_INSTALL.format(command=args.command, extra=extra), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kerbside: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kerbside ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
