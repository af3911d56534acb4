"""The wheel, installed into a fresh venv outside the checkout, renders every screen.

Why: from the checkout, resources resolve against the source tree whether or not the wheel
carries them; an installed wheel once crashed on `theme.qss` (issue 9). This builds the wheel
from the checkout, installs it with its run-time dependencies into a new venv under a temp dir,
and runs the installed `kerbside screenshots` from a directory that is not the checkout, with
no PYTHONPATH: only what the wheel carries can be found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.cli._gui import SCENES, SCREEN_SIZES

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

ROOT = Path(__file__).resolve().parents[2]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _run(args: list[str | Path], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{args[:3]}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_installed_wheel_renders_every_screen(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT], tmp_path)
    (wheel,) = wheels.glob("kerbside-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "app/resources/theme.qss",
        "app/resources/icons/kerbside.svg",
        "app/resources/fhir-r4-1.zdict",  # the records cannot be read without it
    } <= names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path)
    # The screenshots run the demo's server and generator: the wheel with those extras.
    _run([venv / "bin/pip", "install", "-q", f"{wheel}[demo,reference]"], tmp_path)
    where = _run([venv / "bin/python", "-c", "import app; print(app.__file__)"], tmp_path)
    assert Path(where.strip()).is_relative_to(venv), "imported from the checkout, not the wheel"

    out = tmp_path / "shots"
    _run([venv / "bin/kerbside", "screenshots", "--out", out, "--patients", "30"], tmp_path)
    for scene in SCENES:
        for w, h in SCREEN_SIZES:
            for mode in ("day", "night"):
                image = QImage(str(out / f"{scene}-{w}x{h}-{mode}.png"))
                assert (image.width(), image.height()) == (w, h), f"{scene} {w}x{h} {mode}"
