"""Frozen-build entry point: no arguments opens the app on the default profile."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["gui"]))
