"""The clinical safety case points at tests that exist: a renamed or deleted test would leave
a hazard's control without evidence (docs/clinical-safety/hazard-log.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "docs" / "clinical-safety" / "hazard-log.md"


def test_every_control_names_a_test_that_exists() -> None:
    text = LOG.read_text(encoding="utf-8")
    refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(refs) >= 30
    missing = [
        f"{path}::{name}"
        for path, name in refs
        if not (ROOT / path).is_file()
        or not re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M)
    ]
    assert not missing, missing


def test_every_hazard_has_cause_effect_risk_and_controls() -> None:
    text = LOG.read_text(encoding="utf-8")
    hazards = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(hazards) >= 10
    for hazard in hazards:
        title = hazard.splitlines()[0]
        for part in ("**Cause**", "**Effect**", "**Initial**", "**Controls**", "**Residual**"):
            assert part in hazard, f"{title}: no {part}"
