//! ipsec-tools `racoon.conf` (`remote` and `sainfo` blocks, `include`), with `psk.txt`
//! for the pre-shared keys and `setkey` / `ipsec-tools.conf` `spdadd` lines for the
//! networks. Also used by [`super::ifcfg`] for the racoon algorithm names.
//!
//! Lenient where real files are: a block that is never closed (as in the seed
//! article's listing) is closed at the end of the file with a warning, and `remote` /
//! `sainfo` found inside another block are still read.

use std::time::Duration;

use postern_dbus::profile::{
    AuthMethod, Dpd, EncapMode, ExchangeMode, Identity, ModeConfig, NatTraversal, XAuth,
};

use super::{Companion, Draft, ImportError, PSK, Source, companion, err, parse_subnet};

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
    quoted: bool,
}

#[derive(Debug, Clone, Default)]
struct Stmt {
    words: Vec<Tok>,
    line: usize,
    block: Option<Vec<Stmt>>,
}

impl Stmt {
    fn kw(&self) -> &str {
        self.words.first().map_or("", |t| t.text.as_str())
    }
    fn args(&self) -> Vec<&str> {
        self.words.iter().skip(1).map(|t| t.text.as_str()).collect()
    }
}

fn tokenize(origin: &str, text: &str) -> Result<Vec<Tok>, ImportError> {
    let mut v = Vec::new();
    let mut line = 1;
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in it.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\n') => {
                            return Err(err(
                                origin,
                                Some(start),
                                "a quoted string is not closed on its line",
                            ));
                        }
                        Some(c) => s.push(c),
                        None => {
                            return Err(err(
                                origin,
                                Some(start),
                                "a quoted string is never closed",
                            ));
                        }
                    }
                }
                v.push(Tok {
                    text: s,
                    line,
                    quoted: true,
                });
            }
            '{' | '}' | ';' => v.push(Tok {
                text: c.to_string(),
                line,
                quoted: false,
            }),
            _ => {
                let mut s = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(n);
                    it.next();
                }
                // "sec;" / "hour;" glued to the terminator are split above.
                v.push(Tok {
                    text: s,
                    line,
                    quoted: false,
                });
            }
        }
    }
    Ok(v)
}

/// Statements and blocks; `}` closes, EOF closes what is left open (with a note).
fn statements(toks: &[Tok], notes: &mut Vec<(usize, String)>) -> Vec<Stmt> {
    let mut stack: Vec<(Stmt, Vec<Stmt>)> = vec![(Stmt::default(), Vec::new())];
    let mut cur: Vec<Tok> = Vec::new();
    for t in toks {
        if !t.quoted && t.text == ";" {
            if !cur.is_empty() {
                let line = cur[0].line;
                if let Some(top) = stack.last_mut() {
                    top.1.push(Stmt {
                        words: std::mem::take(&mut cur),
                        line,
                        block: None,
                    });
                }
            }
            continue;
        }
        if !t.quoted && t.text == "{" {
            let line = cur.first().map_or(t.line, |w| w.line);
            stack.push((
                Stmt {
                    words: std::mem::take(&mut cur),
                    line,
                    block: Some(Vec::new()),
                },
                Vec::new(),
            ));
            continue;
        }
        if !t.quoted && t.text == "}" {
            if !cur.is_empty() {
                // A statement without its ';' before '}': racoon refuses it, we keep it.
                let line = cur[0].line;
                notes.push((line, "a statement without ';' before '}'".into()));
                if let Some(top) = stack.last_mut() {
                    top.1.push(Stmt {
                        words: std::mem::take(&mut cur),
                        line,
                        block: None,
                    });
                }
            }
            if stack.len() > 1 {
                if let Some((mut s, body)) = stack.pop() {
                    s.block = Some(body);
                    if let Some(top) = stack.last_mut() {
                        top.1.push(s);
                    }
                }
            } else {
                notes.push((t.line, "a '}' without a block to close".into()));
            }
            continue;
        }
        // `include "file"` at the end of a line without ';' (as the Red Hat scripts wrote it).
        if cur.first().is_some_and(|w| w.text == "include")
            && cur.len() >= 2
            && t.line != cur[cur.len() - 1].line
        {
            let line = cur[0].line;
            if let Some(top) = stack.last_mut() {
                top.1.push(Stmt {
                    words: std::mem::take(&mut cur),
                    line,
                    block: None,
                });
            }
        }
        cur.push(t.clone());
    }
    if !cur.is_empty() {
        let line = cur[0].line;
        if let Some(top) = stack.last_mut() {
            top.1.push(Stmt {
                words: cur,
                line,
                block: None,
            });
        }
    }
    while stack.len() > 1 {
        if let Some((mut s, body)) = stack.pop() {
            notes.push((
                s.line,
                format!(
                    "the block '{}' opened here is never closed (closed at the end of the file)",
                    s.words
                        .iter()
                        .map(|t| t.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
            s.block = Some(body);
            if let Some(top) = stack.last_mut() {
                top.1.push(s);
            }
        }
    }
    stack.pop().map(|s| s.1).unwrap_or_default()
}

/// Reads a file and its includes into one statement list.
fn read(
    src: &Source<'_>,
    origin: &str,
    text: &str,
    depth: usize,
    notes: &mut Vec<(usize, String)>,
) -> Result<Vec<Stmt>, ImportError> {
    let toks = tokenize(origin, text)?;
    let mut out = Vec::new();
    for s in statements(&toks, notes) {
        if s.kw() == "include" && s.block.is_none() {
            let name = s.args().first().map(|s| s.to_string()).unwrap_or_default();
            match (depth < 8).then(|| (src.include)(&name)).flatten() {
                Some(Companion { origin: o, text: t }) => {
                    out.extend(read(src, &o, &t, depth + 1, notes)?)
                }
                None => notes.push((
                    s.line,
                    format!("include \"{name}\": not beside this file, not read"),
                )),
            }
            continue;
        }
        out.push(s);
    }
    Ok(out)
}

/// Every `remote` / `sainfo`, wherever it is (an unclosed block may hold it).
fn collect<'a>(
    v: &'a [Stmt],
    kw: &str,
    out: &mut Vec<&'a Stmt>,
    nested: bool,
    notes: &mut Vec<(usize, String)>,
) {
    for s in v {
        if s.kw() == kw && s.block.is_some() {
            if nested {
                notes.push((
                    s.line,
                    format!("'{kw}' is inside another block (a '}}' is missing before it?)"),
                ));
            }
            out.push(s);
        } else if let Some(b) = &s.block {
            collect(b, kw, out, true, notes);
        }
    }
}

/// racoon's time: `N sec|min|hour` (plural too).
fn time(args: &[&str]) -> Option<Duration> {
    let (n, unit) = match args {
        ["time", n, u, ..] | [n, u, ..] => (n, *u),
        _ => return None,
    };
    let n: u64 = n.parse().ok()?;
    let mul = match unit.trim_end_matches('s') {
        "sec" | "second" => 1,
        "min" | "minute" => 60,
        "hour" => 3600,
        _ => return None,
    };
    Some(Duration::from_secs(n * mul))
}

/// A racoon (or ifcfg) cipher name with optional key length, in strongSwan syntax.
pub(crate) fn cipher(name: &str, bits: Option<&str>) -> String {
    match name.to_ascii_lowercase().as_str() {
        "3des" => "3des".into(),
        "aes" | "rijndael" => format!("aes{}", bits.unwrap_or("128")),
        other => format!("{other}{}", bits.unwrap_or("")),
    }
}

/// A racoon hash / HMAC name in strongSwan syntax.
pub(crate) fn hash(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    let n = n.trim_start_matches("hmac_").trim_start_matches("hmac-");
    match n {
        "sha2_256" => "sha256".into(),
        "sha2_384" => "sha384".into(),
        "sha2_512" => "sha512".into(),
        other => other.to_string(),
    }
}

/// Comma-separated algorithm list with optional key lengths: `3des, blowfish 448, rijndael`.
fn algs(s: &Stmt) -> Vec<(String, Option<String>)> {
    let joined = s.args().join(" ");
    joined
        .split(',')
        .filter_map(|a| {
            let mut w = a.split_whitespace();
            let n = w.next()?.to_string();
            Some((n, w.next().map(str::to_string)))
        })
        .collect()
}

fn racoon_id(kind: &str, value: Option<&str>) -> Option<String> {
    let v = value?;
    Some(match kind {
        "address" => format!("address:{v}"),
        "fqdn" => format!("fqdn:{v}"),
        "user_fqdn" => format!("user-fqdn:{v}"),
        "keyid" => format!("keyid:{v}"),
        "asn1dn" => format!("dn:{v}"),
        _ => return None,
    })
}

pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Draft>, ImportError> {
    let mut notes = Vec::new();
    let top = read(src, src.origin, src.text, 0, &mut notes)?;
    let mut remotes = Vec::new();
    collect(&top, "remote", &mut remotes, false, &mut notes);
    let mut sainfos = Vec::new();
    collect(&top, "sainfo", &mut sainfos, false, &mut notes);
    let psk = companion(src, &["psk"], |_| false);
    let spd = companion(src, &["setkey", "ipsec-tools"], |t| t.contains("spdadd"));
    let mut out = Vec::new();
    let mut anonymous = None;
    for r in &remotes {
        let addr = r.args().first().map(|s| s.to_string());
        match addr.as_deref() {
            Some("anonymous") => {
                anonymous = Some(r.line);
                continue;
            }
            None => {
                return Err(err(
                    src.origin,
                    Some(r.line),
                    "'remote' names no gateway address: write the gateway's address after 'remote' (remote 192.0.2.1 { ... })",
                ));
            }
            _ => {}
        }
        let addr = addr.unwrap_or_default();
        let mut d = Draft::new(addr.clone(), Some(r.line));
        d.p.gateway = addr;
        d.p.network.mode_config = ModeConfig::Off;
        remote(&mut d, r);
        if let Some(s) = sainfos.first() {
            sainfo(&mut d, s);
        }
        for s in sainfos.iter().skip(1) {
            d.drop_key(
                Some(s.line),
                "sainfo",
                "Postern makes one phase 2 per profile: only the first sainfo is used",
            );
        }
        for s in &top {
            match s.kw() {
                "remote" | "sainfo" => {}
                "path" | "log" | "listen" | "padding" | "timer" | "privsep" => {
                    d.drop_key(
                        Some(s.line),
                        s.kw(),
                        "a racoon daemon setting, not part of a connection",
                    );
                }
                "mode_cfg" => d.drop_key(
                    Some(s.line),
                    "mode_cfg",
                    "racoon's Mode Config server settings are for gateways",
                ),
                "" => {}
                k => d.unknown(Some(s.line), k),
            }
        }
        for c in &psk {
            psk_txt(&mut d, c);
        }
        for c in &spd {
            setkey(&mut d, c);
        }
        for (l, m) in &notes {
            d.warn(Some(*l), "syntax", m.clone());
        }
        out.push(d);
    }
    if out.is_empty() {
        return Err(err(
            src.origin,
            anonymous,
            if anonymous.is_some() {
                "only 'remote anonymous' (a responder that accepts any peer): there is no gateway to connect to"
            } else {
                "no 'remote' block: there is no gateway to connect to"
            },
        ));
    }
    Ok(out)
}

/// What a `remote` block's statements gather for the end of it.
struct RemoteState {
    auth: Option<String>,
    ike: Vec<String>,
    dpd_delay: Option<u64>,
    retry: u64,
    maxfail: u64,
    xauth_user: Option<String>,
}

fn remote(d: &mut Draft, r: &Stmt) {
    let body = r.block.clone().unwrap_or_default();
    let mut st = RemoteState {
        auth: None,
        ike: Vec::new(),
        dpd_delay: None,
        retry: 5,
        maxfail: 5,
        xauth_user: None,
    };
    for s in &body {
        remote_stmt(d, s, &mut st);
    }
    d.ike(Some(r.line), "proposal", &st.ike);
    remote_auth(d, r, &st);
    if let Some(delay) = st.dpd_delay {
        if delay == 0 {
            d.p.network.dpd = None;
        } else {
            let i = Duration::from_secs(delay.clamp(1, 3600));
            let t = Duration::from_secs((st.retry * st.maxfail).clamp(1, 3600)).max(i);
            d.p.network.dpd = Some(Dpd {
                interval: i,
                timeout: t,
            });
        }
    }
}

/// One statement of a `remote` block.
fn remote_stmt(d: &mut Draft, s: &Stmt, st: &mut RemoteState) {
    let a = s.args();
    let line = Some(s.line);
    let first = || a.first().copied();
    match s.kw() {
        "exchange_mode" => exchange_mode(d, s),
        "my_identifier" | "peers_identifier" => identifier(d, s),
        "verify_identifier" => {}
        "proposal" => {
            if let Some(p) = proposal(d, s, &mut st.auth) {
                st.ike.push(p);
            } else {
                d.warn(
                    line,
                    "proposal",
                    "incomplete (encryption, hash and dh_group are needed): left out",
                );
            }
        }
        "lifetime" => {
            if let Some(t) = time(&a) {
                d.lifetime1(line, "lifetime", t);
            }
        }
        "nat_traversal" => match first() {
            Some("on") => d.p.network.nat_traversal = NatTraversal::Auto,
            Some("off") => d.p.network.nat_traversal = NatTraversal::Off,
            Some("force") => d.p.network.nat_traversal = NatTraversal::Force,
            _ => {}
        },
        "dpd_delay" => st.dpd_delay = first().and_then(|v| v.parse::<u64>().ok()),
        "dpd_retry" => st.retry = first().and_then(|v| v.parse().ok()).unwrap_or(st.retry),
        "dpd_maxfail" => st.maxfail = first().and_then(|v| v.parse().ok()).unwrap_or(st.maxfail),
        "mode_cfg" => {
            if first() == Some("on") {
                d.p.network.mode_config = ModeConfig::Pull;
            }
        }
        "xauth_login" => st.xauth_user = first().map(|s| s.to_string()),
        "certificate_type" => {
            let cert = a.get(1).copied().unwrap_or_default();
            d.missing("auth.cert", format!("'{cert}' is a file in racoon's certificate directory: copy it here and set auth.cert"));
            d.missing(
                "auth.key",
                format!(
                    "'{}' is its private key file: copy it here and set auth.key",
                    a.get(2).copied().unwrap_or_default()
                ),
            );
        }
        "ca_type" => {
            d.missing("auth.ca", format!("'{}' is the CA file in racoon's certificate directory: copy it here and set auth.ca", a.get(1).copied().unwrap_or_default()));
        }
        "" | "sainfo" | "remote" => {}
        k => d.drop_key(line, k, "Postern has no equivalent setting"),
    }
}

/// `exchange_mode aggressive, main;`: Postern uses the first.
fn exchange_mode(d: &mut Draft, s: &Stmt) {
    let line = Some(s.line);
    let modes: Vec<String> = s
        .args()
        .join(" ")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    match modes.first().map(String::as_str) {
        Some("aggressive") => d.p.exchange_mode = ExchangeMode::Aggressive,
        Some("main") => d.p.exchange_mode = ExchangeMode::Main,
        Some(m) => d.warn(
            line,
            "exchange_mode",
            format!("'{m}' is not main or aggressive"),
        ),
        None => {}
    }
    if modes.len() > 1 {
        d.warn(
            line,
            "exchange_mode",
            format!(
                "racoon would fall back to {}; Postern uses only the first ({})",
                modes[1..].join(", "),
                modes[0]
            ),
        );
    }
}

/// `my_identifier` / `peers_identifier`.
fn identifier(d: &mut Draft, s: &Stmt) {
    let a = s.args();
    let line = Some(s.line);
    let kind = a.first().copied().unwrap_or_default();
    let v = match (kind, a.get(1).copied()) {
        ("keyid", Some("tag")) => a.get(2).copied(),
        ("keyid", Some("file")) => {
            d.drop_key(
                line,
                s.kw(),
                "a key ID read from a file: give it as keyid:... in auth.local_id",
            );
            return;
        }
        (_, v) => v,
    };
    if kind == "address" && v.is_none() {
        return; // our own address: Postern's default
    }
    match racoon_id(kind, v) {
        Some(id) => {
            let id = d.identity(line, s.kw(), &id);
            if s.kw() == "my_identifier" {
                d.p.auth.local_id = id;
            } else {
                d.p.auth.remote_id = id;
            }
        }
        None => d.drop_key(
            line,
            s.kw(),
            &format!("identifier type '{kind}' is not one Postern has"),
        ),
    }
}

/// A phase 1 `proposal { }` as Postern's proposal syntax, when it is complete; the
/// first authentication method met is kept in `auth`.
fn proposal(d: &mut Draft, s: &Stmt, auth: &mut Option<String>) -> Option<String> {
    let (mut enc, mut h, mut g) = (None, None, None);
    for p in s.block.as_deref().unwrap_or_default() {
        let pa = p.args();
        let pl = Some(p.line);
        let first = pa.first().copied().unwrap_or_default();
        match p.kw() {
            "encryption_algorithm" => enc = Some(cipher(first, pa.get(1).copied())),
            "hash_algorithm" => h = Some(hash(first)),
            "dh_group" => g = pa.first().and_then(|v| d.dh_group(pl, "dh_group", v)),
            "authentication_method" => {
                if auth.as_ref().is_some_and(|x| x != first) {
                    d.warn(
                        pl,
                        "authentication_method",
                        format!(
                            "'{first}' differs from the first proposal's: Postern uses one method"
                        ),
                    );
                } else {
                    *auth = Some(first.to_string());
                }
            }
            "lifetime" => {
                if let Some(t) = time(&pa) {
                    d.lifetime1(pl, "lifetime", t);
                }
            }
            "sainfo" | "remote" => {}
            k => d.drop_key(pl, k, "no equivalent in a Postern proposal"),
        }
    }
    let (e, h, g) = (enc?, h?, g?);
    Some(format!("{e}-{h}-{}", g.name()))
}

/// The method from `authentication_method`, and the XAuth user it needs.
fn remote_auth(d: &mut Draft, r: &Stmt, st: &RemoteState) {
    let auth = st.auth.as_deref();
    match auth {
        None | Some("pre_shared_key" | "xauth_psk_client") => d.p.auth.method = AuthMethod::Psk,
        Some("rsasig" | "xauth_rsa_client") => d.p.auth.method = AuthMethod::RsaSig,
        Some("hybrid_rsa_client") => d.p.auth.method = AuthMethod::Hybrid,
        Some(other) => d.warn(Some(r.line), "authentication_method", format!("'{other}' is not a client method Postern has (a *_server method is a gateway's): psk assumed")),
    }
    if !auth.is_some_and(|a| a.contains("xauth") || a.starts_with("hybrid")) {
        return;
    }
    match &st.xauth_user {
        Some(u) => {
            d.p.xauth = Some(XAuth {
                username: u.clone(),
                password: None,
            })
        }
        None => d.missing(
            "xauth.username",
            "XAuth without xauth_login: give the user name in [xauth] username",
        ),
    }
}

fn sainfo(d: &mut Draft, s: &Stmt) {
    let a = s.args();
    // sainfo (anonymous | address A [port] proto address B [port] proto | ...)
    let mut ids: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < a.len() {
        if matches!(a[i], "address" | "subnet") {
            if let Some(v) = a.get(i + 1) {
                ids.push(v);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    if ids.len() == 2 {
        let local = ids[0];
        let remote = ids[1];
        for (v, is_local) in [(local, true), (remote, false)] {
            if v == "any" {
                continue;
            }
            match parse_subnet(v.split('[').next().unwrap_or(v)) {
                Some(n) => {
                    if is_local {
                        d.p.phase2.local_networks = vec![n];
                    } else {
                        d.p.phase2.remote_networks = vec![n];
                    }
                }
                None => d.warn(Some(s.line), "sainfo", format!("'{v}' is not a network")),
            }
        }
    }
    let mut encs = Vec::new();
    let mut auths = Vec::new();
    for st in s.block.as_deref().unwrap_or_default() {
        let sa = st.args();
        let line = Some(st.line);
        match st.kw() {
            "pfs_group" => {
                if let Some(g) = sa.first().and_then(|v| d.dh_group(line, "pfs_group", v)) {
                    d.p.phase2.pfs = Some(g);
                }
            }
            "lifetime" => {
                if let Some(t) = time(&sa) {
                    d.lifetime2(line, "lifetime", t);
                }
            }
            "encryption_algorithm" => encs = algs(st).into_iter().map(|(n, b)| cipher(&n, b.as_deref())).collect(),
            "authentication_algorithm" => auths = algs(st).into_iter().map(|(n, _)| hash(&n)).collect(),
            "compression_algorithm" => d.drop_key(line, "compression_algorithm", "Postern does not do IPComp; traffic goes uncompressed (racoon offers it, gateways rarely insist)"),
            "" => {}
            k => d.drop_key(line, k, "Postern has no equivalent setting"),
        }
    }
    let mut props = Vec::new();
    for e in &encs {
        if e.contains("gcm") {
            props.push(e.clone());
            continue;
        }
        for h in &auths {
            if h == "non_auth" {
                continue;
            }
            props.push(format!("{e}-{h}"));
        }
    }
    d.esp(Some(s.line), "encryption_algorithm", &props);
}

fn psk_txt(d: &mut Draft, c: &Companion) {
    let mut names = vec![d.p.gateway.clone()];
    if let Some(id) = &d.p.auth.remote_id {
        names.push(super::ipsec_conf::id_value(id));
    }
    for (i, raw) in c.text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((who, key)) = l.split_once(char::is_whitespace) else {
            d.warn(
                Some(i + 1),
                "psk.txt",
                format!(
                    "{}:{}: a line without 'identifier key': not used",
                    c.origin,
                    i + 1
                ),
            );
            continue;
        };
        if names.iter().any(|n| n == who) {
            let key = key.trim();
            let v = match key.strip_prefix("0x") {
                Some(h) if h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    let b: Vec<u8> = (0..h.len())
                        .step_by(2)
                        .filter_map(|j| u8::from_str_radix(&h[j..j + 2], 16).ok())
                        .collect();
                    String::from_utf8(b).ok()
                }
                _ => Some(key.to_string()),
            };
            match v {
                Some(v) => d.secret(PSK, &v),
                None => d.warn(
                    Some(i + 1),
                    "psk.txt",
                    "the hex key is not text: Postern keeps PSKs as text",
                ),
            }
        }
    }
}

fn setkey(d: &mut Draft, c: &Companion) {
    let mut stmts: Vec<(usize, String)> = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in c.text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or_default();
        for ch in l.chars() {
            if cur.trim().is_empty() && !ch.is_whitespace() {
                start = i + 1;
            }
            if ch == ';' {
                stmts.push((start, std::mem::take(&mut cur)));
            } else {
                cur.push(ch);
            }
        }
        cur.push(' ');
    }
    let gw = d.p.gateway.clone();
    for (line, s) in stmts {
        let w: Vec<&str> = s.split_whitespace().collect();
        match w.first().copied() {
            Some("spdadd") => {}
            Some("add") => {
                d.drop_key(Some(line), "add", &format!("{}: manual keys (setkey add) cannot be imported; Postern negotiates keys with IKE", c.origin));
                continue;
            }
            Some("flush" | "spdflush") | None => continue,
            Some(k) => {
                d.unknown(Some(line), k);
                continue;
            }
        }
        let dir = w
            .iter()
            .position(|x| *x == "-P")
            .and_then(|p| w.get(p + 1))
            .copied();
        let policy: Vec<&str> = w
            .iter()
            .skip_while(|x| **x != "ipsec")
            .skip(1)
            .copied()
            .collect();
        if w.len() < 4 || dir.is_none() {
            d.warn(
                Some(line),
                "spdadd",
                format!("{}: not a policy Postern can read", c.origin),
            );
            continue;
        }
        if dir != Some("out") {
            continue;
        }
        let mut ours = false;
        for p in &policy {
            let parts: Vec<&str> = p.split('/').collect();
            match parts.first().copied() {
                Some("ah") => d.drop_key(
                    Some(line),
                    "spdadd",
                    "AH is not supported: Postern protects traffic with ESP only",
                ),
                Some("esp") => {
                    if parts.get(1) == Some(&"transport") {
                        d.p.phase2.mode = EncapMode::Transport;
                        ours = true;
                    } else if let Some(ends) = parts.get(2) {
                        let peer = ends.rsplit('-').next().unwrap_or_default();
                        ours = peer == gw || ends.is_empty();
                        if !ours {
                            d.warn(
                                Some(line),
                                "spdadd",
                                format!("a tunnel to {peer}, not to this gateway: not used"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if !ours {
            continue;
        }
        let net = |v: &str| parse_subnet(v.split('[').next().unwrap_or(v));
        match (net(w[1]), net(w[2])) {
            (Some(src), Some(dst)) => {
                if d.p.phase2.mode == EncapMode::Tunnel {
                    if let (std::net::IpAddr::V4(a), 32) = (src.addr, src.prefix) {
                        // A /32 inner address: the "secondary address" of seed 004.
                        d.p.network.virtual_ip = Some(a);
                    } else if !d.p.phase2.local_networks.contains(&src) {
                        d.p.phase2.local_networks.push(src);
                    }
                    if !d.p.phase2.remote_networks.contains(&dst) {
                        d.p.phase2.remote_networks.push(dst);
                    }
                }
            }
            _ => d.warn(
                Some(line),
                "spdadd",
                format!("'{}' / '{}' are not networks", w[1], w[2]),
            ),
        }
    }
    let _ = Identity::Fqdn;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::import::{ImportOptions, import_str};

    /// Seed 002 (listing 4 + listing 3): racoon.conf with `sainfo anonymous` and an
    /// include of the per-peer file, as the article prints them.
    const SEED_002_RACOON: &str = "# Racoon IKE daemon configuration file.\n\n# See 'man racoon.conf' for a description of the format and entries.\n\npath include \"/etc/racoon\";\npath pre_shared_key \"/etc/racoon/psk.txt\";\npath certificate \"/etc/racoon/certs\";\n\nsainfo anonymous\n{\n  pfs_group 2;\n  lifetime time 1 hour ;\n  encryption_algorithm 3des, blowfish 448, rijndael ;\n  authentication_algorithm hmac_sha1, hmac_md5 ;\n  compression_algorithm deflate ;\n}\ninclude \"/etc/racoon/X.X.X.X.conf\"\n";
    const SEED_002_PEER: &str = ";\nremote X.X.X.X\n{\n    exchange_mode aggressive, main;\n    my_identifier address;\n    proposal {\n        encryption_algorithm 3des;\n        hash_algorithm sha1;\n        authentication_method pre_shared_key;\n        dh_group 2 ;\n    }\n}\n";

    #[test]
    fn seed_002_listings_import_as_given() {
        // The peer file is what the include names; `;` alone is an empty statement.
        let text = format!(
            "{SEED_002_RACOON}\n{}",
            SEED_002_PEER.trim_start_matches(";\n")
        );
        let v = import_str(&text, "racoon.conf", &[], &ImportOptions::default()).unwrap();
        let i = &v[0];
        assert_eq!(i.profile.gateway, "X.X.X.X");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Aggressive);
        assert_eq!(ike(i), ["3des-sha1-modp1024"]);
        assert_eq!(
            esp(i),
            [
                "3des-sha1-modp1024",
                "3des-md5-modp1024",
                "aes128-sha1-modp1024",
                "aes128-md5-modp1024"
            ]
        );
        assert_eq!(i.profile.phase2.lifetime.as_secs(), 3600);
        assert!(warned(i, "compression_algorithm"));
        assert!(warned(i, "encryption_algorithm"), "blowfish is named");
        assert_eq!(i.secrets_missing, ["psk"]);
        // The per-peer file alone imports too.
        let v = import_str(
            SEED_002_PEER,
            "X.X.X.X.conf",
            &[],
            &ImportOptions::default(),
        )
        .unwrap();
        assert_eq!(v[0].profile.gateway, "X.X.X.X");
    }

    #[test]
    fn seed_002_files_with_the_include_beside() {
        // The include names /etc/racoon/X.X.X.X.conf: the file of that name beside is read.
        let i = one("racoon_seed002.conf");
        assert_eq!(i.profile.gateway, "X.X.X.X");
        assert_eq!(ike(&i), ["3des-sha1-modp1024"]);
        assert!(
            !i.warnings.iter().any(|w| w.message.contains("not beside")),
            "{:?}",
            i.warnings
        );
    }

    /// Seed 004's listings as printed (the article lost the addresses and closing braces).
    const SEED_004_RACOON: &str = "# Практически все данные в разделах remote и sainfo берутся из первоначального шаблона## Мы рассмотрим простейший пример с PSK авторизацией\npath pre_shared_key \"/etc/racoon/psk.txt\";\nlog debug;\nlisten {\n# Указываем интерфейс, с которого будет строиться будущий ISAKMP туннель\n   isakmp [500];\n# В разделе remote перчислены настройки для первой фазы IPSec.# Это в некотором смысле аналог tunnel-group в ASA.# Вместо конкретного IP-адреса можно указать anonymous# Это будет означать возможность подключения к вам с любого адреса. # Так делаются присоединения типа user-network# remote anonymous\nremote {\n   nat_traversal off;\n   exchange_mode main;\n   my_identifier address;\n   proposal {\n      encryption_algorithm 3des;\n      hash_algorithm sha1;\n      authentication_method pre_shared_key;\n      dh_group modp1024;\n      lifetime time 86400 sec;\n# Вторая фаза IPSec. Аналог transform-set в ASA.## Предполагается, что для разных адресов взаимодействия# можно применять разные параметры шифрования второй фазы.# Конкретизация сервисов как раз указывается в первой строчке# sainfo address <src> address <dst># Скорее всего вам это не понадобится, вы будете писать первую строку так# sainfo anonymous \nsainfo address any address any {\n   pfs_group modp1024;\n   lifetime time 28800 sec;\n   encryption_algorithm 3des;\n   authentication_algorithm hmac_sha1;\n   compression_algorithm deflate;\n";

    #[test]
    fn seed_004_listing_as_printed_is_one_clear_error() {
        let e = import_str(
            SEED_004_RACOON,
            "racoon.conf",
            &[],
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("names no gateway address"), "{e}");
    }

    #[test]
    fn seed_004_listing_with_its_addresses_restored() {
        let text = SEED_004_RACOON.replace("remote {", "remote 203.0.113.9 {");
        let comp = [
            Companion { origin: "psk.txt".into(), text: "# Формат <REMOTE IP ADDR> <PASSWORD>\n203.0.113.9 SUPERPASSWORD\n".into() },
            Companion { origin: "ipsec-tools.conf".into(), text: "spdadd 10.8.0.5/32 172.16.0.0/16 any -P out ipsec\n   esp/tunnel/198.51.100.4-203.0.113.9/require;\nspdadd 172.16.0.0/16 10.8.0.5/32 any -P in ipsec\n   esp/tunnel/203.0.113.9-198.51.100.4/require;\n".into() },
        ];
        let v = import_str(&text, "racoon.conf", &comp, &ImportOptions::default()).unwrap();
        let i = &v[0];
        assert_eq!(i.profile.gateway, "203.0.113.9");
        assert_eq!(i.profile.exchange_mode, ExchangeMode::Main);
        assert_eq!(i.profile.network.nat_traversal, NatTraversal::Off);
        assert_eq!(i.profile.phase1.lifetime.as_secs(), 86400);
        assert_eq!(i.profile.phase2.lifetime.as_secs(), 28800);
        assert_eq!(esp(i), ["3des-sha1-modp1024"]);
        assert_eq!(secret(i, "psk"), Some("SUPERPASSWORD"));
        assert_eq!(
            i.profile.network.virtual_ip.unwrap().to_string(),
            "10.8.0.5"
        );
        assert_eq!(nets(&i.profile.phase2.remote_networks), ["172.16.0.0/16"]);
        assert_eq!(i.profile.network.mode_config, ModeConfig::Off);
        assert!(
            i.warnings
                .iter()
                .any(|w| w.key == "syntax" && w.message.contains("never closed")),
            "{:?}",
            i.warnings
        );
    }

    #[test]
    fn xauth_hybrid_and_several_remotes() {
        let v = import("racoon_two_remotes.conf");
        assert_eq!(
            v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["198.51.100.20", "vpn.example.org"]
        );
        let a = &v[0];
        assert_eq!(a.profile.auth.method, AuthMethod::Psk);
        assert_eq!(a.profile.xauth.as_ref().unwrap().username, "carol");
        assert_eq!(a.profile.network.mode_config, ModeConfig::Pull);
        assert_eq!(
            a.profile.auth.local_id.as_ref().unwrap().to_string(),
            "keyid:staff"
        );
        assert_eq!(ike(a), ["aes256-sha256-modp2048", "aes128-sha1-modp1024"]);
        assert_eq!(a.profile.network.dpd.unwrap().interval.as_secs(), 20);
        assert_eq!(a.profile.network.dpd.unwrap().timeout.as_secs(), 30);
        assert_eq!(secret(a, "psk"), Some("staff secret"));
        let b = &v[1];
        assert_eq!(b.profile.auth.method, AuthMethod::Hybrid);
        assert!(b.missing.iter().any(|m| m.key == "auth.ca"));
        assert!(warned(b, "sainfo"), "only the first sainfo is used");
    }

    #[test]
    fn anonymous_only_is_refused_with_its_line() {
        let e = import("racoon_crlf_latin1.conf");
        assert_eq!(e[0].profile.gateway, "192.0.2.77");
        assert_eq!(esp(&e[0]), ["aes256-sha256", "aes128-sha256"]);
        let x = import_str(
            "remote anonymous {\n exchange_mode main;\n}\n",
            "r.conf",
            &[],
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert_eq!(x.line, Some(1));
    }
}
