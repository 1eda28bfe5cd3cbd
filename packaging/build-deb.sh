#!/usr/bin/env bash
# The Debian package in one command: target/debian/postern_VERSION_ARCH.deb.
#
#   packaging/build-deb.sh
#
# Builds the three binaries (release; POSTERN_DEB_PROFILE=dev packages the debug build,
# stripped, as CI does to save the release build's time), stages the tree with
# packaging/install.sh, adds what a Debian package carries (man pages and shell
# completions from the clap definitions, hicolor PNG icons, the copyright file from
# `cargo metadata`, the changelog, the maintainer scripts), computes Depends with
# dpkg-shlibdeps and builds the .deb with dpkg-deb. Needs: cargo, python3, dpkg-dev,
# librsvg2-bin (rsvg-convert) unless assets/icons/ holds the PNGs
# (scripts/install-deps.sh installs them).
# POSTERN_URL: the project's address for the metainfo and copyright file.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

PROFILE="${POSTERN_DEB_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
URL="${POSTERN_URL:-https://postern.example.org}"
MAINTAINER="${POSTERN_MAINTAINER:-The Postern developers <postern@example.org>}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

case "$PROFILE" in
  release)
    BIN="$TARGET/release"
    build=(cargo build --locked --release -p postern-helper -p postern-cli -p postern-gui) ;;
  dev)
    # The workspace build CI has just done: nothing to compile again.
    BIN="$TARGET/debug"
    build=(cargo build --locked --workspace) ;;
  *) echo "build-deb: POSTERN_DEB_PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac
# The man page and completion generator runs at build time only: its debug build (in
# CI already made by the workspace build). Kept out of the release build, where its
# clap features would make cargo build the three binaries' clap (and relink them) anew.
gen_build=(cargo build --locked -p postern-pkg-gen)
GEN_BIN="$TARGET/debug/postern-pkg-gen"

for tool in cargo python3 dpkg-deb dpkg-shlibdeps strip rsvg-convert gzip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-deb: $tool is missing (sudo scripts/install-deps.sh installs what the package needs)" >&2
    exit 1
  fi
done

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
ARCH=$(dpkg --print-architecture)
OUT="$TARGET/debian"
# Staged as debhelper would (debian/postern under a build directory), so that
# dpkg-shlibdeps finds the binaries where it expects a package's files.
BUILD="$OUT/build"
STAGE="$BUILD/debian/postern"
DEB="$OUT/postern_${VERSION}_${ARCH}.deb"

step() { printf 'build-deb: %s\n' "$*"; }

step "building the binaries ($PROFILE): ${build[*]}"
start=$(date +%s)
"${build[@]}"
step "build took $(( $(date +%s) - start )) s"
"${gen_build[@]}"

rm -rf "$BUILD" "$DEB"
mkdir -p "$STAGE"

step "staging with packaging/install.sh"
POSTERN_BIN_DIR="$BIN" POSTERN_URL="$URL" packaging/install.sh "$STAGE" >/dev/null
for b in usr/bin/postern usr/bin/postern-gui usr/libexec/postern/postern-helper; do
  # Debug symbols and the toolchain's notes out (lintian: unstripped binaries).
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE/$b"
done

step "man pages and completions (postern-pkg-gen, from the clap definitions)"
GEN=$(mktemp -d)
trap 'rm -rf "$GEN"' EXIT
"$GEN_BIN" "$GEN"
for page in postern.1 postern-gui.1 postern-helper.8; do
  sec=${page##*.}
  install -D -m 0644 "$GEN/man/$page" "$STAGE/usr/share/man/man$sec/$page"
  gzip -9n "$STAGE/usr/share/man/man$sec/$page"
done
for b in postern postern-gui; do
  install -D -m 0644 "$GEN/completions/$b.bash" "$STAGE/usr/share/bash-completion/completions/$b"
  install -D -m 0644 "$GEN/completions/_$b" "$STAGE/usr/share/zsh/vendor-completions/_$b"
  install -D -m 0644 "$GEN/completions/$b.fish" "$STAGE/usr/share/fish/vendor_completions.d/$b.fish"
done

step "icons (hicolor PNG sizes)"
for n in 16 22 24 32 48 64 128 256 512; do
  dest="$STAGE/usr/share/icons/hicolor/${n}x${n}/apps/org.postern.Postern.png"
  mkdir -p "$(dirname "$dest")"
  drawn=""
  for f in "assets/icons/${n}x${n}/org.postern.Postern.png" \
           "assets/icons/hicolor/${n}x${n}/apps/org.postern.Postern.png"; do
    [ -f "$f" ] && drawn="$f"
  done
  if [ -n "$drawn" ]; then
    install -m 0644 "$drawn" "$dest"
  else
    rsvg-convert -w "$n" -h "$n" -o "$dest" assets/org.postern.Postern.svg
    chmod 0644 "$dest"
  fi
done

step "documentation: copyright (cargo metadata), changelog, the admin's documents"
DOC="$STAGE/usr/share/doc/postern"
mkdir -p "$DOC"
HOST=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --filter-platform "$HOST" |
  python3 packaging/copyright.py "$URL" > "$DOC/copyright"
DATE=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
python3 packaging/changelog.py "$VERSION" "$MAINTAINER" "$DATE" < CHANGELOG.md | gzip -9n > "$DOC/changelog.gz"
for f in README.md CHANGELOG.md docs/profile.md docs/security.md docs/troubleshooting.md docs/fleet.md; do
  install -m 0644 "$f" "$DOC/$(basename "$f")"
  gzip -9n "$DOC/$(basename "$f")"
done

if [ -s packaging/lintian-overrides ]; then
  install -D -m 0644 packaging/lintian-overrides "$STAGE/usr/share/lintian/overrides/postern"
fi

step "control: Depends from dpkg-shlibdeps"
printf 'Source: postern\n\nPackage: postern\nArchitecture: any\n' > "$BUILD/debian/control"
mkdir -p "$STAGE/DEBIAN"   # how dpkg-shlibdeps finds the package's root
shlibs=$(cd "$BUILD" && dpkg-shlibdeps -O debian/postern/usr/bin/postern \
  debian/postern/usr/bin/postern-gui debian/postern/usr/libexec/postern/postern-helper |
  sed -n 's/^shlibs:Depends=//p')
# Beyond the linked libraries: the system bus and polkit the helper serves through,
# and what postern-gui loads with dlopen (winit: X11 with XKB, or Wayland). The helper
# runs one program: nft, for the kill switch's table (netlink otherwise: no iproute2).
depends="$shlibs, default-dbus-system-bus | dbus-system-bus, polkitd, nftables"
depends="$depends, libxkbcommon0, libx11-6, libx11-xcb1, libxcursor1, libxi6, libxrandr2, libxkbcommon-x11-0, libwayland-client0, libwayland-cursor0"
size=$(du -sk --apparent-size --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: postern
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends
Recommends: gnome-keyring | keepassxc, fonts-dejavu-core
Suggests: systemd-resolved
Section: net
Priority: optional
Homepage: $URL
Description: IKEv1 IPsec VPN client for the Linux desktop
 Postern connects a laptop to an office gateway (strongSwan, libreswan, Cisco,
 Fortinet, racoon) over IKEv1: main or aggressive mode, pre-shared key,
 certificates or hybrid authentication, XAuth, Mode Config, NAT traversal, dead
 peer detection and rekeying, with the kernel's ESP or an ESP datapath in user
 space.
 .
 The package holds the desktop app (postern-gui, with a tray icon), the command
 line client (postern) and the privileged helper (postern-helper), a D-Bus
 service started on demand and authorized with polkit. Secrets stay in the
 user's keyring.
CONTROL
for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$STAGE/DEBIAN/md5sums" "$STAGE/DEBIAN/control"

step "dpkg-deb --build"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
step "$DEB ($(du -k "$DEB" | cut -f1) KiB)"
