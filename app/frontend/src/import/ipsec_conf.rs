//! libreswan / Openswan / strongSwan `ipsec.conf` (`conn` sections, `%default`,
//! `also=`, `include`) with the matching `ipsec.secrets` entries.
//!
//! Which project wrote the file decides a few meanings (an `esp=` without a group is
//! "PFS with the IKE group" for libreswan and "no PFS" for strongSwan; a bare `leftid`
//! name is resolved in DNS by libreswan): the dialect is guessed from keys only one of
//! them has, and the guess is shown as a warning when it matters.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use postern_algs::algs::DhGroup;
use postern_dbus::profile::{
    AuthMethod, EncapMode, ExchangeMode, Identity, ModeConfig, NatTraversal, XAuth,
};

use super::{
    Companion, Draft, ImportError, KEY_PASSPHRASE, PSK, Source, XAUTH_PASSWORD, companion, err,
    list, truthy,
};

#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
struct Section {
    kind: String,
    name: String,
    line: usize,
    params: Vec<Param>,
}

fn strip_comment(l: &str) -> &str {
    let mut q = false;
    for (i, c) in l.char_indices() {
        match c {
            '"' => q = !q,
            '#' if !q => return &l[..i],
            _ => {}
        }
    }
    l
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn read_sections(
    src: &Source<'_>,
    origin: &str,
    text: &str,
    depth: usize,
    out: &mut Vec<Section>,
    notes: &mut Vec<(Option<usize>, String, String)>,
) -> Result<(), ImportError> {
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = strip_comment(raw);
        if l.trim().is_empty() {
            continue;
        }
        let indented = l.starts_with(' ') || l.starts_with('\t');
        let t = l.trim();
        if !indented {
            let mut words = t.split_whitespace();
            let kw = words.next().unwrap_or_default();
            let rest: Vec<&str> = words.collect();
            match kw {
                "conn" | "ca" if rest.len() == 1 => out.push(Section {
                    kind: kw.to_string(),
                    name: rest[0].to_string(),
                    line,
                    params: Vec::new(),
                }),
                "config" if rest == ["setup"] => out.push(Section {
                    kind: "config".into(),
                    name: "setup".into(),
                    line,
                    params: Vec::new(),
                }),
                "version" => {}
                "include" if rest.len() == 1 => {
                    let name = unquote(rest[0]);
                    if name.contains('*') || name.contains('?') || name.contains('[') {
                        notes.push((Some(line), "include".into(), format!("not followed: '{name}' is a pattern; import the files it names one by one")));
                        continue;
                    }
                    if depth >= 8 {
                        return Err(err(origin, Some(line), "includes nested more than 8 deep"));
                    }
                    match (src.include)(&name) {
                        Some(Companion { origin: o, text: t }) => {
                            read_sections(src, &o, &t, depth + 1, out, notes)?;
                        }
                        None => notes.push((
                            Some(line),
                            "include".into(),
                            format!("not followed: '{name}' is not beside this file"),
                        )),
                    }
                }
                _ => {
                    return Err(err(
                        origin,
                        Some(line),
                        format!(
                            "'{t}' is not a section header (conn NAME, config setup, ca NAME, include FILE); parameters must be indented"
                        ),
                    ));
                }
            }
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(err(
                origin,
                Some(line),
                format!("'{t}' is not a key=value parameter"),
            ));
        };
        let Some(sec) = out.last_mut() else {
            return Err(err(
                origin,
                Some(line),
                "a parameter before any 'conn' section",
            ));
        };
        sec.params.push(Param {
            key: k.trim().to_ascii_lowercase(),
            value: unquote(v),
            line,
        });
    }
    Ok(())
}

/// A conn's parameters with `%default` and `also=` merged in (own values win).
fn resolve(
    sections: &[Section],
    name: &str,
    seen: &mut HashSet<String>,
    origin: &str,
) -> Result<BTreeMap<String, Param>, ImportError> {
    let mut out = BTreeMap::new();
    let Some(sec) = sections
        .iter()
        .rev()
        .find(|s| s.kind == "conn" && s.name == name)
    else {
        return Ok(out);
    };
    if !seen.insert(name.to_string()) {
        return Err(err(
            origin,
            Some(sec.line),
            format!("also={name} loops back to itself"),
        ));
    }
    for p in &sec.params {
        if p.key == "also" {
            for other in p.value.split_whitespace() {
                if !sections.iter().any(|s| s.kind == "conn" && s.name == other) {
                    return Err(err(
                        origin,
                        Some(p.line),
                        format!("also={other}: there is no conn {other}"),
                    ));
                }
                for (k, v) in resolve(sections, other, seen, origin)? {
                    out.entry(k).or_insert(v);
                }
            }
        }
    }
    for p in &sec.params {
        if p.key != "also" {
            out.insert(p.key.clone(), p.clone());
        }
    }
    Ok(out)
}

fn is_any(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    v.is_empty()
        || v.starts_with("%any")
        || v == "%defaultroute"
        || v == "%default"
        || v == "0.0.0.0"
        || v == "%config"
        || v == "%opportunistic"
}

/// An ipsec.conf id (`@fqdn`, `@[keyid]`, `@#hex`, `user@host`, a DN, an address,
/// strongSwan's typed `keyid:`...) in Postern's syntax.
pub(crate) fn swan_id(v: &str, libreswan: bool) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() || v.starts_with('%') {
        return Ok(None);
    }
    if let Some(k) = v.strip_prefix("@[").and_then(|s| s.strip_suffix(']')) {
        return Ok(Some(format!("keyid:{k}")));
    }
    if let Some(h) = v.strip_prefix("@#") {
        return Ok(Some(format!("keyid:0x{h}")));
    }
    if let Some(f) = v.strip_prefix('@') {
        return Ok(Some(format!("fqdn:{f}")));
    }
    for (from, to) in [
        ("keyid:#", "keyid:0x"),
        ("keyid:", "keyid:"),
        ("fqdn:", "fqdn:"),
        ("email:", "user-fqdn:"),
        ("userfqdn:", "user-fqdn:"),
        ("rfc822:", "user-fqdn:"),
        ("ipv4:", "address:"),
        ("ipv6:", "address:"),
        ("asn1dn:", "dn:"),
        ("dns:", "fqdn:"),
    ] {
        if let Some(rest) = v.strip_prefix(from) {
            return Ok(Some(format!("{to}{rest}")));
        }
    }
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Some(format!("address:{v}")));
    }
    if v.contains('=') {
        return Ok(Some(format!("dn:{v}")));
    }
    if v.contains('@') {
        return Ok(Some(format!("user-fqdn:{v}")));
    }
    if libreswan {
        return Err(format!("fqdn:{v}"));
    }
    Ok(Some(format!("fqdn:{v}")))
}

/// One ipsec.conf / racoon proposal in strongSwan's syntax.
pub(crate) fn swan_proposal(s: &str) -> String {
    let s = s
        .trim()
        .trim_end_matches('!')
        .to_ascii_lowercase()
        .replace(';', "-");
    let mut toks: Vec<String> = Vec::new();
    for t in s.split('-').filter(|t| !t.is_empty()) {
        let t = match t {
            "sha2" => "sha256".to_string(),
            "aes_cbc" => "aes".to_string(),
            "null" if toks.iter().any(|x| x.contains("gcm")) => continue,
            t if t.starts_with("aes_cbc") => format!(
                "aes{}",
                t.trim_start_matches("aes_cbc").trim_start_matches('_')
            ),
            t if t.starts_with("aes_gcm") => {
                let rest = t.trim_start_matches("aes_gcm");
                // libreswan: aes_gcm_a / _b / _c are the 8 / 12 / 16 octet ICVs.
                let icv = match rest.trim_start_matches('_').chars().next() {
                    Some('a') => 8,
                    Some('b') => 12,
                    _ => 16,
                };
                let bits = rest
                    .trim_start_matches('_')
                    .trim_start_matches(['c', 'a', 'b'])
                    .trim_start_matches('_');
                let bits = if bits.is_empty() || bits == "16" {
                    "128"
                } else {
                    bits
                };
                format!("aes{bits}gcm{icv}")
            }
            "chacha20_poly1305" => "chacha20poly1305".to_string(),
            // After an AEAD cipher, libreswan's IKE hash is the PRF.
            t if (t.starts_with("sha") || t == "md5")
                && toks
                    .iter()
                    .any(|x| x.contains("gcm") || x == "chacha20poly1305") =>
            {
                format!("prf{t}")
            }
            t if t.starts_with("dh") && t[2..].parse::<u16>().is_ok() => t[2..]
                .parse::<u16>()
                .ok()
                .and_then(DhGroup::from_ike)
                .map_or(t.to_string(), |g| g.name().to_string()),
            t => t.to_string(),
        };
        toks.push(t);
    }
    toks.join("-")
}

#[derive(Debug)]
pub(crate) struct SecretEntry {
    pub origin: String,
    pub line: usize,
    pub selectors: Vec<String>,
    pub kind: String,
    pub secret: String,
    /// For RSA/ECDSA: the key file; `secret` is its passphrase.
    pub file: Option<String>,
}

fn secret_value(v: &str) -> Option<String> {
    let v = v.trim();
    if v.len() >= 2
        && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
    {
        return Some(v[1..v.len() - 1].to_string());
    }
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h: String = h.chars().filter(|c| *c != ' ' && *c != '_').collect();
        if !h.len().is_multiple_of(2) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: Vec<u8> = (0..h.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
        return String::from_utf8(bytes).ok();
    }
    if let Some(b) = v.strip_prefix("0s") {
        use base64ct::{Base64, Encoding};
        let bytes = Base64::decode_vec(b.trim()).ok()?;
        return String::from_utf8(bytes).ok();
    }
    Some(v.to_string())
}

/// `ipsec.secrets`: `[selectors] : TYPE secret`, continuation lines indented.
pub(crate) fn read_secrets(c: &Companion) -> Result<Vec<SecretEntry>, ImportError> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in c.text.lines().enumerate() {
        let l = strip_comment(raw);
        if l.trim().is_empty() {
            continue;
        }
        if (l.starts_with(' ') || l.starts_with('\t')) && !logical.is_empty() {
            if let Some(last) = logical.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else {
            logical.push((i + 1, l.trim().to_string()));
        }
    }
    let mut v = Vec::new();
    for (line, l) in logical {
        if l.starts_with("include ") {
            continue;
        }
        let Some((sel, rest)) = l.split_once(':') else {
            return Err(err(
                &c.origin,
                Some(line),
                "not a secrets entry ('[selectors] : TYPE secret')",
            ));
        };
        let rest = rest.trim();
        let (kind, secret) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let kind = kind.to_ascii_uppercase();
        let (file, secret) = if matches!(kind.as_str(), "RSA" | "ECDSA" | "P12" | "PKCS8") {
            let s = secret.trim();
            let (f, p) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
            (Some(unquote(f)), secret_value(p).unwrap_or_default())
        } else {
            let Some(s) = secret_value(secret) else {
                return Err(err(
                    &c.origin,
                    Some(line),
                    format!("the {kind} secret is not a quoted string, 0x hex or 0s base64 text"),
                ));
            };
            (None, s)
        };
        v.push(SecretEntry {
            origin: c.origin.clone(),
            line,
            selectors: sel
                .split_whitespace()
                .map(|s| s.trim_matches('"').to_string())
                .collect(),
            kind,
            secret,
            file,
        });
    }
    Ok(v)
}

/// The best PSK entry for a connection: every selector must be one of `names` or a
/// wildcard; the most specific wins.
pub(crate) fn best_psk<'a>(
    entries: &'a [SecretEntry],
    kind: &str,
    names: &[String],
) -> Option<&'a SecretEntry> {
    let norm = |s: &str| {
        s.trim_start_matches('@')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    let names: Vec<String> = names.iter().map(|n| norm(n)).collect();
    entries
        .iter()
        .filter(|e| e.kind == kind)
        .filter_map(|e| {
            let mut score = 0;
            for s in &e.selectors {
                if is_any(s) {
                    continue;
                }
                if names.contains(&norm(s)) {
                    score += 1;
                } else {
                    return None;
                }
            }
            Some((score, e))
        })
        .max_by_key(|(s, _)| *s)
        .map(|(_, e)| e)
}

const NO_EQUIVALENT: &[&str] = &[
    "left",
    "leftnexthop",
    "rightnexthop",
    "leftfirewall",
    "leftupdown",
    "rightupdown",
    "rekey",
    "rekeymargin",
    "margintime",
    "rekeyfuzz",
    "keyingtries",
    "compress",
    "ikepad",
    "fragmentation",
    "narrowing",
    "mobike",
    "reauth",
    "closeaction",
    "leftprotoport",
    "rightprotoport",
    "installpolicy",
    "leftallowany",
    "rightallowany",
    "mark",
    "reqid",
    "replay_window",
    "sha2-truncbug",
    "sha2_truncbug",
    "nat-keepalive",
    "nat_keepalive",
    "leftsendcert",
    "rightsendcert",
    "hostaddrfamily",
    "clientaddrfamily",
    "connaddrfamily",
    "leftikeport",
    "rightikeport",
    "metric",
    "mtu",
    "priority",
    "ikelifetime_kb",
    "initial_contact",
    "initial-contact",
    "overlapip",
    "vti-interface",
    "ipsec-interface",
    "leftvti",
    "xauthby",
    "xauthfail",
    "rightxauthserver",
    "rightmodecfgserver",
    "leftsubnets_name",
    "rightsourceip",
    "leftdns",
    "rightdns",
    "modecfgdns",
    "modecfgdomains",
    "modecfgbanner",
    "leftgroups",
    "rightgroups",
    "eap_identity",
    "aaa_identity",
    "tfc",
    "dpdaction_restart",
    "leftca",
    "rightcert",
    "rightauth",
    "rightauth2",
    "sendcert",
];

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let mut sections = Vec::new();
    let mut notes = Vec::new();
    read_sections(src, src.origin, src.text, 0, &mut sections, &mut notes)?;
    let mut secrets = Vec::new();
    for c in companion(src, &["ipsec.secrets"], |t| {
        t.contains(": PSK") || t.contains(":PSK") || t.contains(": XAUTH") || t.contains(": EAP")
    }) {
        secrets.extend(read_secrets(c)?);
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut names_seen = HashSet::new();
    for sec in sections.iter().rev() {
        if sec.kind != "conn" || sec.name == "%default" || !names_seen.insert(sec.name.clone()) {
            continue;
        }
        let mut params = BTreeMap::new();
        if let Some(def) = sections
            .iter()
            .find(|s| s.kind == "conn" && s.name == "%default")
        {
            for p in &def.params {
                params.insert(p.key.clone(), p.clone());
            }
        }
        params.extend(resolve(
            &sections,
            &sec.name,
            &mut HashSet::new(),
            src.origin,
        )?);
        match conn(sec, params, &secrets)? {
            Ok(mut d) => {
                for (l, k, m) in &notes {
                    d.warn(*l, k, m.clone());
                }
                out.push(d);
            }
            Err(why) => skipped.push((sec.line, sec.name.clone(), why)),
        }
    }
    out.reverse();
    // A conn only a gateway or IKEv2 can use is named on every other connection.
    if out.is_empty()
        && let Some((line, name, why)) = skipped.first()
    {
        return Err(err(src.origin, Some(*line), format!("conn {name}: {why}")));
    }
    for d in &mut out {
        for (line, name, why) in &skipped {
            d.warn(
                Some(*line),
                &format!("conn {name}"),
                format!("not imported: {why}"),
            );
        }
    }
    Ok(out)
}

/// One conn; `Ok(Err(why))`: not a client connection Postern can use.
/// A conn given as parameters (NetworkManager's libreswan plugin stores one this way).
pub(crate) fn conn_from_params(
    name: &str,
    line: usize,
    params: Vec<Param>,
    secrets: &[SecretEntry],
) -> Result<Result<Draft, String>, ImportError> {
    let sec = Section {
        kind: "conn".into(),
        name: name.to_string(),
        line,
        params: Vec::new(),
    };
    let map = params.into_iter().map(|p| (p.key.clone(), p)).collect();
    conn(&sec, map, secrets)
}

/// Keys only libreswan (and Openswan) write, and keys only strongSwan writes: the
/// dialect is the one with more of its keys in the conn.
const LIBRESWAN_KEYS: &[&str] = &[
    "ikev2",
    "aggrmode",
    "leftxauthclient",
    "phase2alg",
    "leftmodecfgclient",
    "modecfgpull",
    "pfs",
    "leftusername",
    "leftxauthusername",
    "cisco-unity",
    "remote_peer_type",
    "encapsulation",
    "ikepad",
    "salifetime",
    "phase2",
];
const STRONGSWAN_KEYS: &[&str] = &[
    "keyexchange",
    "leftauth",
    "leftauth2",
    "xauth_identity",
    "aggressive",
    "forceencaps",
    "modeconfig",
    "lifetime",
    "margintime",
    "rightauth",
];

/// Keys [`auth`] and [`gateway_and_version`] read; the per-key pass skips them.
const CONSUMED: &[&str] = &[
    "left",
    "right",
    "keyexchange",
    "ikev2",
    "authby",
    "leftauth",
    "leftauth2",
    "rightauth",
    "leftxauthclient",
    "leftusername",
    "leftxauthusername",
    "xauth_identity",
    "also",
];

type Params = BTreeMap<String, Param>;

/// One conn as a draft profile, or (inner `Err`) the reason it is not one Postern can
/// make (a template, IKEv2 only, no authentication...).
fn conn(
    sec: &Section,
    params: Params,
    secrets: &[SecretEntry],
) -> Result<Result<Draft, String>, ImportError> {
    let libreswan = is_libreswan(&params);
    let (params, mirrored) = orient(params);
    let mut d = Draft::new(sec.name.clone(), Some(sec.line));
    if mirrored {
        d.warn(Some(sec.line), "left", "this conn is written from the gateway's side (left is the gateway): left and right were swapped");
    }
    let steps = gateway_and_version(&mut d, sec, &params, libreswan)
        .and_then(|()| auth(&mut d, &params))
        .and_then(|()| keys(&mut d, &params, libreswan));
    if let Err(why) = steps {
        return Ok(Err(why));
    }
    pfs(&mut d, &params, libreswan);
    mode_config(&mut d, &params);
    dpd(&mut d, &params);
    conn_secrets(&mut d, &params, secrets);
    Ok(Ok(d))
}

fn is_libreswan(params: &Params) -> bool {
    let count = |keys: &[&str]| params.keys().filter(|k| keys.contains(&k.as_str())).count();
    count(LIBRESWAN_KEYS) > count(STRONGSWAN_KEYS)
}

/// Which side is us: a client writes itself as left (%defaultroute, %any); a conn
/// copied from the gateway has us on the right, and then left and right are swapped.
fn orient(params: Params) -> (Params, bool) {
    let value = |k: &str| params.get(k).map(|p| p.value.clone()).unwrap_or_default();
    let mirrored = !is_any(&value("left")) && is_any(&value("right"));
    if !mirrored {
        return (params, false);
    }
    let swapped = params
        .into_values()
        .map(|mut p| {
            if let Some(r) = p.key.strip_prefix("left") {
                p.key = format!("right{r}");
            } else if let Some(r) = p.key.strip_prefix("right") {
                p.key = format!("left{r}");
            }
            (p.key.clone(), p)
        })
        .collect();
    (swapped, true)
}

/// The gateway (`right=`) and the IKE version (`keyexchange=`, libreswan's `ikev2=`).
fn gateway_and_version(
    d: &mut Draft,
    sec: &Section,
    params: &Params,
    libreswan: bool,
) -> Result<(), String> {
    let gateway = params
        .get("right")
        .map(|p| p.value.clone())
        .unwrap_or_default();
    if is_any(&gateway) {
        return Err("it has no gateway address (right=): a template or server conn".into());
    }
    d.p.gateway = gateway;
    let lower = |k: &str| params.get(k).map(|p| p.value.to_ascii_lowercase());
    // What exists only in IKEv1: aggressive mode and XAuth.
    let ikev1_only = ["aggressive", "aggrmode", "leftxauthclient"]
        .iter()
        .any(|k| params.get(*k).is_some_and(|p| truthy(&p.value)))
        || matches!(lower("authby").as_deref(), Some("xauthpsk" | "xauthrsasig"))
        || lower("leftauth").is_some_and(|a| a.starts_with("xauth"))
        || lower("leftauth2").is_some_and(|a| a.starts_with("xauth"));
    if let Some(p) = params.get("keyexchange") {
        match p.value.to_ascii_lowercase().as_str() {
            "ikev1" => {}
            "ikev2" => d.ikev2(),
            _ if ikev1_only => d.warn(Some(p.line), "keyexchange", "'ike' starts IKEv2 in strongSwan, but this conn uses aggressive mode or XAuth (IKEv1 only): imported as IKEv1"),
            _ => {
                d.ikev2();
                d.warn(Some(p.line), "keyexchange", "'ike' starts IKEv2 in strongSwan: imported as IKEv2 (write keyexchange=ikev1 for IKEv1)");
            }
        }
    } else if let Some(p) = params.get("ikev2") {
        // libreswan: insist/yes (IKEv2 only) and propose (IKEv2 first) start IKEv2;
        // permit/no/never start IKEv1.
        if matches!(
            p.value.to_ascii_lowercase().as_str(),
            "insist" | "yes" | "propose"
        ) {
            d.ikev2();
        }
    } else if !libreswan {
        if ikev1_only {
            d.warn(Some(sec.line), "keyexchange", "not given: strongSwan would start IKEv2, but this conn uses aggressive mode or XAuth (IKEv1 only): imported as IKEv1");
        } else {
            d.ikev2();
            d.warn(Some(sec.line), "keyexchange", "not given: strongSwan starts IKEv2, so this conn is imported as IKEv2 (write keyexchange=ikev1 for IKEv1)");
        }
    }
    Ok(())
}

/// The authentication method (`authby=`, strongSwan's `leftauth`/`rightauth`/
/// `leftauth2`) and the XAuth user.
fn auth(d: &mut Draft, params: &Params) -> Result<(), String> {
    if d.p.ike_version == 2 {
        auth_v2(d, params);
        return Ok(());
    }
    let lower = |k: &str| params.get(k).map(|p| p.value.to_ascii_lowercase());
    let (authby, leftauth, rightauth) = (lower("authby"), lower("leftauth"), lower("rightauth"));
    let mut xauth = false;
    d.p.auth.method = AuthMethod::Psk;
    match authby.as_deref() {
        Some("secret" | "psk") => {}
        Some(
            "rsasig" | "rsa" | "pubkey" | "ecdsa" | "rsa-sha2" | "rsasig,ecdsa" | "ecdsa,rsasig",
        ) => d.p.auth.method = AuthMethod::RsaSig,
        Some("xauthpsk") => xauth = true,
        Some("xauthrsasig") => {
            d.p.auth.method = AuthMethod::RsaSig;
            xauth = true;
        }
        Some(none @ ("never" | "null")) => return Err(format!("authby={none}: no authentication")),
        Some(other) => {
            if let Some(p) = params.get("authby") {
                d.warn(
                    Some(p.line),
                    "authby",
                    format!("'{other}' is not an IKEv1 method Postern has: psk assumed"),
                );
            }
        }
        // Both projects default to RSA signatures.
        None if leftauth.is_none() => d.p.auth.method = AuthMethod::RsaSig,
        None => {}
    }
    match leftauth.as_deref() {
        Some("psk" | "secret") => d.p.auth.method = AuthMethod::Psk,
        Some("pubkey" | "rsa" | "ecdsa") => d.p.auth.method = AuthMethod::RsaSig,
        Some("xauth") if matches!(rightauth.as_deref(), Some("pubkey" | "rsa" | "ecdsa")) => {
            d.p.auth.method = AuthMethod::Hybrid;
            xauth = true;
        }
        Some(other) => {
            let l = params.get("leftauth").map(|p| p.line);
            d.warn(
                l,
                "leftauth",
                format!("'{other}' is not an IKEv1 method Postern has"),
            );
        }
        None => {}
    }
    if let Some(p) = params.get("leftauth2") {
        if p.value.eq_ignore_ascii_case("xauth") {
            xauth = true;
        } else {
            d.drop_key(
                Some(p.line),
                "leftauth2",
                "only XAuth is a second round Postern has",
            );
        }
    }
    if params
        .get("leftxauthclient")
        .is_some_and(|p| truthy(&p.value))
    {
        xauth = true;
    }
    let user = ["leftusername", "leftxauthusername", "xauth_identity"]
        .iter()
        .find_map(|k| params.get(*k).map(|p| p.value.clone()));
    match user {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u,
                password: None,
            });
        }
        None if xauth => d.missing(
            "xauth.username",
            "the conn uses XAuth but names no user (leftusername / xauth_identity)",
        ),
        None => {}
    }
    Ok(())
}

/// IKEv2: `authby=secret|rsasig`, strongSwan's `leftauth` (`psk`, `pubkey`, `eap-*`:
/// the user's login, kept in `[xauth]`, against a gateway that signs (`hybrid`) or
/// uses the pre-shared key) and `leftauth2=eap-*`; the login's user is `eap_identity`
/// (else `leftid`, else libreswan's `leftusername`). XAuth and EAP methods Postern does
/// not answer refuse the conn.
fn auth_v2(d: &mut Draft, params: &Params) {
    let lower = |k: &str| params.get(k).map(|p| p.value.to_ascii_lowercase());
    let (authby, leftauth, rightauth) = (lower("authby"), lower("leftauth"), lower("rightauth"));
    d.p.auth.method = AuthMethod::RsaSig;
    match authby.as_deref() {
        Some("secret" | "psk") => d.p.auth.method = AuthMethod::Psk,
        Some(a) if a.starts_with("xauth") => {
            return d.refuse(format!(
                "authby={a} is XAuth, which exists only in IKEv1: write keyexchange=ikev1, or EAP for IKEv2"
            ));
        }
        Some(none @ ("never" | "null")) => {
            return d.refuse(format!("authby={none}: no authentication"));
        }
        _ => {}
    }
    let remote_psk = rightauth
        .as_deref()
        .is_some_and(|a| a.starts_with("psk") || a == "secret");
    let mut eap = false;
    for (key, round) in [("leftauth", &leftauth), ("leftauth2", &lower("leftauth2"))] {
        let Some(a) = round.as_deref() else { continue };
        let line = params.get(key).map(|p| p.line);
        let kind = a.split(['-', ':', '/']).next().unwrap_or_default();
        match kind {
            "psk" | "secret" if key == "leftauth" => d.p.auth.method = AuthMethod::Psk,
            "pubkey" | "rsa" | "ecdsa" if key == "leftauth" => {
                d.p.auth.method = AuthMethod::RsaSig;
            }
            "eap" if a == "eap-tls" && key == "leftauth" => {
                // Our certificate inside EAP-TLS; the gateway signs.
                d.p.auth.method = AuthMethod::EapTls;
            }
            "eap" => {
                match a.strip_prefix("eap-").unwrap_or("") {
                    "" | "mschapv2" | "gtc" => {}
                    "dynamic" | "radius" => d.warn(
                        line,
                        key,
                        format!("'{a}': the gateway picks the EAP method; Postern answers EAP-MSCHAPv2 and EAP-GTC"),
                    ),
                    other => {
                        return d.refuse(format!(
                            "its login is EAP-{} ({key}={a}); Postern's IKEv2 login is EAP-MSCHAPv2, EAP-GTC or EAP-TLS",
                            other.to_ascii_uppercase()
                        ));
                    }
                }
                eap = true;
                if key == "leftauth" {
                    d.p.auth.method = if remote_psk {
                        AuthMethod::Psk
                    } else {
                        AuthMethod::Hybrid
                    };
                }
            }
            "xauth" => {
                return d.refuse(format!(
                    "{key}={a} is XAuth, which exists only in IKEv1: write keyexchange=ikev1, or EAP for IKEv2"
                ));
            }
            _ => {
                return d.refuse(format!(
                    "{key}={a} is not an IKEv2 method Postern has (psk, pubkey, eap-mschapv2, eap-gtc)"
                ));
            }
        }
    }
    if !eap {
        for k in [
            "leftusername",
            "leftxauthusername",
            "xauth_identity",
            "eap_identity",
        ] {
            if let Some(p) = params.get(k) {
                d.drop_key(
                    Some(p.line),
                    k,
                    "an IKEv2 user login is EAP, and this conn has no EAP round (leftauth=eap-...)",
                );
            }
        }
        return;
    }
    let user = ["eap_identity", "leftusername"]
        .iter()
        .find_map(|k| params.get(*k).map(|p| p.value.clone()))
        .or_else(|| {
            params
                .get("leftid")
                .map(|p| p.value.trim_start_matches('@').to_string())
        });
    match user {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u,
                password: None,
            });
        }
        None => d.missing(
            "xauth.username",
            "the conn logs in with EAP but names no user (eap_identity)",
        ),
    }
}

/// Every other key, one at a time.
fn keys(d: &mut Draft, params: &Params, libreswan: bool) -> Result<(), String> {
    for p in params.values() {
        let key = p.key.as_str();
        if CONSUMED.contains(&key) || key.starts_with("x-") {
            continue;
        }
        one_key(d, p, libreswan)?;
    }
    Ok(())
}

fn one_key(d: &mut Draft, p: &Param, libreswan: bool) -> Result<(), String> {
    let line = Some(p.line);
    let v = p.value.as_str();
    let key = p.key.as_str();
    match key {
        "aggressive" | "aggrmode" => {
            if truthy(v) {
                d.p.exchange_mode = ExchangeMode::Aggressive;
            }
        }
        "leftid" | "rightid" => identity(d, p, libreswan),
        // Read by `auth_v2`.
        "eap_identity" if d.p.ike_version == 2 => {}
        "ike" => {
            let props: Vec<String> = v.split(',').map(swan_proposal).collect();
            if !v.trim_end().ends_with('!') && !libreswan {
                d.warn(
                    line,
                    key,
                    "without '!' strongSwan adds its default proposals; Postern offers only these",
                );
            }
            d.ike(line, key, &props);
        }
        "esp" | "phase2alg" => {
            let props: Vec<String> = v.split(',').map(swan_proposal).collect();
            d.esp(line, key, &props);
        }
        "ikelifetime" => {
            if let Some(t) = d.duration(line, key, v) {
                d.lifetime1(line, key, t);
            }
        }
        "salifetime" | "keylife" | "lifetime" => {
            if let Some(t) = d.duration(line, key, v) {
                d.lifetime2(line, key, t);
            }
        }
        "rightsubnet" | "rightsubnets" | "leftsubnet" | "leftsubnets" => {
            let items = list(v.trim_matches(|c| c == '{' || c == '}'));
            let items: Vec<&str> = items
                .iter()
                .map(String::as_str)
                .filter(|s| !s.starts_with('%'))
                .collect();
            let nets = d.subnets(line, key, &items);
            if key.starts_with("right") {
                d.p.phase2.remote_networks = nets;
            } else {
                d.p.phase2.local_networks = nets;
            }
        }
        // Read by the passes after this one.
        "pfs" | "leftsourceip" | "leftmodecfgclient" | "modecfgpull" | "modeconfig" | "dpd"
        | "dpddelay" | "dpdtimeout" | "dpdaction" => {}
        "type" => match v.to_ascii_lowercase().as_str() {
            "tunnel" => {}
            "transport" => d.p.phase2.mode = EncapMode::Transport,
            other => return Err(format!("type={other} is not a tunnel Postern can make")),
        },
        "forceencaps" | "encapsulation" => match v.to_ascii_lowercase().as_str() {
            "yes" | "true" => d.p.network.nat_traversal = NatTraversal::Force,
            "no" if key == "encapsulation" => d.p.network.nat_traversal = NatTraversal::Off,
            _ => {}
        },
        "leftcert" => left_cert(d, v),
        "rightca" => {
            d.missing(
                "auth.ca",
                format!("the gateway's CA ({v}) is not in the file: give its PEM file as auth.ca"),
            );
        }
        "leftrsasigkey" | "rightrsasigkey" => {
            if !v.eq_ignore_ascii_case("%cert") {
                d.drop_key(
                    line,
                    key,
                    "raw RSA keys are not supported; use certificates",
                );
            }
        }
        "auto" => {
            if matches!(v, "start" | "route" | "ondemand") {
                d.warn(
                    line,
                    key,
                    format!("auto={v}: Postern brings the tunnel up when you connect"),
                );
            }
        }
        "cisco-unity" | "remote_peer_type" => {
            d.warn(line, key, "Postern always announces Cisco Unity");
        }
        k if NO_EQUIVALENT.contains(&k) => {
            d.drop_key(line, key, "Postern has no equivalent setting");
        }
        _ => d.unknown(line, key),
    }
    Ok(())
}

/// `leftid` / `rightid`; a bare name is resolved in DNS by libreswan.
fn identity(d: &mut Draft, p: &Param, libreswan: bool) {
    let (line, key, v) = (Some(p.line), p.key.as_str(), p.value.as_str());
    let id = match swan_id(v, libreswan) {
        Ok(Some(id)) => d.identity(line, key, &id),
        Ok(None) => return,
        Err(fqdn) => {
            d.warn(line, key, format!("libreswan resolves a bare name in DNS and uses the address: imported as {fqdn}; write @{v} in libreswan or check with the gateway's admin"));
            d.identity(line, key, &fqdn)
        }
    };
    if id.is_none() {
        return;
    }
    if key == "leftid" {
        d.p.auth.local_id = id;
    } else {
        d.p.auth.remote_id = id;
    }
}

/// `leftcert`: a file on the machine the conn came from, or an NSS nickname.
fn left_cert(d: &mut Draft, path: &str) {
    let is_file = path.contains('/')
        || path.ends_with(".pem")
        || path.ends_with(".crt")
        || path.ends_with(".der");
    if is_file {
        let full = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/etc/ipsec.d/certs/{path}")
        };
        d.missing("auth.cert", format!("the conn's certificate is the file {full} on the machine it came from: copy it here and set auth.cert"));
        d.missing("auth.key", "its private key is named in ipsec.secrets (': RSA file'): copy it here and set auth.key");
    } else {
        d.missing("auth.cert", format!("'{path}' is a certificate nickname in libreswan's NSS database: export it (pk12util -o cert.p12 -n '{path}') and set auth.pkcs12"));
    }
}

/// PFS: libreswan defaults to PFS with the IKE group; strongSwan's esp= names it (its
/// default ESP proposals have no PFS, and neither have Postern's).
fn pfs(d: &mut Draft, params: &Params, libreswan: bool) {
    if !libreswan {
        return;
    }
    let pfs = params.get("pfs").map(|p| p.value.to_ascii_lowercase());
    if pfs.as_deref() == Some("no") {
        d.p.phase2.pfs = None;
        for p in &mut d.p.phase2.proposals {
            p.group = None;
        }
    } else if d.p.phase2.proposals.iter().all(|p| p.group.is_none()) {
        d.p.phase2.pfs = d.p.phase1.proposals.first().map(|p| p.group);
    }
}

/// Mode Config: pulled, pushed or off, and a fixed `leftsourceip`.
fn mode_config(d: &mut Draft, params: &Params) {
    let src_ip = params
        .get("leftsourceip")
        .map(|p| (p.value.clone(), p.line));
    let yes = |k: &str| params.get(k).is_some_and(|p| truthy(&p.value));
    let modecfg = yes("leftmodecfgclient")
        || yes("modecfgpull")
        || src_ip.as_ref().is_some_and(|(v, _)| v.starts_with('%'));
    d.p.network.mode_config = if modecfg {
        ModeConfig::Pull
    } else {
        ModeConfig::Off
    };
    let push = params
        .get("modeconfig")
        .is_some_and(|p| p.value.eq_ignore_ascii_case("push"))
        || params.get("modecfgpull").is_some_and(|p| !truthy(&p.value));
    if push && modecfg {
        d.p.network.mode_config = ModeConfig::Push;
    }
    if let Some((v, line)) = src_ip
        && !v.starts_with('%')
    {
        match v.parse() {
            Ok(ip) => d.p.network.virtual_ip = Some(ip),
            Err(_) => d.warn(
                Some(line),
                "leftsourceip",
                format!("not carried over: '{v}' is not one IPv4 address"),
            ),
        }
    }
}

/// Dead peer detection: `dpddelay`, `dpdtimeout`, `dpdaction`.
fn dpd(d: &mut Draft, params: &Params) {
    let at = |k: &str| params.get(k).map(|p| (p.value.clone(), p.line));
    let (delay, timeout) = (at("dpddelay"), at("dpdtimeout"));
    let action = at("dpdaction").map(|(v, line)| (v.to_ascii_lowercase(), line));
    if let Some((a, line)) = &action {
        match a.as_str() {
            "none" => d.p.network.dpd = None,
            "restart" | "hold" => d.p.network.reconnect = true,
            "clear" => {
                d.p.network.reconnect = false;
                d.warn(Some(*line), "dpdaction", "clear: Postern then disconnects and does not reconnect by itself (network.reconnect = false)");
            }
            _ => {}
        }
    }
    if delay.is_none() && timeout.is_none() && action.is_none() {
        // Neither libreswan nor strongSwan probes without dpddelay / dpdaction.
        d.p.network.dpd = None;
    }
    if action.as_ref().is_some_and(|(a, _)| a == "none") {
        return;
    }
    let bounds = (Duration::from_secs(1), Duration::from_secs(3600));
    let mut dpd = d.p.network.dpd.unwrap_or_default();
    let mut any = false;
    if let Some((v, line)) = &delay
        && let Some(t) = d.duration(Some(*line), "dpddelay", v)
    {
        dpd.interval = t.clamp(bounds.0, bounds.1);
        any = true;
    }
    if let Some((v, line)) = &timeout
        && let Some(t) = d.duration(Some(*line), "dpdtimeout", v)
    {
        dpd.timeout = t.clamp(bounds.0, bounds.1);
        any = true;
    }
    if any {
        dpd.timeout = dpd.timeout.max(dpd.interval);
        d.p.network.dpd = Some(dpd);
    }
}

/// The PSK, the XAuth password and the key's passphrase from `ipsec.secrets`.
fn conn_secrets(d: &mut Draft, params: &Params, secrets: &[SecretEntry]) {
    let mut names: Vec<String> = vec![d.p.gateway.clone()];
    for id in [&d.p.auth.local_id, &d.p.auth.remote_id]
        .into_iter()
        .flatten()
    {
        names.push(id_value(id));
    }
    for k in ["leftid", "rightid"] {
        if let Some(p) = params.get(k) {
            names.push(p.value.clone());
        }
    }
    if d.p.auth.method == AuthMethod::Psk
        && let Some(e) = best_psk(secrets, "PSK", &names)
    {
        d.secret(PSK, &e.secret);
        if e.selectors.iter().all(|s| is_any(s)) {
            d.warn(
                None,
                "psk",
                format!(
                    "taken from the catch-all entry at {}:{} (it names no peer): check that it is this gateway's",
                    e.origin, e.line
                ),
            );
        }
    }
    // IKEv2's user login is EAP (`user : EAP "..."`); IKEv1's is XAuth.
    let login = if d.p.ike_version == 2 { "EAP" } else { "XAUTH" };
    if let Some(x) = &d.p.xauth
        && let Some(e) = best_psk(secrets, login, std::slice::from_ref(&x.username))
    {
        d.secret(XAUTH_PASSWORD, &e.secret);
    }
    if d.p.auth.method == AuthMethod::RsaSig
        && let Some(e) = secrets.iter().find(|e| e.file.is_some())
    {
        if !e.secret.is_empty() {
            d.secret(KEY_PASSPHRASE, &e.secret);
        }
        let f = e.file.clone().unwrap_or_default();
        d.missing("auth.key", format!("the private key is the file {f} on the machine it came from: copy it here and set auth.key"));
    }
}

/// The text of an identity as it appears in secrets selectors.
pub(crate) fn id_value(id: &Identity) -> String {
    match id {
        Identity::Address(a) => a.to_string(),
        Identity::Fqdn(s) | Identity::UserFqdn(s) | Identity::Dn(s) => s.clone(),
        Identity::KeyId(b) => String::from_utf8_lossy(b).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn libreswan_client_with_xauth_modecfg_and_secrets() {
        let all = import("ipsecconf_libreswan_xauth.conf");
        let i = all.iter().find(|i| i.name == "office").unwrap();
        assert_eq!(i.profile.gateway, "vpn.example.com");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "keyid:sales"
        );
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "alice");
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(ike(i), ["aes256-sha1-modp1536", "aes128-sha1-modp1024"]);
        assert_eq!(
            esp(i),
            ["aes256-sha1-modp1536", "aes128-sha1-modp1536"],
            "libreswan: PFS with the IKE group"
        );
        assert_eq!(secret(i, "psk"), Some("group secret"));
        assert_eq!(secret(i, "xauth-password"), Some("alice pw"));
        assert_eq!(
            nets(&i.profile.phase2.remote_networks),
            ["10.1.0.0/16", "10.2.0.0/16"]
        );
        assert_eq!(i.profile.network.dpd.unwrap().interval.as_secs(), 15);
        assert!(warned(i, "ikepad"), "{:?}", i.warnings);
        // The server conn in the same file is named, not silently dropped.
        assert!(all.iter().all(|i| i.name != "roadwarriors"));
        assert!(warned(i, "conn roadwarriors"), "{:?}", i.warnings);
    }

    #[test]
    fn strongswan_defaults_also_and_include() {
        let all = import("ipsecconf_strongswan_also.conf");
        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["paris", "berlin"]);
        let p = &all[0];
        assert_eq!(p.profile.gateway, "198.51.100.10");
        assert_eq!(
            p.profile.auth.local_id.as_ref().unwrap().to_string(),
            "fqdn:laptop.example.org"
        );
        assert_eq!(
            p.profile.auth.remote_id.as_ref().unwrap().to_string(),
            "fqdn:paris.example.org"
        );
        assert_eq!(ike(p), ["aes128-sha256-modp2048"]);
        assert_eq!(
            esp(p),
            ["aes128-sha256-modp2048"],
            "strongSwan: the group in esp= is PFS"
        );
        assert_eq!(p.profile.phase1.lifetime.as_secs(), 3 * 3600);
        assert_eq!(
            p.profile.phase2.lifetime.as_secs(),
            8 * 3600,
            "clamped from 12h"
        );
        assert!(warned(p, "lifetime"));
        assert_eq!(secret(p, "psk"), Some("paris-secret"));
        let b = &all[1];
        assert_eq!(b.profile.gateway, "berlin.example.org");
        assert_eq!(secret(b, "psk"), Some("0sdefault"), "the wildcard entry");
        assert_eq!(b.profile.network.nat_traversal, NatTraversal::Force);
        assert_eq!(
            b.profile.network.virtual_ip.unwrap().to_string(),
            "10.99.0.2"
        );
    }

    #[test]
    fn certificates_transport_and_mirrored_side() {
        let i = one("ipsecconf_openswan_cert_mirrored.conf");
        assert_eq!(i.profile.gateway, "203.0.113.50");
        assert_eq!(i.profile.auth.method, AuthMethod::RsaSig);
        assert_eq!(i.profile.phase2.mode, EncapMode::Transport);
        assert!(warned(&i, "left"));
        let keys: Vec<&str> = i.missing.iter().map(|m| m.key.as_str()).collect();
        assert!(
            keys.contains(&"auth.cert") && keys.contains(&"auth.ca"),
            "{keys:?}"
        );
        assert_eq!(secret(&i, "key-passphrase"), Some("k3y pass"));
    }

    #[test]
    fn strongswan_ikev2_conns_psk_eap_and_xauth_refused() {
        let all = import("ipsecconf_strongswan_ikev2.conf");
        let psk = all.iter().find(|i| i.name == "psk-lab").unwrap();
        assert_eq!(psk.profile.ike_version, 2);
        assert_eq!(psk.profile.auth.method, AuthMethod::Psk);
        assert_eq!(secret(psk, "psk"), Some("lab psk v2"));
        assert_eq!(psk.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(nets(&psk.profile.phase2.remote_networks), ["10.78.0.0/16"]);
        assert!(psk.profile.network.reconnect);
        assert_eq!(psk.profile.network.dpd.unwrap().interval.as_secs(), 30);
        if let Some(e) = v2_or_refused(&all, "eap-office", ikev2_allows("hybrid", true)) {
            assert_eq!(e.profile.auth.method, AuthMethod::Hybrid);
            assert_eq!(e.profile.xauth.as_ref().unwrap().username, "alice");
            assert_eq!(secret(e, "xauth-password"), Some("alice eap"));
            assert_eq!(ike(e), ["aes256-sha256-modp2048"]);
            assert_eq!(esp(e), ["aes256gcm16"]);
        }
        // XAuth in an IKEv2 conn: not imported, named on the others in one line.
        assert!(all.iter().all(|i| i.name != "old-xauth"));
        assert!(psk.warnings.iter().any(|w| w.key == "connection"
            && w.message.contains("'old-xauth'")
            && w.message.contains("XAuth")));
    }

    #[test]
    fn keyexchange_and_libreswan_ikev2_pick_the_version() {
        let conn = |extra: &str| {
            let text = format!(
                "conn x\n    left=%defaultroute\n    right=192.0.2.1\n    authby=secret\n{extra}"
            );
            super::super::import_str(&text, "x.conf", &[], &Default::default())
                .unwrap_or_else(|e| panic!("{extra}: {e}"))
                .remove(0)
        };
        assert_eq!(conn("    keyexchange=ikev1\n").profile.ike_version, 1);
        assert_eq!(conn("    keyexchange=ikev2\n").profile.ike_version, 2);
        let ike = conn("    keyexchange=ike\n");
        assert_eq!(ike.profile.ike_version, 2);
        assert!(warned(&ike, "keyexchange"));
        // Aggressive mode exists only in IKEv1: a conn that uses it stays IKEv1.
        let aggr = conn("    aggressive=yes\n");
        assert_eq!(aggr.profile.ike_version, 1);
        assert!(warned(&aggr, "keyexchange"));
        for (v, want) in [
            ("insist", 2),
            ("yes", 2),
            ("propose", 2),
            ("permit", 1),
            ("never", 1),
        ] {
            let i = conn(&format!("    ikev2={v}\n    pfs=no\n"));
            assert_eq!(i.profile.ike_version, want, "ikev2={v}");
        }
    }

    #[test]
    fn secrets_in_every_spelling() {
        let c = Companion {
            origin: "ipsec.secrets".into(),
            text: "# c\n@group : PSK \"a b\"\n10.0.0.1 10.0.0.2: PSK 0x616263\n%any : PSK 0sYWJj\nalice : XAUTH 'pw'\n: RSA key.pem \"pp\"\nbob : XAUTH\n  \"continued\"\n".into(),
        };
        let v = read_secrets(&c).unwrap();
        let s: Vec<(&str, &str)> = v
            .iter()
            .map(|e| (e.kind.as_str(), e.secret.as_str()))
            .collect();
        assert_eq!(
            s,
            [
                ("PSK", "a b"),
                ("PSK", "abc"),
                ("PSK", "abc"),
                ("XAUTH", "pw"),
                ("RSA", "pp"),
                ("XAUTH", "continued")
            ]
        );
        assert_eq!(best_psk(&v, "PSK", &["group".into()]).unwrap().line, 2);
        assert_eq!(
            best_psk(&v, "PSK", &["10.0.0.1".into(), "10.0.0.2".into()])
                .unwrap()
                .line,
            3
        );
        assert_eq!(best_psk(&v, "PSK", &["other".into()]).unwrap().line, 4);
    }

    #[test]
    fn proposals_in_both_syntaxes() {
        assert_eq!(
            swan_proposal("aes256-sha1;modp1536"),
            "aes256-sha1-modp1536"
        );
        assert_eq!(
            swan_proposal("AES_CBC_256-SHA2_256-MODP2048!"),
            "aes256-sha2_256-modp2048"
        );
        assert_eq!(swan_proposal("aes_gcm256-null"), "aes256gcm16");
        assert_eq!(
            swan_proposal("aes_gcm256-sha2_384-dh31"),
            "aes256gcm16-prfsha2_384-curve25519"
        );
        assert_eq!(
            swan_proposal("aes_gcm_a128-sha2_256-ecp256"),
            "aes128gcm8-prfsha2_256-ecp256"
        );
        assert_eq!(
            swan_proposal("chacha20_poly1305-sha2_256-dh31"),
            "chacha20poly1305-prfsha2_256-curve25519"
        );
        assert_eq!(swan_proposal("3des-md5-dh2"), "3des-md5-modp1024");
        assert_eq!(swan_proposal("aes-sha2"), "aes-sha256");
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let e = super::super::import_str(
            "conn a\n  right=1.2.3.4\n  oops\n",
            "x.conf",
            &[],
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!((e.line, e.origin.as_str()), (Some(3), "x.conf"));
        let e = super::super::import_str(
            "conn a\n  also=b\n  right=1.2.3.4\n",
            "x.conf",
            &[],
            &Default::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("no conn b"), "{e}");
    }
}
