//! Contract 1: the profile, one TOML file per VPN connection.
//!
//! [`Profile::from_toml_str`] parses and validates; every refusal is a [`ProfileError`]
//! that names the file, the line and the key (`office.toml:12: phase1.proposals[1]:
//! unknown algorithm 'aes999' in 'aes999-sha1-modp1024'`), including TOML syntax
//! errors and unknown keys.
//!
//! Secrets (`auth.psk`, `auth.key_passphrase`, `xauth.password`) normally live in the user's keyring, not in
//! the file: [`SecretPolicy::Forbid`] refuses them. Only `postern-helper up` reads
//! root-owned files that may carry them ([`SecretPolicy::AllowIfPrivate`], with a
//! permission check in [`Profile::load`]). [`Secret`] is zeroized on drop, never
//! `Debug`-printed and never serialised: [`Profile::to_toml_string`] leaves secrets out.
//!
//! How it works: the text is parsed once into toml's spanned document tree (to name
//! keys and lines), then deserialised with serde into private `Raw*` structs whose
//! fields are all optional `toml::Spanned` values with `deny_unknown_fields`, then
//! converted and validated into the public types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use postern_algs::algs::{DhGroup, EspProposal, IkeProposal};
use postern_algs::proposal::{parse_esp, parse_esp_for, parse_ike, parse_ike_for};
use serde::{Deserialize, Serialize};
use toml::Spanned;

// ---------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Display name, 1..=64 characters, no control characters.
    pub name: String,
    /// Host name or IP address literal.
    pub gateway: String,
    /// 1 (IKEv1, the default) or 2 (IKEv2: pre-shared key, no XAuth, tunnel mode).
    pub ike_version: u8,
    pub exchange_mode: ExchangeMode,
    pub auth: Auth,
    /// Present: XAuth is expected.
    pub xauth: Option<XAuth>,
    pub phase1: Phase1,
    pub phase2: Phase2,
    pub network: Network,
    /// When the tunnel comes up by itself: never (`no`), when the user's session starts
    /// (`login`, a user profile, brought up by the app), or when the machine starts
    /// (`boot`, a system profile, brought up and kept up by the helper).
    pub autoconnect: Autoconnect,
}

macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? } default $default:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The keyword used in the profile.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl Default for $name {
            fn default() -> Self { $name::$default }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "'{}' is not one of {}",
                        s.escape_debug(),
                        [$(concat!("\"", $text, "\"")),+].join(", ")
                    )),
                }
            }
        }
    };
}

keyword_enum!(
    /// Phase 1 exchange: `main` (identity protection) or `aggressive`.
    ExchangeMode { Main = "main", Aggressive = "aggressive" } default Main
);
keyword_enum!(
    /// Phase 1 authentication: pre-shared key, RSA signatures, hybrid (gateway
    /// certificate + XAuth for the user), or EAP-TLS (IKEv2 only: the gateway's
    /// certificate in AUTH, ours inside EAP-TLS).
    AuthMethod { Psk = "psk", RsaSig = "rsa-sig", Hybrid = "hybrid", EapTls = "eap-tls" } default Psk
);
keyword_enum!(
    /// ESP encapsulation.
    EncapMode { Tunnel = "tunnel", Transport = "transport" } default Tunnel
);
keyword_enum!(
    /// Mode Config: ask the gateway (`pull`), wait for it (`push`), or do without.
    ModeConfig { Pull = "pull", Push = "push", Off = "off" } default Pull
);
keyword_enum!(
    /// NAT traversal (RFC 3947): when detected, always (UDP 4500 from the start), never.
    NatTraversal { Auto = "auto", Force = "force", Off = "off" } default Auto
);
keyword_enum!(
    /// ESP datapath: kernel XFRM when the kernel has ESP, else userspace; or forced.
    Datapath { Auto = "auto", Kernel = "kernel", Userspace = "userspace" } default Auto
);
keyword_enum!(
    /// `autoconnect`: never, at the user's login (the app), at boot (the helper; system
    /// profiles only).
    Autoconnect { No = "no", Login = "login", Boot = "boot" } default No
);
keyword_enum!(
    /// DNS from Mode Config: split (routing domains), full (all queries), or ignored.
    DnsMode { Split = "split", Full = "full", Off = "off" } default Split
);
keyword_enum!(
    /// What a suspend does to the tunnel: keep it (check the gateway at once on
    /// resume) or close it first (DELETEs sent while logind waits for us).
    OnSuspend { Keep = "keep", Disconnect = "disconnect" } default Keep
);

/// Phase 1 authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub method: AuthMethod,
    /// `None`: our outer IP address is used.
    pub local_id: Option<Identity>,
    /// `Some`: the gateway's identity is checked against it.
    pub remote_id: Option<Identity>,
    /// Only when the [`SecretPolicy`] allows it; usually the keyring supplies it.
    pub psk: Option<Secret>,
    /// Paths, read by the front end (the helper receives contents, never paths).
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// A PKCS#12 bundle (key, certificate, chain) instead of `cert` + `key`.
    pub pkcs12: Option<String>,
    /// A CRL of the CA (PEM or DER); the gateway's certificate is checked against it.
    pub crl: Option<String>,
    /// The passphrase of an encrypted `key` or of the `pkcs12` bundle (a secret).
    pub key_passphrase: Option<Secret>,
    /// The contents of the files above, loaded by whoever may read them (`up` as root
    /// from the paths; the D-Bus service from the `Connect` secrets map). Never parsed
    /// from or written to TOML.
    pub contents: CertContents,
}

/// Certificate material as bytes: what [`Auth`]'s paths name, loaded. The helper's
/// engine configuration reads only this, never a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertContents {
    pub ca: Option<Blob>,
    pub cert: Option<Blob>,
    pub key: Option<Blob>,
    pub pkcs12: Option<Blob>,
    pub crl: Option<Blob>,
}

impl CertContents {
    pub fn is_empty(&self) -> bool {
        *self == CertContents::default()
    }
}

/// File contents that may be secret (a private key): zeroized on drop, `Debug` shows
/// only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob(zeroize::Zeroizing<Vec<u8>>);

impl Blob {
    pub fn new(bytes: Vec<u8>) -> Blob {
        Blob(zeroize::Zeroizing::new(bytes))
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob(<{} bytes>)", self.0.len())
    }
}

/// An IKE identity (ID payload). Textual syntax: `address:192.0.2.1`,
/// `fqdn:vpn.example.com`, `user-fqdn:alice@example.com`, `keyid:office-group` (ASCII)
/// or `keyid:0x0a0b...` (hex), `dn:CN=...`. Without a prefix: an IP literal is an
/// address, a value with `@` a user FQDN, anything else an FQDN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Address(IpAddr),
    Fqdn(String),
    UserFqdn(String),
    KeyId(Vec<u8>),
    Dn(String),
}

/// XAuth (extended authentication) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XAuth {
    pub username: String,
    /// Only when the [`SecretPolicy`] allows it; usually keyring or prompt.
    pub password: Option<Secret>,
}

/// Phase 1 (ISAKMP SA) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase1 {
    /// In order of preference; 1..=16.
    pub proposals: Vec<IkeProposal>,
    /// 1 min ..= 24 h.
    pub lifetime: Duration,
}

/// Phase 2 (IPsec SA) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase2 {
    /// In order of preference; 1..=16. `group` is the effective PFS group: a proposal
    /// that names no group itself gets `pfs`.
    pub proposals: Vec<EspProposal>,
    /// The profile's `pfs` key (`"none"` = `None`).
    pub pfs: Option<DhGroup>,
    /// 1 min ..= 8 h.
    pub lifetime: Duration,
    /// Optional volume lifetime in kilobytes.
    pub lifetime_kb: Option<u64>,
    pub mode: EncapMode,
    /// Empty: our virtual IP (or outer address).
    pub local_networks: Vec<Subnet>,
    /// Empty: what the gateway pushes (split include), else everything.
    pub remote_networks: Vec<Subnet>,
}

/// An address prefix such as `10.77.0.0/24`; a bare address is a /32 (or /128).
/// Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Host networking settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    pub mode_config: ModeConfig,
    /// Fixed inner address when the gateway assigns none.
    pub virtual_ip: Option<Ipv4Addr>,
    pub nat_traversal: NatTraversal,
    /// `None`: dead peer detection off (`dpd = "off"`).
    pub dpd: Option<Dpd>,
    pub datapath: Datapath,
    pub dns: DnsMode,
    pub retransmit: Retransmit,
    /// Bring the tunnel back by itself (with growing waits) when the gateway was
    /// lost (dead peer, closed by the gateway) after it had been up. Default on.
    pub reconnect: bool,
    /// NAT keepalives (RFC 3948) while ESP is UDP-encapsulated; `None`: off. Default 20 s.
    pub nat_keepalive: Option<Duration>,
    /// What a suspend does to the tunnel (default: keep it).
    pub on_suspend: OnSuspend,
    /// "Check the tunnel": a host behind the tunnel that answers ping (default: the
    /// first DNS server the gateway gave). IPv4, like the tunnel's inner side.
    pub check_host: Option<Ipv4Addr>,
    /// "Check the tunnel": the name asked of the tunnel's DNS servers (default: the
    /// domain the gateway gave, else the root).
    pub check_domain: Option<String>,
    /// "Check the tunnel": a captive-portal probe, `http://` only, that answers 204 (or
    /// 200) when nothing intercepts (default: ask NetworkManager, else skip).
    pub portal_url: Option<String>,
    /// The kill switch: while the tunnel is up or reconnecting, its traffic never
    /// leaves outside it (everything, for a full tunnel; the tunnel's networks, for a
    /// split one). Default off. Either datapath.
    pub kill_switch: bool,
    /// With the kill switch: the local networks (RFC 1918, link-local) stay reachable
    /// outside the tunnel. Default off.
    pub allow_lan: bool,
    /// IKEv2: MOBIKE (RFC 4555), so a network change moves the tunnel instead of
    /// negotiating it again (when the gateway does it too). Default on.
    pub mobike: bool,
    /// The largest IKE datagram sent whole (bytes, IP header included); larger IKE
    /// messages go in fragments (IKEv2 RFC 7383, IKEv1 fragmentation) when the gateway
    /// supports them. `None`: [`DEFAULT_IKE_FRAGMENT_SIZE`].
    pub ike_fragment_size: Option<u16>,
}

/// `network.ike_fragment_size` when the profile does not set it.
pub const DEFAULT_IKE_FRAGMENT_SIZE: u16 = 1280;
/// The bounds of `network.ike_fragment_size` (400 still leaves each fragment some 300
/// bytes of message, so a certificate chain needs a few dozen at most; 65000 leaves
/// room for the headers in a UDP datagram).
pub const IKE_FRAGMENT_SIZES: std::ops::RangeInclusive<u16> = 400..=65000;

/// Dead peer detection (RFC 3706): probe after `interval` of silence, give up after
/// `timeout` without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpd {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Retransmission of unanswered IKE messages: `tries` sends in all, the wait starting
/// at `base` and doubling up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    /// 1..=20.
    pub tries: u32,
    /// 100 ms ..= 60 s.
    pub base: Duration,
    /// `base` ..= 5 min.
    pub cap: Duration,
}

/// A secret: zeroized on drop, `Debug` prints `<redacted>`, never serialised.
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

/// Whether a profile may carry secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPolicy {
    /// Secrets are refused: they belong in the keyring (front ends, D-Bus imports).
    Forbid,
    /// Secrets are accepted; [`Profile::load`] then requires a file owned by root or the
    /// current user and not accessible by group or others.
    AllowIfPrivate,
}

/// What kind of refusal a [`ProfileError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileErrorKind {
    /// The file could not be read (or is not UTF-8, or too big).
    Io,
    /// Not valid TOML.
    Syntax,
    /// A key the profile format does not have.
    UnknownKey,
    /// A value of the wrong type or out of range, or values that do not go together.
    Invalid,
    /// A secret in a profile under [`SecretPolicy::Forbid`].
    SecretForbidden,
    /// A file with secrets whose owner or mode is unsafe.
    Permissions,
}

/// A refused profile. Display: `PATH:LINE: KEY: message` (line and key are left out
/// when there is none, e.g. `office.toml: name: required`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProfileError {
    /// The path (or other origin) shown to the user.
    pub origin: String,
    /// 1-based.
    pub line: Option<usize>,
    /// Dotted key path, array elements as `[i]`: `phase1.proposals[1]`.
    pub key: Option<String>,
    pub kind: ProfileErrorKind,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------

/// Default phase 1 proposals, in order.
pub const DEFAULT_IKE_PROPOSALS: [&str; 4] = [
    "aes256-sha256-modp2048",
    "aes128-sha1-modp2048",
    "aes128-sha1-modp1024",
    "3des-sha1-modp1024",
];
/// Default phase 2 proposals, in order.
pub const DEFAULT_ESP_PROPOSALS: [&str; 4] =
    ["aes256-sha256", "aes128-sha1", "aes128gcm16", "3des-sha1"];
/// At most this many proposals per phase.
pub const MAX_PROPOSALS: usize = 16;
/// At most this many subnets per list.
pub const MAX_NETWORKS: usize = 64;
/// Profiles bigger than this are refused by [`Profile::load`].
pub const MAX_FILE_SIZE: u64 = 1 << 20;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl Default for Phase1 {
    fn default() -> Self {
        Phase1 {
            proposals: DEFAULT_IKE_PROPOSALS
                .iter()
                .map(|p| parse_ike(p).expect("default proposal parses"))
                .collect(),
            lifetime: 8 * HOUR,
        }
    }
}

impl Default for Phase2 {
    fn default() -> Self {
        Phase2 {
            proposals: DEFAULT_ESP_PROPOSALS
                .iter()
                .map(|p| parse_esp(p).expect("default proposal parses"))
                .collect(),
            pfs: None,
            lifetime: HOUR,
            lifetime_kb: None,
            mode: EncapMode::Tunnel,
            local_networks: Vec::new(),
            remote_networks: Vec::new(),
        }
    }
}

impl Default for Dpd {
    fn default() -> Self {
        Dpd {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(150),
        }
    }
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            tries: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
        }
    }
}

impl Profile {
    /// A profile with every default and the given name and gateway (not validated).
    pub fn new(name: impl Into<String>, gateway: impl Into<String>) -> Self {
        Profile {
            name: name.into(),
            gateway: gateway.into(),
            ike_version: 1,
            exchange_mode: ExchangeMode::Main,
            auth: Auth::default(),
            xauth: None,
            phase1: Phase1::default(),
            phase2: Phase2::default(),
            network: Network {
                dpd: Some(Dpd::default()),
                reconnect: true,
                nat_keepalive: Some(Duration::from_secs(20)),
                mobike: true,
                ..Network::default()
            },
            autoconnect: Autoconnect::No,
        }
    }

    /// Whether the profile carries any secret.
    pub fn has_secrets(&self) -> bool {
        self.auth.psk.is_some()
            || self.auth.key_passphrase.is_some()
            || self.xauth.as_ref().is_some_and(|x| x.password.is_some())
    }

    /// The same profile with secrets removed.
    pub fn without_secrets(&self) -> Profile {
        let mut p = self.clone();
        p.auth.psk = None;
        p.auth.key_passphrase = None;
        p.auth.contents = CertContents::default();
        if let Some(x) = &mut p.xauth {
            x.password = None;
        }
        p
    }
}

// ---------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(zeroize::Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for Secret {}

// ---------------------------------------------------------------------------------
// Small value parsers
// ---------------------------------------------------------------------------------

/// Durations like `30s`, `15m`, `8h`, `1h30m`, `1d`, `500ms`, or a bare integer =
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "'{}' is not a duration (like \"30s\", \"15m\", \"8h\", \"1h30m\", \"1d\")",
            s.escape_debug()
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86400).map(Duration::from_secs),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `1h30m`-style text for a duration (the inverse of [`parse_duration`]).
pub fn format_duration(d: Duration) -> String {
    let ms = d.subsec_millis();
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    if ms != 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The gateway as written, without the brackets of an IPv6 literal (`[2001:db8::1]`,
/// the URL form, is accepted beside the bare `2001:db8::1`).
pub fn unbracket(s: &str) -> &str {
    match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner,
        _ => s,
    }
}

/// A host name (DNS syntax) or an IP literal.
pub fn validate_host(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "'{}' is not an IP address or host name: {why}",
            s.escape_debug()
        ))
    };
    if s.is_empty() {
        return bad("empty");
    }
    if has_control(s) {
        return bad("control characters");
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return bad("each label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with '-'");
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("not a valid IP address, and a host name cannot end in a number");
    }
    Ok(())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() & 1 == 1 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl FromStr for Identity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty identity".into());
        }
        if has_control(s) {
            return Err("control characters in identity".into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Identity::Address(ip));
        }
        let text = |kind: &str, v: &str| -> Result<String, String> {
            if v.trim().is_empty() {
                Err(format!("empty {kind} identity"))
            } else {
                Ok(v.to_string())
            }
        };
        let (prefix, value) = match s.split_once(':') {
            Some((p, v)) => (Some(p), v),
            None => (None, s),
        };
        match prefix {
            Some("address" | "ip" | "ipv4" | "ipv6") => value
                .parse::<IpAddr>()
                .map(Identity::Address)
                .map_err(|_| format!("'{value}' is not an IP address")),
            Some("fqdn") => {
                let v = text("fqdn", value)?;
                if v.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "'{v}': an fqdn identity has no spaces (dn:... for a distinguished name)"
                    ));
                }
                Ok(Identity::Fqdn(v))
            }
            Some("user-fqdn" | "userfqdn" | "ufqdn" | "email" | "rfc822") => {
                let v = text("user-fqdn", value)?;
                if v.chars().any(char::is_whitespace) {
                    return Err(format!("'{v}': a user-fqdn identity has no spaces"));
                }
                Ok(Identity::UserFqdn(v))
            }
            Some("keyid") => {
                if let Some(bytes) = value.strip_prefix("0x").and_then(hex_decode) {
                    return Ok(Identity::KeyId(bytes));
                }
                if value.is_empty() {
                    return Err("empty keyid identity".into());
                }
                if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    return Err("a keyid is printable ASCII, or hex as keyid:0x...".into());
                }
                Ok(Identity::KeyId(value.as_bytes().to_vec()))
            }
            Some("dn" | "asn1dn") => {
                let v = text("dn", value)?;
                if !v.contains('=') {
                    return Err(format!(
                        "'{v}' is not a distinguished name (like \"CN=vpn, O=Example\")"
                    ));
                }
                Ok(Identity::Dn(v.trim().to_string()))
            }
            Some(p) if !p.contains('@') && !p.contains('=') => Err(format!(
                "unknown identity type '{p}' (address, fqdn, user-fqdn, keyid or dn)"
            )),
            _ => {
                // No (known) prefix.
                if s.contains('=') {
                    return Err(format!(
                        "'{s}' looks like a distinguished name: write dn:{s}"
                    ));
                }
                if s.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "'{s}': spaces in an identity (keyid:... or dn:...?)"
                    ));
                }
                if s.contains('@') {
                    Ok(Identity::UserFqdn(s.to_string()))
                } else {
                    Ok(Identity::Fqdn(s.to_string()))
                }
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Address(ip) => write!(f, "address:{ip}"),
            Identity::Fqdn(s) => write!(f, "fqdn:{s}"),
            Identity::UserFqdn(s) => write!(f, "user-fqdn:{s}"),
            Identity::KeyId(b) => {
                let printable = !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c));
                let text = String::from_utf8_lossy(b);
                let ambiguous = text.starts_with("0x") && hex_decode(&text[2..]).is_some();
                if printable && !ambiguous {
                    write!(f, "keyid:{text}")
                } else {
                    write!(f, "keyid:0x")?;
                    b.iter().try_for_each(|c| write!(f, "{c:02x}"))
                }
            }
            Identity::Dn(s) => write!(f, "dn:{s}"),
        }
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{p}' is not a prefix length 0..={max}")),
            },
        };
        let masked = mask(addr, prefix);
        if masked != addr {
            return Err(format!(
                "host bits set in '{s}' (did you mean {masked}/{prefix}?)"
            ));
        }
        Ok(Subnet { addr, prefix })
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl Subnet {
    /// Whether `ip` lies inside this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

// ---------------------------------------------------------------------------------
// Raw (serde) layer
// ---------------------------------------------------------------------------------

/// A value given as a string or an integer (durations: `lifetime = 3600` or `"1h"`).
#[derive(Debug, Clone)]
struct StrOrInt(String);

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrOrInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

type Str = Option<Spanned<String>>;
type List = Option<Spanned<Vec<Spanned<String>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Str,
    gateway: Str,
    ike_version: Option<Spanned<toml::Value>>,
    exchange_mode: Str,
    autoconnect: Str,
    #[serde(default)]
    auth: RawAuth,
    xauth: Option<RawXAuth>,
    #[serde(default)]
    phase1: RawPhase1,
    #[serde(default)]
    phase2: RawPhase2,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    method: Str,
    local_id: Str,
    remote_id: Str,
    psk: Str,
    ca: Str,
    cert: Str,
    key: Str,
    pkcs12: Str,
    crl: Str,
    key_passphrase: Str,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawXAuth {
    username: Str,
    password: Str,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPhase1 {
    proposals: List,
    lifetime: Option<Spanned<StrOrInt>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPhase2 {
    proposals: List,
    pfs: Str,
    lifetime: Option<Spanned<StrOrInt>>,
    lifetime_kb: Option<Spanned<i64>>,
    mode: Str,
    local_networks: List,
    remote_networks: List,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    mode_config: Str,
    virtual_ip: Str,
    nat_traversal: Str,
    dpd: Option<Spanned<toml::Value>>,
    datapath: Str,
    dns: Str,
    retransmit: Option<RawRetransmit>,
    reconnect: Option<Spanned<bool>>,
    nat_keepalive: Option<Spanned<StrOrInt>>,
    on_suspend: Str,
    check_host: Str,
    check_domain: Str,
    portal_url: Str,
    kill_switch: Option<Spanned<bool>>,
    allow_lan: Option<Spanned<bool>>,
    mobike: Option<Spanned<bool>>,
    ike_fragment_size: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetransmit {
    tries: Option<Spanned<i64>>,
    base: Option<Spanned<StrOrInt>>,
    cap: Option<Spanned<StrOrInt>>,
}

// ---------------------------------------------------------------------------------
// Locating keys and lines
// ---------------------------------------------------------------------------------

struct Entry {
    path: String,
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Every key and array element of the document with its byte spans.
struct Locator {
    entries: Vec<Entry>,
}

impl Locator {
    fn new(doc: &toml::de::DeTable<'_>) -> Self {
        let mut entries = Vec::new();
        walk_table(doc, "", &mut entries);
        Locator { entries }
    }

    /// The span of a key (or array element) by its path.
    fn span_of(&self, path: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.key.clone().unwrap_or_else(|| e.value.clone()))
    }

    /// The innermost key (or array element) whose key or value span holds `offset`.
    fn path_at(&self, offset: usize) -> Option<&str> {
        let holds = |r: &Range<usize>| r.start <= offset && (offset < r.end || r.start == r.end);
        self.entries
            .iter()
            .filter_map(|e| {
                let k = e.key.as_ref().filter(|k| holds(k)).map(|k| k.len());
                let v = Some(&e.value).filter(|v| holds(v)).map(|v| v.len());
                k.into_iter().chain(v).min().map(|len| (len, e))
            })
            .min_by_key(|(len, e)| (*len, usize::MAX - e.path.len()))
            .map(|(_, e)| e.path.as_str())
    }
}

fn walk_table(t: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.push(Entry {
            path: path.clone(),
            key: Some(k.span()),
            value: v.span(),
        });
        walk_value(v.get_ref(), &path, out);
    }
}

fn walk_value(v: &toml::de::DeValue<'_>, path: &str, out: &mut Vec<Entry>) {
    match v {
        toml::de::DeValue::Table(t) => walk_table(t, path, out),
        toml::de::DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    key: None,
                    value: e.span(),
                });
                walk_value(e.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Conversion context: where errors point.
struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
    loc: Locator,
}

impl Cx<'_> {
    /// An error at `key`: its line from the document, else from `span`, else from the
    /// nearest enclosing key that exists.
    fn err_kind(
        &self,
        kind: ProfileErrorKind,
        key: &str,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
    ) -> ProfileError {
        let mut at = self.loc.span_of(key).or(span);
        let mut parent = key;
        while at.is_none() {
            match parent.rfind(['.', '[']) {
                Some(i) => {
                    parent = &parent[..i];
                    at = self.loc.span_of(parent);
                }
                None => break,
            }
        }
        ProfileError {
            origin: self.origin.to_string(),
            line: at.map(|r| line_of(self.text, r.start)),
            key: Some(key.to_string()),
            kind,
            message: msg.into(),
        }
    }

    fn err(&self, key: &str, span: Option<Range<usize>>, msg: impl Into<String>) -> ProfileError {
        self.err_kind(ProfileErrorKind::Invalid, key, span, msg)
    }

    /// Parse an optional string value.
    fn opt<T>(
        &self,
        key: &str,
        v: &Str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ProfileError> {
        match v {
            None => Ok(None),
            Some(s) => f(s.get_ref())
                .map(Some)
                .map_err(|m| self.err(key, Some(s.span()), m)),
        }
    }

    fn keyword<T: FromStr<Err = String> + Default>(
        &self,
        key: &str,
        v: &Str,
    ) -> Result<T, ProfileError> {
        Ok(self.opt(key, v, str::parse)?.unwrap_or_default())
    }

    fn duration(
        &self,
        key: &str,
        v: &Option<Spanned<StrOrInt>>,
        default: Duration,
        range: (Duration, Duration),
    ) -> Result<Duration, ProfileError> {
        let Some(s) = v else { return Ok(default) };
        let d = parse_duration(&s.get_ref().0).map_err(|m| self.err(key, Some(s.span()), m))?;
        if d < range.0 || d > range.1 {
            return Err(self.err(
                key,
                Some(s.span()),
                format!(
                    "'{}' is outside {} ..= {}",
                    s.get_ref().0.trim(),
                    format_duration(range.0),
                    format_duration(range.1)
                ),
            ));
        }
        Ok(d)
    }

    fn list<T>(
        &self,
        key: &str,
        v: &List,
        max: usize,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, ProfileError> {
        let Some(list) = v else { return Ok(None) };
        if list.get_ref().len() > max {
            return Err(self.err(key, Some(list.span()), format!("at most {max} entries")));
        }
        list.get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                f(s.get_ref()).map_err(|m| self.err(&format!("{key}[{i}]"), Some(s.span()), m))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn secret(
        &self,
        key: &str,
        v: &Str,
        policy: SecretPolicy,
    ) -> Result<Option<Secret>, ProfileError> {
        let Some(s) = v else { return Ok(None) };
        if policy == SecretPolicy::Forbid {
            return Err(self.err_kind(
                ProfileErrorKind::SecretForbidden,
                key,
                Some(s.span()),
                "secrets do not belong in a profile; use the keyring",
            ));
        }
        if s.get_ref().is_empty() {
            return Err(self.err(key, Some(s.span()), "empty secret"));
        }
        Ok(Some(Secret::new(s.get_ref().clone())))
    }
}

fn non_empty_text(what: &str) -> impl Fn(&str) -> Result<String, String> + '_ {
    move |s: &str| {
        if s.trim().is_empty() {
            Err(format!("empty {what}"))
        } else if has_control(s) {
            Err(format!("control characters in {what}"))
        } else {
            Ok(s.to_string())
        }
    }
}

// ---------------------------------------------------------------------------------
// Conversion and validation
// ---------------------------------------------------------------------------------

impl Profile {
    /// Parse and validate profile text; `origin` is the path shown in errors.
    /// Secrets (`auth.psk`, `xauth.password`) are refused under [`SecretPolicy::Forbid`].
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        secrets: SecretPolicy,
    ) -> Result<Profile, ProfileError> {
        let doc = toml::de::DeTable::parse(text).map_err(|e| ProfileError {
            origin: origin.to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            kind: ProfileErrorKind::Syntax,
            message: format!(
                "TOML syntax error: {}",
                e.message().trim().replace('\n', "; ")
            ),
        })?;
        let cx = Cx {
            text,
            origin,
            loc: Locator::new(doc.get_ref()),
        };
        let mut raw: RawProfile = toml::from_str(text).map_err(|e| {
            let path = e
                .span()
                .and_then(|s| cx.loc.path_at(s.start))
                .map(str::to_string);
            let message = e.message().trim().replace('\n', "; ");
            let kind = if message.starts_with("unknown field") {
                ProfileErrorKind::UnknownKey
            } else {
                ProfileErrorKind::Invalid
            };
            ProfileError {
                origin: origin.to_string(),
                line: e.span().map(|s| line_of(text, s.start)),
                key: path,
                kind,
                message,
            }
        })?;
        let result = convert(&cx, &raw, secrets);
        // Best effort: wipe the deserialiser's copies of the secrets (the caller owns `text`).
        let wipe = |s: &mut Option<Spanned<String>>| {
            if let Some(s) = s {
                zeroize::Zeroize::zeroize(s.get_mut());
            }
        };
        wipe(&mut raw.auth.psk);
        wipe(&mut raw.auth.key_passphrase);
        if let Some(x) = &mut raw.xauth {
            wipe(&mut x.password);
        }
        result
    }

    /// Read and parse a profile file. With [`SecretPolicy::AllowIfPrivate`], a file that
    /// contains secrets must be owned by root or the current user and have no group or
    /// other permission bits (`mode & 0o077 == 0`).
    pub fn load(path: &Path, secrets: SecretPolicy) -> Result<Profile, ProfileError> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;

        let origin = path.display().to_string();
        let io_err = |message: String| ProfileError {
            origin: origin.clone(),
            line: None,
            key: None,
            kind: ProfileErrorKind::Io,
            message,
        };
        let mut file =
            std::fs::File::open(path).map_err(|e| io_err(format!("cannot open: {e}")))?;
        // Check the file we opened, not whatever the path names a moment later.
        let meta = file
            .metadata()
            .map_err(|e| io_err(format!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(io_err("not a regular file".into()));
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(io_err(format!("larger than {MAX_FILE_SIZE} bytes")));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.by_ref()
            .take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(format!("cannot read: {e}")))?;
        let bytes = zeroize::Zeroizing::new(bytes);
        let text = std::str::from_utf8(&bytes).map_err(|e| io_err(format!("not UTF-8: {e}")))?;
        let profile = Profile::from_toml_str(text, &origin, secrets)?;
        if profile.has_secrets() {
            let mode = meta.mode() & 0o7777;
            let me = current_euid();
            let owner_ok = meta.uid() == 0 || Some(meta.uid()) == me;
            if mode & 0o077 != 0 || !owner_ok {
                let key = if profile.auth.psk.is_some() {
                    "auth.psk"
                } else if profile.auth.key_passphrase.is_some() {
                    "auth.key_passphrase"
                } else {
                    "xauth.password"
                };
                let doc = toml::de::DeTable::parse(text).ok();
                let line = doc
                    .and_then(|d| Locator::new(d.get_ref()).span_of(key))
                    .map(|s| line_of(text, s.start));
                let why = if owner_ok {
                    format!("but has mode {mode:04o} (group or others may access it)")
                } else {
                    format!("but is owned by uid {} (not root or you)", meta.uid())
                };
                return Err(ProfileError {
                    origin,
                    line,
                    key: Some(key.to_string()),
                    kind: ProfileErrorKind::Permissions,
                    message: format!(
                        "the file holds secrets {why}; make it private (chmod 600, owned by root or you) or keep secrets in the keyring"
                    ),
                });
            }
        }
        Ok(profile)
    }
}

/// The effective uid of this process without `unsafe`: the owner of `/proc/self`.
fn current_euid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn convert(cx: &Cx<'_>, raw: &RawProfile, policy: SecretPolicy) -> Result<Profile, ProfileError> {
    let name = parse_name(cx, raw)?;
    let gateway = cx
        .opt("gateway", &raw.gateway, |s| {
            let s = unbracket(s);
            validate_host(s).map(|()| s.to_string())
        })?
        .ok_or_else(|| cx.err("gateway", None, "required (host name or IP address)"))?;
    let ike_version = parse_ike_version(cx, raw)?;
    let exchange_mode = cx.keyword("exchange_mode", &raw.exchange_mode)?;
    let autoconnect = cx.keyword("autoconnect", &raw.autoconnect)?;
    let auth = parse_auth(cx, &raw.auth, policy)?;
    let xauth = parse_xauth(cx, raw.xauth.as_ref(), policy)?;
    check_auth_material(cx, &raw.auth, &auth, xauth.is_some())?;
    // In the order of the file's sections, so the first error reported is the first.
    let phase1 = parse_phase1(cx, &raw.phase1, ike_version)?;
    let phase2 = parse_phase2(cx, &raw.phase2, ike_version)?;
    let network = parse_network(cx, &raw.network)?;
    check_ikev2(cx, raw, ike_version, &auth, xauth.is_some(), &phase2)?;
    Ok(Profile {
        name,
        gateway,
        ike_version,
        exchange_mode,
        auth,
        xauth,
        phase1,
        phase2,
        network,
        autoconnect,
    })
}

fn parse_ike_version(cx: &Cx<'_>, raw: &RawProfile) -> Result<u8, ProfileError> {
    let Some(v) = raw.ike_version.as_ref() else {
        return Ok(1);
    };
    match v.get_ref().as_integer() {
        Some(1) => Ok(1),
        Some(2) => Ok(2),
        _ => Err(cx.err(
            "ike_version",
            Some(v.span()),
            "must be 1 (IKEv1) or 2 (IKEv2)",
        )),
    }
}

/// IKEv2 speaks pre-shared keys in tunnel mode only, for now (docs/profile.md).
fn check_ikev2(
    cx: &Cx<'_>,
    raw: &RawProfile,
    ike_version: u8,
    auth: &Auth,
    xauth: bool,
    phase2: &Phase2,
) -> Result<(), ProfileError> {
    // psk with or without [xauth] (EAP for IKEv2), rsa-sig and eap-tls without; hybrid
    // (the gateway's certificate + EAP) needs [xauth], checked with IKEv1's rules.
    let unsupported = if ike_version != 2 && matches!(auth.method, AuthMethod::EapTls) {
        Some(
            "auth.method = \"eap-tls\" is an IKEv2 login: set ike_version = 2, or use \"rsa-sig\" with IKEv1",
        )
    } else if ike_version != 2 {
        None
    } else if matches!(auth.method, AuthMethod::EapTls) && xauth {
        Some("with auth.method = \"eap-tls\" our certificate is the login: remove [xauth]")
    } else if matches!(auth.method, AuthMethod::RsaSig) && xauth {
        Some(
            "with IKEv2, [xauth] is an EAP login in place of our certificate: use auth.method = \"hybrid\" (the gateway's certificate + EAP), or remove [xauth]",
        )
    } else if matches!(phase2.mode, EncapMode::Transport) {
        Some("IKEv2 supports only phase2.mode = \"tunnel\" for now")
    } else {
        None
    };
    match unsupported {
        Some(m) => Err(cx.err("ike_version", raw.ike_version.as_ref().map(|v| v.span()), m)),
        None => Ok(()),
    }
}

fn parse_name(cx: &Cx<'_>, raw: &RawProfile) -> Result<String, ProfileError> {
    cx.opt("name", &raw.name, |s| {
        let n = s.chars().count();
        if s.trim().is_empty() {
            Err("empty name".to_string())
        } else if n > 64 {
            Err(format!("{n} characters; at most 64"))
        } else if has_control(s) {
            Err("control characters in name".to_string())
        } else {
            Ok(s.to_string())
        }
    })?
    .ok_or_else(|| cx.err("name", None, "required"))
}

/// A file named in `[auth]`: only its form is checked here; whoever reads the file
/// says what is wrong with its contents.
fn file_path(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("empty path".to_string())
    } else if has_control(s) {
        Err("control characters in path".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// `[auth]`
fn parse_auth(cx: &Cx<'_>, a: &RawAuth, policy: SecretPolicy) -> Result<Auth, ProfileError> {
    Ok(Auth {
        method: cx.keyword("auth.method", &a.method)?,
        local_id: cx.opt("auth.local_id", &a.local_id, str::parse)?,
        remote_id: cx.opt("auth.remote_id", &a.remote_id, str::parse)?,
        psk: cx.secret("auth.psk", &a.psk, policy)?,
        ca: cx.opt("auth.ca", &a.ca, file_path)?,
        cert: cx.opt("auth.cert", &a.cert, file_path)?,
        key: cx.opt("auth.key", &a.key, file_path)?,
        pkcs12: cx.opt("auth.pkcs12", &a.pkcs12, file_path)?,
        crl: cx.opt("auth.crl", &a.crl, file_path)?,
        key_passphrase: cx.secret("auth.key_passphrase", &a.key_passphrase, policy)?,
        contents: CertContents::default(),
    })
}

/// `[xauth]`
fn parse_xauth(
    cx: &Cx<'_>,
    x: Option<&RawXAuth>,
    policy: SecretPolicy,
) -> Result<Option<XAuth>, ProfileError> {
    let Some(x) = x else { return Ok(None) };
    Ok(Some(XAuth {
        username: cx
            .opt("xauth.username", &x.username, non_empty_text("user name"))?
            .ok_or_else(|| cx.err("xauth.username", None, "required when [xauth] is present"))?,
        password: cx.secret("xauth.password", &x.password, policy)?,
    }))
}

/// The combinations of `[auth]` keys a method needs. With none of the files the
/// material comes as contents (D-Bus `Connect`); the helper says so if it does not.
fn check_auth_material(
    cx: &Cx<'_>,
    a: &RawAuth,
    auth: &Auth,
    has_xauth: bool,
) -> Result<(), ProfileError> {
    let method_span = a.method.as_ref().map(Spanned::span);
    match auth.method {
        AuthMethod::RsaSig if auth.cert.is_some() != auth.key.is_some() => Err(cx.err(
            "auth.method",
            method_span,
            "\"rsa-sig\" needs auth.cert and auth.key together (or auth.pkcs12 alone)",
        )),
        AuthMethod::EapTls if auth.cert.is_some() != auth.key.is_some() => {
            Err(cx.err(
                "auth.method",
                method_span,
                "\"eap-tls\" needs our certificate: auth.cert and auth.key together (or auth.pkcs12 alone)",
            ))
        }
        AuthMethod::RsaSig | AuthMethod::EapTls
            if auth.pkcs12.is_some() && auth.cert.is_some() =>
        {
            Err(cx.err(
                "auth.pkcs12",
                None,
                "give either auth.pkcs12 or auth.cert + auth.key, not both",
            ))
        }
        AuthMethod::Hybrid if !has_xauth => Err(cx.err(
            "auth.method",
            method_span,
            "\"hybrid\" authenticates the user with XAuth: add an [xauth] section",
        )),
        _ => Ok(()),
    }
}

/// `[phase1]`
fn parse_phase1(cx: &Cx<'_>, p1: &RawPhase1, ike_version: u8) -> Result<Phase1, ProfileError> {
    let ike = cx.list("phase1.proposals", &p1.proposals, MAX_PROPOSALS, |s| {
        parse_ike_for(s, ike_version).map_err(|e| e.to_string())
    })?;
    if ike.as_ref().is_some_and(Vec::is_empty) {
        return Err(cx.err("phase1.proposals", None, "at least one proposal is needed"));
    }
    Ok(Phase1 {
        proposals: ike.unwrap_or_else(|| Phase1::default().proposals),
        lifetime: cx.duration(
            "phase1.lifetime",
            &p1.lifetime,
            8 * HOUR,
            (MINUTE, 24 * HOUR),
        )?,
    })
}

/// `phase2.pfs`: "none" or a DH group name (curve25519 with IKEv2 only).
fn parse_pfs(s: &str, ike_version: u8) -> Result<Option<DhGroup>, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" | "no" | "off" => Ok(None),
        "curve25519" | "x25519" if ike_version < 2 => Err(format!(
            "'{s}' is an IKEv2-only DH group: use it with ike_version = 2"
        )),
        "x25519" => Ok(Some(DhGroup::Curve25519)),
        g => DhGroup::ALL
            .into_iter()
            .find(|x| x.name() == g)
            .map(Some)
            .ok_or_else(|| {
                format!("'{s}' is not \"none\" or a DH group (modp1024, modp2048, ecp256, ...)")
            }),
    }
}

/// `[phase2]`
fn parse_phase2(cx: &Cx<'_>, p2: &RawPhase2, ike_version: u8) -> Result<Phase2, ProfileError> {
    let pfs = cx
        .opt("phase2.pfs", &p2.pfs, |s| parse_pfs(s, ike_version))?
        .flatten();
    let esp = cx.list("phase2.proposals", &p2.proposals, MAX_PROPOSALS, |s| {
        parse_esp_for(s, ike_version).map_err(|e| e.to_string())
    })?;
    if esp.as_ref().is_some_and(Vec::is_empty) {
        return Err(cx.err("phase2.proposals", None, "at least one proposal is needed"));
    }
    let mut proposals = esp.unwrap_or_else(|| Phase2::default().proposals);
    for p in &mut proposals {
        p.group = p.group.or(pfs);
    }
    let lifetime_kb = match &p2.lifetime_kb {
        None => None,
        Some(v) if *v.get_ref() >= 1 => Some(*v.get_ref() as u64),
        Some(v) => {
            return Err(cx.err(
                "phase2.lifetime_kb",
                Some(v.span()),
                "must be a positive number of kilobytes",
            ));
        }
    };
    let networks = |key, list| {
        cx.list(key, list, MAX_NETWORKS, |s: &str| s.parse::<Subnet>())
            .map(Option::unwrap_or_default)
    };
    let phase2 = Phase2 {
        proposals,
        pfs,
        lifetime: cx.duration(
            "phase2.lifetime",
            &p2.lifetime,
            HOUR,
            (Duration::from_secs(20), 8 * HOUR),
        )?,
        lifetime_kb,
        mode: cx.keyword("phase2.mode", &p2.mode)?,
        local_networks: networks("phase2.local_networks", &p2.local_networks)?,
        remote_networks: networks("phase2.remote_networks", &p2.remote_networks)?,
    };
    if phase2.mode == EncapMode::Transport {
        for (key, list) in [
            ("phase2.remote_networks", &phase2.remote_networks),
            ("phase2.local_networks", &phase2.local_networks),
        ] {
            if !list.is_empty() {
                return Err(cx.err(
                    key,
                    None,
                    "not allowed with mode = \"transport\" (transport mode protects traffic between the two hosts only)",
                ));
            }
        }
    }
    Ok(phase2)
}

/// `network.virtual_ip`: the inner address asked of Mode Config.
fn parse_virtual_ip(s: &str) -> Result<Ipv4Addr, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a))
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() =>
        {
            Err(format!("{a} cannot be a virtual IP"))
        }
        Ok(IpAddr::V4(a)) => Ok(a),
        Ok(IpAddr::V6(_)) => Err("must be an IPv4 address (Mode Config assigns IPv4)".to_string()),
        Err(_) => Err(format!("'{s}' is not an IPv4 address")),
    }
}

/// `network.check_host`: an address inside the tunnel that answers a ping.
fn parse_check_host(s: &str) -> Result<Ipv4Addr, String> {
    match s.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() => {
            Err(format!("{a} cannot answer a check through the tunnel"))
        }
        Ok(a) => Ok(a),
        Err(_) => Err(format!("'{s}' is not an IPv4 address")),
    }
}

/// `[network.retransmit]`
fn parse_retransmit(cx: &Cx<'_>, r: Option<&RawRetransmit>) -> Result<Retransmit, ProfileError> {
    let d = Retransmit::default();
    let Some(r) = r else { return Ok(d) };
    let tries = match &r.tries {
        None => d.tries,
        Some(t) if (1..=20).contains(t.get_ref()) => *t.get_ref() as u32,
        Some(t) => {
            return Err(cx.err("network.retransmit.tries", Some(t.span()), "must be 1..=20"));
        }
    };
    let base = cx.duration(
        "network.retransmit.base",
        &r.base,
        d.base,
        (Duration::from_millis(100), Duration::from_secs(60)),
    )?;
    let cap = cx.duration(
        "network.retransmit.cap",
        &r.cap,
        d.cap.max(base),
        (base, Duration::from_secs(300)),
    )?;
    Ok(Retransmit { tries, base, cap })
}

/// `[network]`
fn parse_network(cx: &Cx<'_>, n: &RawNetwork) -> Result<Network, ProfileError> {
    let dpd = match &n.dpd {
        None => Some(Dpd::default()),
        Some(v) => parse_dpd(cx, v)?,
    };
    let network = Network {
        mode_config: cx.keyword("network.mode_config", &n.mode_config)?,
        virtual_ip: cx.opt("network.virtual_ip", &n.virtual_ip, parse_virtual_ip)?,
        nat_traversal: cx.keyword("network.nat_traversal", &n.nat_traversal)?,
        dpd,
        datapath: cx.keyword("network.datapath", &n.datapath)?,
        dns: cx.keyword("network.dns", &n.dns)?,
        retransmit: parse_retransmit(cx, n.retransmit.as_ref())?,
        reconnect: n.reconnect.as_ref().map(|b| *b.get_ref()).unwrap_or(true),
        on_suspend: cx.keyword("network.on_suspend", &n.on_suspend)?,
        nat_keepalive: match &n.nat_keepalive {
            Some(v) if v.get_ref().0 == "off" => None,
            v => Some(cx.duration(
                "network.nat_keepalive",
                v,
                Duration::from_secs(20),
                (Duration::from_secs(1), HOUR),
            )?),
        },
        check_host: cx.opt("network.check_host", &n.check_host, parse_check_host)?,
        check_domain: cx.opt("network.check_domain", &n.check_domain, |s| {
            check_dns_name(s).map(|()| s.trim_end_matches('.').to_ascii_lowercase())
        })?,
        portal_url: cx.opt("network.portal_url", &n.portal_url, |s| {
            check_portal_url(s).map(|()| s.to_string())
        })?,
        kill_switch: n.kill_switch.as_ref().is_some_and(|b| *b.get_ref()),
        allow_lan: n.allow_lan.as_ref().is_some_and(|b| *b.get_ref()),
        mobike: n.mobike.as_ref().is_none_or(|b| *b.get_ref()),
        ike_fragment_size: match &n.ike_fragment_size {
            None => None,
            Some(v) => match u16::try_from(*v.get_ref()) {
                // The default written out is the default (one profile, not two).
                Ok(DEFAULT_IKE_FRAGMENT_SIZE) => None,
                Ok(b) if IKE_FRAGMENT_SIZES.contains(&b) => Some(b),
                _ => {
                    return Err(cx.err(
                        "network.ike_fragment_size",
                        Some(v.span()),
                        format!(
                            "must be {}..={} bytes",
                            IKE_FRAGMENT_SIZES.start(),
                            IKE_FRAGMENT_SIZES.end()
                        ),
                    ));
                }
            },
        },
    };
    Ok(network)
}

fn parse_dpd(cx: &Cx<'_>, v: &Spanned<toml::Value>) -> Result<Option<Dpd>, ProfileError> {
    const KEY: &str = "network.dpd";
    let table = match v.get_ref() {
        toml::Value::String(s) if s == "off" => return Ok(None),
        toml::Value::Table(t) => t,
        _ => {
            return Err(cx.err(
                KEY,
                Some(v.span()),
                "expected \"off\" or { interval = \"30s\", timeout = \"150s\" }",
            ));
        }
    };
    let mut dpd = Dpd::default();
    for (k, val) in table {
        let key = format!("{KEY}.{k}");
        let slot = match k.as_str() {
            "interval" => &mut dpd.interval,
            "timeout" => &mut dpd.timeout,
            _ => {
                return Err(cx.err_kind(
                    ProfileErrorKind::UnknownKey,
                    &key,
                    Some(v.span()),
                    format!("unknown field `{k}`, expected `interval` or `timeout`"),
                ));
            }
        };
        let text = match val {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            _ => return Err(cx.err(&key, Some(v.span()), "expected a duration such as \"30s\"")),
        };
        let d = parse_duration(&text).map_err(|m| cx.err(&key, Some(v.span()), m))?;
        if d < Duration::from_secs(1) || d > HOUR {
            return Err(cx.err(
                &key,
                Some(v.span()),
                format!("{} is outside 1s ..= 1h", format_duration(d)),
            ));
        }
        *slot = d;
    }
    if dpd.timeout < dpd.interval {
        return Err(cx.err(
            &format!("{KEY}.timeout"),
            Some(v.span()),
            format!(
                "{} is shorter than the interval ({})",
                format_duration(dpd.timeout),
                format_duration(dpd.interval)
            ),
        ));
    }
    Ok(Some(dpd))
}

// ---------------------------------------------------------------------------------
// Serialisation (without secrets)
// ---------------------------------------------------------------------------------

#[derive(Serialize)]
struct OutProfile {
    name: String,
    gateway: String,
    ike_version: u8,
    exchange_mode: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    autoconnect: &'static str,
    auth: OutAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    xauth: Option<OutXAuth>,
    phase1: OutPhase1,
    phase2: OutPhase2,
    network: OutNetwork,
}

#[derive(Serialize)]
struct OutAuth {
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pkcs12: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crl: Option<String>,
}

#[derive(Serialize)]
struct OutXAuth {
    username: String,
}

#[derive(Serialize)]
struct OutPhase1 {
    proposals: Vec<String>,
    lifetime: String,
}

#[derive(Serialize)]
struct OutPhase2 {
    proposals: Vec<String>,
    pfs: String,
    lifetime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime_kb: Option<u64>,
    mode: &'static str,
    local_networks: Vec<String>,
    remote_networks: Vec<String>,
}

#[derive(Serialize)]
struct OutNetwork {
    mode_config: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    virtual_ip: Option<String>,
    nat_traversal: &'static str,
    datapath: &'static str,
    dns: &'static str,
    dpd: OutDpd,
    reconnect: bool,
    nat_keepalive: String,
    on_suspend: &'static str,
    retransmit: OutRetransmit,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    portal_url: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    kill_switch: bool,
    #[serde(skip_serializing_if = "is_false")]
    allow_lan: bool,
    #[serde(skip_serializing_if = "is_true")]
    mobike: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ike_fragment_size: Option<u16>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutDpd {
    Off(&'static str),
    On { interval: String, timeout: String },
}

#[derive(Serialize)]
struct OutRetransmit {
    tries: u32,
    base: String,
    cap: String,
}

/// A DNS name as `network.check_domain` takes it: dot-separated labels of letters,
/// digits, `-` and `_`, each 1..=63 bytes, 253 in all.
fn check_dns_name(s: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return Err("must be a DNS name of 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("'{s}' has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "'{s}' is not a DNS name (letters, digits, '-', '.')"
            ));
        }
    }
    Ok(())
}

/// A captive-portal probe URL: `http://host[:port][/path]`, printable, at most 512
/// bytes. Plain HTTP on purpose: a portal intercepts exactly that.
fn check_portal_url(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix("http://") else {
        return Err("must start with http:// (portals intercept plain HTTP)".into());
    };
    if s.len() > 512 || s.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("must be at most 512 printable characters without spaces".into());
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err("must name a host (and no user)".into());
    }
    Ok(())
}

impl Profile {
    /// Serialise to TOML without secrets (for export and sharing). Parsing the result
    /// gives a profile equal to `self.without_secrets()`.
    pub fn to_toml_string(&self) -> String {
        let p2 = &self.phase2;
        let out = OutProfile {
            name: self.name.clone(),
            gateway: self.gateway.clone(),
            ike_version: self.ike_version,
            exchange_mode: self.exchange_mode.as_str(),
            autoconnect: match self.autoconnect {
                Autoconnect::No => "",
                a => a.as_str(),
            },
            auth: OutAuth {
                method: self.auth.method.as_str(),
                local_id: self.auth.local_id.as_ref().map(Identity::to_string),
                remote_id: self.auth.remote_id.as_ref().map(Identity::to_string),
                ca: self.auth.ca.clone(),
                cert: self.auth.cert.clone(),
                key: self.auth.key.clone(),
                pkcs12: self.auth.pkcs12.clone(),
                crl: self.auth.crl.clone(),
            },
            xauth: self.xauth.as_ref().map(|x| OutXAuth {
                username: x.username.clone(),
            }),
            phase1: OutPhase1 {
                proposals: self
                    .phase1
                    .proposals
                    .iter()
                    .map(IkeProposal::to_string)
                    .collect(),
                lifetime: format_duration(self.phase1.lifetime),
            },
            phase2: OutPhase2 {
                // A proposal whose group is the `pfs` default is written without it.
                proposals: p2
                    .proposals
                    .iter()
                    .map(|p| {
                        let mut p = *p;
                        if p2.pfs.is_some() && p.group == p2.pfs {
                            p.group = None;
                        }
                        p.to_string()
                    })
                    .collect(),
                pfs: p2.pfs.map_or("none", DhGroup::name).to_string(),
                lifetime: format_duration(p2.lifetime),
                lifetime_kb: p2.lifetime_kb,
                mode: p2.mode.as_str(),
                local_networks: p2.local_networks.iter().map(Subnet::to_string).collect(),
                remote_networks: p2.remote_networks.iter().map(Subnet::to_string).collect(),
            },
            network: OutNetwork {
                mode_config: self.network.mode_config.as_str(),
                virtual_ip: self.network.virtual_ip.map(|a| a.to_string()),
                nat_traversal: self.network.nat_traversal.as_str(),
                datapath: self.network.datapath.as_str(),
                dns: self.network.dns.as_str(),
                dpd: match self.network.dpd {
                    None => OutDpd::Off("off"),
                    Some(d) => OutDpd::On {
                        interval: format_duration(d.interval),
                        timeout: format_duration(d.timeout),
                    },
                },
                reconnect: self.network.reconnect,
                nat_keepalive: self
                    .network
                    .nat_keepalive
                    .map_or("off".to_string(), format_duration),
                on_suspend: self.network.on_suspend.as_str(),
                retransmit: OutRetransmit {
                    tries: self.network.retransmit.tries,
                    base: format_duration(self.network.retransmit.base),
                    cap: format_duration(self.network.retransmit.cap),
                },
                check_host: self.network.check_host.map(|a| a.to_string()),
                check_domain: self.network.check_domain.clone(),
                portal_url: self.network.portal_url.clone(),
                kill_switch: self.network.kill_switch,
                allow_lan: self.network.allow_lan,
                mobike: self.network.mobike,
                ike_fragment_size: self.network.ike_fragment_size,
            },
        };
        toml::to_string(&out).expect("a profile always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let s = Duration::from_secs;
        for (t, want) in [
            ("30s", s(30)),
            ("15m", s(900)),
            ("8h", s(28800)),
            ("1h30m", s(5400)),
            ("1d", s(86400)),
            ("3600", s(3600)),
            ("0", s(0)),
            (" 90s ", s(90)),
            ("1d2h3m4s", s(93784)),
            ("500ms", Duration::from_millis(500)),
            ("1s500ms", Duration::from_millis(1500)),
        ] {
            assert_eq!(parse_duration(t), Ok(want), "{t}");
        }
        for bad in [
            "",
            "s",
            "10x",
            "1.5h",
            "-5",
            "h1",
            "1h 30m",
            "99999999999999999999d",
            "10S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [
            s(0),
            s(1),
            s(59),
            s(60),
            s(5400),
            s(86400),
            s(93784),
            Duration::from_millis(1500),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(s(5400)), "1h30m");
    }

    #[test]
    fn ike_fragment_size_is_bounded_and_round_trips() {
        let with = |v: &str| {
            Profile::from_toml_str(
                &format!(
                    "name = \"x\"\ngateway = \"192.0.2.1\"\n\n[network]\nike_fragment_size = {v}\n"
                ),
                "x.toml",
                SecretPolicy::Forbid,
            )
        };
        let p = with("399").unwrap_err();
        assert_eq!(p.key.as_deref(), Some("network.ike_fragment_size"));
        assert!(p.to_string().contains("400..=65000"), "{p}");
        for bad in ["0", "65001", "-1", "70000", "\"500\""] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert_eq!(
            with("65000").unwrap().network.ike_fragment_size,
            Some(65000)
        );
        let p = with("500").unwrap();
        assert_eq!(p.network.ike_fragment_size, Some(500));
        let text = p.to_toml_string();
        assert!(text.contains("ike_fragment_size = 500"), "{text}");
        let again = Profile::from_toml_str(&text, "x.toml", SecretPolicy::Forbid).unwrap();
        assert_eq!(again.network.ike_fragment_size, Some(500));
        // Unset: left out of the file, the engine's default applies.
        let plain = Profile::from_toml_str(
            "name = \"x\"\ngateway = \"192.0.2.1\"\n",
            "x.toml",
            SecretPolicy::Forbid,
        )
        .unwrap();
        assert_eq!(plain.network.ike_fragment_size, None);
        assert_eq!(with("1280").unwrap().network, plain.network);
        assert!(!plain.to_toml_string().contains("ike_fragment_size"));
    }

    #[test]
    fn subnets() {
        let n: Subnet = "10.77.0.0/24".parse().unwrap();
        assert_eq!(
            n,
            Subnet {
                addr: "10.77.0.0".parse().unwrap(),
                prefix: 24
            }
        );
        assert_eq!(n.to_string(), "10.77.0.0/24");
        assert!(n.contains("10.77.0.9".parse().unwrap()));
        assert!(!n.contains("10.78.0.9".parse().unwrap()));
        assert_eq!("192.0.2.1".parse::<Subnet>().unwrap().prefix, 32);
        assert_eq!("2001:db8::1".parse::<Subnet>().unwrap().prefix, 128);
        assert_eq!(
            "2001:db8::/32".parse::<Subnet>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!("0.0.0.0/0".parse::<Subnet>().unwrap().prefix, 0);
        let e = "10.77.0.1/24".parse::<Subnet>().unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.77.0.0/24"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identities() {
        let ok = [
            (
                "address:192.0.2.1",
                Identity::Address("192.0.2.1".parse().unwrap()),
            ),
            (
                "address:2001:db8::1",
                Identity::Address("2001:db8::1".parse().unwrap()),
            ),
            (
                "fqdn:vpn.example.com",
                Identity::Fqdn("vpn.example.com".into()),
            ),
            (
                "user-fqdn:alice@example.com",
                Identity::UserFqdn("alice@example.com".into()),
            ),
            (
                "keyid:office-group",
                Identity::KeyId(b"office-group".to_vec()),
            ),
            ("keyid:0x0a0b", Identity::KeyId(vec![0x0a, 0x0b])),
            (
                "dn:CN=vpn, O=Example",
                Identity::Dn("CN=vpn, O=Example".into()),
            ),
            ("192.0.2.7", Identity::Address("192.0.2.7".parse().unwrap())),
            (
                "2001:db8::7",
                Identity::Address("2001:db8::7".parse().unwrap()),
            ),
            (
                "bob@example.com",
                Identity::UserFqdn("bob@example.com".into()),
            ),
            (
                "laptop.example.com",
                Identity::Fqdn("laptop.example.com".into()),
            ),
        ];
        for (s, want) in ok {
            let got: Identity = s.parse().unwrap();
            assert_eq!(got, want, "{s}");
            assert_eq!(
                got.to_string().parse::<Identity>().unwrap(),
                want,
                "{s} round trip"
            );
        }
        assert_eq!(
            Identity::KeyId(vec![0, 1, 0xff]).to_string(),
            "keyid:0x0001ff"
        );
        assert_eq!(
            Identity::KeyId(b"0xab".to_vec()).to_string(),
            "keyid:0x30786162"
        );
        assert_eq!(
            Identity::Fqdn("a.example".into()).to_string(),
            "fqdn:a.example"
        );
        for bad in [
            "",
            "address:vpn.example.com",
            "fqdn:",
            "keyid:",
            "dn:nothing",
            "CN=foo",
            "x509:foo",
            "two words",
            "keyid:caf\u{e9}",
            "fqdn:a\tb",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "vpn.example.com",
            "vpn.example.com.",
            "192.0.2.1",
            "2001:db8::1",
            "gw",
            "a-b.c0",
        ] {
            assert_eq!(validate_host(ok), Ok(()), "{ok}");
        }
        let long = format!("{}.com", "a".repeat(250));
        for bad in [
            "",
            "vpn example.com",
            "-vpn.example.com",
            "vpn..example",
            "300.1.1.1",
            "vpn_1.example",
            "a\n",
            &long,
            "http://vpn",
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(unbracket("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(unbracket("2001:db8::1"), "2001:db8::1");
        // Brackets only around an IPv6 literal.
        assert_eq!(unbracket("[vpn.example.com]"), "[vpn.example.com]");
        assert!(validate_host(unbracket("[192.0.2.1]")).is_err());
        let p = Profile::from_toml_str(
            "name = \"x\"\ngateway = \"[fd00::1]\"\n",
            "t.toml",
            SecretPolicy::Forbid,
        )
        .expect("bracketed IPv6 gateway");
        assert_eq!(p.gateway, "fd00::1");
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
        let mut p = Profile::new("x", "vpn.example.com");
        p.auth.psk = Some(s);
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!p.to_toml_string().contains("hunter2"));
    }

    #[test]
    fn keywords() {
        assert_eq!(
            "aggressive".parse::<ExchangeMode>(),
            Ok(ExchangeMode::Aggressive)
        );
        let e = "agressive".parse::<ExchangeMode>().unwrap_err();
        assert_eq!(e, "'agressive' is not one of \"main\", \"aggressive\"");
        assert_eq!(AuthMethod::RsaSig.to_string(), "rsa-sig");
    }
}
