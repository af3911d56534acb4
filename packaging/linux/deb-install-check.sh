#!/usr/bin/env bash
# Install dist/kerbside_*.deb with apt (which resolves its Depends), run the installed command
# from PATH, check the launcher and icon, then purge the package and check nothing is left.
# The last step of `make test-packaging`; needs root or sudo and apt, else it says so and skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
debs=(dist/kerbside_*.deb)
[ -f "${debs[0]}" ] || { echo "no dist/kerbside_*.deb: run make package" >&2; exit 1; }
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$sudo" ] && ! sudo -n true 2>/dev/null; }; then
  echo "deb-install-check: needs apt-get and root (or passwordless sudo); skipped" >&2
  exit 0
fi
if [ "$(dpkg-query -W -f='${Status}' kerbside 2>/dev/null)" = "install ok installed" ]; then
  echo "deb-install-check: kerbside is already installed here; not touching it" >&2
  exit 1
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./${debs[0]}" >/dev/null
trap '$sudo apt-get purge -y -qq kerbside >/dev/null 2>&1 || true' EXIT
[ "$(command -v kerbside)" = /usr/bin/kerbside ]
(cd / && QT_QPA_PLATFORM=offscreen kerbside --version)
icon=$(sed -n 's/^Icon=//p' /usr/share/applications/kerbside.desktop)
[ -f "/usr/share/icons/hicolor/256x256/apps/$icon.png" ]
$sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kerbside >/dev/null
trap - EXIT
[ ! -e /usr/bin/kerbside ] && [ ! -e /opt/kerbside ] && [ ! -e /usr/share/applications/kerbside.desktop ]
echo "deb-install-check: installed, ran, purged ${debs[0]}"
