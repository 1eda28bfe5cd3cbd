//! Shrew Soft VPN client site files (`.vpn`): one `T:key:value` line per setting,
//! `s:` text, `n:` number, `b:` base64 (the PSK and embedded certificates). One site
//! per file, named by the file.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use postern_dbus::profile::{AuthMethod, Dpd, ExchangeMode, ModeConfig, NatTraversal, XAuth};

use super::{Draft, ImportError, PSK, Source, err};

struct Entry {
    kind: char,
    key: String,
    value: String,
    line: usize,
}

fn read(src: &Source<'_>) -> Result<Vec<Entry>, ImportError> {
    let mut v = Vec::new();
    for (i, raw) in src.text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let mut parts = l.splitn(3, ':');
        let (Some(t), Some(k), Some(val)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(
                src.origin,
                Some(line),
                format!("'{l}' is not a 'type:key:value' line"),
            ));
        };
        let kind = match t {
            "s" | "n" | "b" => t.chars().next().unwrap_or('s'),
            _ => {
                return Err(err(
                    src.origin,
                    Some(line),
                    format!("'{t}:' is not a Shrew value type (s:, n:, b:)"),
                ));
            }
        };
        v.push(Entry {
            kind,
            key: k.to_string(),
            value: val.to_string(),
            line,
        });
    }
    Ok(v)
}

fn cipher(name: &str, bits: &str) -> Option<String> {
    let bits = if bits == "0" || bits.is_empty() {
        ""
    } else {
        bits
    };
    match name {
        "aes" | "esp-aes" => Some(format!("aes{}", if bits.is_empty() { "256" } else { bits })),
        "3des" | "esp-3des" => Some("3des".into()),
        "auto" => None,
        other => Some(other.trim_start_matches("esp-").to_string()),
    }
}

fn hash(name: &str) -> Option<String> {
    match name {
        "auto" => None,
        "sha2-256" => Some("sha256".into()),
        "sha2-384" => Some("sha384".into()),
        "sha2-512" => Some("sha512".into()),
        o => Some(o.to_string()),
    }
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let entries = read(src)?;
    let get = |k: &str| entries.iter().rev().find(|e| e.key == k);
    let val = |k: &str| get(k).map(|e| e.value.clone()).unwrap_or_default();
    let line = |k: &str| get(k).map(|e| e.line);
    let mut d = Draft::new(src.stem.to_string(), Some(1));
    let host = val("network-host");
    if host.is_empty() {
        return Err(err(src.origin, None, "no s:network-host (the gateway)"));
    }
    d.p.gateway = host;
    let method = val("auth-method");
    let mut xauth = false;
    d.p.auth.method = match method.as_str() {
        "mutual-psk" => AuthMethod::Psk,
        "mutual-psk-xauth" => {
            xauth = true;
            AuthMethod::Psk
        }
        "mutual-rsa" => AuthMethod::RsaSig,
        "mutual-rsa-xauth" => {
            xauth = true;
            AuthMethod::RsaSig
        }
        "hybrid-rsa-xauth" => {
            xauth = true;
            AuthMethod::Hybrid
        }
        "hybrid-grp-xauth" => {
            xauth = true;
            d.warn(line("auth-method"), "s:auth-method", "hybrid with Cisco group authentication: Postern's hybrid checks the gateway's certificate, not the group password");
            AuthMethod::Hybrid
        }
        "" => AuthMethod::Psk,
        o => {
            return Err(err(
                src.origin,
                line("auth-method"),
                format!("auth-method '{o}' is not one Shrew writes"),
            ));
        }
    };
    if xauth {
        let u = val("client-saved-username");
        if u.is_empty() {
            d.missing(
                "xauth.username",
                "Shrew asks for the user name when connecting: give it in [xauth] username",
            );
        } else {
            d.p.xauth = Some(XAuth {
                username: u,
                password: None,
            });
        }
    }
    let mut p1: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    let mut p2: (Option<String>, Option<String>) = (None, None);
    let (mut c1, mut k1, mut c2, mut k2) = (
        String::new(),
        String::from("0"),
        String::new(),
        String::from("0"),
    );
    for e in &entries {
        let l = Some(e.line);
        let key = format!("{}:{}", e.kind, e.key);
        let v = e.value.as_str();
        match e.key.as_str() {
            "network-host" | "auth-method" | "client-saved-username" | "version" => {}
            "network-ike-port" => {
                if v != "500" {
                    d.drop_key(l, &key, "Postern uses the standard IKE port 500");
                }
            }
            "auth-mutual-psk" => match Base64::decode_vec(v)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(s) => d.secret(PSK, &s),
                None => d.warn(l, &key, "not base64 text: the PSK was not carried over"),
            },
            "ident-client-type" | "ident-server-type" => {
                let data_key = if e.key.contains("client") {
                    "ident-client-data"
                } else {
                    "ident-server-data"
                };
                let data = val(data_key);
                let id = match (v, data.is_empty()) {
                    ("none" | "any", _) | ("address", true) => None,
                    ("address", false) => Some(format!("address:{data}")),
                    ("fqdn", false) => Some(format!("fqdn:{data}")),
                    ("ufqdn", false) => Some(format!("user-fqdn:{data}")),
                    ("keyid", false) => Some(format!("keyid:{data}")),
                    ("asn1dn", false) => Some(format!("dn:{data}")),
                    ("asn1dn", true) => None,
                    (o, _) => {
                        d.warn(
                            l,
                            &key,
                            format!("identity type '{o}' without data: not carried over"),
                        );
                        None
                    }
                };
                if let Some(id) = id {
                    let id = d.identity(l, &key, &id);
                    if e.key.contains("client") {
                        d.p.auth.local_id = id;
                    } else {
                        d.p.auth.remote_id = id;
                    }
                }
            }
            "ident-client-data" | "ident-server-data" => {}
            "auth-server-cert-name" | "auth-client-cert-name" | "auth-client-key-name" => {}
            "auth-server-cert-data" | "auth-client-cert-data" | "auth-client-key-data" => {
                let (pkey, file) = match e.key.as_str() {
                    "auth-server-cert-data" => ("auth.ca", "ca.pem"),
                    "auth-client-cert-data" => ("auth.cert", "cert.pem"),
                    _ => ("auth.key", "key.pem"),
                };
                match Base64::decode_vec(v) {
                    Ok(bytes) if !bytes.is_empty() => {
                        d.files.push((pkey.to_string(), file.to_string(), bytes))
                    }
                    _ => d.warn(l, &key, "the embedded file is not base64: not carried over"),
                }
            }
            "auth-server-cert" | "auth-client-cert" | "auth-client-key" => {
                let pkey = match e.key.as_str() {
                    "auth-server-cert" => "auth.ca",
                    "auth-client-cert" => "auth.cert",
                    _ => "auth.key",
                };
                d.missing(pkey, format!("the file {v} on the machine the site came from: copy it here and set {pkey}"));
            }
            "phase1-exchange" => match v {
                "aggressive" => d.p.exchange_mode = ExchangeMode::Aggressive,
                "main" => d.p.exchange_mode = ExchangeMode::Main,
                o => d.warn(l, &key, format!("'{o}' is not main or aggressive")),
            },
            "phase1-cipher" => c1 = v.to_string(),
            "phase1-keylen" => k1 = v.to_string(),
            "phase1-hash" => p1.1 = Some(v.to_string()),
            "phase1-dhgroup" => p1.2 = Some(v.to_string()),
            "phase1-life-secs" => {
                if let Ok(n) = v.parse::<u64>()
                    && n > 0
                {
                    d.lifetime1(l, &key, Duration::from_secs(n));
                }
            }
            "phase2-transform" => c2 = v.to_string(),
            "phase2-keylen" => k2 = v.to_string(),
            "phase2-hmac" => p2.0 = Some(v.to_string()),
            "phase2-pfsgroup" => p2.1 = Some(v.to_string()),
            "phase2-life-secs" => {
                if let Ok(n) = v.parse::<u64>()
                    && n > 0
                {
                    d.lifetime2(l, &key, Duration::from_secs(n));
                }
            }
            "phase2-life-kbytes" => {
                if let Ok(n) = v.parse::<u64>()
                    && n > 0
                {
                    d.p.phase2.lifetime_kb = Some(n);
                }
            }
            "ipcomp-transform" => {
                if !matches!(v, "disabled" | "none") {
                    d.drop_key(l, &key, "Postern does not do IPComp");
                }
            }
            "client-auto-mode" => match v {
                "pull" => d.p.network.mode_config = ModeConfig::Pull,
                "push" => d.p.network.mode_config = ModeConfig::Push,
                "disabled" => d.p.network.mode_config = ModeConfig::Off,
                o => d.warn(l, &key, format!("'{o}' has no equivalent: pull used")),
            },
            "client-addr-auto" => {}
            "client-ip-addr" => {
                if val("client-addr-auto") == "0" {
                    match v.parse() {
                        Ok(ip) => d.p.network.virtual_ip = Some(ip),
                        Err(_) => d.warn(l, &key, format!("'{v}' is not an IPv4 address")),
                    }
                }
            }
            "client-ip-mask" | "client-iface" => {}
            "client-dns-used" | "client-dns-auto" => {
                if e.key == "client-dns-used" && v == "0" {
                    d.p.network.dns = postern_dbus::profile::DnsMode::Off;
                }
            }
            "client-dns-addr" | "client-dns-suffix" | "client-wins-addr" => {
                if !v.is_empty() && v != "0.0.0.0" {
                    d.drop_key(
                        l,
                        &key,
                        "fixed DNS/WINS settings: Postern uses what the gateway sends",
                    );
                }
            }
            "network-natt-mode" => match v {
                "disable" => d.p.network.nat_traversal = NatTraversal::Off,
                "enable" => d.p.network.nat_traversal = NatTraversal::Auto,
                "force-draft" | "force-rfc" => d.p.network.nat_traversal = NatTraversal::Force,
                o => d.warn(
                    l,
                    &key,
                    format!("'{o}' (Cisco UDP) is not supported: auto used"),
                ),
            },
            "network-natt-port" => {
                if v != "4500" {
                    d.drop_key(l, &key, "Postern uses the standard NAT-T port 4500");
                }
            }
            "network-natt-rate" => {
                if let Ok(n) = v.parse::<u64>() {
                    d.p.network.nat_keepalive =
                        (n > 0).then(|| Duration::from_secs(n.clamp(1, 3600)));
                }
            }
            "network-dpd-enable" => {
                d.p.network.dpd = (v != "0").then(|| Dpd {
                    interval: Duration::from_secs(15),
                    timeout: Duration::from_secs(75),
                });
            }
            "policy-list-include" => {
                let items: Vec<&str> = v.split(',').collect();
                let nets = d.subnets(l, &key, &items);
                d.p.phase2.remote_networks = nets;
            }
            "policy-list-exclude" => {
                if !v.trim().is_empty() {
                    d.drop_key(l, &key, "exclude lists cannot be expressed: Postern routes the included networks only");
                }
            }
            "policy-level"
            | "policy-list-auto"
            | "network-frag-mode"
            | "network-frag-size"
            | "network-mtu-size"
            | "client-banner-enable"
            | "network-notify-enable"
            | "client-splitdns-used"
            | "client-splitdns-auto"
            | "client-wins-used"
            | "client-wins-auto"
            | "phase1-life-kbytes"
            | "vendor-chkpt-enable" => {}
            "policy-nailed" => {
                if v == "1" {
                    d.drop_key(
                        l,
                        &key,
                        "persistent SAs: Postern keeps the tunnel while connected",
                    );
                }
            }
            _ => {
                if !v.is_empty() {
                    d.unknown(l, &key);
                }
            }
        }
    }
    // Phase 1: one proposal when everything is given; "auto" keeps Postern's defaults.
    let g1 =
        p1.2.as_deref()
            .filter(|g| *g != "0")
            .and_then(|g| d.dh_group(line("phase1-dhgroup"), "n:phase1-dhgroup", g));
    match (cipher(&c1, &k1), p1.1.as_deref().and_then(hash), g1) {
        (Some(c), Some(h), Some(g)) => d.ike(
            line("phase1-cipher"),
            "s:phase1-cipher",
            &[format!("{c}-{h}-{}", g.name())],
        ),
        (_, _, Some(g)) => d.set_ike_group(g),
        _ => {}
    }
    if let (Some(c), Some(h)) = (cipher(&c2, &k2), p2.0.as_deref().and_then(hash)) {
        d.esp(
            line("phase2-transform"),
            "s:phase2-transform",
            &[format!("{c}-{h}")],
        )
    }
    match p2.1.as_deref() {
        Some("-1") | None => d.p.phase2.pfs = None,
        Some("0") => d.warn(
            line("phase2-pfsgroup"),
            "n:phase2-pfsgroup",
            "0 means 'the group the gateway names in Mode Config': not expressible, no PFS offered",
        ),
        Some(g) => d.p.phase2.pfs = d.dh_group(line("phase2-pfsgroup"), "n:phase2-pfsgroup", g),
    }
    if d.p.auth.method != AuthMethod::Psk {
        d.secrets.remove(PSK);
    }
    Ok(vec![d])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn psk_xauth_site_with_base64_psk() {
        let i = one("shrew_office.vpn");
        assert_eq!(i.name, "shrew_office");
        assert_eq!(i.profile.gateway, "vpn.example.com");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(secret(&i, "psk"), Some("shroot12"));
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "erin");
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "keyid:sales"
        );
        assert_eq!(ike(&i), ["aes256-sha256-modp2048"]);
        assert_eq!(esp(&i), ["aes128-sha1-modp1024"]);
        assert_eq!(
            nets(&i.profile.phase2.remote_networks),
            ["10.50.0.0/16", "192.168.7.0/24"]
        );
        assert!(warned(&i, "s:policy-list-exclude"));
    }

    #[test]
    fn hybrid_site_carries_its_embedded_ca() {
        let i = one("shrew_hybrid_crlf.vpn");
        assert_eq!(i.profile.auth.method, AuthMethod::Hybrid);
        assert_eq!(i.files.len(), 1);
        assert_eq!(i.files[0].0, "auth.ca");
        assert!(i.files[0].2.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert_eq!(i.profile.network.nat_traversal, NatTraversal::Force);
        assert!(i.profile.network.dpd.is_none());
    }

    #[test]
    fn minimal_site_keeps_postern_defaults() {
        let i = one("shrew_minimal_auto.vpn");
        assert_eq!(i.profile.gateway, "192.0.2.200");
        assert_eq!(
            i.profile.phase1.proposals.len(),
            4,
            "auto = Postern's defaults"
        );
        assert!(warned(&i, "s:ipcomp-transform"));
        assert!(warned(&i, "n:network-ike-port"));
    }
}
