#!/usr/bin/env bash
# Installs what the tests, the lab and the demo need (Debian/Ubuntu, as root).
# Idempotent: when every package is already installed, apt is not touched at all.
set -euo pipefail

PACKAGES=(
  # strongSwan as the gateway and as the reference client in the namespace lab
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
  # only Recommends of libstrongswan / strongswan-libcharon, which apt skips below
  # (--no-install-recommends): the openssl plugin (3DES, ECDSA keys for pki) and
  # xauth-generic (the gateway's XAuth)
  libstrongswan-standard-plugins libcharon-extauth-plugins
  # test certificates (pki) and the PKCS#12 bundle of the certificate lab (openssl)
  strongswan-pki openssl
  # namespaces, links, addresses; firewalling; throughput; captures; ping through the tunnel
  iproute2 nftables iperf3 tcpdump iputils-ping
  # kill(1), sysctl(8) and unshare(1), used by the harness
  procps util-linux
  # postern-gui at run time (winit loads these with dlopen: X11 with XKB, Wayland),
  # a font (iced finds system fonts), and for its screenshots and clicks under a
  # virtual X server: Xvfb, ImageMagick's import, xdotool, a StatusNotifierWatcher
  libx11-6 libx11-xcb1 libxcursor1 libxi6 libxrandr2 libxkbcommon0 libxkbcommon-x11-0
  libwayland-client0 libwayland-cursor0 fonts-dejavu-core
  xvfb imagemagick xdotool haskell-status-notifier-item-utils
  # a private system bus (systemd-resolved scenario; the CLI through the helper with
  # Debian's polkitd: tests/tests/bus.rs), test users
  dbus-daemon polkitd passwd
  # busctl (the lab's bus calls; polkitd pulls systemd in anyway)
  systemd
  # a real Secret Service for `postern secret set` / `postern up` in the bus scenario
  gnome-keyring
  # the desktop lab (tests/tests/desktop.rs, bench/gui.sh) needs the four above too;
  # xmessage, a trivial X client, for its self-test
  x11-utils
  # the kernel XFRM datapath is proven in a VM (scripts/vm/run-in-vm.sh): a stock
  # kernel with ESP under qemu, booted from a busybox initramfs
  qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils
  # libreswan's pluto as a second gateway in the VM (unpacked below, never installed:
  # its package conflicts with strongSwan's): the libraries it needs beyond strongSwan's,
  # and certutil/pk12util for its NSS database
  libldns3 libevent-pthreads-2.1-7 libnss3-tools
  # the Debian package (packaging/build-deb.sh, check-deb.sh): dpkg-shlibdeps and
  # strip, PNG icons from the SVG, the checks, and man(1) to render the pages
  dpkg-dev binutils librsvg2-bin lintian appstream desktop-file-utils man-db
)

# systemd-resolved for the DNS lab scenario, unpacked, never installed: its package
# would take over this machine's /etc/resolv.conf. The test runs it in a namespace.
RESOLVED_DIR=/var/cache/postern-lab/systemd-resolved
unpack_resolved() {
  [ -x "$RESOLVED_DIR/lib/systemd/systemd-resolved" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: systemd-resolved not unpacked; run as root" >&2
    return 1
  fi
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq systemd-resolved 2>/dev/null) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download -qq systemd-resolved); }
  mkdir -p "$RESOLVED_DIR"
  dpkg -x "$tmp"/systemd-resolved_*.deb "$RESOLVED_DIR"
  rm -rf "$tmp"
  echo "install-deps: systemd-resolved unpacked in $RESOLVED_DIR"
}

# libreswan (pluto, whack) for the kernel VM scenarios, unpacked, never installed: the
# package conflicts with strongSwan's. tests/src/libreswan.rs runs it from this directory.
LIBRESWAN_DIR=/var/cache/postern-lab/libreswan
unpack_libreswan() {
  [ -x "$LIBRESWAN_DIR/usr/libexec/ipsec/pluto" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: libreswan not unpacked; run as root" >&2
    return 1
  fi
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq libreswan 2>/dev/null) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download -qq libreswan); }
  mkdir -p "$LIBRESWAN_DIR"
  dpkg -x "$tmp"/libreswan_*.deb "$LIBRESWAN_DIR"
  rm -rf "$tmp"
  if ldd "$LIBRESWAN_DIR/usr/libexec/ipsec/pluto" | grep -q 'not found'; then
    echo "install-deps: pluto lacks libraries:" >&2
    ldd "$LIBRESWAN_DIR/usr/libexec/ipsec/pluto" | grep 'not found' >&2
    return 1
  fi
  echo "install-deps: libreswan unpacked in $LIBRESWAN_DIR"
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  unpack_resolved
  unpack_libreswan
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
unpack_resolved
unpack_libreswan
echo "install-deps: done"
