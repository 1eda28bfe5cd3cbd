//! Export: a profile as Postern TOML (without secrets), a Cisco `.pcf`, a
//! NetworkManager `.nmconnection` (libreswan plugin), a libreswan `ipsec.conf` conn, a
//! strongSwan `swanctl.conf` connection, or the partner parameter sheet (the
//! "technical conditions" table two organisations exchange before a tunnel is set up,
//! seed 004) as Markdown or CSV. IKEv2 profiles (`ike_version = 2`) are written as
//! IKEv2 (`ikev2=insist`, `version = 2`); the Cisco client has no IKEv2
//! ([`refusal`]).
//!
//! API: [`export`]`(&Profile, Format) -> String`; [`Format`] parses the CLI names
//! (`toml`, `pcf`, `nmconnection`, `ipsec.conf`, `swanctl.conf`, `sheet-md`,
//! `sheet-csv`). No secret is
//! ever written: PSK and passwords stay in the keyring (the formats that could hold
//! them get empty values or a comment saying where they go).

use std::fmt::Write as _;
use std::str::FromStr;

use postern_algs::algs::{DhGroup, EspCipher, EspProposal, IkeProposal};
use postern_dbus::profile::{
    AuthMethod, EncapMode, ExchangeMode, Identity, ModeConfig, NatTraversal, Profile,
};

/// What [`export`] can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Pcf,
    NmConnection,
    IpsecConf,
    Swanctl,
    SheetMd,
    SheetCsv,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Toml,
        Format::Pcf,
        Format::NmConnection,
        Format::IpsecConf,
        Format::Swanctl,
        Format::SheetMd,
        Format::SheetCsv,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Pcf => "pcf",
            Format::NmConnection => "nmconnection",
            Format::IpsecConf => "ipsec.conf",
            Format::Swanctl => "swanctl.conf",
            Format::SheetMd => "sheet-md",
            Format::SheetCsv => "sheet-csv",
        }
    }
    /// A file name extension for "Save as".
    pub fn extension(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Pcf => "pcf",
            Format::NmConnection => "nmconnection",
            Format::IpsecConf | Format::Swanctl => "conf",
            Format::SheetMd => "md",
            Format::SheetCsv => "csv",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "'{s}' is not an export format ({})",
                    Format::ALL.map(Format::as_str).join(", ")
                )
            })
    }
}

/// The profile in `format`, without secrets.
pub fn export(p: &Profile, format: Format) -> String {
    match format {
        Format::Toml => p.without_secrets().to_toml_string(),
        Format::Pcf => pcf(p),
        Format::NmConnection => nmconnection(p),
        Format::IpsecConf => ipsec_conf(p),
        Format::Swanctl => swanctl(p),
        Format::SheetMd => sheet_md(p),
        Format::SheetCsv => sheet_csv(p),
    }
}

/// Why `p` cannot be written as `format` (one sentence), or `None`: the Cisco VPN
/// Client speaks only IKEv1.
pub fn refusal(p: &Profile, format: Format) -> Option<String> {
    (format == Format::Pcf && p.ike_version == 2).then(|| {
        format!(
            "{} is an IKEv2 profile and the Cisco VPN Client (.pcf) speaks only IKEv1: export it as swanctl.conf, ipsec.conf or nmconnection",
            p.name
        )
    })
}

/// libreswan's spelling of a proposal (`aes256-sha2_256-modp2048`, `aes_gcm128`).
fn swan_ike(p: &IkeProposal) -> String {
    libreswan_names(&p.to_string())
}

fn swan_esp(p: &EspProposal, pfs: Option<DhGroup>) -> String {
    let mut q = *p;
    if q.group.is_none() {
        q.group = pfs;
    }
    let s = match q.cipher {
        EspCipher::AesGcm16 { key_bits } => {
            let mut s = format!("aes_gcm{key_bits}");
            if let Some(g) = q.group {
                let _ = write!(s, "-{}", libreswan_names(g.name()));
            }
            return s;
        }
        _ => q.to_string(),
    };
    libreswan_names(&s)
}

/// Also the IKEv2-only tokens: the PRF of an AEAD proposal (`prfsha384` →
/// `sha2_384`), `aes256gcm16` → `aes_gcm256` (`aes_gcm_a`/`_b` for the 8/12 octet
/// ICV), `chacha20poly1305` → `chacha20_poly1305`, `curve25519` → `dh31`.
fn libreswan_names(s: &str) -> String {
    s.split('-')
        .map(|t| {
            let t = t.strip_prefix("prf").unwrap_or(t);
            match t {
                "sha256" => "sha2_256".into(),
                "sha384" => "sha2_384".into(),
                "sha512" => "sha2_512".into(),
                "chacha20poly1305" => "chacha20_poly1305".into(),
                "curve25519" => "dh31".into(),
                t => match t.strip_prefix("aes").and_then(|r| r.split_once("gcm")) {
                    Some((bits, "16")) => format!("aes_gcm{bits}"),
                    Some((bits, "12")) => format!("aes_gcm_b{bits}"),
                    Some((bits, "8")) => format!("aes_gcm_a{bits}"),
                    _ => t.to_string(),
                },
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An identity in ipsec.conf syntax (`@fqdn`, `@[keyid]`, `@#hex`, address, DN).
fn swan_id(id: &Identity) -> String {
    match id {
        Identity::Address(a) => a.to_string(),
        Identity::Fqdn(f) => format!("@{f}"),
        Identity::UserFqdn(u) => u.clone(),
        Identity::Dn(d) => format!("\"{d}\""),
        Identity::KeyId(k) => match std::str::from_utf8(k) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic() && c != ']') => format!("@[{s}]"),
            _ => format!(
                "@#{}",
                k.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        },
    }
}

fn secs(d: std::time::Duration) -> u64 {
    d.as_secs()
}

fn networks(v: &[postern_dbus::profile::Subnet]) -> String {
    v.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn pcf(p: &Profile) -> String {
    let mut o = String::new();
    let auth_type = match p.auth.method {
        AuthMethod::Psk => 1,
        AuthMethod::RsaSig | AuthMethod::EapTls => 3,
        AuthMethod::Hybrid => 5,
    };
    let group = match &p.auth.local_id {
        Some(Identity::KeyId(k)) => String::from_utf8_lossy(k).to_string(),
        _ => String::new(),
    };
    let lines = [
        ("Description", p.name.clone()),
        ("Host", p.gateway.clone()),
        ("AuthType", auth_type.to_string()),
        ("GroupName", group),
        ("GroupPwd", String::new()),
        ("EnableISPConnect", "0".into()),
        (
            "Username",
            p.xauth
                .as_ref()
                .map(|x| x.username.clone())
                .unwrap_or_default(),
        ),
        ("SaveUserPassword", "0".into()),
        ("EnableBackup", "0".into()),
        (
            "EnableNat",
            if p.network.nat_traversal == NatTraversal::Off {
                "0"
            } else {
                "1"
            }
            .into(),
        ),
        ("TunnelingMode", "0".into()),
        (
            "CertStore",
            if p.auth.method == AuthMethod::RsaSig {
                "1"
            } else {
                "0"
            }
            .into(),
        ),
        (
            "PeerTimeout",
            p.network.dpd.map_or(0, |d| secs(d.timeout)).to_string(),
        ),
        ("EnableLocalLAN", "0".into()),
        (
            "DHGroup",
            p.phase1
                .proposals
                .first()
                .map_or(2, |g| g.group.ike_id())
                .to_string(),
        ),
    ];
    o.push_str("[main]\r\n");
    for (k, v) in lines {
        let _ = write!(o, "{k}={v}\r\n");
    }
    o
}

/// The conn body shared by ipsec.conf and the NetworkManager libreswan keyfile.
fn libreswan_keys(p: &Profile) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = Vec::new();
    let v2 = p.ike_version == 2;
    v.push(("ikev2", if v2 { "insist" } else { "never" }.into()));
    v.push(("right", p.gateway.clone()));
    if let Some(id) = &p.auth.remote_id {
        v.push(("rightid", swan_id(id)));
    }
    if let Some(id) = &p.auth.local_id {
        v.push(("leftid", swan_id(id)));
    }
    v.push((
        "authby",
        match p.auth.method {
            AuthMethod::Psk => "secret",
            AuthMethod::RsaSig | AuthMethod::Hybrid | AuthMethod::EapTls => "rsasig",
        }
        .into(),
    ));
    if !v2 {
        v.push((
            "aggrmode",
            if p.exchange_mode == ExchangeMode::Aggressive {
                "yes"
            } else {
                "no"
            }
            .into(),
        ));
    }
    // libreswan has no EAP client for IKEv2's user login: left out (a comment says so).
    if let Some(x) = p.xauth.as_ref().filter(|_| !v2) {
        v.push(("leftxauthclient", "yes".into()));
        v.push(("leftusername", x.username.clone()));
    }
    if p.network.mode_config != ModeConfig::Off {
        v.push(("leftmodecfgclient", "yes".into()));
        v.push((
            "modecfgpull",
            if p.network.mode_config == ModeConfig::Pull {
                "yes"
            } else {
                "no"
            }
            .into(),
        ));
    }
    if let Some(ip) = p.network.virtual_ip {
        v.push(("leftsourceip", ip.to_string()));
    }
    v.push((
        "ike",
        p.phase1
            .proposals
            .iter()
            .map(swan_ike)
            .collect::<Vec<_>>()
            .join(","),
    ));
    v.push((
        "esp",
        p.phase2
            .proposals
            .iter()
            .map(|e| swan_esp(e, p.phase2.pfs))
            .collect::<Vec<_>>()
            .join(","),
    ));
    if p.phase2.pfs.is_none() && p.phase2.proposals.iter().all(|e| e.group.is_none()) {
        v.push(("pfs", "no".into()));
    }
    v.push(("ikelifetime", format!("{}s", secs(p.phase1.lifetime))));
    v.push(("salifetime", format!("{}s", secs(p.phase2.lifetime))));
    if !p.phase2.remote_networks.is_empty() {
        v.push((
            "rightsubnets",
            format!(
                "{{{}}}",
                p.phase2
                    .remote_networks
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    if !p.phase2.local_networks.is_empty() {
        v.push((
            "leftsubnets",
            format!(
                "{{{}}}",
                p.phase2
                    .local_networks
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    if p.phase2.mode == EncapMode::Transport {
        v.push(("type", "transport".into()));
    }
    if let Some(d) = p.network.dpd {
        v.push(("dpddelay", secs(d.interval).to_string()));
        v.push(("dpdtimeout", secs(d.timeout).to_string()));
        v.push((
            "dpdaction",
            if p.network.reconnect {
                "restart"
            } else {
                "clear"
            }
            .into(),
        ));
    }
    match p.network.nat_traversal {
        NatTraversal::Force => v.push(("encapsulation", "yes".into())),
        NatTraversal::Off => v.push(("encapsulation", "no".into())),
        NatTraversal::Auto => {}
    }
    if let Some(c) = &p.auth.cert {
        v.push(("leftcert", c.clone()));
    }
    v
}

fn ipsec_conf(p: &Profile) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# {} - exported by Postern for libreswan (ipsec.conf)",
        p.name.replace('\n', " ")
    );
    match p.auth.method {
        AuthMethod::Psk => {
            let _ = writeln!(
                o,
                "# The pre-shared key goes in ipsec.secrets: {} {} : PSK \"...\"",
                p.auth.local_id.as_ref().map_or("%any".to_string(), swan_id),
                p.gateway
            );
        }
        AuthMethod::Hybrid => {
            let _ = writeln!(
                o,
                "# Postern's hybrid mode (gateway certificate + XAuth) has no libreswan equivalent: written as rsasig"
            );
        }
        AuthMethod::EapTls => {
            let _ = writeln!(
                o,
                "# The profile's EAP-TLS login has no libreswan client equivalent: written as rsasig (our certificate in IKE AUTH)"
            );
        }
        AuthMethod::RsaSig => {}
    }
    if p.ike_version == 2 && p.xauth.is_some() {
        let _ = writeln!(
            o,
            "# The profile's IKEv2 user login (EAP) has no libreswan client equivalent: not written"
        );
    } else if p.xauth.is_some() {
        let _ = writeln!(
            o,
            "# The XAuth password goes in ipsec.secrets: @{} : XAUTH \"...\"",
            p.xauth
                .as_ref()
                .map(|x| x.username.as_str())
                .unwrap_or_default()
        );
    }
    let name: String = p
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let _ = writeln!(o, "conn {name}");
    let _ = writeln!(o, "    left=%defaultroute");
    for (k, v) in libreswan_keys(p) {
        let _ = writeln!(o, "    {k}={v}");
    }
    if p.xauth.is_some() && p.ike_version == 1 {
        let _ = writeln!(o, "    rightxauthserver=yes");
    }
    if p.network.mode_config != ModeConfig::Off {
        let _ = writeln!(o, "    rightmodecfgserver=yes");
    }
    let _ = writeln!(o, "    auto=add");
    o
}

/// An identity in swanctl.conf syntax (typed: `fqdn:`, `email:`, `keyid:`...).
fn swanctl_id(id: &Identity) -> String {
    match id {
        Identity::Address(a) => a.to_string(),
        Identity::Fqdn(f) => format!("fqdn:{f}"),
        Identity::UserFqdn(u) => format!("email:{u}"),
        Identity::Dn(d) => format!("\"{}\"", d.replace('"', "")),
        Identity::KeyId(k) => match std::str::from_utf8(k) {
            Ok(s)
                if s.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '#') =>
            {
                format!("keyid:{s}")
            }
            _ => format!(
                "keyid:#{}",
                k.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        },
    }
}

/// A name swanctl.conf takes for a section: letters, digits, `-`, `_`.
fn section_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if n.is_empty() { "postern".into() } else { n }
}

/// The file name of a path (swanctl looks certificates up in its own directories).
fn base_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or(path.to_string(), |n| n.to_string_lossy().to_string())
}

/// A strongSwan `swanctl.conf` connection (`version = 1` or `2`) for a client.
fn swanctl(p: &Profile) -> String {
    let mut o = String::new();
    let name = section_name(&p.name);
    let v2 = p.ike_version == 2;
    let _ = writeln!(
        o,
        "# {} - exported by Postern for strongSwan (swanctl.conf)",
        p.name.replace('\n', " ")
    );
    let _ = writeln!(o, "connections {{\n    {name} {{");
    let _ = writeln!(o, "        version = {}", if v2 { 2 } else { 1 });
    if !v2 && p.exchange_mode == ExchangeMode::Aggressive {
        let _ = writeln!(o, "        aggressive = yes");
    }
    let _ = writeln!(o, "        remote_addrs = {}", p.gateway);
    let ike: Vec<String> = p.phase1.proposals.iter().map(|x| x.to_string()).collect();
    let _ = writeln!(o, "        proposals = {}", ike.join(", "));
    let _ = writeln!(o, "        rekey_time = {}s", secs(p.phase1.lifetime));
    // Asking for an address (a given one, or any); a fixed inner address without
    // Mode Config is our traffic selector instead (below).
    if p.network.mode_config != ModeConfig::Off {
        let ip = p
            .network
            .virtual_ip
            .map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        let _ = writeln!(o, "        vips = {ip}");
    }
    if !v2 && p.network.mode_config == ModeConfig::Push {
        let _ = writeln!(o, "        pull = no");
    }
    if p.network.nat_traversal == NatTraversal::Force {
        let _ = writeln!(o, "        encap = yes");
    }
    match p.network.dpd {
        Some(d) => {
            let _ = writeln!(o, "        dpd_delay = {}s", secs(d.interval));
            if !v2 {
                let _ = writeln!(o, "        dpd_timeout = {}s", secs(d.timeout));
            }
        }
        None => {
            let _ = writeln!(o, "        dpd_delay = 0s");
        }
    }
    // Our rounds: the first says how we authenticate, a second one is the login.
    let login = p.xauth.as_ref().map(|x| x.username.as_str());
    let first = match (p.auth.method, login, v2) {
        (AuthMethod::Psk, _, false) | (AuthMethod::Psk, None, true) => "psk",
        (AuthMethod::RsaSig, _, _) => "pubkey",
        // Our certificate inside EAP-TLS (IKEv2 only).
        (AuthMethod::EapTls, _, _) => "eap-tls",
        (AuthMethod::Hybrid, _, false) => "xauth",
        // IKEv2: the user's EAP login is our only round against the gateway.
        (AuthMethod::Hybrid | AuthMethod::Psk, _, true) => "eap",
    };
    let _ = writeln!(o, "        local-1 {{\n            auth = {first}");
    if let Some(id) = &p.auth.local_id {
        let _ = writeln!(o, "            id = {}", swanctl_id(id));
    }
    if let Some(c) = &p.auth.cert {
        let _ = writeln!(o, "            certs = {}", base_name(c));
    }
    if let Some(u) = login {
        match first {
            "eap" => {
                let _ = writeln!(o, "            eap_id = {u}");
            }
            "xauth" => {
                let _ = writeln!(o, "            xauth_id = {u}");
            }
            _ => {}
        }
    }
    let _ = writeln!(o, "        }}");
    if let Some(u) = login
        && (first == "psk" || first == "pubkey")
    {
        let (auth, key) = if v2 {
            ("eap", "eap_id")
        } else {
            ("xauth", "xauth_id")
        };
        let _ = writeln!(
            o,
            "        local-2 {{\n            auth = {auth}\n            {key} = {u}\n        }}"
        );
    }
    let remote = match p.auth.method {
        AuthMethod::Psk => "psk",
        AuthMethod::RsaSig | AuthMethod::Hybrid | AuthMethod::EapTls => "pubkey",
    };
    let _ = writeln!(o, "        remote {{\n            auth = {remote}");
    if let Some(id) = &p.auth.remote_id {
        let _ = writeln!(o, "            id = {}", swanctl_id(id));
    }
    if let Some(c) = &p.auth.ca {
        let _ = writeln!(o, "            cacerts = {}", base_name(c));
    }
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "        children {{\n            {name} {{");
    if !p.phase2.remote_networks.is_empty() {
        let _ = writeln!(
            o,
            "                remote_ts = {}",
            networks(&p.phase2.remote_networks).replace(',', ", ")
        );
    }
    if !p.phase2.local_networks.is_empty() {
        let _ = writeln!(
            o,
            "                local_ts = {}",
            networks(&p.phase2.local_networks).replace(',', ", ")
        );
    } else if let Some(ip) = p
        .network
        .virtual_ip
        .filter(|_| p.network.mode_config == ModeConfig::Off)
    {
        let _ = writeln!(o, "                local_ts = {ip}/32");
    }
    let esp: Vec<String> = p
        .phase2
        .proposals
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.group.is_none() {
                e.group = p.phase2.pfs;
            }
            e.to_string()
        })
        .collect();
    let _ = writeln!(o, "                esp_proposals = {}", esp.join(", "));
    let _ = writeln!(
        o,
        "                rekey_time = {}s",
        secs(p.phase2.lifetime)
    );
    if p.phase2.mode == EncapMode::Transport {
        let _ = writeln!(o, "                mode = transport");
    }
    if p.network.dpd.is_some() {
        let _ = writeln!(
            o,
            "                dpd_action = {}",
            if p.network.reconnect {
                "restart"
            } else {
                "clear"
            }
        );
    }
    let _ = writeln!(o, "            }}\n        }}\n    }}\n}}");
    // Where the secrets go, never what they are.
    let _ = writeln!(o, "\n# secrets {{");
    match p.auth.method {
        AuthMethod::Psk => {
            let _ = writeln!(
                o,
                "#     ike-{name} {{ secret = \"...\" }}   (the pre-shared key)"
            );
        }
        AuthMethod::RsaSig | AuthMethod::EapTls => {
            let _ = writeln!(o, "#     (the private key goes in swanctl/private/)");
        }
        AuthMethod::Hybrid => {}
    }
    if let Some(u) = login {
        let kind = if v2 { "eap" } else { "xauth" };
        let _ = writeln!(
            o,
            "#     {kind}-{name} {{ id = {u}; secret = \"...\" }}   (the user's password)"
        );
    }
    let _ = writeln!(o, "# }}");
    o
}

/// A stable UUID-shaped id from the name (NetworkManager wants one per connection).
fn uuid_for(name: &str) -> String {
    use sha1::{Digest, Sha1};
    let h = Sha1::digest(format!("postern:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn keyfile_escape(s: &str) -> String {
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        match c {
            ' ' if i == 0 => o.push_str("\\s"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            '\\' => o.push_str("\\\\"),
            c => o.push(c),
        }
    }
    o
}

fn nmconnection(p: &Profile) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "[connection]\nid={}\nuuid={}\ntype=vpn\nautoconnect=false\n",
        keyfile_escape(&p.name),
        uuid_for(&p.name)
    );
    let _ = writeln!(
        o,
        "[vpn]\nservice-type=org.freedesktop.NetworkManager.libreswan"
    );
    for (k, v) in libreswan_keys(p) {
        // The plugin's own key names for the XAuth user and ESP.
        let k = match k {
            "leftusername" => "leftxauthusername",
            k => k,
        };
        if matches!(k, "leftxauthclient" | "modecfgpull") {
            continue;
        }
        let _ = writeln!(o, "{k}={}", keyfile_escape(&v));
    }
    if p.auth.method == AuthMethod::Psk {
        let _ = writeln!(o, "pskvalue-flags=1");
    }
    if p.xauth.is_some() && p.ike_version == 1 {
        let _ = writeln!(o, "xauthpassword-flags=1");
    }
    let _ = writeln!(o, "\n[ipv4]\nmethod=auto");
    if !p.phase2.remote_networks.is_empty() {
        let _ = writeln!(o, "never-default=true");
    }
    let _ = writeln!(o, "\n[ipv6]\nmethod=ignore");
    o
}

/// The sheet's rows: (section, parameter, our side, partner side).
/// One row of the partner sheet: its section, its parameter, and how our side's and
/// the partner's cells are filled from the profile (empty where the partner fills it in).
struct SheetRow {
    section: &'static str,
    label: &'static str,
    ours: fn(&Profile) -> String,
    partner: fn(&Profile) -> String,
}

const fn row(
    section: &'static str,
    label: &'static str,
    ours: fn(&Profile) -> String,
    partner: fn(&Profile) -> String,
) -> SheetRow {
    SheetRow {
        section,
        label,
        ours,
        partner,
    }
}

fn blank(_: &Profile) -> String {
    String::new()
}

const SHEET: &[SheetRow] = &[
    row("General", "Organisation", blank, blank),
    row(
        "General",
        "Technical contact (name, e-mail, phone)",
        blank,
        blank,
    ),
    row(
        "General",
        "VPN device (vendor, model, software)",
        |p| format!("Postern (Linux, IKEv{})", p.ike_version),
        blank,
    ),
    row("Peers", "Public IP address of the VPN peer", blank, |p| {
        p.gateway.clone()
    }),
    row(
        "Peers",
        "IKE identity",
        |p| identity(&p.auth.local_id),
        |p| identity(&p.auth.remote_id),
    ),
    row(
        "Encryption domain",
        "Networks / hosts inside the tunnel",
        our_networks,
        |p| networks(&p.phase2.remote_networks),
    ),
    row(
        "Phase 1 (IKE)",
        "IKE version",
        |p| format!("IKEv{}", p.ike_version),
        blank,
    ),
    row(
        "Phase 1 (IKE)",
        "Exchange mode",
        |p| {
            if p.ike_version == 2 {
                "IKE_SA_INIT + IKE_AUTH".into()
            } else {
                p.exchange_mode.as_str().into()
            }
        },
        blank,
    ),
    row("Phase 1 (IKE)", "Authentication", authentication, blank),
    row(
        "Phase 1 (IKE)",
        "Encryption",
        |p| {
            distinct(
                p.phase1
                    .proposals
                    .iter()
                    .map(|x| x.cipher.name().to_string()),
            )
        },
        blank,
    ),
    row(
        "Phase 1 (IKE)",
        "Hash / integrity",
        |p| distinct(p.phase1.proposals.iter().map(|x| x.hash.name().to_string())),
        blank,
    ),
    row(
        "Phase 1 (IKE)",
        "Diffie-Hellman group",
        |p| distinct(p.phase1.proposals.iter().map(|x| group(x.group))),
        blank,
    ),
    row(
        "Phase 1 (IKE)",
        "Lifetime",
        |p| format!("{} s", secs(p.phase1.lifetime)),
        blank,
    ),
    row("Phase 2 (IPsec)", "Protocol", |_| "ESP".into(), blank),
    row(
        "Phase 2 (IPsec)",
        "Mode",
        |p| p.phase2.mode.as_str().into(),
        blank,
    ),
    row(
        "Phase 2 (IPsec)",
        "Encryption",
        |p| {
            distinct(
                p.phase2
                    .proposals
                    .iter()
                    .map(|e| e.cipher.name().to_string()),
            )
        },
        blank,
    ),
    row(
        "Phase 2 (IPsec)",
        "Integrity",
        |p| {
            distinct(p.phase2.proposals.iter().map(|e| {
                e.auth
                    .map_or("(AEAD)".to_string(), |a| a.name().to_string())
            }))
        },
        blank,
    ),
    row("Phase 2 (IPsec)", "PFS group", pfs_groups, blank),
    row("Phase 2 (IPsec)", "Lifetime", phase2_lifetime, blank),
    row("Options", "NAT traversal", nat_traversal, blank),
    row("Options", "Dead peer detection", dead_peer_detection, blank),
    row(
        "Options",
        "XAuth / Mode Config",
        |p| {
            let xauth = match (p.xauth.is_some(), p.ike_version) {
                (true, 2) => "EAP",
                (true, _) => "yes",
                (false, _) => "no",
            };
            format!("{xauth} / {}", p.network.mode_config.as_str())
        },
        blank,
    ),
];

fn sheet_rows(p: &Profile) -> Vec<(&'static str, &'static str, String, String)> {
    SHEET
        .iter()
        .map(|r| (r.section, r.label, (r.ours)(p), (r.partner)(p)))
        .collect()
}

fn identity(i: &Option<Identity>) -> String {
    i.as_ref().map(|i| i.to_string()).unwrap_or_default()
}

/// The values once each, in their first order, comma separated.
fn distinct(values: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for v in values {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(", ")
}

fn group(g: DhGroup) -> String {
    format!("{} (group {})", g.name(), g.ike_id())
}

fn our_networks(p: &Profile) -> String {
    if !p.phase2.local_networks.is_empty() {
        networks(&p.phase2.local_networks)
    } else if let Some(v) = p.network.virtual_ip {
        format!("{v}/32")
    } else if p.network.mode_config != ModeConfig::Off {
        "(address assigned by the gateway)".into()
    } else {
        String::new()
    }
}

fn authentication(p: &Profile) -> String {
    match p.auth.method {
        AuthMethod::Psk => "pre-shared key (sent separately)",
        AuthMethod::RsaSig => "RSA signatures (X.509)",
        AuthMethod::Hybrid if p.ike_version == 2 => "gateway certificate + EAP user login",
        AuthMethod::Hybrid => "hybrid (gateway certificate + XAuth)",
        AuthMethod::EapTls => "gateway certificate + EAP-TLS with our certificate (X.509)",
    }
    .into()
}

fn pfs_groups(p: &Profile) -> String {
    let groups = distinct(
        p.phase2
            .proposals
            .iter()
            .filter_map(|e| e.group.or(p.phase2.pfs))
            .map(group),
    );
    if groups.is_empty() {
        "none".to_string()
    } else {
        groups
    }
}

fn phase2_lifetime(p: &Profile) -> String {
    let kb = p.phase2.lifetime_kb.map(|k| format!(" / {k} KB"));
    format!("{} s{}", secs(p.phase2.lifetime), kb.unwrap_or_default())
}

fn nat_traversal(p: &Profile) -> String {
    match p.network.nat_traversal {
        NatTraversal::Auto if p.ike_version == 2 => "yes (RFC 7296, when NAT is detected)",
        NatTraversal::Auto => "yes (RFC 3947, when NAT is detected)",
        NatTraversal::Force => "yes, always (UDP 4500)",
        NatTraversal::Off => "no",
    }
    .into()
}

fn dead_peer_detection(p: &Profile) -> String {
    p.network.dpd.map_or("no".to_string(), |d| {
        format!(
            "yes, every {} s, {} s timeout",
            secs(d.interval),
            secs(d.timeout)
        )
    })
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn sheet_md(p: &Profile) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# IPsec VPN parameters: {}\n", md_cell(&p.name));
    let _ = writeln!(
        o,
        "Filled in from the Postern profile; the partner fills in the empty cells. Keys and passwords are exchanged separately, never in this sheet.\n"
    );
    let _ = writeln!(o, "| Section | Parameter | Our side | Partner side |");
    let _ = writeln!(o, "|---|---|---|---|");
    for (s, k, a, b) in sheet_rows(p) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            md_cell(s),
            md_cell(k),
            md_cell(&a),
            md_cell(&b)
        );
    }
    o
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn sheet_csv(p: &Profile) -> String {
    let mut o = String::from("Section,Parameter,Our side,Partner side\r\n");
    for (s, k, a, b) in sheet_rows(p) {
        let _ = write!(
            o,
            "{},{},{},{}\r\n",
            csv_cell(s),
            csv_cell(k),
            csv_cell(&a),
            csv_cell(&b)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Companion, ImportOptions, Imported, import_file, import_str};
    use postern_dbus::profile::SecretPolicy;
    use std::path::Path;

    fn fixture(name: &str) -> Imported {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/import")
            .join(name);
        import_file(&p, &ImportOptions::default())
            .unwrap()
            .remove(0)
    }

    fn reimport(text: &str, origin: &str) -> Profile {
        import_str(text, origin, &[], &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .remove(0)
            .profile
    }

    fn effective_esp(p: &Profile) -> Vec<String> {
        p.phase2
            .proposals
            .iter()
            .map(|e| {
                let mut e = *e;
                if e.group.is_none() {
                    e.group = p.phase2.pfs;
                }
                e.to_string()
            })
            .collect()
    }

    /// What ipsec.conf / nmconnection carry must come back unchanged.
    fn same_libreswan_view(a: &Profile, b: &Profile, text: &str) {
        assert_eq!(a.gateway, b.gateway, "{text}");
        assert_eq!(a.exchange_mode, b.exchange_mode, "{text}");
        assert_eq!(
            a.auth.method == AuthMethod::Psk,
            b.auth.method == AuthMethod::Psk,
            "{text}"
        );
        assert_eq!(a.auth.local_id, b.auth.local_id, "{text}");
        assert_eq!(a.auth.remote_id, b.auth.remote_id, "{text}");
        assert_eq!(
            a.xauth.as_ref().map(|x| &x.username),
            b.xauth.as_ref().map(|x| &x.username),
            "{text}"
        );
        assert_eq!(a.phase1, b.phase1, "{text}");
        assert_eq!(effective_esp(a), effective_esp(b), "{text}");
        assert_eq!(a.phase2.lifetime, b.phase2.lifetime, "{text}");
        assert_eq!(a.phase2.mode, b.phase2.mode, "{text}");
        assert_eq!(a.phase2.remote_networks, b.phase2.remote_networks, "{text}");
        assert_eq!(a.network.mode_config, b.network.mode_config, "{text}");
        assert_eq!(a.network.dpd, b.network.dpd, "{text}");
        assert_eq!(a.network.virtual_ip, b.network.virtual_ip, "{text}");
    }

    const SAMPLES: [&str; 8] = [
        "ipsecconf_libreswan_xauth.conf",
        "ipsecconf_strongswan_also.conf",
        "swanctl_two_conns.conf",
        "racoon_two_remotes.conf",
        "ifcfg-ipsec7",
        "nm_libreswan_xauth.nmconnection",
        "shrew_office.vpn",
        "pcf_group_crlf_latin1.pcf",
    ];

    #[test]
    fn toml_round_trips_exactly_and_has_no_secrets() {
        for f in SAMPLES {
            let i = fixture(f);
            let t = export(&i.profile, Format::Toml);
            let back = Profile::from_toml_str(&t, f, SecretPolicy::Forbid).unwrap();
            assert_eq!(back, i.profile.without_secrets(), "{f}");
            for s in i.secrets.values() {
                assert!(!t.contains(s.expose()), "{f}: secret in export");
            }
        }
    }

    #[test]
    fn ipsec_conf_and_nmconnection_round_trip() {
        for f in SAMPLES {
            let p = fixture(f).profile;
            for (fmt, origin) in [
                (Format::IpsecConf, "x.conf"),
                (Format::NmConnection, "x.nmconnection"),
            ] {
                let text = export(&p, fmt);
                let back = reimport(&text, origin);
                same_libreswan_view(&p, &back, &text);
            }
        }
    }

    /// IKEv2 profiles from each importer that makes them.
    const V2_SAMPLES: [&str; 3] = [
        "swanctl_ikev2.conf",
        "nm_strongswan_psk.nmconnection",
        "nm_libreswan_ikev2.nmconnection",
    ];

    /// What swanctl.conf carries must come back unchanged.
    fn same_swanctl_view(a: &Profile, b: &Profile, text: &str) {
        assert_eq!(a.ike_version, b.ike_version, "{text}");
        assert_eq!(a.auth.method, b.auth.method, "{text}");
        same_libreswan_view(a, b, text);
        assert_eq!(a.phase1.lifetime, b.phase1.lifetime, "{text}");
        assert_eq!(a.network.nat_traversal, b.network.nat_traversal, "{text}");
        assert_eq!(a.network.reconnect, b.network.reconnect, "{text}");
    }

    #[test]
    fn swanctl_round_trips_ikev1_and_ikev2_profiles() {
        for f in SAMPLES.iter().chain(V2_SAMPLES.iter()) {
            let p = fixture(f).profile;
            let text = export(&p, Format::Swanctl);
            let want = format!("        version = {}\n", p.ike_version);
            assert!(text.contains(&want), "{f}: {text}");
            let back = reimport(&text, "x.conf");
            // IKEv2 has no dpd_timeout: only the interval comes back.
            let mut p = p;
            if p.ike_version == 2
                && let (Some(a), Some(b)) = (&mut p.network.dpd, back.network.dpd)
            {
                a.timeout = b.timeout;
            }
            same_swanctl_view(&p, &back, &text);
        }
    }

    #[test]
    fn swanctl_writes_and_reads_back_eap_tls() {
        let mut p = fixture("nm_strongswan_psk.nmconnection").profile;
        p.auth.method = AuthMethod::EapTls;
        p.auth.psk = None;
        p.auth.ca = Some("/etc/vpn/ca.pem".into());
        p.auth.cert = Some("/etc/vpn/me.pem".into());
        p.auth.key = Some("/etc/vpn/me.key".into());
        let text = export(&p, Format::Swanctl);
        assert!(
            text.contains("local-1 {\n            auth = eap-tls"),
            "{text}"
        );
        assert!(
            text.contains("remote {\n            auth = pubkey"),
            "{text}"
        );
        let back = reimport(&text, "x.conf");
        assert_eq!(back.auth.method, AuthMethod::EapTls, "{text}");
        assert_eq!(back.ike_version, 2, "{text}");
        assert!(back.xauth.is_none(), "{text}");
    }

    #[test]
    fn ikev2_profiles_are_written_as_ikev2() {
        for f in V2_SAMPLES {
            let p = fixture(f).profile;
            assert_eq!(p.ike_version, 2, "{f}");
            for (fmt, origin) in [
                (Format::IpsecConf, "x.conf"),
                (Format::NmConnection, "x.nmconnection"),
            ] {
                let text = export(&p, fmt);
                assert!(text.contains("ikev2=insist"), "{f}: {text}");
                assert!(!text.contains("aggrmode"), "{f}: {text}");
                let back = reimport(&text, origin);
                assert_eq!(back.ike_version, 2, "{f}: {text}");
                same_libreswan_view(&p, &back, &text);
            }
            let md = export(&p, Format::SheetMd);
            assert!(
                md.contains("| Phase 1 (IKE) | IKE version | IKEv2 |  |"),
                "{md}"
            );
            assert!(md.contains("IKE_SA_INIT + IKE_AUTH"), "{md}");
            let why = refusal(&p, Format::Pcf).unwrap();
            assert!(why.contains("IKEv2") && why.contains(".pcf"), "{why}");
            assert_eq!(refusal(&p, Format::Swanctl), None);
        }
        let v1 = fixture("pcf_group_crlf_latin1.pcf").profile;
        assert_eq!(refusal(&v1, Format::Pcf), None);
        assert!(
            export(&v1, Format::SheetMd).contains("| Phase 1 (IKE) | IKE version | IKEv1 |  |")
        );
    }

    #[test]
    fn pcf_round_trips_what_it_carries() {
        let p = fixture("pcf_group_crlf_latin1.pcf").profile;
        let text = export(&p, Format::Pcf);
        assert!(text.contains("\r\n"));
        let back = reimport(&text, "x.pcf");
        assert_eq!(back.name, p.name);
        assert_eq!(back.gateway, p.gateway);
        assert_eq!(back.auth, p.auth);
        assert_eq!(back.exchange_mode, p.exchange_mode);
        assert_eq!(back.xauth, p.xauth);
        assert_eq!(back.phase1.proposals, p.phase1.proposals);
        assert_eq!(
            back.network.dpd.map(|d| d.timeout),
            p.network.dpd.map(|d| d.timeout)
        );
        assert_eq!(back.network.nat_traversal, p.network.nat_traversal);
    }

    #[test]
    fn sheet_is_filled_from_the_profile_and_blank_for_the_partner() {
        let p = fixture("racoon_two_remotes.conf").profile;
        let md = export(&p, Format::SheetMd);
        assert!(
            md.contains("| Peers | Public IP address of the VPN peer |  | 198.51.100.20 |"),
            "{md}"
        );
        assert!(md.contains("| Phase 1 (IKE) | Diffie-Hellman group | modp2048 (group 14), modp1024 (group 2) |  |"), "{md}");
        assert!(
            md.contains("| Phase 2 (IPsec) | PFS group | modp2048 (group 14) |  |"),
            "{md}"
        );
        assert!(md.contains("| Encryption domain | Networks / hosts inside the tunnel | 10.0.0.0/8 | 192.168.0.0/16 |"), "{md}");
        let csv = export(&p, Format::SheetCsv);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(
            rows.len(),
            md.lines()
                .filter(|l| l.starts_with("| ") && !l.starts_with("| Section"))
                .count()
                + 1
        );
        assert!(csv.contains("Phase 1 (IKE),Diffie-Hellman group,\"modp2048 (group 14), modp1024 (group 2)\",\r\n"), "{csv}");
        assert!(csv.contains("General,Organisation,,\r\n"));
    }

    #[test]
    fn formats_parse_by_their_cli_names() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!("docx".parse::<Format>().is_err());
        let _ = Companion {
            origin: String::new(),
            text: String::new(),
        };
    }
}
