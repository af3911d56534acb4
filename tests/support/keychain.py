"""A desktop session with an unlocked keychain, as on a Linux tablet: gnome-keyring-daemon in
its own D-Bus session, unlocked with a throwaway password (the `keychain` fixture in
tests/conftest.py). Needs gnome-keyring, dbus-daemon and libsecret-tools;
packaging/linux/keychain-test-deps.sh installs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

THROWAWAY_PASSWORD = "kerbside-test-keyring"  # the test keychain's login password; synthetic
TOOLS = ("dbus-run-session", "dbus-send", "gnome-keyring-daemon", "secret-tool")

# Start the bus's keyring, wait until it owns the Secret Service name, print the bus address,
# then hold the session open until the test closes our stdin.
SESSION = r"""
set -eu
printf '%s' "$KEYCHAIN_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
owned() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets | grep -q 'boolean true'
}
tries=0
until owned; do
  tries=$((tries + 1)); [ "$tries" -lt 200 ] || { echo "no Secret Service" >&2; exit 1; }
  sleep 0.05
done
echo "$DBUS_SESSION_BUS_ADDRESS"
cat >/dev/null
"""


@contextmanager
def desktop_keychain(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a process in a desktop session whose keychain is unlocked."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"no {', '.join(missing)}: run packaging/linux/keychain-test-deps.sh "
            "(gnome-keyring, dbus-daemon, libsecret-tools)"
        )
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON_KEYRING", "KERBSIDE_", "DBUS_", "XDG_"))
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_RUNTIME_DIR": str(runtime),
        }
    )
    session = subprocess.Popen(
        [str(shutil.which("dbus-run-session")), "--", "bash", "-c", SESSION],
        env={**env, "KEYCHAIN_PASSWORD": THROWAWAY_PASSWORD},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout is not None and session.stdin is not None
        address = session.stdout.readline().strip()
        if not address:
            session.wait(timeout=30)
            pytest.fail(f"the D-Bus session did not start: {session.stderr.read()}")  # type: ignore[union-attr]
        yield {**env, "DBUS_SESSION_BUS_ADDRESS": address}
    finally:
        if session.stdin is not None:
            session.stdin.close()
        try:
            session.wait(timeout=30)
        except subprocess.TimeoutExpired:
            session.kill()
            session.wait()
        for stream in (session.stdout, session.stderr):
            if stream is not None:
                stream.close()
