#!/usr/bin/env bash
# What tests/integration/test_real_keychain.py needs to run a real Secret Service: a D-Bus
# session (dbus-run-session, dbus-send), GNOME Keyring and secret-tool. Test-only: the app
# itself uses whatever keychain the desktop provides.
# Installs with apt-get when it can (as root, or through sudo); otherwise says what to install.
set -euo pipefail
[ "$(uname -s)" = Linux ] || exit 0
tools="dbus-run-session:dbus-daemon dbus-send:dbus-bin gnome-keyring-daemon:gnome-keyring
       secret-tool:libsecret-tools"
missing=()
for pair in $tools; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing the real-keychain test's tools: ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "The real-keychain test needs (Debian names): ${missing[*]}; it will be skipped" >&2
fi
