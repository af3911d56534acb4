"""Render the app icon (app/resources/icons/kerbside.svg) to the PNG sizes desktops want and to
a Windows .ico. Run after editing the SVG; the outputs are committed so a build needs no Qt
SVG step:

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/icons/make_icons.py

Why Qt: it is already a dependency, so no ImageMagick/Inkscape on the build machine. The .ico
is written by hand (PNG-compressed entries, valid since Windows Vista) so it does not depend on
Qt's optional ico image plugin.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[2]
SVG = ROOT / "app" / "resources" / "icons" / "kerbside.svg"
OUT = ROOT / "packaging" / "icons"
PNG_SIZES = (48, 64, 128, 256)  # hicolor sizes installed by the .deb
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # Explorer, taskbar, Start menu, installer


def render(renderer: QSvgRenderer, size: int) -> bytes:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise SystemExit(f"could not encode a {size}px PNG")
    return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """ICONDIR + one ICONDIRENTRY per size + the PNG payloads (256 is written as 0)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, payload = b"", b""
    for size, png in sorted(pngs.items()):
        side = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        payload += png
        offset += len(png)
    return header + entries + payload


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    pngs = {size: render(renderer, size) for size in sorted(set(PNG_SIZES) | set(ICO_SIZES))}
    for size in PNG_SIZES:
        (OUT / f"kerbside-{size}.png").write_bytes(pngs[size])
    (OUT / "kerbside.ico").write_bytes(ico({s: pngs[s] for s in ICO_SIZES}))
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
