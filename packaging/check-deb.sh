#!/usr/bin/env bash
# The .deb checked as CI sees it (root; scripts/test.sh runs it): build it
# (packaging/build-deb.sh), lintian with no error or warning (overrides with reasons in
# packaging/lintian-overrides), appstreamcli and desktop-file-validate on the packaged
# files, then on this machine: dpkg -i, `--version` of the three binaries, `dpkg -L`
# equal to packaging/postern.files, the installed helper on a private system bus
# (tests/tests/package.rs), dpkg --purge, and no file of Postern's left (file lists
# before and after). Whatever happens, a package this script installed is purged.
#
#   packaging/check-deb.sh          POSTERN_DEB_PROFILE=dev|release (default release)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "check-deb: needs root (installs the package on this machine)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' postern 2>/dev/null | grep -q 'ok installed'; then
  echo "check-deb: postern is already installed here; not touching it (dpkg --purge postern first)" >&2
  exit 1
fi

TARGET="${CARGO_TARGET_DIR:-target}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-check-deb.XXXXXX")
installed=0
cleanup() {
  status=$?
  if [ "$installed" = 1 ]; then
    echo "check-deb: purging the package (cleanup)"
    dpkg --purge postern >/dev/null 2>&1 || echo "check-deb: dpkg --purge postern FAILED" >&2
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
section() { printf '\ncheck-deb [%3ds]: %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

section "build"
packaging/build-deb.sh
deb=$(ls "$TARGET"/debian/postern_*.deb)

section "lintian"
# --fail-on warning: every warning is fixed or overridden with a reason
# (packaging/lintian-overrides, installed as /usr/share/lintian/overrides/postern).
lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb"
echo "lintian: clean"

section "appstreamcli validate, desktop-file-validate"
dpkg-deb -x "$deb" "$WORK/root"
# --no-net: the screenshots' URLs are not fetched (CI may have no network).
appstreamcli validate --no-net "$WORK/root/usr/share/metainfo/org.postern.Postern.metainfo.xml"
desktop-file-validate "$WORK/root/usr/share/applications/org.postern.Postern.desktop"
echo "desktop-file-validate: clean"

# Everything a package could leave: /usr, /etc, /var (minus logs, caches, apt's lists),
# /opt, /run (minus what other processes churn). Names only.
snapshot() {
  find /usr /etc /var /opt /run -xdev \
    \( -path /var/log -o -path /var/cache -o -path /var/tmp -o -path /var/lib/apt/lists \
       -o -path /run/netns -o -path /run/user -o -path /run/systemd -o -path /run/udev \
       -o -path /var/lib/systemd -o -path '/var/lib/postern-lab*' \) -prune -o -print 2>/dev/null |
    LC_ALL=C sort
}
section "file list before"
snapshot > "$WORK/before"
wc -l < "$WORK/before"

section "dpkg -i"
installed=1
# --path-include: every file, even where a slim image's dpkg.cfg.d excludes
# /usr/share/man or /usr/share/doc (then dpkg -L would differ from the list).
dpkg --path-include='/*' -i "$deb"

section "--version of the three binaries"
v=$(dpkg-deb -f "$deb" Version)
for b in /usr/bin/postern /usr/bin/postern-gui /usr/libexec/postern/postern-helper; do
  out=$("$b" --version)
  echo "$out"
  [ "$out" = "$(basename "$b") $v" ] || { echo "check-deb: $b --version: '$out', not '$(basename "$b") $v'" >&2; exit 1; }
done

section "dpkg -L postern = packaging/postern.files"
dpkg -L postern | LC_ALL=C sort > "$WORK/files"
if ! diff -u packaging/postern.files "$WORK/files"; then
  echo "check-deb: dpkg -L differs from packaging/postern.files (- expected, + installed)" >&2
  exit 1
fi
echo "$(wc -l < "$WORK/files") paths as expected"

section "man pages and completions are readable"
man -l /usr/share/man/man1/postern.1.gz 2>/dev/null | grep -q 'postern up' ||
  { echo "check-deb: postern.1 does not render with 'postern up'" >&2; exit 1; }
man -l /usr/share/man/man8/postern-helper.8.gz 2>/dev/null | grep -q 'idle-exit' ||
  { echo "check-deb: postern-helper.8 does not render with --idle-exit" >&2; exit 1; }
bash -c 'source /usr/share/bash-completion/completions/postern && complete -p postern' >/dev/null ||
  { echo "check-deb: the bash completion does not load" >&2; exit 1; }
echo "ok"

section "the installed helper on a private system bus (tests/tests/package.rs)"
cargo test -q -p postern-lab --test package -- --nocapture

section "dpkg --purge"
dpkg --purge postern
installed=0

section "file list after: nothing of Postern's left"
snapshot > "$WORK/after"
comm -13 "$WORK/before" "$WORK/after" > "$WORK/new"
comm -23 "$WORK/before" "$WORK/after" > "$WORK/gone"
if [ -s "$WORK/new" ]; then
  echo "paths that appeared during the check:"
  sed 's/^/  /' "$WORK/new"
fi
if [ -s "$WORK/gone" ]; then
  echo "paths that went away during the check:"
  sed 's/^/  /' "$WORK/gone"
fi
# Postern's: a name with "postern" in it, or anything new where the package installs
# (a lab test running beside this one has its own postern-lab directories).
left=$(grep -iE 'postern|^/usr/(bin|libexec|lib/systemd|share/(applications|metainfo|icons/hicolor|dbus-1|polkit-1|man|bash-completion|zsh|fish|doc|lintian))/|^/etc/(systemd|dbus-1|polkit-1)/|^/var/lib/dpkg/info/' "$WORK/new" | grep -v '/postern-lab' || true)
if [ -n "$left" ]; then
  echo "check-deb: left behind after purge:" >&2
  echo "$left" >&2
  exit 1
fi
echo "nothing left ($(wc -l < "$WORK/after") paths before and after compared)"
section "done"
