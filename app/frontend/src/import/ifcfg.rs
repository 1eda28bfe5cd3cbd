//! Red Hat initscripts `ifcfg-ipsecN` with `keys-ipsecN`: shell-sourced `KEY=value`
//! lines, read with the meaning `ifup-ipsec` gives them (it wrote a racoon file from
//! them: `IKE_DHGROUP` default 2, `IKE_ENC`/`ESP_PROTO` default 3des, `IKE_AUTH`/
//! `AH_PROTO` default sha1, tunnel mode when `SRCNET`/`DSTNET` are set).

use postern_dbus::profile::{AuthMethod, EncapMode, ExchangeMode, ModeConfig};

use super::racoon::{cipher, hash};
use super::{Draft, ImportError, PSK, Source, companion, err};

struct Var {
    key: String,
    value: String,
    line: usize,
}

/// `KEY=value` with shell quoting ('…', "…", backslash); `export` allowed.
fn read(origin: &str, text: &str) -> Result<Vec<Var>, ImportError> {
    let mut v = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, rest)) = l.split_once('=') else {
            return Err(err(
                origin,
                Some(line),
                format!("'{l}' is not a KEY=value line"),
            ));
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(
                origin,
                Some(line),
                format!("'{k}' is not a shell variable name"),
            ));
        }
        let mut val = String::new();
        let mut chars = rest.chars();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None | Some('"'), '\\') => {
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                }
                (None, '#') if val.is_empty() || val.ends_with(' ') => break,
                (None, c) if c.is_whitespace() => break,
                (_, c) => val.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(err(
                origin,
                Some(line),
                format!("the {q} quote opened in '{l}' is never closed (not valid shell)"),
            ));
        }
        v.push(Var {
            key: k.to_string(),
            value: val,
            line,
        });
    }
    Ok(v)
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let vars = read(src.origin, src.text)?;
    let mut keys_vars = Vec::new();
    for c in companion(src, &["keys-"], |t| t.contains("IKE_PSK")) {
        keys_vars.extend(
            read(&c.origin, &c.text)?
                .into_iter()
                .map(|v| (c.origin.clone(), v)),
        );
    }
    let get = |k: &str| vars.iter().rev().find(|v| v.key == k);
    let name = get("DEVICE").map(|v| v.value.clone()).unwrap_or_else(|| {
        src.stem
            .strip_prefix("ifcfg-")
            .unwrap_or(src.stem)
            .to_string()
    });
    let mut d = Draft::new(name, Some(1));
    let Some(dst) = get("DST") else {
        return Err(err(src.origin, None, "no DST= (the peer's address)"));
    };
    d.p.gateway = dst.value.clone();
    d.p.network.mode_config = ModeConfig::Off;
    if let Some(t) = get("TYPE")
        && !t.value.eq_ignore_ascii_case("ipsec")
    {
        return Err(err(
            src.origin,
            Some(t.line),
            format!("TYPE={} is not an IPsec interface", t.value),
        ));
    }
    let esp = get("ESP_PROTO").map_or("3des".to_string(), |v| v.value.clone());
    let ah = get("AH_PROTO").map(|v| v.value.clone());
    let ike_enc = get("IKE_ENC").map_or(esp.clone(), |v| v.value.clone());
    let ike_auth = get("IKE_AUTH")
        .map(|v| v.value.clone())
        .or(ah.clone())
        .filter(|a| a != "none")
        .unwrap_or_else(|| "sha1".into());
    let group = get("IKE_DHGROUP").map_or("2".to_string(), |v| v.value.clone());
    let gline = get("IKE_DHGROUP").map(|v| v.line);
    let g = d.dh_group(gline, "IKE_DHGROUP", &group);
    if let Some(g) = g {
        let p = format!(
            "{}-{}-{}",
            cipher(&ike_enc, None),
            hash(&ike_auth),
            g.name()
        );
        d.ike(get("IKE_ENC").map(|v| v.line), "IKE_ENC", &[p]);
    }
    let esp_auth = match ah.as_deref() {
        Some("none") | None => "sha1".to_string(),
        Some(a) => hash(a),
    };
    d.esp(
        get("ESP_PROTO").map(|v| v.line),
        "ESP_PROTO",
        &[format!("{}-{}", cipher(&esp, None), esp_auth)],
    );
    d.p.phase2.pfs = g;
    d.warn(
        None,
        "phase 2",
        "ifup-ipsec takes phase 2 from the system racoon.conf ('sainfo anonymous'): imported as ESP_PROTO with PFS in the IKE group; import that racoon.conf for the exact values",
    );
    d.p.exchange_mode = ExchangeMode::Main;
    d.warn(
        None,
        "exchange_mode",
        "not in the file: ifup-ipsec wrote 'aggressive, main' (older) or 'main, aggressive' (newer); main is used",
    );
    if ah.is_none() {
        d.warn(None, "AH_PROTO", "not set: ifup-ipsec then required AH (sha1) as well as ESP; Postern has no AH, sha1 is ESP's integrity algorithm instead");
    }
    let mut tunnel = false;
    for v in &vars {
        let line = Some(v.line);
        let val = v.value.as_str();
        match v.key.as_str() {
            "DST" | "TYPE" | "DEVICE" | "ESP_PROTO" | "IKE_ENC" | "IKE_AUTH" | "IKE_DHGROUP" => {}
            "AH_PROTO" => {
                if val != "none" {
                    d.warn(line, &v.key, format!("ifup-ipsec also required AH ({val}); Postern has no AH: {val} is used as ESP's integrity algorithm instead. Ask the peer to set AH_PROTO=none"));
                }
            }
            "SRCNET" | "DSTNET" => {
                tunnel = true;
                let nets = d.subnets(line, &v.key, &[val]);
                if v.key == "SRCNET" {
                    d.p.phase2.local_networks = nets;
                } else {
                    d.p.phase2.remote_networks = nets;
                }
            }
            "IKE_METHOD" => match val.to_ascii_uppercase().as_str() {
                "PSK" => d.p.auth.method = AuthMethod::Psk,
                "X509" => d.p.auth.method = AuthMethod::RsaSig,
                other => d.warn(line, &v.key, format!("'{other}' is not a method Postern has (PSK, X509): psk assumed")),
            },
            "IKE_PSK" => d.secret(PSK, val),
            "IKE_CERTFILE" => {
                d.p.auth.method = AuthMethod::RsaSig;
                d.missing("auth.cert", format!("ifup-ipsec used {val}.public: copy it here and set auth.cert"));
                d.missing("auth.key", format!("ifup-ipsec used {val}.private: copy it here and set auth.key"));
            }
            "IKE_PEER_CERTFILE" | "IKE_DNSSEC" => d.drop_key(line, &v.key, "Postern checks the gateway's certificate against auth.ca, not a pinned file or DNSSEC"),
            "MYID_TYPE" | "MYID_VALUE" => {}
            "ONBOOT" => {
                if val.eq_ignore_ascii_case("yes") {
                    d.drop_key(line, &v.key, "Postern connects when you ask (postern up); start at boot with a systemd unit running 'postern-helper up'");
                }
            }
            "SRC" => d.drop_key(line, &v.key, "Postern uses the address the route to the gateway gives"),
            "SRCGW" | "DSTGW" => d.drop_key(line, &v.key, "Postern routes the remote networks through the tunnel itself"),
            "USERCTL" | "NAME" | "BOOTPROTO" | "IPV6INIT" | "NM_CONTROLLED" => d.drop_key(line, &v.key, "an interface setting with no meaning for a Postern profile"),
            k if k.starts_with("KEY_") || k.starts_with("SPI_") || k == "AESP_PROTO" => {
                d.drop_key(line, k, "manual keying cannot be imported: Postern negotiates keys with IKE");
            }
            k => d.unknown(line, k),
        }
    }
    if let (Some(t), v) = (get("MYID_TYPE"), get("MYID_VALUE")) {
        let id = match (t.value.as_str(), v) {
            ("fqdn", Some(v)) => Some(format!("fqdn:{}", v.value)),
            ("user_fqdn", Some(v)) => Some(format!("user-fqdn:{}", v.value)),
            ("address", Some(v)) => Some(format!("address:{}", v.value)),
            ("address", None) => None,
            (other, _) => {
                d.drop_key(
                    Some(t.line),
                    "MYID_TYPE",
                    &format!("'{other}' is not an identifier type Postern reads"),
                );
                None
            }
        };
        if let Some(id) = id {
            d.p.auth.local_id = d.identity(Some(t.line), "MYID_VALUE", &id);
        }
    }
    if !tunnel {
        d.p.phase2.mode = EncapMode::Transport;
    }
    for (origin, v) in &keys_vars {
        match v.key.as_str() {
            "IKE_PSK" => d.secret(PSK, &v.value),
            k if k.starts_with("KEY_") => d.drop_key(
                Some(v.line),
                &format!("{origin}: {k}"),
                "manual keying cannot be imported",
            ),
            k => d.unknown(Some(v.line), &format!("{origin}: {k}")),
        }
    }
    Ok(vec![d])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::import::{Companion, ImportOptions, import_str};

    #[test]
    fn seed_002_listing_1_is_refused_with_its_line() {
        // `DST=X.X.X.X'` as printed: an unclosed quote, not valid shell.
        let e = import_str(
            "DST=X.X.X.X'  \nTYPE=IPSEC  \nONBOOT=yes  \nIKE_METHOD=PSK\n",
            "ifcfg-ipsec0",
            &[],
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert_eq!((e.origin.as_str(), e.line), ("ifcfg-ipsec0", Some(1)));
        assert!(e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn seed_002_listing_6_with_listing_2_keys() {
        let text = "TYPE=IPSEC\nONBOOT=yes\nIKE_METHOD=PSK\nSRCGW=192.168.1.254\nDSTGW=192.168.2.254\nSRCNET=192.168.1.0/24\nDSTNET=192.168.2.0/24\nDST=X.X.X.X\n";
        let keys = [Companion {
            origin: "keys-ipsec1".into(),
            text: "IKE_PSK=r3dh4t11nux\n".into(),
        }];
        let v = import_str(text, "ifcfg-ipsec1", &keys, &ImportOptions::default()).unwrap();
        let i = &v[0];
        assert_eq!(i.name, "ipsec1");
        assert_eq!(i.profile.gateway, "X.X.X.X");
        assert_eq!(i.profile.phase2.mode, EncapMode::Tunnel);
        assert_eq!(nets(&i.profile.phase2.local_networks), ["192.168.1.0/24"]);
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["192.168.2.0/24"]);
        assert_eq!(ike(i), ["3des-sha1-modp1024"]);
        assert_eq!(esp(i), ["3des-sha1-modp1024"]);
        assert_eq!(secret(i, "psk"), Some("r3dh4t11nux"));
        assert_eq!(i.profile.network.mode_config, ModeConfig::Off);
        for k in ["ONBOOT", "SRCGW", "DSTGW"] {
            assert!(warned(i, k), "{k}");
        }
    }

    #[test]
    fn host_to_host_with_keys_file_beside() {
        let i = one("ifcfg-ipsec0");
        assert_eq!(i.profile.gateway, "203.0.113.21");
        assert_eq!(i.profile.phase2.mode, EncapMode::Transport);
        assert_eq!(secret(&i, "psk"), Some("my_key"));
        assert_eq!(ike(&i), ["aes128-sha256-modp2048"]);
        assert!(warned(&i, "AH_PROTO"));
    }

    #[test]
    fn quoting_latin1_and_crlf() {
        let i = one("ifcfg-ipsec7");
        assert_eq!(i.name, "Zweigstelle-Köln");
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "fqdn:koeln.example.de"
        );
        assert_eq!(secret(&i, "psk"), Some("geheim mit Leerzeichen"));
        assert_eq!(i.profile.phase2.mode, EncapMode::Tunnel);
    }

    #[test]
    fn x509_reports_the_files() {
        let i = one("ifcfg-ipsec9");
        assert_eq!(i.profile.auth.method, AuthMethod::RsaSig);
        assert!(
            i.missing
                .iter()
                .any(|m| m.key == "auth.cert" && m.message.contains("laptop.public"))
        );
        assert!(warned(&i, "KEY_AH_IN"));
    }
}
