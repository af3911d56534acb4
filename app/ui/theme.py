"""Day and night themes: one style-sheet template (`app/resources/theme.qss`), two palettes.

Why one template: the two modes must never drift apart in sizes or layout, only in colour.
Sizes are for gloved fingers and tired eyes at night: touch targets at least 48 px, body text
16 pt, headings larger. Night mode is dark and dim, with alert bands in magenta, amber and
violet instead of pure red, each with an icon shape and text so they read without colour.
`contrast_ratio` lets tests check every text/background pair against WCAG AA (4.5:1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from string import Template

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

DAY = "day"
NIGHT = "night"

# Read through importlib.resources, not a path next to the source tree: the same call works
# from the checkout, an installed wheel and the PyInstaller bundle.
TEMPLATE = files("app") / "resources" / "theme.qss"

BODY_PT = 16
LARGER_TEXT = 1.25  # the larger-text setting (issue 11 item 10): every font but the bars'
# Rules left at their size with larger text on: the top and bottom bars (they must fit 800 px).
_FIXED_SIZE_SELECTOR = re.compile(r'role="(?:bar|nav)"|role="topbar"')
_FONT_SIZE = re.compile(r"font-size:\s*(\d+(?:\.\d+)?)pt")
_RULE = re.compile(r"([^{}]*)\{([^{}]*)\}")
MIN_TARGET_PX = 48
ROW_HEIGHT_PX = 88  # a search result row: name line, details line, badges


@dataclass(frozen=True, slots=True)
class AlertColours:
    bg: str
    fg: str
    edge: str


@dataclass(frozen=True, slots=True)
class Palette:
    name: str
    bg: str
    surface: str
    surface_alt: str
    text: str
    muted: str
    border: str
    primary: str
    on_primary: str
    link: str
    focus: str
    error_bg: str
    error_fg: str
    notice_bg: str
    notice_fg: str
    ok_fg: str
    demo_bg: str
    demo_fg: str
    selection: str
    alerts: dict[str, AlertColours] = field(default_factory=dict)

    def alert(self, kind: str) -> AlertColours:
        return self.alerts.get(kind) or self.alerts["other"]

    def text_pairs(self) -> dict[str, tuple[str, str]]:
        """Every foreground/background pair the UI draws text with (for contrast checks)."""
        pairs = {
            "text/bg": (self.text, self.bg),
            "text/surface": (self.text, self.surface),
            "text/surface_alt": (self.text, self.surface_alt),
            "muted/surface": (self.muted, self.surface),
            "muted/bg": (self.muted, self.bg),
            "on_primary/primary": (self.on_primary, self.primary),
            "link/surface": (self.link, self.surface),
            "error": (self.error_fg, self.error_bg),
            "notice": (self.notice_fg, self.notice_bg),
            "ok/surface": (self.ok_fg, self.surface),
            "demo": (self.demo_fg, self.demo_bg),
            "text/selection": (self.text, self.selection),
        }
        for kind, colours in self.alerts.items():
            pairs[f"alert-{kind}"] = (colours.fg, colours.bg)
        return pairs


DAY_PALETTE = Palette(
    name=DAY,
    bg="#E8ECF0",
    surface="#FFFFFF",
    surface_alt="#DDE3E9",
    text="#0B0C0C",
    muted="#3F4A54",
    border="#5F6B78",
    primary="#005EB8",  # NHS blue
    on_primary="#FFFFFF",
    link="#004A93",
    focus="#FFB81C",
    error_bg="#FBE3E6",
    error_fg="#7A0019",
    notice_bg="#FFF1C7",
    notice_fg="#4A3500",
    ok_fg="#00643A",
    demo_bg="#FFB81C",
    demo_fg="#0B0C0C",
    selection="#C9DDF2",
    alerts={
        "staff": AlertColours(bg="#1A1A1A", fg="#FFD400", edge="#FFD400"),
        "self": AlertColours(bg="#9B1047", fg="#FFFFFF", edge="#5E0029"),
        "others": AlertColours(bg="#9C4300", fg="#FFFFFF", edge="#5C2700"),
        "safeguarding": AlertColours(bg="#5C2D91", fg="#FFFFFF", edge="#36185A"),
        "other": AlertColours(bg="#3B4754", fg="#FFFFFF", edge="#1F2730"),
    },
)

NIGHT_PALETTE = Palette(
    name=NIGHT,
    bg="#0A0D12",
    surface="#131820",
    surface_alt="#1C232E",
    text="#D3D9E1",
    muted="#9AA5B4",
    border="#56627A",
    primary="#23548F",
    on_primary="#E8EEF6",
    link="#8FBCEB",
    focus="#D99A1E",
    error_bg="#3B1322",
    error_fg="#F4B9CC",
    notice_bg="#3A2C07",
    notice_fg="#F3D38A",
    ok_fg="#7FD1A8",
    demo_bg="#5A4300",
    demo_fg="#FFE4A0",
    selection="#263A55",
    alerts={
        # Mid-tones, not near-black: every alert card stands out from the night page by at
        # least 3:1 (tests/gui/test_plan_at_a_glance.py), its text by at least 4.5:1.
        "staff": AlertColours(bg="#A68800", fg="#0A0D12", edge="#FFD400"),
        "self": AlertColours(bg="#AC3E75", fg="#E6E9EE", edge="#F08CC0"),
        "others": AlertColours(bg="#965811", fg="#E6E9EE", edge="#F0B45A"),
        "safeguarding": AlertColours(bg="#6E58B8", fg="#E6E9EE", edge="#B8A8FF"),
        "other": AlertColours(bg="#5B687B", fg="#E6E9EE", edge="#AEB9C8"),
    },
)

PALETTES = {DAY: DAY_PALETTE, NIGHT: NIGHT_PALETTE}

# Text (not colour alone) that names each alert kind, and the icon shape drawn for it.
ALERT_KIND_TEXT = {
    "staff": "Staff safety",
    "self": "Risk to self",
    "others": "Risk to others",
    "safeguarding": "Safeguarding",
    "other": "Alert",
}
ALERT_KIND_SHAPE = {
    "staff": "octagon",
    "self": "circle",
    "others": "triangle",
    "safeguarding": "shield",
    "other": "square",
}

_current: Palette = DAY_PALETTE
_text_scale = 1.0


def text_scale() -> float:
    """The font scale in force (1.0, or LARGER_TEXT); hand-painted text multiplies by it."""
    return _text_scale


def scaled_pt(points: int) -> int:
    """`points` at the current text scale, for fonts set in code rather than in the QSS."""
    return round(points * _text_scale)


def current() -> Palette:
    """The palette in force; delegates that paint by hand read their colours from it."""
    return _current


def render(palette: Palette) -> str:
    """The style sheet for one palette."""
    values: dict[str, str | int] = {
        k: v
        for k, v in ((f, getattr(palette, f)) for f in palette.__dataclass_fields__)
        if isinstance(v, str)
    }
    for kind, colours in palette.alerts.items():
        values[f"alert_{kind}_bg"] = colours.bg
        values[f"alert_{kind}_fg"] = colours.fg
        values[f"alert_{kind}_edge"] = colours.edge
    values["body_pt"] = BODY_PT
    values["chrome_pt"] = BODY_PT
    values["target_px"] = MIN_TARGET_PX
    sheet = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    return _scale_fonts(sheet, _text_scale) if _text_scale != 1.0 else sheet


def _scale_fonts(sheet: str, scale: float) -> str:
    """Every `font-size: Npt` times `scale`, except in the bars' rules: one place sizes all
    text, so larger text cannot miss a role that a hand-kept list would."""

    def rule(match: re.Match[str]) -> str:
        selector, body = match.group(1), match.group(2)
        if _FIXED_SIZE_SELECTOR.search(selector):
            return match.group(0)
        body = _FONT_SIZE.sub(lambda m: f"font-size: {round(float(m.group(1)) * scale)}pt", body)
        return f"{selector}{{{body}}}"

    return _RULE.sub(rule, sheet)


def apply(app: QApplication, mode: str, *, text_scale: float | None = None) -> Palette:
    """Switch the whole application to `mode` (day/night), and to `text_scale` when given
    (else the scale in force); returns the palette used."""
    global _current, _text_scale
    palette = PALETTES.get(mode, DAY_PALETTE)
    _current = palette
    if text_scale is not None:
        _text_scale = text_scale
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")  # the same look on every platform; the QSS assumes it
    font = QFont(app.font())
    font.setPointSize(scaled_pt(BODY_PT))
    app.setFont(font)
    qp = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, palette.bg),
        (QPalette.ColorRole.WindowText, palette.text),
        (QPalette.ColorRole.Base, palette.surface),
        (QPalette.ColorRole.AlternateBase, palette.surface_alt),
        (QPalette.ColorRole.Text, palette.text),
        (QPalette.ColorRole.Button, palette.surface_alt),
        (QPalette.ColorRole.ButtonText, palette.text),
        (QPalette.ColorRole.Highlight, palette.selection),
        (QPalette.ColorRole.HighlightedText, palette.text),
        (QPalette.ColorRole.PlaceholderText, palette.muted),
        (QPalette.ColorRole.ToolTipBase, palette.surface),
        (QPalette.ColorRole.ToolTipText, palette.text),
        (QPalette.ColorRole.Link, palette.link),
    ):
        qp.setColor(role, QColor(colour))
    app.setPalette(qp)
    app.setStyleSheet(render(palette))
    return palette


def _linear(channel: float) -> float:
    return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    c = QColor(colour)
    r, g, b = (_linear(v) for v in (c.redF(), c.greenF(), c.blueF()))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)
