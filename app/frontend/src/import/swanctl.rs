//! strongSwan `swanctl.conf`: `name { ... }` sections, `key = value`, `#` comments,
//! `include`. `connections.NAME` with `version = 1`, `local-N`/`remote-N` rounds,
//! `children`, `vips`; PSK and XAuth secrets from its `secrets` section.

use std::time::Duration;

use postern_dbus::profile::{AuthMethod, EncapMode, ExchangeMode, ModeConfig, NatTraversal, XAuth};

use super::ipsec_conf::{id_value, swan_id, swan_proposal};
use super::{Draft, ImportError, KEY_PASSPHRASE, PSK, Source, XAUTH_PASSWORD, err, list, truthy};

#[derive(Debug, Clone, Default)]
struct Node {
    name: String,
    line: usize,
    value: Option<String>,
    children: Vec<Node>,
}

impl Node {
    fn get(&self, k: &str) -> Option<&Node> {
        self.children.iter().rev().find(|c| c.name == k)
    }
    fn val(&self, k: &str) -> Option<&str> {
        self.get(k).and_then(|n| n.value.as_deref())
    }
    fn sections(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().filter(|c| c.value.is_none())
    }
}

fn parse_tree(
    src: &Source<'_>,
    origin: &str,
    text: &str,
    depth: usize,
) -> Result<Node, ImportError> {
    let mut stack: Vec<Node> = vec![Node::default()];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = match raw.find('#') {
            Some(p) if !raw[..p].contains('"') => &raw[..p],
            _ => raw,
        };
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        if t == "}" {
            if stack.len() < 2 {
                return Err(err(origin, Some(line), "'}' without a section to close"));
            }
            let n = stack.pop().unwrap_or_default();
            if let Some(top) = stack.last_mut() {
                top.children.push(n);
            }
            continue;
        }
        if let Some(name) = t.strip_suffix('{') {
            stack.push(Node {
                name: name.trim().to_string(),
                line,
                ..Node::default()
            });
            continue;
        }
        if let Some(f) = t.strip_prefix("include ") {
            if depth < 8
                && let Some(c) = (src.include)(f.trim().trim_matches('"'))
            {
                let sub = parse_tree(src, &c.origin, &c.text, depth + 1)?;
                if let Some(top) = stack.last_mut() {
                    top.children.extend(sub.children);
                }
            }
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(err(
                origin,
                Some(line),
                format!("'{t}' is neither 'key = value' nor 'name {{'"),
            ));
        };
        let v = v.trim();
        let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            &v[1..v.len() - 1]
        } else {
            v
        };
        if let Some(top) = stack.last_mut() {
            top.children.push(Node {
                name: k.trim().to_string(),
                line,
                value: Some(v.to_string()),
                children: Vec::new(),
            });
        }
    }
    if stack.len() > 1 {
        let open = stack
            .last()
            .map(|n| (n.name.clone(), n.line))
            .unwrap_or_default();
        return Err(err(
            origin,
            Some(open.1),
            format!("section '{}' is never closed", open.0),
        ));
    }
    Ok(stack.pop().unwrap_or_default())
}

fn secret_text(v: &str) -> Option<String> {
    if let Some(h) = v.strip_prefix("0x") {
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect();
        return bytes.and_then(|b| String::from_utf8(b).ok());
    }
    if let Some(b) = v.strip_prefix("0s") {
        use base64ct::{Base64, Encoding};
        return Base64::decode_vec(b)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
    }
    Some(v.to_string())
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let root = parse_tree(src, src.origin, src.text, 0)?;
    let mut secrets_root = root.get("secrets").cloned().unwrap_or_default();
    for c in src.companions {
        if let Ok(t) = parse_tree(src, &c.origin, &c.text, 0)
            && let Some(s) = t.get("secrets")
        {
            secrets_root.children.extend(s.children.clone());
        }
    }
    let Some(conns) = root.get("connections") else {
        return Err(err(src.origin, None, "no 'connections { }' section"));
    };
    let mut out = Vec::new();
    for c in conns.sections() {
        out.push(conn(c, &secrets_root));
    }
    for top in root.children.iter() {
        if !matches!(
            top.name.as_str(),
            "connections" | "secrets" | "pools" | "authorities"
        ) && let Some(d) = out.first_mut()
        {
            d.drop_key(Some(top.line), &top.name, "not a section Postern reads");
        }
        if top.name == "pools" {
            for d in &mut out {
                d.drop_key(Some(top.line), "pools", "address pools are for gateways");
            }
        }
    }
    Ok(out)
}

/// The `local*` and `remote*` sections' authentication, gathered over the conn.
#[derive(Default)]
struct Auths {
    /// (round, auth, line) of each local section.
    local: Vec<(u32, String, usize)>,
    remote: Option<String>,
    xauth_user: Option<String>,
}

fn conn(c: &Node, secrets: &Node) -> Draft {
    let mut d = Draft::new(c.name.clone(), Some(c.line));
    d.p.network.mode_config = ModeConfig::Off;
    let mut auths = Auths::default();
    for n in &c.children {
        conn_key(&mut d, n, &mut auths);
    }
    version(&mut d, c, &auths);
    if d.p.ike_version == 2 {
        auth_method_v2(&mut d, auths);
    } else {
        auth_method(&mut d, auths);
    }
    conn_secrets(&mut d, secrets);
    d
}

/// One key or section of a connection.
fn conn_key(d: &mut Draft, n: &Node, auths: &mut Auths) {
    let line = Some(n.line);
    let key = n.name.as_str();
    let v = n.value.as_deref().unwrap_or_default();
    match key {
        "version" => {}
        "aggressive" => {
            if truthy(v) {
                d.p.exchange_mode = ExchangeMode::Aggressive;
            }
        }
        "remote_addrs" => {
            let addrs = list(v);
            if let Some(a) = addrs.first() {
                d.p.gateway = a.clone();
            }
            if addrs.len() > 1 {
                d.warn(
                    line,
                    key,
                    "several gateway addresses: Postern connects to the first",
                );
            }
        }
        "local_addrs" | "local_port" | "remote_port" | "mobike" | "fragmentation"
        | "send_certreq" | "send_cert" | "keyingtries" | "unique" | "over_time" | "rand_time"
        | "if_id_in" | "if_id_out" => {
            d.drop_key(line, key, "Postern has no equivalent setting");
        }
        "proposals" => {
            let props: Vec<String> = list(v)
                .iter()
                .filter(|p| *p != "default")
                .map(|p| swan_proposal(p))
                .collect();
            d.ike(line, key, &props);
        }
        "vips" => {
            d.p.network.mode_config = ModeConfig::Pull;
            for a in list(v) {
                if a != "0.0.0.0" && a != "::" {
                    match a.parse() {
                        Ok(ip) => d.p.network.virtual_ip = Some(ip),
                        Err(_) => d.warn(line, key, format!("'{a}' is not an IPv4 address")),
                    }
                }
            }
        }
        "pull" => {
            if !truthy(v) && d.p.network.mode_config == ModeConfig::Pull {
                d.p.network.mode_config = ModeConfig::Push;
            }
        }
        "encap" => {
            if truthy(v) {
                d.p.network.nat_traversal = NatTraversal::Force;
            }
        }
        "dpd_delay" | "dpd_timeout" => dpd_key(d, n),
        "rekey_time" | "reauth_time" => {
            if let Some(t) = d.duration(line, key, v)
                && !t.is_zero()
            {
                d.lifetime1(line, key, t);
            }
        }
        k if k.starts_with("local") => local_section(d, n, auths),
        k if k.starts_with("remote") => remote_section(d, n, auths),
        "children" => {
            let kids: Vec<&Node> = n.sections().collect();
            if let Some(ch) = kids.first() {
                child(d, ch);
            }
            for other in kids.iter().skip(1) {
                d.drop_key(Some(other.line), &format!("children.{}", other.name), "Postern makes one phase 2 per profile: import the others as their own profiles");
            }
        }
        _ => d.unknown(line, key),
    }
}

/// `version`: 1 is IKEv1, 2 IKEv2; 0 (the default) lets strongSwan start IKEv2, so
/// such a connection is IKEv2 unless it uses what only IKEv1 has (aggressive mode,
/// XAuth rounds).
fn version(d: &mut Draft, c: &Node, auths: &Auths) {
    let given = c.get("version");
    let line = Some(given.map_or(c.line, |n| n.line));
    let v = given.and_then(|n| n.value.as_deref()).unwrap_or("0").trim();
    let ikev1_only = d.p.exchange_mode == ExchangeMode::Aggressive
        || auths.local.iter().any(|(_, a, _)| a.starts_with("xauth"));
    match v {
        "1" => {}
        "2" => d.ikev2(),
        "0" if ikev1_only => d.warn(
            line,
            "version",
            "0 or not given: strongSwan starts IKEv2, but this connection uses aggressive mode or XAuth (IKEv1 only): imported as IKEv1",
        ),
        "0" => {
            d.ikev2();
            d.warn(
                line,
                "version",
                "0 or not given: strongSwan starts IKEv2, so this is imported as IKEv2 (write version = 1 for IKEv1)",
            );
        }
        other => {
            d.warn(
                line,
                "version",
                format!("'{other}' is not 0, 1 or 2: imported as IKEv1"),
            );
        }
    }
}

/// `dpd_delay` (0 turns DPD off) or `dpd_timeout`.
fn dpd_key(d: &mut Draft, n: &Node) {
    let key = n.name.as_str();
    let v = n.value.as_deref().unwrap_or_default();
    let Some(t) = d.duration(Some(n.line), key, v) else {
        return;
    };
    if key == "dpd_delay" && t.is_zero() {
        d.p.network.dpd = None;
        return;
    }
    let t = t.clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut dpd = d.p.network.dpd.unwrap_or_default();
    if key == "dpd_delay" {
        dpd.interval = t;
    } else {
        dpd.timeout = t;
    }
    dpd.timeout = dpd.timeout.max(dpd.interval);
    d.p.network.dpd = Some(dpd);
}

/// Drops the subkeys of `n` that Postern has no setting for.
fn drop_unknown_subkeys(d: &mut Draft, n: &Node, known: &[&str]) {
    for sub in &n.children {
        if !known.contains(&sub.name.as_str()) {
            d.drop_key(
                Some(sub.line),
                &format!("{}.{}", n.name, sub.name),
                "Postern has no equivalent setting",
            );
        }
    }
}

/// A `local*` section: one authentication round, our identity, the XAuth user.
fn local_section(d: &mut Draft, n: &Node, auths: &mut Auths) {
    let auth = n.val("auth").unwrap_or("pubkey").to_string();
    let round = n
        .val("round")
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(auths.local.len() as u32);
    if let Some(id) = n.val("id")
        && auth != "xauth"
        && auth != "xauth-generic"
    {
        set_id(d, n, id, true);
    }
    if let Some(x) = n.val("xauth_id") {
        auths.xauth_user = Some(x.to_string());
    } else if let Some(x) = n.val("eap_id").filter(|_| auth.starts_with("eap")) {
        auths.xauth_user = Some(x.to_string());
    } else if (auth.starts_with("xauth") || auth.starts_with("eap"))
        && let Some(id) = n.val("id")
    {
        auths.xauth_user = Some(id.to_string());
    }
    if let Some(cert) = n.val("certs") {
        d.missing("auth.cert", format!("'{cert}' is a file in swanctl/x509 on the machine the file came from: copy it here and set auth.cert"));
        d.missing("auth.key", "its private key is in swanctl/private (or rsa, ecdsa, pkcs8): copy it here and set auth.key");
    }
    auths.local.push((round, auth, n.line));
    drop_unknown_subkeys(
        d,
        n,
        &["auth", "id", "xauth_id", "eap_id", "certs", "round", "cert"],
    );
}

/// A `remote*` section: the gateway's authentication, identity and CA.
fn remote_section(d: &mut Draft, n: &Node, auths: &mut Auths) {
    auths.remote = Some(n.val("auth").unwrap_or("pubkey").to_string());
    if let Some(id) = n.val("id") {
        set_id(d, n, id, false);
    }
    if let Some(ca) = n.val("cacerts") {
        d.missing("auth.ca", format!("'{ca}' is a file in swanctl/x509ca on the machine the file came from: copy it here and set auth.ca"));
    }
    drop_unknown_subkeys(
        d,
        n,
        &["auth", "id", "cacerts", "round", "certs", "revocation"],
    );
}

/// The method from the first local round (and the remote's): psk, pubkey, or hybrid
/// (XAuth first against a gateway that signs); XAuth from any round.
fn auth_method(d: &mut Draft, mut auths: Auths) {
    auths.local.sort_by_key(|(r, _, _)| *r);
    let first = auths
        .local
        .first()
        .map(|(_, a, _)| a.as_str())
        .unwrap_or("pubkey");
    let remote = auths.remote.as_deref().unwrap_or("pubkey");
    d.p.auth.method = match first {
        "psk" => AuthMethod::Psk,
        a if a.starts_with("xauth") && remote == "pubkey" => AuthMethod::Hybrid,
        "pubkey" => AuthMethod::RsaSig,
        other => {
            let l = auths.local.first().map(|(_, _, l)| *l);
            d.warn(
                l,
                "local.auth",
                format!("'{other}' is not an IKEv1 method Postern has: psk assumed"),
            );
            AuthMethod::Psk
        }
    };
    if !auths.local.iter().any(|(_, a, _)| a.starts_with("xauth")) {
        return;
    }
    match auths.xauth_user {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u,
                password: None,
            })
        }
        None => d.missing(
            "xauth.username",
            "the connection uses XAuth but names no xauth_id",
        ),
    }
}

/// IKEv2: the first local round says how we authenticate: `psk`, `pubkey` (a
/// certificate), or EAP (the user's login, kept in `[xauth]`) against a gateway that
/// signs (`hybrid`) or uses the pre-shared key (`psk`); an EAP round after a `psk` or
/// `pubkey` one adds the login to that method. Whether the combination works today
/// is the profile's check to say.
fn auth_method_v2(d: &mut Draft, mut auths: Auths) {
    auths.local.sort_by_key(|(r, _, _)| *r);
    let remote = auths.remote.as_deref().unwrap_or("pubkey");
    let remote_signs = !remote.starts_with("psk");
    let mut eap = false;
    for (i, (_, auth, line)) in auths.local.iter().enumerate() {
        let a = auth.to_ascii_lowercase();
        let kind = a.split(['-', ':', '/']).next().unwrap_or_default();
        match kind {
            "psk" if i == 0 => d.p.auth.method = AuthMethod::Psk,
            "pubkey" | "rsa" | "ecdsa" | "ed25519" | "ed448" if i == 0 => {
                d.p.auth.method = AuthMethod::RsaSig;
            }
            "eap" => {
                let method = a.strip_prefix("eap-").unwrap_or("");
                if method == "tls" && i == 0 {
                    // Our certificate inside EAP-TLS; the gateway signs.
                    d.p.auth.method = AuthMethod::EapTls;
                    continue;
                }
                match method {
                    "" | "mschapv2" | "gtc" => {}
                    "dynamic" | "radius" => d.warn(
                        Some(*line),
                        "local.auth",
                        format!("'{auth}': the gateway picks the EAP method; Postern answers EAP-MSCHAPv2 and EAP-GTC"),
                    ),
                    other => {
                        d.refuse(format!(
                            "its login is EAP-{} (auth = {auth}); Postern's IKEv2 login is EAP-MSCHAPv2, EAP-GTC or EAP-TLS",
                            other.to_ascii_uppercase()
                        ));
                        return;
                    }
                }
                eap = true;
                if i == 0 {
                    d.p.auth.method = if remote_signs {
                        AuthMethod::Hybrid
                    } else {
                        AuthMethod::Psk
                    };
                }
            }
            "xauth" => {
                d.refuse(format!(
                    "auth = {auth} is XAuth, which exists only in IKEv1: write version = 1, or EAP for IKEv2"
                ));
                return;
            }
            _ => {
                d.refuse(format!(
                    "auth = {auth} is not an IKEv2 method Postern has (psk, pubkey, eap-mschapv2, eap-gtc)"
                ));
                return;
            }
        }
    }
    if auths.local.is_empty() {
        d.p.auth.method = AuthMethod::RsaSig;
    }
    if !eap {
        return;
    }
    match auths.xauth_user {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u,
                password: None,
            })
        }
        None => d.missing(
            "xauth.username",
            "the connection logs in with EAP but names no eap_id or id",
        ),
    }
}

/// Secrets: the ike section whose id* owners match best, the xauth/eap one of the
/// user, a private key's passphrase.
fn conn_secrets(d: &mut Draft, secrets: &Node) {
    let mut names = vec![d.p.gateway.clone()];
    for id in [&d.p.auth.local_id, &d.p.auth.remote_id]
        .into_iter()
        .flatten()
    {
        names.push(id_value(id));
    }
    let mut best: Option<(usize, String)> = None;
    for s in secrets.sections() {
        let owners: Vec<&str> = s
            .children
            .iter()
            .filter(|c| c.name.starts_with("id"))
            .filter_map(|c| c.value.as_deref())
            .collect();
        let Some(val) = s.val("secret") else { continue };
        if s.name.starts_with("ike") && d.p.auth.method == AuthMethod::Psk {
            let ok = owners
                .iter()
                .all(|o| *o == "%any" || names.contains(&owner_name(o)));
            if ok && best.as_ref().is_none_or(|(b, _)| owners.len() > *b) {
                best = Some((owners.len(), val.to_string()));
            }
        } else if s.name.starts_with("xauth") || s.name.starts_with("eap") {
            if let Some(x) = &d.p.xauth
                && (owners.is_empty() || owners.contains(&x.username.as_str()))
                && let Some(t) = secret_text(val)
            {
                d.secret(XAUTH_PASSWORD, &t);
            }
        } else if ["private", "rsa", "ecdsa", "pkcs8", "pkcs12"]
            .iter()
            .any(|p| s.name.starts_with(p))
            && let Some(t) = secret_text(val)
        {
            d.secret(KEY_PASSPHRASE, &t);
        }
    }
    if let Some((_, v)) = best
        && let Some(t) = secret_text(&v)
    {
        d.secret(PSK, &t);
    }
}

/// A secret's owner (`keyid:sales`, `@host`, `192.0.2.1`) as the text of its identity.
fn owner_name(o: &str) -> String {
    match swan_id(o, false) {
        Ok(Some(s)) | Err(s) => s
            .parse::<postern_dbus::profile::Identity>()
            .map_or(o.to_string(), |i| id_value(&i)),
        Ok(None) => o.to_string(),
    }
}

fn set_id(d: &mut Draft, n: &Node, id: &str, local: bool) {
    let line = n.get("id").map(|x| x.line);
    let key = format!("{}.id", n.name);
    match swan_id(id, false) {
        Ok(Some(s)) | Err(s) => {
            let v = d.identity(line, &key, &s);
            if local {
                d.p.auth.local_id = v;
            } else {
                d.p.auth.remote_id = v;
            }
        }
        Ok(None) => {}
    }
}

fn child(d: &mut Draft, ch: &Node) {
    let mut esp_given = false;
    for n in &ch.children {
        let line = Some(n.line);
        let key = format!("children.{}.{}", ch.name, n.name);
        let v = n.value.as_deref().unwrap_or_default();
        match n.name.as_str() {
            "remote_ts" | "local_ts" => {
                let items: Vec<String> = list(v)
                    .into_iter()
                    .filter(|s| s != "dynamic" && !s.starts_with('%'))
                    .collect();
                let items: Vec<&str> = items.iter().map(String::as_str).collect();
                let nets = d.subnets(line, &key, &items);
                if n.name == "remote_ts" {
                    d.p.phase2.remote_networks = nets;
                } else {
                    d.p.phase2.local_networks = nets;
                }
            }
            "esp_proposals" => {
                esp_given = true;
                let props: Vec<String> = list(v)
                    .iter()
                    .filter(|p| *p != "default")
                    .map(|p| swan_proposal(p))
                    .collect();
                d.esp(line, &key, &props);
            }
            "rekey_time" | "life_time" => {
                if let Some(t) = d.duration(line, &key, v)
                    && !t.is_zero()
                {
                    d.lifetime2(line, &key, t);
                }
            }
            "mode" => match v {
                "tunnel" => {}
                "transport" => d.p.phase2.mode = EncapMode::Transport,
                other => d.warn(
                    line,
                    &key,
                    format!("mode '{other}' is not one Postern has: tunnel used"),
                ),
            },
            "dpd_action" | "close_action" => {
                if v == "clear" || v == "none" {
                    d.p.network.reconnect = false;
                }
            }
            "start_action" => {
                if v == "start" || v == "trap" {
                    d.warn(line, &key, "Postern brings the tunnel up when you connect");
                }
            }
            _ => d.drop_key(line, &key, "Postern has no equivalent setting"),
        }
    }
    let _ = esp_given;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn psk_aggressive_xauth_vips_and_secrets() {
        let all = import("swanctl_two_conns.conf");
        assert_eq!(
            all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["office", "lab"]
        );
        let i = &all[0];
        assert_eq!(i.profile.gateway, "vpn.example.com");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "keyid:sales"
        );
        assert_eq!(i.profile.xauth.as_ref().unwrap().username, "alice");
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(ike(i), ["aes256-sha256-modp2048", "aes128-sha1-modp1024"]);
        assert_eq!(esp(i), ["aes256-sha256", "aes128-sha1"]);
        assert_eq!(secret(i, "psk"), Some("group secret"));
        assert_eq!(secret(i, "xauth-password"), Some("alice pw"));
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["10.1.0.0/16"]);
        assert!(warned(i, "children.second"));
        let lab = &all[1];
        assert_eq!(secret(lab, "psk"), Some("lab secret"));
        assert!(warned(lab, "version"));
    }

    #[test]
    fn certificate_and_hybrid_rounds() {
        let all = import("swanctl_cert_hybrid.conf");
        let c = all.iter().find(|i| i.name == "cert").unwrap();
        assert_eq!(c.profile.auth.method, AuthMethod::RsaSig);
        assert_eq!(
            c.profile.auth.remote_id.as_ref().unwrap().to_string(),
            "dn:C=CH, O=Lab, CN=gw"
        );
        let keys: Vec<&str> = c.missing.iter().map(|m| m.key.as_str()).collect();
        assert!(
            keys.contains(&"auth.cert") && keys.contains(&"auth.ca"),
            "{keys:?}"
        );
        let h = all.iter().find(|i| i.name == "hybrid").unwrap();
        assert_eq!(h.profile.auth.method, AuthMethod::Hybrid);
        assert_eq!(h.profile.xauth.as_ref().unwrap().username, "bob");
        assert_eq!(h.profile.phase2.mode, EncapMode::Tunnel);
        assert_eq!(h.profile.network.dpd.unwrap().interval.as_secs(), 20);
    }

    #[test]
    fn latin1_name_and_included_base64_secret() {
        let i = one("swanctl_minimal_include.conf");
        assert_eq!(i.name, "z\u{fc}rich");
        assert_eq!(i.profile_name, "z-rich");
        assert_eq!(secret(&i, "psk"), Some("Gr\u{fc}ezi"));
        assert_eq!(i.profile.network.mode_config, ModeConfig::Off);
    }

    #[test]
    fn ikev2_psk_connection_with_its_proposals_and_secret() {
        let all = import("swanctl_ikev2.conf");
        let i = all.iter().find(|i| i.name == "home").unwrap();
        assert_eq!(i.profile.ike_version, 2);
        assert_eq!(i.profile.auth.method, AuthMethod::Psk);
        assert!(i.profile.xauth.is_none());
        assert_eq!(
            i.profile.auth.local_id.as_ref().unwrap().to_string(),
            "user-fqdn:laptop@example.org"
        );
        assert_eq!(
            i.profile.auth.remote_id.as_ref().unwrap().to_string(),
            "fqdn:vpn.example.org"
        );
        assert_eq!(secret(i, "psk"), Some("home key 2"));
        assert_eq!(i.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(i.profile.network.nat_traversal, NatTraversal::Force);
        assert_eq!(i.profile.phase1.lifetime.as_secs(), 4 * 3600);
        assert_eq!(i.profile.phase2.lifetime.as_secs(), 3600);
        // strongSwan's IKEv2-only proposals (AES-GCM with a PRF, x25519) are kept.
        assert_eq!(
            ike(i),
            [
                "aes256-sha256-modp2048",
                "aes128gcm16-prfsha256-ecp256",
                "aes128-sha256-curve25519"
            ]
        );
        assert!(!warned(i, "proposals"), "{:?}", i.warnings);
        assert_eq!(esp(i), ["aes256gcm16", "aes128-sha256-modp2048"]);
        assert_eq!(
            nets(&i.profile.phase2.remote_networks),
            ["10.10.0.0/16", "10.20.0.0/16"]
        );
        assert!(!warned(i, "version"), "{:?}", i.warnings);
        assert!(i.toml.contains("ike_version = 2"), "{}", i.toml);
    }

    #[test]
    fn ikev2_eap_login_and_certificates_as_far_as_the_contract_goes() {
        let all = import("swanctl_ikev2.conf");
        // EAP-MSCHAPv2 against a gateway certificate: hybrid + [xauth] (EAP for IKEv2).
        if let Some(s) = v2_or_refused(&all, "staff", ikev2_allows("hybrid", true)) {
            assert_eq!(s.profile.ike_version, 2);
            assert_eq!(s.profile.auth.method, AuthMethod::Hybrid);
            assert_eq!(s.profile.xauth.as_ref().unwrap().username, "alice");
            assert_eq!(secret(s, "xauth-password"), Some("alice eap"));
            assert!(s.missing.iter().any(|m| m.key == "auth.ca"));
        }
        // No version: strongSwan starts IKEv2; a certificate.
        if let Some(b) = v2_or_refused(&all, "badge", ikev2_allows("rsa-sig", false)) {
            assert_eq!(b.profile.ike_version, 2);
            assert_eq!(b.profile.auth.method, AuthMethod::RsaSig);
            assert!(warned(b, "version"));
            assert!(b.missing.iter().any(|m| m.key == "auth.cert"));
        }
        // EAP-TLS: our certificate inside EAP (auth.method = "eap-tls"), its file to copy.
        let t = all.iter().find(|i| i.name == "smartcard").unwrap();
        assert_eq!(t.profile.ike_version, 2);
        assert_eq!(t.profile.auth.method, AuthMethod::EapTls);
        assert!(t.profile.xauth.is_none());
        assert!(t.missing.iter().any(|m| m.key == "auth.cert"));
        assert!(t.toml.contains("method = \"eap-tls\""), "{}", t.toml);
    }

    #[test]
    fn ikev1_only_settings_keep_a_versionless_connection_ikev1() {
        // "office" says version = 1; "lab" says nothing and uses only PSK: IKEv2.
        let all = import("swanctl_two_conns.conf");
        assert_eq!(all[0].profile.ike_version, 1);
        assert_eq!(all[1].profile.ike_version, 2);
        let text = "connections {\n x {\n  remote_addrs = 192.0.2.1\n  aggressive = yes\n  local-1 {\n   auth = psk\n  }\n  local-2 {\n   auth = xauth\n   xauth_id = u\n  }\n  remote {\n   auth = psk\n  }\n }\n}\n";
        let i = super::super::import_str(text, "x.conf", &[], &Default::default())
            .unwrap()
            .remove(0);
        assert_eq!(i.profile.ike_version, 1);
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert!(warned(&i, "version"));
        // The same with version = 2 is XAuth in IKEv2: refused in one sentence.
        let v2 = text.replace("aggressive = yes", "version = 2");
        let e = super::super::import_str(&v2, "x.conf", &[], &Default::default()).unwrap_err();
        assert!(
            e.message.contains("XAuth") && e.message.contains("IKEv1"),
            "{e}"
        );
    }

    #[test]
    fn ikev2_only_proposals_are_left_out_of_an_ikev1_connection() {
        let text = "connections {\n x {\n  version = 1\n  remote_addrs = 192.0.2.1\n  proposals = aes256gcm16-prfsha384-x25519, aes128-sha256-ecp521\n  local {\n   auth = psk\n  }\n  remote {\n   auth = psk\n  }\n  children {\n   c {\n    esp_proposals = aes256gcm16-x25519, aes128-sha256\n   }\n  }\n }\n}\n";
        let i = super::super::import_str(text, "x.conf", &[], &Default::default())
            .unwrap()
            .remove(0);
        assert_eq!(i.profile.ike_version, 1);
        assert_eq!(ike(&i), ["aes128-sha256-ecp521"]);
        assert_eq!(esp(&i), ["aes128-sha256"]);
        let w: Vec<&str> = i
            .warnings
            .iter()
            .filter(|w| w.message.contains("IKEv2-only"))
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(w.len(), 2, "{:?}", i.warnings);
        assert!(w[0].contains("'aes256gcm16-prfsha384-curve25519'"), "{w:?}");
        // Written out, the profile is valid IKEv1.
        postern_dbus::profile::Profile::from_toml_str(
            &i.toml,
            "t.toml",
            postern_dbus::profile::SecretPolicy::AllowIfPrivate,
        )
        .unwrap();
    }

    #[test]
    fn unclosed_section_names_its_line() {
        let e = super::super::import_str(
            "connections {\n  a {\n    remote_addrs = 1.2.3.4\n}\n",
            "s.conf",
            &[],
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
