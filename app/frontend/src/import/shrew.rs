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

/// The site's entries, looked up by key (the last one wins, as in Shrew).
struct Site(Vec<Entry>);

impl Site {
    fn get(&self, k: &str) -> Option<&Entry> {
        self.0.iter().rev().find(|e| e.key == k)
    }
    fn val(&self, k: &str) -> String {
        self.get(k).map(|e| e.value.clone()).unwrap_or_default()
    }
    fn line(&self, k: &str) -> Option<usize> {
        self.get(k).map(|e| e.line)
    }
}

/// The proposal parts, gathered key by key and put together at the end.
#[derive(Default)]
struct Parts {
    cipher1: String,
    keylen1: Option<String>,
    hash1: Option<String>,
    group1: Option<String>,
    cipher2: String,
    keylen2: Option<String>,
    hmac2: Option<String>,
    pfs2: Option<String>,
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let site = Site(read(src)?);
    let mut d = Draft::new(src.stem.to_string(), Some(1));
    let host = site.val("network-host");
    if host.is_empty() {
        return Err(err(src.origin, None, "no s:network-host (the gateway)"));
    }
    d.p.gateway = host;
    auth(&mut d, &site, src)?;
    let mut parts = Parts::default();
    for e in &site.0 {
        entry(&mut d, &site, e, &mut parts);
    }
    proposals(&mut d, &site, &parts);
    if d.p.auth.method != AuthMethod::Psk {
        d.secrets.remove(PSK);
    }
    Ok(vec![d])
}

/// `auth-method` and, with XAuth, the saved user name.
fn auth(d: &mut Draft, site: &Site, src: &Source<'_>) -> Result<(), ImportError> {
    let (method, xauth) = match site.val("auth-method").as_str() {
        "mutual-psk" | "" => (AuthMethod::Psk, false),
        "mutual-psk-xauth" => (AuthMethod::Psk, true),
        "mutual-rsa" => (AuthMethod::RsaSig, false),
        "mutual-rsa-xauth" => (AuthMethod::RsaSig, true),
        "hybrid-rsa-xauth" => (AuthMethod::Hybrid, true),
        "hybrid-grp-xauth" => {
            d.warn(site.line("auth-method"), "s:auth-method", "hybrid with Cisco group authentication: Postern's hybrid checks the gateway's certificate, not the group password");
            (AuthMethod::Hybrid, true)
        }
        o => {
            return Err(err(
                src.origin,
                site.line("auth-method"),
                format!("auth-method '{o}' is not one Shrew writes"),
            ));
        }
    };
    d.p.auth.method = method;
    if xauth {
        let u = site.val("client-saved-username");
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
    Ok(())
}

/// One `T:key:value` entry.
fn entry(d: &mut Draft, site: &Site, e: &Entry, parts: &mut Parts) {
    let l = Some(e.line);
    let key = format!("{}:{}", e.kind, e.key);
    let v = e.value.as_str();
    let positive = || v.parse::<u64>().ok().filter(|n| *n > 0);
    match e.key.as_str() {
        "network-host" | "auth-method" | "client-saved-username" | "version" => {}
        "auth-mutual-psk" => match Base64::decode_vec(v)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(s) => d.secret(PSK, &s),
            None => d.warn(l, &key, "not base64 text: the PSK was not carried over"),
        },
        "ident-client-type" | "ident-server-type" => identity(d, site, e, &key),
        "auth-server-cert-data" | "auth-client-cert-data" | "auth-client-key-data" => {
            embedded(d, e, &key)
        }
        "auth-server-cert" | "auth-client-cert" | "auth-client-key" => {
            let pkey = match e.key.as_str() {
                "auth-server-cert" => "auth.ca",
                "auth-client-cert" => "auth.cert",
                _ => "auth.key",
            };
            d.missing(
                pkey,
                format!(
                    "the file {v} on the machine the site came from: copy it here and set {pkey}"
                ),
            );
        }
        "phase1-exchange" => match v {
            "aggressive" => d.p.exchange_mode = ExchangeMode::Aggressive,
            "main" => d.p.exchange_mode = ExchangeMode::Main,
            o => d.warn(l, &key, format!("'{o}' is not main or aggressive")),
        },
        "phase1-cipher" => parts.cipher1 = v.to_string(),
        "phase1-keylen" => parts.keylen1 = Some(v.to_string()),
        "phase1-hash" => parts.hash1 = Some(v.to_string()),
        "phase1-dhgroup" => parts.group1 = Some(v.to_string()),
        "phase1-life-secs" => {
            if let Some(n) = positive() {
                d.lifetime1(l, &key, Duration::from_secs(n));
            }
        }
        "phase2-transform" => parts.cipher2 = v.to_string(),
        "phase2-keylen" => parts.keylen2 = Some(v.to_string()),
        "phase2-hmac" => parts.hmac2 = Some(v.to_string()),
        "phase2-pfsgroup" => parts.pfs2 = Some(v.to_string()),
        "phase2-life-secs" => {
            if let Some(n) = positive() {
                d.lifetime2(l, &key, Duration::from_secs(n));
            }
        }
        "phase2-life-kbytes" => {
            if let Some(n) = positive() {
                d.p.phase2.lifetime_kb = Some(n);
            }
        }
        "client-auto-mode" => match v {
            "pull" => d.p.network.mode_config = ModeConfig::Pull,
            "push" => d.p.network.mode_config = ModeConfig::Push,
            "disabled" => d.p.network.mode_config = ModeConfig::Off,
            o => d.warn(l, &key, format!("'{o}' has no equivalent: pull used")),
        },
        "client-ip-addr" => {
            if site.val("client-addr-auto") == "0" {
                match v.parse() {
                    Ok(ip) => d.p.network.virtual_ip = Some(ip),
                    Err(_) => d.warn(l, &key, format!("'{v}' is not an IPv4 address")),
                }
            }
        }
        "client-dns-used" => {
            if v == "0" {
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
        "network-natt-rate" => {
            if let Ok(n) = v.parse::<u64>() {
                d.p.network.nat_keepalive = (n > 0).then(|| Duration::from_secs(n.clamp(1, 3600)));
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
        k if NO_EFFECT.contains(&k) => {}
        _ => dropped(d, e, &key),
    }
}

/// Keys that are read elsewhere or change nothing for Postern.
const NO_EFFECT: &[&str] = &[
    "ident-client-data",
    "ident-server-data",
    "auth-server-cert-name",
    "auth-client-cert-name",
    "auth-client-key-name",
    "client-addr-auto",
    "client-ip-mask",
    "client-iface",
    "client-dns-auto",
    "policy-level",
    "policy-list-auto",
    "network-frag-mode",
    "network-frag-size",
    "network-mtu-size",
    "client-banner-enable",
    "network-notify-enable",
    "client-splitdns-used",
    "client-splitdns-auto",
    "client-wins-used",
    "client-wins-auto",
    "phase1-life-kbytes",
    "vendor-chkpt-enable",
];

/// Settings Postern does not take over: said when they would have changed something.
fn dropped(d: &mut Draft, e: &Entry, key: &str) {
    let (l, v) = (Some(e.line), e.value.as_str());
    match e.key.as_str() {
        "network-ike-port" if v != "500" => {
            d.drop_key(l, key, "Postern uses the standard IKE port 500")
        }
        "network-natt-port" if v != "4500" => {
            d.drop_key(l, key, "Postern uses the standard NAT-T port 4500")
        }
        "ipcomp-transform" if !matches!(v, "disabled" | "none") => {
            d.drop_key(l, key, "Postern does not do IPComp")
        }
        "policy-list-exclude" if !v.trim().is_empty() => d.drop_key(
            l,
            key,
            "exclude lists cannot be expressed: Postern routes the included networks only",
        ),
        "policy-nailed" if v == "1" => d.drop_key(
            l,
            key,
            "persistent SAs: Postern keeps the tunnel while connected",
        ),
        "network-ike-port"
        | "network-natt-port"
        | "ipcomp-transform"
        | "policy-list-exclude"
        | "policy-nailed" => {}
        _ if !v.is_empty() => d.unknown(l, key),
        _ => {}
    }
}

/// `ident-client-type` / `ident-server-type` with their `-data`.
fn identity(d: &mut Draft, site: &Site, e: &Entry, key: &str) {
    let l = Some(e.line);
    let client = e.key.contains("client");
    let data = site.val(if client {
        "ident-client-data"
    } else {
        "ident-server-data"
    });
    let id = match (e.value.as_str(), data.is_empty()) {
        ("none" | "any", _) | ("address" | "asn1dn", true) => return,
        ("address", false) => format!("address:{data}"),
        ("fqdn", false) => format!("fqdn:{data}"),
        ("ufqdn", false) => format!("user-fqdn:{data}"),
        ("keyid", false) => format!("keyid:{data}"),
        ("asn1dn", false) => format!("dn:{data}"),
        (o, _) => {
            d.warn(
                l,
                key,
                format!("identity type '{o}' without data: not carried over"),
            );
            return;
        }
    };
    let id = d.identity(l, key, &id);
    if client {
        d.p.auth.local_id = id;
    } else {
        d.p.auth.remote_id = id;
    }
}

/// A certificate or key embedded in base64, written beside the profile.
fn embedded(d: &mut Draft, e: &Entry, key: &str) {
    let (pkey, file) = match e.key.as_str() {
        "auth-server-cert-data" => ("auth.ca", "ca.pem"),
        "auth-client-cert-data" => ("auth.cert", "cert.pem"),
        _ => ("auth.key", "key.pem"),
    };
    match Base64::decode_vec(&e.value) {
        Ok(bytes) if !bytes.is_empty() => d.files.push((pkey.to_string(), file.to_string(), bytes)),
        _ => d.warn(
            Some(e.line),
            key,
            "the embedded file is not base64: not carried over",
        ),
    }
}

/// Phase 1: one proposal when everything is given ("auto" keeps Postern's defaults);
/// phase 2 likewise, and its PFS group.
fn proposals(d: &mut Draft, site: &Site, parts: &Parts) {
    let keylen = |k: &Option<String>| k.clone().unwrap_or_else(|| "0".into());
    let g1 = parts
        .group1
        .as_deref()
        .filter(|g| *g != "0")
        .and_then(|g| d.dh_group(site.line("phase1-dhgroup"), "n:phase1-dhgroup", g));
    let c1 = cipher(&parts.cipher1, &keylen(&parts.keylen1));
    match (c1, parts.hash1.as_deref().and_then(hash), g1) {
        (Some(c), Some(h), Some(g)) => d.ike(
            site.line("phase1-cipher"),
            "s:phase1-cipher",
            &[format!("{c}-{h}-{}", g.name())],
        ),
        (_, _, Some(g)) => d.set_ike_group(g),
        _ => {}
    }
    let c2 = cipher(&parts.cipher2, &keylen(&parts.keylen2));
    if let (Some(c), Some(h)) = (c2, parts.hmac2.as_deref().and_then(hash)) {
        d.esp(
            site.line("phase2-transform"),
            "s:phase2-transform",
            &[format!("{c}-{h}")],
        )
    }
    match parts.pfs2.as_deref() {
        Some("-1") | None => d.p.phase2.pfs = None,
        Some("0") => d.warn(
            site.line("phase2-pfsgroup"),
            "n:phase2-pfsgroup",
            "0 means 'the group the gateway names in Mode Config': not expressible, no PFS offered",
        ),
        Some(g) => {
            d.p.phase2.pfs = d.dh_group(site.line("phase2-pfsgroup"), "n:phase2-pfsgroup", g)
        }
    }
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
