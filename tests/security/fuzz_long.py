"""The long fuzz run (issue 12): every Hypothesis target in test_fuzz_parsers.py, each for a
time budget, in rounds of fresh random examples; no signals (an interrupted Hypothesis run
could hang while it wound down). Any failure prints its minimal example and exits 1.

    nice -n 15 .venv/bin/python tests/security/fuzz_long.py [SECONDS_EACH] [TARGET...]

Default: 95 s per target, about 11 minutes for all seven. TARGET: part of a test name
(e.g. `site_configuration`).
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERBSIDE_ALLOW_INSECURE_KEYRING", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["KERBSIDE_FUZZ"] = "long"  # 300 examples a round

import keyring  # noqa: E402

from app.security import memory_keyring  # noqa: E402
from tests.security import test_fuzz_parsers as fuzz  # noqa: E402


class _Factory:
    """Stands in for pytest's tmp_path_factory."""

    def __init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="kerbside-fuzz-"))
        self._n = 0

    def mktemp(self, name: str) -> Path:
        self._n += 1
        path = self._root / f"{name}{self._n}"
        path.mkdir()
        return path


def main() -> int:
    each = float(sys.argv[1]) if len(sys.argv) > 1 else 95.0
    wanted = sys.argv[2:]
    names = [
        n
        for n in sorted(dir(fuzz))
        if n.startswith("test_")
        and hasattr(getattr(fuzz, n), "hypothesis")
        and (not wanted or any(w in n for w in wanted))
    ]
    keyring.set_keyring(memory_keyring())
    factory = _Factory()
    failed = False
    for name in names:
        runner = getattr(fuzz, name)
        kwargs = (
            {"tmp_path_factory": factory}
            if "tmp_path_factory" in inspect.signature(runner).parameters
            else {}
        )
        started = time.monotonic()
        try:
            while time.monotonic() - started < each:
                runner(**kwargs)
        except Exception as exc:  # Hypothesis has printed the falsifying example above
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed = True
            continue
        short = name.removeprefix("test_")
        print(
            f"{name}: no failure in {time.monotonic() - started:.0f} s, "
            f"{fuzz.EXAMPLES[short]} examples",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
