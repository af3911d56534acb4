"""The tablet build's rules that hold without building it: the frozen app has no insecure-keyring
opt-in, commands left out of the build say so in one line, and the installers take their icon
and version from the one place (tests/packaging/test_installed_build.py runs the real build)."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from app.cli import main
from app.errors import KeyringRefused
from app.security import check_backend

ROOT = Path(__file__).resolve().parents[2]


def test_the_frozen_build_ignores_the_insecure_keyring_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyring.set_keyring(PlaintextKeyring())
    assert check_backend().startswith("untrusted:")  # the opt-in works in a dev install...
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(KeyringRefused) as err:  # ...and not in the tablet build
        check_backend()
    assert "KERBSIDE_ALLOW_INSECURE_KEYRING" not in str(err.value)


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["generate", "--patients", "1", "--out", "x"], "app.synthetic"),
        (["serve-reference", "--data", "x"], "sync.reference"),
        (["demo"], "sync.reference"),
    ],
)
def test_a_command_left_out_of_the_build_says_so_in_one_line(
    argv: list[str],
    missing: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as in the frozen build
    monkeypatch.setitem(sys.modules, "faker", None)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"kerbside: `{argv[0]}` is not part of this build (the tablet build leaves out the "
        "demo, the cohort generator and the reference server; a developer install has them)"
    )


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["generate", "--patients", "1", "--out", "x"], "faker", "demo"),
        (["serve-reference", "--data", "x"], "starlette", "reference"),
        (["demo"], "starlette", "demo"),
    ],
)
def test_a_command_whose_extra_is_not_installed_names_the_extra(
    argv: list[str],
    missing: str,
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A wheel installed without kerbside[demo] / kerbside[reference] (pyproject.toml)."""
    monkeypatch.chdir(tmp_path)
    cached = ("app.synthetic", "sync.reference", f"{missing}.")
    for name in [m for m in sys.modules if m.startswith(cached)]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"kerbside: `{argv[0]}` is not part of this install: install kerbside[{extra}] "
        f"(pip install 'kerbside[{extra}]')"
    )


def test_an_unrelated_missing_module_is_still_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import _is_optional

    assert _is_optional("faker.providers") and _is_optional("sync.reference._app")
    assert not _is_optional("sync") and not _is_optional("fakerish") and not _is_optional(None)


def test_the_desktop_entry_runs_the_installed_binary_and_names_a_shipped_icon() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(ROOT / "packaging/linux/kerbside.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"].split()[0] == "/usr/bin/kerbside"
    build_deb = (ROOT / "packaging/linux/build-deb.sh").read_text()
    assert 'ln -s /opt/kerbside/kerbside "$root/usr/bin/kerbside"' in build_deb
    assert f"apps/{desktop['Icon']}.png" in build_deb
    for size in (48, 64, 128, 256):
        assert (ROOT / f"packaging/icons/kerbside-{size}.png").is_file()


def test_the_windows_installer_has_a_fixed_app_id_and_no_hand_typed_version() -> None:
    iss = (ROOT / "packaging/windows/kerbside.iss").read_text()
    assert "AppId={{" in iss
    assert "AppVersion={#AppVersion}" in iss
    assert "#error" in iss  # refuses to build without a version passed in
    assert "SetupIconFile=" in iss and (ROOT / "packaging/icons/kerbside.ico").is_file()
    spec = (ROOT / "packaging/kerbside.spec").read_text()
    assert 'version("kerbside")' in spec and "kerbside-app" in spec


def test_the_app_icon_is_packaged_and_renders(qapp: object) -> None:
    from importlib.resources import files

    from PySide6.QtGui import QIcon

    icon = QIcon(str(files("app") / "resources" / "icons" / "kerbside.svg"))
    image = icon.pixmap(64, 64).toImage()
    assert not image.isNull() and image.pixelColor(32, 12).name().upper() == "#FFFFFF"


def test_every_command_module_is_one_the_spec_collects() -> None:
    """Commands are imported by name, which PyInstaller cannot follow; the spec collects the
    whole app.cli package, so a command module elsewhere would be missing from the build."""
    from app.cli import _COMMAND_MODULES

    assert all(name.startswith("app.cli.") for name in _COMMAND_MODULES)
    assert 'collect_submodules("app.cli")' in (ROOT / "packaging/kerbside.spec").read_text()
