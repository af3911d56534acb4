"""Wait until an X display shows Kerbside's unlock screen, save it, print when it appeared.

    DISPLAY=:N QT_QPA_PLATFORM=xcb python -m tests.packaging.xscreen OUT.png TIMEOUT_S

Run by tests/packaging/test_installed_build.py from the dev venv beside the installed app (whose
own Python is sealed inside the bundle). "The unlock screen" by its pixels: a theme's
background over most of the screen, its primary colour (the user button, OK) and enough
distinct colours for rendered text. Prints "ready" once it can grab the screen; the last stdout
line is JSON: {"seen_at": time.monotonic() when first seen, "polls": n}, or exit 1 after
TIMEOUT_S with the last frame saved for the failure message.
"""

from __future__ import annotations

import json
import sys
import time

from PySide6.QtGui import QColor, QGuiApplication, QImage

from app.ui.theme import DAY_PALETTE, NIGHT_PALETTE

STEP = 8  # sample every 8th pixel each way: ~16k samples on 1280x800


def sample(image: QImage) -> dict[str, int]:
    counts: dict[str, int] = {}
    for x in range(0, image.width(), STEP):
        for y in range(0, image.height(), STEP):
            name = QColor(image.pixel(x, y)).name().upper()
            counts[name] = counts.get(name, 0) + 1
    return counts


def looks_like_unlock(image: QImage) -> bool:
    counts = sample(image)
    total = sum(counts.values())
    for palette in (DAY_PALETTE, NIGHT_PALETTE):
        if (
            counts.get(palette.bg.upper(), 0) > total * 0.3
            and counts.get(palette.primary.upper(), 0) > 20
            and len(counts) >= 12
        ):
            return True
    return False


def main(out: str, timeout_s: float) -> int:
    app = QGuiApplication(sys.argv[:1])
    screen = app.primaryScreen()
    deadline = time.monotonic() + timeout_s
    polls = 0
    image = screen.grabWindow(0).toImage()
    print("ready", flush=True)  # the caller starts the app only now, so our start-up is not timed
    while time.monotonic() < deadline:
        polls += 1
        image = screen.grabWindow(0).toImage()
        if looks_like_unlock(image):
            seen_at = time.monotonic()
            image.save(out)
            print(json.dumps({"seen_at": seen_at, "polls": polls}))
            return 0
        time.sleep(0.02)  # the app is another process: poll its screen until the deadline
    image.save(out)
    print(json.dumps({"seen_at": None, "polls": polls}))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
