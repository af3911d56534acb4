"""`kerbside screenshots`: every screen, both sizes, day and night, rendered to real PNGs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QImage

from app.cli._gui import SCENES, SCREEN_SIZES, render_screenshots


def _stats(image: QImage) -> tuple[int, float]:
    """Distinct colours and mean lightness over a sampling grid."""
    colours: set[int] = set()
    total = 0.0
    samples = 0
    for x in range(0, image.width(), 7):
        for y in range(0, image.height(), 7):
            rgb = image.pixel(x, y)
            colours.add(rgb)
            total += QColor(rgb).lightnessF()
            samples += 1
    return len(colours), total / samples


def test_every_screen_renders_in_both_sizes_and_modes(qapp, tmp_path: Path) -> None:
    out = tmp_path / "shots"
    written = render_screenshots(out, tmp_path / "work", patients=60)
    expected = {
        out / f"{scene}-{w}x{h}-{mode}.png"
        for scene in SCENES
        for w, h in SCREEN_SIZES
        for mode in ("day", "night")
    }
    assert set(written) == expected
    for path in expected:
        image = QImage(str(path))
        assert not image.isNull(), path.name
        assert (image.width(), image.height()) in SCREEN_SIZES, path.name
        colours, _ = _stats(image)
        assert colours > 12, f"{path.name} looks blank"
    for scene in SCENES:
        for w, h in SCREEN_SIZES:
            _, day = _stats(QImage(str(out / f"{scene}-{w}x{h}-day.png")))
            _, night = _stats(QImage(str(out / f"{scene}-{w}x{h}-night.png")))
            assert night < 0.35 < day, f"{scene} {w}x{h}: night mode is not dark"
