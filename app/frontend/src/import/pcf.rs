//! Cisco VPN Client profiles (`.pcf`): one `[main]` section of `Key=Value` lines,
//! keys case-insensitive, a leading `!` marks a key locked in the Cisco GUI. Empty
//! values mean "unset". `enc_GroupPwd` / `enc_UserPassword` are decrypted with the
//! public algorithm of vpnc's cisco-decrypt ([`cisco_decrypt`]).

use ::cbc::cipher::{Block, BlockModeDecrypt, KeyIvInit};
use postern_dbus::profile::{AuthMethod, Dpd, ExchangeMode, Identity, NatTraversal, XAuth};
use sha1::{Digest, Sha1};
use std::time::Duration;
use zeroize::Zeroizing;

use super::{Draft, ImportError, PSK, Source, XAUTH_PASSWORD, err};

/// Why an `enc_` value could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("not hexadecimal (a Cisco 'type 7' string is a different scheme)")]
    NotHex,
    #[error("too short or not whole 3DES blocks ({0} bytes)")]
    Length(usize),
    #[error("its checksum does not match (damaged or not a Cisco VPN Client value)")]
    Checksum,
    #[error("bad padding after decryption")]
    Padding,
    #[error("the decrypted value is not text")]
    NotText,
}

/// Decrypts a Cisco VPN Client `enc_GroupPwd` / `enc_UserPassword` value: hex; bytes
/// 0..20 are a salt h1 (its first 8 bytes the IV), 20..40 the SHA-1 of the ciphertext,
/// the rest 3DES-CBC ciphertext under SHA1(h1 with h1[19]+1) ‖ SHA1(h1 with h1[19]+3)[..4].
pub fn cisco_decrypt(hex: &str) -> Result<Zeroizing<String>, DecryptError> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DecryptError::NotHex);
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| DecryptError::NotHex))
        .collect::<Result<_, _>>()?;
    if bytes.len() < 48 || !(bytes.len() - 40).is_multiple_of(8) {
        return Err(DecryptError::Length(bytes.len()));
    }
    let (h1, rest) = bytes.split_at(20);
    let (check, ct) = rest.split_at(20);
    if Sha1::digest(ct).as_slice() != check {
        return Err(DecryptError::Checksum);
    }
    let mut key = Zeroizing::new([0u8; 24]);
    let mut ht = Zeroizing::new([0u8; 20]);
    ht.copy_from_slice(h1);
    ht[19] = ht[19].wrapping_add(1);
    key[..20].copy_from_slice(&Sha1::digest(&ht[..]));
    ht[19] = ht[19].wrapping_add(2);
    key[20..].copy_from_slice(&Sha1::digest(&ht[..])[..4]);
    let mut dec = ::cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key[..], &h1[..8])
        .map_err(|_| DecryptError::Length(bytes.len()))?;
    let mut plain = Zeroizing::new(ct.to_vec());
    for chunk in plain.chunks_exact_mut(8) {
        let mut block =
            Block::<des::TdesEde3>::try_from(&*chunk).map_err(|_| DecryptError::Padding)?;
        dec.decrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    let pad = usize::from(*plain.last().ok_or(DecryptError::Padding)?);
    if pad > plain.len() {
        return Err(DecryptError::Padding);
    }
    let mut n = plain.len() - pad;
    if let Some(nul) = plain[..n].iter().position(|&b| b == 0) {
        n = nul;
    }
    let s = std::str::from_utf8(&plain[..n]).map_err(|_| DecryptError::NotText)?;
    Ok(Zeroizing::new(s.to_string()))
}

struct Entry {
    line: usize,
    key: String,
    value: String,
}

fn read(src: &Source<'_>) -> Result<Vec<Entry>, ImportError> {
    let mut v = Vec::new();
    let mut section = None::<String>;
    for (i, raw) in src.text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with(';') || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
                return Err(err(
                    src.origin,
                    Some(line),
                    format!("'{l}' is not a [section] header"),
                ));
            };
            section = Some(name.trim().to_ascii_lowercase());
            continue;
        }
        let Some((k, val)) = l.split_once('=') else {
            return Err(err(
                src.origin,
                Some(line),
                format!(
                    "'{}' is not a Key=Value line",
                    l.chars().take(40).collect::<String>()
                ),
            ));
        };
        if section.as_deref() != Some("main") {
            // Only [main] exists in Cisco's files; anything else is kept out loudly.
            v.push(Entry {
                line,
                key: format!("[{}] {}", section.clone().unwrap_or_default(), k.trim()),
                value: val.trim().to_string(),
            });
            continue;
        }
        v.push(Entry {
            line,
            key: k.trim().trim_start_matches('!').to_string(),
            value: val.trim().to_string(),
        });
    }
    Ok(v)
}

/// The `[main]` entries, looked up case-insensitively (the last one wins; empty means
/// unset).
struct Pcf(Vec<Entry>);

impl Pcf {
    fn get(&self, k: &str) -> Option<&Entry> {
        self.0
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(k))
            .filter(|e| !e.value.is_empty())
    }
}

/// Keys read before the per-key pass.
const COVERED: &[&str] = &["Description", "Host", "AuthType", "GroupName", "Username"];

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let pcf = Pcf(read(src)?);
    let name = pcf
        .get("Description")
        .map(|e| e.value.clone())
        .unwrap_or_else(|| src.stem.to_string());
    let mut d = Draft::new(name, Some(1));
    let Some(host) = pcf.get("Host") else {
        return Err(err(
            src.origin,
            None,
            "this Cisco profile has no Host= (the gateway address)",
        ));
    };
    d.p.gateway = host.value.clone();
    auth(&mut d, &pcf, src)?;
    for e in &pcf.0 {
        if !COVERED.iter().any(|c| c.eq_ignore_ascii_case(&e.key)) {
            entry(&mut d, e);
        }
    }
    // AuthType 3 with a user name is certificate + XAuth: rsa-sig + [xauth] in Postern.
    Ok(vec![d])
}

/// `AuthType` (1 group PSK, 3 certificate, 5 mutual group), the group name as the
/// key id, and the XAuth user.
fn auth(d: &mut Draft, pcf: &Pcf, src: &Source<'_>) -> Result<(), ImportError> {
    let line = pcf.get("AuthType").map(|e| e.line);
    let (method, mode) = match pcf.get("AuthType").map_or("1", |e| e.value.as_str()) {
        "1" => (AuthMethod::Psk, ExchangeMode::Aggressive),
        "3" => (AuthMethod::RsaSig, ExchangeMode::Main),
        "5" => {
            d.warn(
                line,
                "AuthType",
                "mutual group authentication: Postern's hybrid mode checks the gateway's certificate but not the group password",
            );
            (AuthMethod::Hybrid, ExchangeMode::Aggressive)
        }
        other => {
            return Err(err(
                src.origin,
                line,
                format!(
                    "AuthType={other} is not a Cisco authentication type (1 group, 3 certificate, 5 mutual group)"
                ),
            ));
        }
    };
    d.p.auth.method = method;
    d.p.exchange_mode = mode;
    if method != AuthMethod::RsaSig {
        match pcf.get("GroupName") {
            Some(g) => d.p.auth.local_id = Some(Identity::KeyId(g.value.as_bytes().to_vec())),
            None => d.missing(
                "auth.local_id",
                "no GroupName: the gateway's group name goes in as keyid:GROUP",
            ),
        }
    }
    match pcf.get("Username") {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u.value.clone(),
                password: None,
            });
        }
        None => d.missing(
            "xauth.username",
            "the Cisco client asks for the user name when connecting; Postern needs it in [xauth] username if the gateway uses XAuth",
        ),
    }
    Ok(())
}

/// When a key Postern does not take over changes something worth saying.
#[derive(Clone, Copy)]
enum Matters {
    /// Set to anything.
    Set,
    /// Set to something other than 0.
    NonZero,
    /// Set to 1.
    One,
}

/// Keys without an equivalent, when each matters, and why it is dropped.
const DROPPED: &[(&[&str], Matters, &str)] = &[
    (
        &["tunnelingmode"],
        Matters::One,
        "Cisco's TCP encapsulation is proprietary; Postern uses standard NAT traversal (UDP 4500)",
    ),
    (
        &["ntdomain", "enablemslogon", "mslogontype"],
        Matters::NonZero,
        "Windows domain logon has no equivalent on Linux",
    ),
    (
        &["enablebackup", "backupserver"],
        Matters::NonZero,
        "Postern connects to one gateway; make a second profile for a backup gateway",
    ),
    (
        &["sendcertchain", "verifycertdn"],
        Matters::NonZero,
        "no equivalent (Postern sends its certificate and checks the gateway's against auth.ca and auth.remote_id)",
    ),
    (
        &[
            "enableispconnect",
            "ispconnecttype",
            "ispconnect",
            "ispcommand",
            "ispphonebook",
        ],
        Matters::NonZero,
        "dial-up before the VPN is not Postern's job",
    ),
    (
        &["singledes"],
        Matters::One,
        "single DES is not offered by Postern",
    ),
    (
        &["uselegacyikeport", "interfacename"],
        Matters::Set,
        "no equivalent key",
    ),
    (
        &[
            "enablebackupserver",
            "radiussdi",
            "sdiusehardwaretoken",
            "usesdi",
        ],
        Matters::NonZero,
        "no equivalent in Postern",
    ),
];

/// Keys that carry over as a remark only, when set to 1.
const REMARKS: &[(&str, &str)] = &[
    (
        "forcekeepalives",
        "Postern sends NAT keepalives only while NAT traversal is in use (every 20s)",
    ),
    (
        "enablelocallan",
        "local LAN access: Postern routes only the networks the gateway pushes (or phase2.remote_networks), so the local LAN stays reachable unless the gateway sends a full tunnel",
    ),
    (
        "enablesplitdns",
        "split DNS is Postern's default (network.dns = \"split\")",
    ),
];

/// One `Key=Value` of `[main]` (or a key of another section, which is unknown).
fn entry(d: &mut Draft, e: &Entry) {
    let k = e.key.to_ascii_lowercase();
    let v = e.value.as_str();
    let line = Some(e.line);
    if let Some((_, matters, why)) = DROPPED.iter().find(|(keys, ..)| keys.contains(&k.as_str())) {
        let drop = match matters {
            Matters::Set => !v.is_empty(),
            Matters::NonZero => !v.is_empty() && v != "0",
            Matters::One => v == "1",
        };
        if drop {
            d.drop_key(line, &e.key, why);
        }
        return;
    }
    if let Some((_, remark)) = REMARKS.iter().find(|(key, _)| *key == k) {
        if v == "1" {
            d.warn(line, &e.key, *remark);
        }
        return;
    }
    match k.as_str() {
        "grouppwd" if !v.is_empty() => d.secret(PSK, v),
        "userpassword" if !v.is_empty() => d.secret(XAUTH_PASSWORD, v),
        "enc_grouppwd" | "enc_userpassword" if !v.is_empty() => {
            let kind = if k == "enc_grouppwd" {
                PSK
            } else {
                XAUTH_PASSWORD
            };
            match cisco_decrypt(v) {
                // A plain value in the same file wins over the obfuscated one.
                Ok(s) if !d.secrets.contains_key(kind) => d.secret(kind, &s),
                Ok(_) => {}
                Err(why) => d.warn(line, &e.key, format!("could not be decrypted: {why}")),
            }
        }
        "grouppwd"
        | "userpassword"
        | "enc_grouppwd"
        | "enc_userpassword"
        | "saveuserpassword"
        | "x-nm-savegrouppassword" => {}
        "enablenat" => match v {
            "1" => d.p.network.nat_traversal = NatTraversal::Auto,
            "0" => d.p.network.nat_traversal = NatTraversal::Off,
            "" => {}
            _ => d.warn(
                line,
                &e.key,
                format!("not carried over: '{v}' is not 0 or 1"),
            ),
        },
        "tcptunnelingport" => {
            if !v.is_empty() && v != "10000" {
                d.drop_key(line, &e.key, "Cisco's TCP encapsulation is not supported");
            }
        }
        "dhgroup" => {
            if !v.is_empty()
                && let Some(g) = d.dh_group(line, &e.key, v)
            {
                d.set_ike_group(g);
            }
        }
        "peertimeout" => peer_timeout(d, e),
        "certstore" | "certname" | "certpath" | "certsubjectname" | "certserialhash" => {
            if !v.is_empty() && !v.bytes().all(|b| b == b'0') {
                if d.p.auth.method == AuthMethod::RsaSig {
                    d.warn(line, &e.key, format!("the certificate is in the Cisco/Windows store ({v}), not in this file: export it with its key and fill auth.cert and auth.key (or auth.pkcs12)"));
                    d.missing("auth.cert", "the certificate named by the .pcf lives in the Cisco/Windows certificate store");
                } else {
                    d.drop_key(line, &e.key, "a certificate setting in a profile that does not authenticate with certificates");
                }
            }
        }
        "x-nm-routes" => {
            let items: Vec<&str> = v.split_whitespace().collect();
            let nets = d.subnets(line, &e.key, &items);
            d.p.phase2.remote_networks = nets;
        }
        _ => {
            if !v.is_empty() {
                d.unknown(line, &e.key);
            }
        }
    }
}

/// `PeerTimeout` (seconds, 0 = no DPD) as the DPD timeout, probing every 30 s or less.
fn peer_timeout(d: &mut Draft, e: &Entry) {
    let (line, v) = (Some(e.line), e.value.as_str());
    let Ok(n) = v.parse::<u64>() else {
        if !v.is_empty() {
            d.warn(
                line,
                &e.key,
                format!("not carried over: '{v}' is not a number of seconds"),
            );
        }
        return;
    };
    if n == 0 {
        d.p.network.dpd = None;
        return;
    }
    let timeout = Duration::from_secs(n.clamp(1, 3600));
    d.p.network.dpd = Some(Dpd {
        interval: Duration::from_secs(30).min(timeout),
        timeout,
    });
    if n > 3600 {
        d.warn(
            line,
            &e.key,
            "more than an hour: 1h used as the DPD timeout",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn decrypts_the_published_vectors() {
        let v1 = "886E2FC74BFCD8B6FAF47784C386A50D0C1A5D0528D1E682B7EBAB6B2E91E792E389914767193F9114FA26C1E192034754F85FC97ED36509";
        assert_eq!(cisco_decrypt(v1).unwrap().as_str(), "Th!sIsMyK3y#");
        let v2 = "A39CADD77ED72A9C75467D0F5A5C88BFCD75370DD63E3388D3F402AF50C4E5029071B0965C343B99B6D6636A8698562DDB2EE51020D87EA3";
        assert_eq!(cisco_decrypt(v2).unwrap().as_str(), "HelloWorld");
        assert_eq!(
            cisco_decrypt(&v2.to_lowercase()).unwrap().as_str(),
            "HelloWorld"
        );
    }

    #[test]
    fn decrypt_refuses_what_is_not_a_cisco_value() {
        assert_eq!(
            cisco_decrypt("01270E454822152238671D105A"),
            Err(DecryptError::Length(13))
        );
        assert_eq!(cisco_decrypt("zz"), Err(DecryptError::NotHex));
        let mut bad = "886E2FC74BFCD8B6FAF47784C386A50D0C1A5D0528D1E682B7EBAB6B2E91E792E389914767193F9114FA26C1E192034754F85FC97ED36509".to_string();
        bad.replace_range(90..92, "00");
        assert_eq!(cisco_decrypt(&bad), Err(DecryptError::Checksum));
        // Fuzz-ish: no input panics.
        for n in 0..130 {
            let _ = cisco_decrypt(&"A".repeat(n));
        }
    }

    #[test]
    fn group_profile_with_encrypted_password_latin1_and_crlf() {
        let i = one("pcf_group_crlf_latin1.pcf");
        assert_eq!(i.name, "Siège Lyon");
        assert_eq!(i.profile.gateway, "vpn.lyon.example.com");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert_eq!(
            i.profile
                .auth
                .local_id
                .as_ref()
                .map(|i| i.to_string())
                .as_deref(),
            Some("keyid:ventes")
        );
        assert_eq!(secret(&i, "psk"), Some("Th!sIsMyK3y#"));
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "marie");
        assert_eq!(secret(&i, "xauth-password"), None);
        assert_eq!(i.secrets_missing, vec!["xauth-password".to_string()]);
        assert!(
            ike(&i).iter().all(|p| p.ends_with("modp1024")),
            "{:?}",
            ike(&i)
        );
        assert_eq!(
            i.profile.network.dpd.unwrap().timeout,
            Duration::from_secs(90)
        );
        assert!(warned(&i, "EnableBackup"));
        assert!(warned(&i, "TunnelingMode"));
        assert!(warned(&i, "NTDomain"));
        assert!(!i.toml.contains("Th!s"), "secret in TOML");
    }

    #[test]
    fn odd_casing_locked_keys_and_plain_password() {
        let i = one("pcf_odd_casing.pcf");
        assert_eq!(i.profile.gateway, "203.0.113.7");
        assert_eq!(secret(&i, "psk"), Some("plain group secret"));
        assert_eq!(secret(&i, "xauth-password"), Some("HelloWorld"));
        assert_eq!(i.profile.network.nat_traversal, NatTraversal::Off);
        assert!(warned(&i, "FrobnicateLevel"), "{:?}", i.warnings);
    }

    #[test]
    fn certificate_profile_reports_what_is_missing() {
        let i = one("pcf_cert_minimal.pcf");
        assert_eq!(i.name, "pcf_cert_minimal");
        assert_eq!(i.profile.auth.method, AuthMethod::RsaSig);
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Main);
        let keys: Vec<&str> = i.missing.iter().map(|m| m.key.as_str()).collect();
        assert!(
            keys.contains(&"auth.cert") && keys.contains(&"auth.key") && keys.contains(&"auth.ca"),
            "{keys:?}"
        );
        assert!(i.secrets.is_empty());
    }

    #[test]
    fn malformed_line_is_one_error_with_the_line() {
        let e = super::super::import_str(
            "[main]\nHost=192.0.2.1\nthis line is broken\n",
            "x.pcf",
            &[],
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("x.pcf:3: "), "{e}");
    }
}
