#!/usr/bin/env bash
# Installs what the tests, the lab and the demo need (Debian/Ubuntu, as root).
# Idempotent: when every package is already installed, apt is not touched at all.
set -euo pipefail

PACKAGES=(
  # strongSwan as the gateway and as the reference client in the namespace lab
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
  # test certificates (pki) and the PKCS#12 bundle of the certificate lab (openssl)
  strongswan-pki openssl
  # namespaces, links, addresses; firewalling; throughput; captures; ping through the tunnel
  iproute2 nftables iperf3 tcpdump iputils-ping
  # kill(1), sysctl(8) and unshare(1), used by the harness
  procps util-linux
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
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
echo "install-deps: done"
