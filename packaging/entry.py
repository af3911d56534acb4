"""Frozen-build entry point: no arguments opens the app on the default profile.

The Windows windowed entry (`kerbside-app.exe`) has no console, so sys.stdout and sys.stderr
are None there; a stray print or log line would then raise. They go to the null device.
"""

import multiprocessing
import os
import sys

from app.cli import main

if __name__ == "__main__":
    # A bulk load prepares in a spawned worker process (sync/_pipeline.py): in the frozen
    # build that child is this executable again, and this hands it over to multiprocessing.
    multiprocessing.freeze_support()
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    sys.exit(main(sys.argv[1:] or ["gui"]))
