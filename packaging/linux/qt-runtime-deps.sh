#!/usr/bin/env bash
# System libraries Qt loads at run time that a minimal Linux may lack (pip cannot install them).
# Offscreen (tests, CI): EGL/GL, fontconfig + one font, xkbcommon, dbus.
# With --gui (the demo on a real or virtual display): also the xcb platform plugin's libraries.
# Installs with apt-get when it can (as root, or through sudo); otherwise says what to install.
set -euo pipefail
[ "$(uname -s)" = Linux ] || exit 0
libs="libEGL.so.1:libegl1 libGL.so.1:libgl1 libfontconfig.so.1:libfontconfig1
      libxkbcommon.so.0:libxkbcommon0 libdbus-1.so.3:libdbus-1-3"
if [ "${1:-}" = --gui ]; then
  libs="$libs libxcb-cursor.so.0:libxcb-cursor0 libxkbcommon-x11.so.0:libxkbcommon-x11-0
        libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1
        libxcb-image.so.0:libxcb-image0 libxcb-render-util.so.0:libxcb-render-util0
        libxcb-shape.so.0:libxcb-shape0 libxcb-xinerama.so.0:libxcb-xinerama0"
fi
missing=()
for pair in $libs; do
  ldconfig -p 2>/dev/null | grep -q "${pair%%:*}" || missing+=("${pair##*:}")
done
if ! { command -v fc-list >/dev/null 2>&1 && fc-list | grep -q .; }; then
  missing+=(fontconfig fonts-dejavu-core)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing Qt runtime libraries: ${missing[*]}" >&2
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Qt needs these system libraries (Debian names): ${missing[*]}" >&2
  exit 1
fi
