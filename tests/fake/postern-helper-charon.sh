#!/usr/bin/env bash
# A stand-in for `postern-helper up PROFILE.toml` built on strongSwan's charon, so the lab's
# Postern scenarios (connect, gateway checks, SIGTERM -> exit 0, gateway empty, ping) can be
# proven before the real helper exists:
#   POSTERN_HELPER=$PWD/tests/fake/postern-helper-charon.sh \
#     cargo test -p postern-lab --test interop postern_ -- --test-threads=2
# Only PSK, fixed virtual_ip; failures all exit 1 (so scenarios 6-8 are expected to fail).
set -euo pipefail
if [ "${1:-}" != up ] || [ ! -f "${2:-}" ]; then echo "error: usage: $0 up PROFILE.toml" >&2; exit 2; fi
profile=$2

# key SECTION KEY: the raw value of KEY in [SECTION] ("" = top level)
key() {
  awk -v sec="$1" -v k="$2" '/^\[/{s=$0; next} (sec=="" ? s=="" : s=="["sec"]") && $1==k {sub(/^[^=]*= */,""); print; exit}' "$profile"
}
unq() { tr -d '[]" '; }
swid() { case "$1" in address:*) echo "${1#address:}";; *) echo "$1";; esac; }

mode=$(key "" exchange_mode | unq)
gateway=$(key "" gateway | unq)
lid=$(swid "$(key auth local_id | unq)")
rid=$(swid "$(key auth remote_id | unq)")
psk=$(key auth psk | tr -d '"')
ike=$(key phase1 proposals | unq)
esp=$(key phase2 proposals | unq)
pfs=$(key phase2 pfs | unq)
nets=$(key phase2 remote_networks | unq)
vip=$(key network virtual_ip | unq)
if [ -n "$pfs" ] && [ "$pfs" != none ]; then esp=$(echo "$esp" | sed "s/\(,\|$\)/-$pfs\1/g"); fi
aggr=no; [ "$mode" = aggressive ] && aggr=yes

dir=$(mktemp -d /tmp/postern-fake.XXXXXX)
mkdir -p "$dir/swanctl"
cat > "$dir/strongswan.conf" <<CONF
charon {
  load_modular = no
  load = random nonce aes sha1 sha2 md5 hmac gmp curve25519 pem pkcs1 x509 pubkey openssl kernel-libipsec kernel-netlink socket-default vici
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  plugins { vici { socket = unix://$dir/charon.vici } }
  filelog { f { path = $dir/charon.log
    default = 1 } }
  syslog { daemon { default = -1 } }
}
swanctl { load = pem pkcs1 x509 openssl }
CONF
cat > "$dir/swanctl/swanctl.conf" <<CONF
connections { lab { version = 1
  aggressive = $aggr
  remote_addrs = $gateway
  proposals = $ike
  local { auth = psk
    id = "$lid" }
  remote { auth = psk
    id = "$rid" }
  children { net { local_ts = $vip/32
    remote_ts = $nets
    esp_proposals = $esp } } } }
secrets { ike { id-a = "$lid"
  id-b = "$rid"
  secret = "$psk" } }
CONF
export STRONGSWAN_CONF=$dir/strongswan.conf
sw() { swanctl "$@" --uri "unix://$dir/charon.vici"; }

ip addr add "$vip/32" dev lo
unshare -m --propagation private sh -c 'mount -t tmpfs fake-run /run && exec /usr/lib/ipsec/charon' >/dev/null 2>&1 &
charon=$!
cleanup() { kill "$charon" 2>/dev/null || true; wait "$charon" 2>/dev/null || true
  ip addr del "$vip/32" dev lo 2>/dev/null || true; rm -rf "$dir"; }
fail() { echo "error: $*" >&2; cleanup; exit 1; }
for _ in $(seq 1 100); do [ -S "$dir/charon.vici" ] && break; sleep 0.05; done
sw --load-all --noprompt --file "$dir/swanctl/swanctl.conf" >/dev/null 2>&1 || fail "loading config"
sw --initiate --child net --timeout 25 >/dev/null 2>&1 || fail "negotiation failed: $(tail -3 "$dir/charon.log" | tr '\n' ' ')"
echo "phase1 established $mode ike=$ike (fake: strongSwan charon)"
echo "phase2 established esp=$esp (fake)"
echo "connected"
stop=0
trap 'stop=1' TERM INT
for _ in $(seq 1 36000); do [ $stop = 1 ] && break; sleep 0.1; done
sw --terminate --ike lab --timeout 10 >/dev/null 2>&1 || true
cleanup
exit 0
