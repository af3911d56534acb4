#!/usr/bin/env bash
# What `make test-packaging` needs beyond Qt's libraries (qt-runtime-deps.sh --gui) and the real
# keychain (keychain-test-deps.sh: the tablet build has no insecure keyring): Xvfb, for the
# installed app's window on a virtual display, and dpkg-deb. Installs with apt-get when it can.
set -euo pipefail
[ "$(uname -s)" = Linux ] || exit 0
missing=()
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing packaging-test tools: ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "The packaging tests need (Debian names): ${missing[*]}" >&2
  exit 1
fi
