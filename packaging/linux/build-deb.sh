#!/usr/bin/env bash
# Wrap the PyInstaller folder (dist/kerbside) into dist/kerbside_<version>_<arch>.deb:
#   /opt/kerbside/...                      the self-contained app folder
#   /usr/bin/kerbside -> /opt/kerbside/kerbside
#   /usr/share/applications/kerbside.desktop
#   /usr/share/icons/hicolor/{48,64,128,256}x.../apps/kerbside.png and scalable/apps/kerbside.svg
# Usage: packaging/linux/build-deb.sh VERSION   (`make package` passes the package metadata's)
# Install: sudo apt install ./dist/kerbside_<version>_<arch>.deb; remove: sudo apt remove kerbside
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:?usage: build-deb.sh VERSION}
arch=$(dpkg --print-architecture)
bundle=dist/kerbside
[ -x "$bundle/kerbside" ] || { echo "no $bundle/kerbside: run PyInstaller first" >&2; exit 1; }
root=build/deb/root
rm -rf build/deb && mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications"
cp -a "$bundle" "$root/opt/kerbside"
ln -s /opt/kerbside/kerbside "$root/usr/bin/kerbside"
install -m 644 packaging/linux/kerbside.desktop "$root/usr/share/applications/kerbside.desktop"
for size in 48 64 128 256; do
  install -D -m 644 "packaging/icons/kerbside-$size.png" \
    "$root/usr/share/icons/hicolor/${size}x${size}/apps/kerbside.png"
done
install -D -m 644 app/resources/icons/kerbside.svg "$root/usr/share/icons/hicolor/scalable/apps/kerbside.svg"
install -m 755 packaging/linux/debian/postinst packaging/linux/debian/postrm "$root/DEBIAN/"
# Qt's system libraries (the same list as qt-runtime-deps.sh --gui); a Secret Service for the
# device secret (the app refuses to run without a platform keychain).
cat > "$root/DEBIAN/control" <<CONTROL
Package: kerbside
Version: $version
Architecture: $arch
Maintainer: Kerbside <kerbside@invalid>
Installed-Size: $(du -sk "$root" | cut -f1)
Section: misc
Priority: optional
Depends: libc6, libegl1, libgl1, libfontconfig1, libxkbcommon0, libdbus-1-3, libxcb-cursor0, libxkbcommon-x11-0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-shape0, libxcb-xinerama0
Recommends: gnome-keyring | kwalletmanager, fonts-dejavu-core
Homepage: https://example.invalid/kerbside
Description: Offline-capable street-triage tablet app
 Encrypted offline cache of crisis plans, forgiving search, encounter recording and FHIR R4
 sync with the Trust's central record. Self-contained build under /opt/kerbside.
CONTROL
out="dist/kerbside_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zzstd -z9 --build "$root" "$out" >/dev/null
echo "$out"
