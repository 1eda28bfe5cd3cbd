//! NetworkManager keyfiles (`.nmconnection`, GLib key-file syntax) of the IPsec VPN
//! plugins: vpnc (`org.freedesktop.NetworkManager.vpnc`), libreswan
//! (`org.freedesktop.NetworkManager.libreswan`, alias `.openswan`) and strongswan
//! (`org.freedesktop.NetworkManager.strongswan`). `[vpn]` holds the plugin's data
//! items verbatim, `[vpn-secrets]` the secrets NetworkManager saved.

use std::time::Duration;

use postern_dbus::profile::{
    AuthMethod, Dpd, ExchangeMode, Identity, ModeConfig, NatTraversal, XAuth,
};

use super::ipsec_conf::{Param, SecretEntry, conn_from_params};
use super::{Draft, ImportError, KEY_PASSPHRASE, PSK, Source, XAUTH_PASSWORD, err, truthy};

pub(crate) struct Item {
    pub group: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// GLib key file: `[group]`, `key=value`, `#` comment lines, `\s \n \t \r \\` escapes.
pub(crate) fn read(origin: &str, text: &str) -> Result<Vec<Item>, ImportError> {
    let mut v: Vec<Item> = Vec::new();
    let mut group = None::<String>;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_start();
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            let Some(g) = l
                .trim_end()
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
            else {
                return Err(err(
                    origin,
                    Some(line),
                    format!("'{}' is not a [group] header", l.trim()),
                ));
            };
            group = Some(g.to_string());
            continue;
        }
        let Some((k, val)) = l.split_once('=') else {
            return Err(err(
                origin,
                Some(line),
                format!("'{}' is not a key=value line", l.trim()),
            ));
        };
        let Some(g) = &group else {
            return Err(err(origin, Some(line), "a key before any [group]"));
        };
        let mut out = String::new();
        let mut it = val.trim_start().chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('s') => out.push(' '),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('\\') => out.push('\\'),
                    Some(o) => {
                        out.push('\\');
                        out.push(o);
                    }
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        let key = k.trim_end().to_string();
        // A repeated key: the last one wins.
        v.retain(|it| !(it.group == *g && it.key == key));
        v.push(Item {
            group: g.clone(),
            key,
            value: out.trim_end().to_string(),
            line,
        });
    }
    Ok(v)
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let items = read(src.origin, src.text)?;
    let get = |g: &str, k: &str| items.iter().find(|i| i.group == g && i.key == k);
    let name = get("connection", "id").map_or(src.stem.to_string(), |i| i.value.clone());
    let Some(st) = get("vpn", "service-type") else {
        return Err(err(
            src.origin,
            None,
            "no [vpn] service-type: not a NetworkManager VPN connection",
        ));
    };
    let service = st.value.rsplit('.').next().unwrap_or_default().to_string();
    let vpn: Vec<&Item> = items
        .iter()
        .filter(|i| i.group == "vpn" && i.key != "service-type")
        .collect();
    let secrets: Vec<&Item> = items.iter().filter(|i| i.group == "vpn-secrets").collect();
    let mut d = match service.as_str() {
        "vpnc" => vpnc(&name, &vpn, &secrets),
        "libreswan" | "openswan" => libreswan(src, &name, &vpn, &secrets)?,
        "strongswan" => strongswan(&name, &vpn, &secrets),
        _ => {
            return Err(err(
                src.origin,
                Some(st.line),
                format!(
                    "service-type {} is not an IPsec plugin Postern imports (vpnc, libreswan, strongswan)",
                    st.value
                ),
            ));
        }
    };
    d.line = Some(1);
    for it in &items {
        let line = Some(it.line);
        match (it.group.as_str(), it.key.as_str()) {
            ("connection", "id" | "uuid" | "type" | "interface-name" | "timestamp")
            | ("vpn", _)
            | ("vpn-secrets", _) => {}
            ("connection", "autoconnect") if truthy(&it.value) => d.drop_key(
                line,
                "connection.autoconnect",
                "Postern connects when you ask",
            ),
            ("connection", "autoconnect") => {}
            ("connection", "permissions") => d.drop_key(
                line,
                "connection.permissions",
                "Postern profiles belong to the user who imports them",
            ),
            ("ipv4", "method" | "dns-search" | "ignore-auto-dns") => {}
            ("ipv4", "never-default") => {}
            ("ipv4", k) if k.starts_with("route") && !k.contains("_options") => {
                let net = it.value.split(',').next().unwrap_or_default().to_string();
                let nets = d.subnets(line, &format!("ipv4.{k}"), &[&net]);
                for n in nets {
                    if !d.p.phase2.remote_networks.contains(&n) {
                        d.p.phase2.remote_networks.push(n);
                    }
                }
            }
            ("ipv4", "dns") => d.drop_key(
                line,
                "ipv4.dns",
                "fixed DNS servers: Postern uses the ones the gateway sends (Mode Config)",
            ),
            ("ipv6", "method") if matches!(it.value.as_str(), "ignore" | "disabled" | "auto") => {}
            ("proxy", _) => {}
            (g, k) => d.drop_key(
                line,
                &format!("{g}.{k}"),
                "Postern has no equivalent setting",
            ),
        }
    }
    Ok(vec![d])
}

fn flag_note(d: &mut Draft, vpn: &[&Item], secrets: &[&Item], key: &str, kind: &str) {
    let flags = vpn
        .iter()
        .find(|i| i.key == format!("{key}-flags"))
        .map(|i| i.value.as_str());
    if let Some(s) = secrets.iter().find(|i| i.key == key) {
        d.secret(kind, &s.value);
    } else if let Some(f) = flags
        && f != "0"
        && f != "4"
    {
        // 1: in the keyring of the desktop; 2: asked each time. Not in the file.
        d.warn(None, key, format!("not in the file (NetworkManager flags {f}: kept in the desktop keyring or asked): Postern asks for it or takes it from its own keyring"));
    }
}

fn vpnc(name: &str, vpn: &[&Item], secrets: &[&Item]) -> Draft {
    let mut d = Draft::new(name, Some(1));
    d.p.exchange_mode = ExchangeMode::Aggressive;
    d.p.network.mode_config = ModeConfig::Pull;
    flag_note(&mut d, vpn, secrets, "IPSec secret", PSK);
    flag_note(&mut d, vpn, secrets, "Xauth password", XAUTH_PASSWORD);
    for it in vpn {
        let line = Some(it.line);
        let v = it.value.as_str();
        match it.key.as_str() {
            "IPSec gateway" => d.p.gateway = v.to_string(),
            "IPSec ID" => d.p.auth.local_id = Some(Identity::KeyId(v.as_bytes().to_vec())),
            "Xauth username" => d.p.xauth = Some(XAuth { username: v.to_string(), password: None }),
            "IPSec secret" => d.secret(PSK, v),
            "Xauth password" => d.secret(XAUTH_PASSWORD, v),
            "IKE Authmode" => match v {
                "psk" => d.p.auth.method = AuthMethod::Psk,
                "hybrid" => d.p.auth.method = AuthMethod::Hybrid,
                "cert" => {
                    d.p.auth.method = AuthMethod::RsaSig;
                    d.warn(line, &it.key, "vpnc never implemented 'cert'; imported as rsa-sig");
                }
                o => d.warn(line, &it.key, format!("'{o}' is not psk, cert or hybrid: psk used")),
            },
            "CA-File" => d.p.auth.ca = Some(v.to_string()),
            "IKE DH Group" => {
                if let Some(g) = d.dh_group(line, &it.key, v) {
                    d.set_ike_group(g);
                }
            }
            "Perfect Forward Secrecy" => match v {
                "nopfs" => d.p.phase2.pfs = None,
                "server" => d.warn(line, &it.key, "'server' (take the gateway's choice) is not expressible: no PFS is offered; set phase2.pfs if the gateway insists"),
                g => d.p.phase2.pfs = d.dh_group(line, &it.key, g),
            },
            "NAT Traversal Mode" => match v {
                "natt" => d.p.network.nat_traversal = NatTraversal::Auto,
                "none" => d.p.network.nat_traversal = NatTraversal::Off,
                "force-natt" => d.p.network.nat_traversal = NatTraversal::Force,
                "cisco-udp" => d.warn(line, &it.key, "Cisco UDP encapsulation is proprietary: standard NAT traversal (auto) is used"),
                o => d.warn(line, &it.key, format!("'{o}' is not a NAT traversal mode vpnc has")),
            },
            "DPD idle timeout (our side)" => match v.parse::<u64>() {
                Ok(0) => d.p.network.dpd = None,
                Ok(n) => {
                    let i = Duration::from_secs(n.clamp(1, 3600));
                    d.p.network.dpd = Some(Dpd { interval: i, timeout: (i * 5).min(Duration::from_secs(3600)).max(i) });
                }
                Err(_) => d.warn(line, &it.key, format!("'{v}' is not a number of seconds")),
            },
            "IPSec secret-flags" | "Xauth password-flags" | "ipsec-secret-type" | "xauth-password-type" => {}
            "Enable Single DES" | "Enable no encryption" | "Enable weak encryption" | "Enable weak authentication" => {
                if truthy(v) {
                    d.drop_key(line, &it.key, "Postern does not offer single DES or null encryption in phase 1");
                }
            }
            "Domain" => d.drop_key(line, &it.key, "the NT domain for XAuth has no equivalent"),
            k => d.drop_key(line, k, "Postern has no equivalent setting"),
        }
    }
    if d.p.auth.method != AuthMethod::Psk {
        d.secrets.remove(PSK);
    }
    d
}

fn libreswan(
    src: &Source<'_>,
    name: &str,
    vpn: &[&Item],
    secrets: &[&Item],
) -> Result<Draft, ImportError> {
    let mut params: Vec<Param> = vpn
        .iter()
        .filter(|i| {
            !i.key.ends_with("-flags")
                && !i.key.ends_with("inputmodes")
                && i.key != "nm-auto-defaults"
        })
        .map(|i| Param {
            key: i.key.to_ascii_lowercase(),
            value: i.value.clone(),
            line: i.line,
        })
        .collect();
    let has = |p: &[Param], k: &str| p.iter().any(|x| x.key == k);
    let cert = has(&params, "leftcert") || has(&params, "leftrsasigkey");
    // What the plugin adds when it writes the conn for pluto (IKEv1 client defaults).
    let add = |p: &mut Vec<Param>, k: &str, v: &str| {
        if !p.iter().any(|x| x.key == k) {
            p.push(Param {
                key: k.into(),
                value: v.into(),
                line: 0,
            });
        }
    };
    add(&mut params, "left", "%defaultroute");
    add(
        &mut params,
        "authby",
        if cert { "rsasig" } else { "secret" },
    );
    add(&mut params, "ikev2", "never");
    // ikev2 = propose/yes/insist: the plugin writes an IKEv2 conn (no XAuth, no
    // aggressive mode) that asks for an address (leftmodecfgclient).
    let ikev2 = params.iter().any(|p| {
        p.key == "ikev2"
            && matches!(
                p.value.to_ascii_lowercase().as_str(),
                "propose" | "yes" | "insist"
            )
    });
    let user = params
        .iter()
        .any(|p| p.key == "leftxauthusername" || p.key == "leftusername");
    if ikev2 {
        add(&mut params, "leftmodecfgclient", "yes");
        add(&mut params, "modecfgpull", "yes");
    } else if user {
        add(&mut params, "leftxauthclient", "yes");
        add(&mut params, "leftmodecfgclient", "yes");
        add(&mut params, "modecfgpull", "yes");
    }
    if let Some(id) = params.iter_mut().find(|p| p.key == "leftid") {
        // The plugin sends a group name as "@group" and uses aggressive mode for it.
        let v = id.value.clone();
        if !v.starts_with('@')
            && !v.starts_with('%')
            && !v.contains('=')
            && !v.contains('@')
            && v.parse::<std::net::IpAddr>().is_err()
        {
            id.value = format!("@{v}");
        }
        if !cert && !ikev2 {
            add(&mut params, "aggrmode", "yes");
        }
    }
    for p in &mut params {
        if p.line == 0 {
            p.line = 1;
        }
    }
    let mut sec = Vec::new();
    for s in secrets {
        let kind = match s.key.as_str() {
            "pskvalue" => "PSK",
            "xauthpassword" => "XAUTH",
            _ => continue,
        };
        sec.push(SecretEntry {
            origin: src.origin.to_string(),
            line: s.line,
            selectors: Vec::new(),
            kind: kind.into(),
            secret: s.value.clone(),
            file: None,
        });
    }
    let mut d = match conn_from_params(name, 1, params, &sec)? {
        Ok(d) => d,
        Err(why) => return Err(err(src.origin, None, why)),
    };
    d.warnings.retain(|w| w.key != "keyexchange");
    for (k, kind) in [("pskvalue", PSK), ("xauthpassword", XAUTH_PASSWORD)] {
        if !d.secrets.contains_key(kind) {
            flag_note(&mut d, vpn, secrets, k, kind);
        }
    }
    Ok(d)
}

/// NetworkManager's strongswan plugin (`nm-strongswan.c`): IKEv2 only. `method` psk,
/// key/cert/agent/smartcard (our certificate), eap (the user's login against the
/// gateway's certificate: Postern's `hybrid` + `[xauth]`), eap-tls (our certificate
/// inside EAP-TLS: Postern's `eap-tls`).
fn strongswan(name: &str, vpn: &[&Item], secrets: &[&Item]) -> Draft {
    let mut d = Draft::new(name, Some(1));
    d.ikev2();
    d.p.network.mode_config = ModeConfig::Off;
    let get = |k: &str| vpn.iter().find(|i| i.key == k);
    let method_line = get("method").map(|i| i.line);
    // The plugin's editor starts with "key" (certificate and private key files).
    let method = get("method")
        .map_or("key", |i| i.value.as_str())
        .to_string();
    let user = get("user").map(|i| i.value.clone());
    let password_kind = match method.as_str() {
        "psk" => {
            d.p.auth.method = AuthMethod::Psk;
            Some(PSK)
        }
        "key" | "cert" => {
            d.p.auth.method = AuthMethod::RsaSig;
            Some(KEY_PASSPHRASE)
        }
        "agent" | "smartcard" => {
            d.p.auth.method = AuthMethod::RsaSig;
            d.warn(
                method_line,
                "method",
                format!("'{method}': the private key is in the ssh-agent or on a smartcard; Postern needs its file (auth.key)"),
            );
            d.missing(
                "auth.key",
                "the private key was not a file: give its PEM file",
            );
            None
        }
        "eap" => {
            d.p.auth.method = AuthMethod::Hybrid;
            Some(XAUTH_PASSWORD)
        }
        "eap-tls" => {
            d.p.auth.method = AuthMethod::EapTls;
            Some(KEY_PASSPHRASE)
        }
        o => {
            d.refuse(format!(
                "method = {o} is not one Postern has (psk, key, cert, eap, eap-tls)"
            ));
            None
        }
    };
    if let Some(kind) = password_kind {
        flag_note(&mut d, vpn, secrets, "password", kind);
    }
    if method == "eap" {
        match &user {
            Some(u) if !u.is_empty() => {
                d.p.xauth = Some(XAuth {
                    username: u.clone(),
                    password: None,
                })
            }
            _ => d.missing("xauth.username", "no user name in the file"),
        }
    }
    let proposal = get("proposal").is_some_and(|i| truthy(&i.value));
    for it in vpn {
        let line = Some(it.line);
        let v = it.value.as_str();
        match it.key.as_str() {
            "address" => d.p.gateway = v.to_string(),
            "method" | "user" | "password-flags" | "secret-flags" | "proposal" => {}
            "virtual" => {
                if truthy(v) {
                    d.p.network.mode_config = ModeConfig::Pull;
                }
            }
            "encap" => {
                if truthy(v) {
                    d.p.network.nat_traversal = NatTraversal::Force;
                }
            }
            "ipcomp" => {
                if truthy(v) {
                    d.drop_key(line, "ipcomp", "Postern does not do IPComp");
                }
            }
            "server-port" => {
                if v.trim() != "500" {
                    d.drop_key(
                        line,
                        "server-port",
                        "Postern talks to the gateway on port 500 (then 4500)",
                    );
                }
            }
            "cert-source" => {}
            "certificate" => d.p.auth.ca = Some(v.to_string()),
            "usercert" => d.p.auth.cert = Some(v.to_string()),
            "userkey" => d.p.auth.key = Some(v.to_string()),
            "local-identity" | "remote-identity" => {
                let id = match super::ipsec_conf::swan_id(v, false) {
                    Ok(Some(s)) | Err(s) => d.identity(line, &it.key, &s),
                    Ok(None) => None,
                };
                if it.key == "local-identity" {
                    d.p.auth.local_id = id;
                } else {
                    d.p.auth.remote_id = id;
                }
            }
            "ike" | "esp" if !proposal => {
                if !v.trim().is_empty() {
                    d.drop_key(
                        line,
                        &it.key,
                        "proposal=no: the plugin does not use these proposals",
                    );
                }
            }
            "ike" | "esp" => {
                // Saved with ';' between proposals (older versions: ',').
                let props: Vec<String> = v
                    .split([';', ','])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(super::ipsec_conf::swan_proposal)
                    .collect();
                if it.key == "ike" {
                    d.ike(line, "ike", &props);
                } else {
                    d.esp(line, "esp", &props);
                }
            }
            k => d.drop_key(line, k, "Postern has no equivalent setting"),
        }
    }
    if let Some(u) = user.filter(|u| !u.is_empty())
        && method != "eap"
    {
        // Old PSK profiles kept our identity in "user"; the plugin still falls back to it.
        if method == "psk" && d.p.auth.local_id.is_none() {
            let line = get("user").map(|i| i.line);
            let id = match super::ipsec_conf::swan_id(&u, false) {
                Ok(Some(s)) | Err(s) => d.identity(line, "user", &s),
                Ok(None) => None,
            };
            d.p.auth.local_id = id;
        } else {
            d.drop_key(
                None,
                "user",
                "the user name is for EAP, which this method does not use",
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ImportOptions, Imported, import_file};
    use super::*;

    #[test]
    fn vpnc_keyfile_with_saved_secrets_and_escapes() {
        let i = one("nm_vpnc_office.nmconnection");
        assert_eq!(i.name, "Office (vpnc)");
        assert_eq!(i.profile.gateway, "vpn.example.com");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "keyid:sales"
        );
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "alice");
        assert_eq!(secret(&i, "psk"), Some("group secret"));
        assert_eq!(i.secrets_missing, ["xauth-password"]);
        assert!(ike(&i).iter().all(|p| p.ends_with("modp2048")));
        assert_eq!(i.profile.phase2.pfs, None);
        assert_eq!(i.profile.network.dpd.unwrap().interval.as_secs(), 300);
        assert!(warned(&i, "NAT Traversal Mode"));
        assert!(warned(&i, "Domain"));
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["10.30.0.0/16"]);
    }

    #[test]
    fn libreswan_keyfile_goes_through_the_ipsec_conf_reader() {
        let i = one("nm_libreswan_xauth.nmconnection");
        assert_eq!(i.profile.gateway, "203.0.113.80");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "fqdn:staff"
        );
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "bob");
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(secret(&i, "psk"), Some("s3cret ps k"));
        assert_eq!(secret(&i, "xauth-password"), Some("bobpw"));
        assert_eq!(ike(&i), ["aes256-sha1-modp2048"]);
        assert_eq!(i.profile.phase2.pfs, None, "pfs=no");
        assert_eq!(i.profile.phase2.lifetime.as_secs(), 8 * 3600);
    }

    /// One connection, or the one-line refusal when the contract does not take its
    /// kind of IKEv2 profile yet.
    fn one_v2(name: &str, allowed: bool) -> Option<Imported> {
        let r = import_file(&fixture(name), &ImportOptions::default());
        if allowed {
            let mut v = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v.len(), 1);
            return Some(v.remove(0));
        }
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{name}: imported although refused"));
        let m = e.to_string();
        assert!(m.contains("IKEv2") && !m.contains('\n'), "{m}");
        None
    }

    #[test]
    fn strongswan_psk_keyfile_is_ikev2() {
        let i = one("nm_strongswan_psk.nmconnection");
        assert_eq!(i.name, "Home (IKEv2)");
        assert_eq!(i.profile.ike_version, 2);
        assert_eq!(i.profile.gateway, "vpn.example.org");
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert_eq!(
            secret(&i, "psk"),
            Some("a long pre-shared key of 20+ chars")
        );
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "user-fqdn:laptop@example.org"
        );
        assert_eq!(
            i.profile.auth.remote_id.as_ref().unwrap().to_string(),
            "fqdn:vpn.example.org"
        );
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(i.profile.network.nat_traversal, NatTraversal::Force);
        assert_eq!(
            ike(&i),
            ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"]
        );
        assert_eq!(esp(&i), ["aes256gcm16", "aes128-sha256"]);
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["10.10.0.0/16"]);
        assert!(warned(&i, "server-port"));
        assert!(!warned(&i, "ipcomp"), "ipcomp=no is nothing to warn about");
        assert!(!warned(&i, "service-type"), "{:?}", i.warnings);
        assert!(
            !warned(&i, "connection.autoconnect"),
            "autoconnect=false is nothing to warn about"
        );
        // aes128gcm16-prfsha256-ecp256 is an IKEv2 proposal Postern does: no warning.
        assert!(!warned(&i, "ike"), "{:?}", i.warnings);
    }

    #[test]
    fn strongswan_eap_keyfile_is_a_user_login_against_the_gateway_certificate() {
        if let Some(i) = one_v2(
            "nm_strongswan_eap.nmconnection",
            ikev2_allows("hybrid", true),
        ) {
            assert_eq!(i.profile.ike_version, 2);
            assert_eq!(i.profile.auth.method, AuthMethod::Hybrid);
            assert_eq!(i.profile.xauth.as_ref().unwrap().username, "alice");
            assert_eq!(
                i.profile.auth.ca.as_deref(),
                Some("/home/alice/.config/corp-ca.pem")
            );
            assert_eq!(i.secrets_missing, ["xauth-password"]);
            assert!(warned(&i, "password"), "flags 1: in the desktop keyring");
            assert!(warned(&i, "ipcomp"));
        }
    }

    #[test]
    fn strongswan_certificate_keyfile() {
        if let Some(i) = one_v2(
            "nm_strongswan_cert.nmconnection",
            ikev2_allows("rsa-sig", false),
        ) {
            assert_eq!(i.profile.ike_version, 2);
            assert_eq!(i.profile.auth.method, AuthMethod::RsaSig);
            assert_eq!(i.profile.auth.cert.as_deref(), Some("/home/u/certs/me.pem"));
            assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
            assert!(warned(&i, "ipcomp"));
        }
    }

    #[test]
    fn strongswan_eap_tls_is_our_certificate_inside_eap_tls() {
        let text = "[connection]\nid=Card\ntype=vpn\n[vpn]\nservice-type=org.freedesktop.NetworkManager.strongswan\naddress=gw.example.org\nmethod=eap-tls\ncertificate=/etc/ca.pem\nusercert=/home/u/me.pem\nuserkey=/home/u/me.key\n";
        let i =
            super::super::import_str(text, "card.nmconnection", &[], &Default::default()).unwrap();
        let p = &i[0].profile;
        assert_eq!(p.ike_version, 2);
        assert_eq!(p.auth.method, AuthMethod::EapTls);
        assert_eq!(p.auth.cert.as_deref(), Some("/home/u/me.pem"));
        assert_eq!(p.auth.key.as_deref(), Some("/home/u/me.key"));
        assert_eq!(p.auth.ca.as_deref(), Some("/etc/ca.pem"));
        assert!(p.xauth.is_none());
    }

    #[test]
    fn libreswan_keyfile_with_ikev2_insist() {
        let i = one("nm_libreswan_ikev2.nmconnection");
        assert_eq!(i.profile.ike_version, 2);
        assert_eq!(i.profile.gateway, "198.51.100.7");
        assert_eq!(
            i.profile.exchange_mode,
            ExchangeMode::Main,
            "no aggrmode in IKEv2"
        );
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "fqdn:branch.example.org"
        );
        assert_eq!(secret(&i, "psk"), Some("branch psk"));
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(ike(&i), ["aes256-sha256-modp2048"]);
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["10.50.0.0/16"]);
        assert!(i.profile.xauth.is_none());
    }

    #[test]
    fn not_a_vpn_keyfile() {
        let e = super::super::import_str("[connection]\nid=x\ntype=wifi\n[vpn]\nservice-type=org.freedesktop.NetworkManager.openvpn\n", "x.nmconnection", &[], &Default::default()).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
    }
}
