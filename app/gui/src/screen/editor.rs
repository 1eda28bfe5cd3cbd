//! The profile editor: the five fields an admin gives (name, gateway, authentication
//! with its PSK, local ID / group, XAuth user) and, behind "Advanced", every other key
//! of the profile contract, grouped as a user thinks.
//!
//! The form is text; each keystroke builds the profile's TOML from it and checks it
//! with the contract's own parser (`Profile::from_toml_str` under
//! `SecretPolicy::Forbid`): the message under a field is the parser's, and Save is
//! disabled while the parser refuses. Empty fields are left out of the file, so the
//! parser's defaults apply (shown as placeholders). The PSK never goes into the
//! TOML: Save hands it to the app, which stores it in the keyring.

use iced::widget::{
    button, checkbox, column, container, pick_list, row, scrollable, space, text, text_input,
};
use iced::{Element, Length};
#[cfg(test)]
use postern_dbus::profile::{
    AuthMethod, Autoconnect, Datapath, DnsMode, EncapMode, ExchangeMode, ModeConfig, NatTraversal,
};
use postern_dbus::profile::{Profile, Secret, SecretPolicy};
use postern_frontend::profiles;

use crate::style;

/// How a field's text becomes TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// Comma-separated: an array of strings.
    List,
    /// One of these keywords.
    Choice(&'static [&'static str]),
    /// An integer (anything else is passed as a string, for the parser to refuse).
    Int,
    /// A file's path, with a "Choose…" button (the desktop's file dialog).
    File(FileKind),
    /// Comma-separated proposals, edited as rows of pick lists (encryption, integrity,
    /// DH group) from the algorithms Postern supports.
    Proposals(Phase),
}

/// Which phase a proposals field is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ike,
    Esp,
}

/// Phase 1 encryption, integrity (PRF) and DH groups as `postern_algs` names them
/// (every combination parses: see the tests).
pub const IKE_CIPHERS: &[&str] = &["aes256", "aes192", "aes128", "3des"];
pub const IKE_HASHES: &[&str] = &["sha256", "sha384", "sha512", "sha1", "md5"];
/// Phase 2 encryption and integrity; GCM carries its own integrity.
pub const ESP_CIPHERS: &[&str] = &[
    "aes256",
    "aes192",
    "aes128",
    "aes256gcm16",
    "aes192gcm16",
    "aes128gcm16",
    "3des",
];
pub const ESP_AUTHS: &[&str] = &["sha256", "sha384", "sha512", "sha1", "md5"];

/// The DH groups Postern supports for both IKE versions, strongest common ones first
/// (curve25519, IKEv2 only, is typed as text).
pub fn groups() -> Vec<&'static str> {
    postern_algs::algs::DhGroup::ALL
        .iter()
        .filter(|g| !g.ikev2_only())
        .map(|g| g.name())
        .collect()
}

/// One proposal split into its parts (`None`: it does not parse; kept as typed).
pub fn split_proposal(phase: Phase, s: &str) -> Option<[String; 3]> {
    match phase {
        // The IKEv2-only ones (AES-GCM with a PRF, curve25519) stay as typed.
        Phase::Ike => postern_algs::proposal::parse_ike(s)
            .ok()
            .filter(|p| !p.ikev2_only())
            .map(|p| {
                [
                    p.cipher.name().to_string(),
                    p.hash.name().to_string(),
                    p.group.name().to_string(),
                ]
            }),
        Phase::Esp => postern_algs::proposal::parse_esp(s).ok().map(|p| {
            [
                p.cipher.name(),
                p.auth.map(|a| a.name().to_string()).unwrap_or_default(),
                p.group.map(|g| g.name().to_string()).unwrap_or_default(),
            ]
        }),
    }
}

/// Parts back into one proposal (`aes256-sha256-modp2048`, `aes256gcm16`).
pub fn join_proposal(parts: &[String; 3]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("-")
}

/// The choices for part `part` (0 encryption, 1 integrity, 2 group) of a row whose
/// encryption is `cipher`.
pub fn part_choices(phase: Phase, part: usize, cipher: &str) -> Vec<String> {
    let v: Vec<&str> = match (phase, part) {
        (Phase::Ike, 0) => IKE_CIPHERS.to_vec(),
        (Phase::Ike, 1) => IKE_HASHES.to_vec(),
        (Phase::Ike, _) => groups(),
        (Phase::Esp, 0) => ESP_CIPHERS.to_vec(),
        (Phase::Esp, 1) if cipher.contains("gcm") => vec![],
        (Phase::Esp, 1) => ESP_AUTHS.to_vec(),
        // Phase 2: a group is this proposal's PFS; "" for none.
        (Phase::Esp, _) => std::iter::once("").chain(groups()).collect(),
    };
    v.into_iter().map(str::to_string).collect()
}

/// What a file field holds (which filters its dialog offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// PEM or DER certificates, keys, CRLs.
    Pem,
    /// A PKCS#12 bundle.
    Pkcs12,
}

/// One field of the form: a key of the profile contract.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Dotted key path (`phase1.proposals`); "" for none.
    pub key: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    /// The group under "Advanced"; `None`: the basic view.
    pub group: Option<&'static str>,
    /// A placeholder when the contract has no default for it.
    pub hint: &'static str,
}

const fn f(
    key: &'static str,
    label: &'static str,
    kind: Kind,
    group: Option<&'static str>,
    hint: &'static str,
) -> Field {
    Field {
        key,
        label,
        kind,
        group,
        hint,
    }
}

// `as_str` is not const in the contract; the keyword lists are checked against it in
// the tests below (one source of truth, verified).
const EXCHANGE: &[&str] = &["main", "aggressive"];
/// `ike_version` 1 and 2, as the form shows them (the TOML has the number).
const IKE_VERSIONS: &[&str] = &["IKEv1", "IKEv2"];
/// Mode Config in IKEv2: the address is asked for in IKE_AUTH (no push).
const MODE_CONFIG_V2: &[&str] = &["pull", "off"];
/// `autoconnect`: `boot` is for system profiles (the helper ignores it on yours), kept
/// so a profile that says it survives the form.
const AUTOCONNECT: &[&str] = &["no", "login", "boot"];
const METHODS: &[&str] = &["psk", "rsa-sig", "hybrid", "eap-tls"];
const ENCAP: &[&str] = &["tunnel", "transport"];
const MODE_CONFIG: &[&str] = &["pull", "push", "off"];
const NAT: &[&str] = &["auto", "force", "off"];
const DATAPATH: &[&str] = &["auto", "kernel", "userspace"];
const DNS: &[&str] = &["split", "full", "off"];
const ON_SUSPEND: &[&str] = &["keep", "disconnect"];
const ON_OFF: &[&str] = &["true", "false"];
/// "none" and the DH groups of `postern_algs::algs::DhGroup::ALL` (checked in the
/// tests).
const PFS: &[&str] = &[
    "none", "modp768", "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144",
    "modp8192", "ecp256", "ecp384", "ecp521",
];
/// Index of the name field.
pub const NAME: usize = 0;
/// Index of the authentication method field.
pub const METHOD: usize = 2;

/// The index of the field of `key` (every key used here is in [`FIELDS`]).
pub fn index(key: &str) -> usize {
    FIELDS.iter().position(|f| f.key == key).unwrap_or(NAME)
}

const G_GENERAL: Option<&str> = Some("General");
const G_AUTH: Option<&str> = Some("Authentication");
const G_P1: Option<&str> = Some("Phase 1 (IKE)");
const G_P2: Option<&str> = Some("Phase 2 (ESP)");
const G_NET: Option<&str> = Some("Network");

/// Every field, basic ones first.
pub const FIELDS: &[Field] = &[
    f("name", "Name", Kind::Text, None, "office"),
    f("gateway", "Gateway", Kind::Text, None, "vpn.example.com"),
    f(
        "auth.method",
        "Authentication",
        Kind::Choice(METHODS),
        None,
        "",
    ),
    f(
        "auth.local_id",
        "Local ID / group",
        Kind::Text,
        None,
        "keyid:sales (your IP address when empty)",
    ),
    f(
        "xauth.username",
        "XAuth user name",
        Kind::Text,
        None,
        "empty: no XAuth",
    ),
    f(
        "exchange_mode",
        "Exchange mode",
        Kind::Choice(EXCHANGE),
        G_GENERAL,
        "",
    ),
    f(
        "autoconnect",
        "Connect automatically",
        Kind::Choice(AUTOCONNECT),
        G_GENERAL,
        "login: when the app starts at login (Settings)",
    ),
    f(
        "auth.remote_id",
        "Gateway ID",
        Kind::Text,
        G_AUTH,
        "checked when given, e.g. fqdn:vpn.example.com",
    ),
    f(
        "auth.ca",
        "CA file",
        Kind::File(FileKind::Pem),
        G_AUTH,
        "/path/to/ca.pem",
    ),
    f(
        "auth.cert",
        "Certificate file",
        Kind::File(FileKind::Pem),
        G_AUTH,
        "/path/to/cert.pem",
    ),
    f(
        "auth.key",
        "Key file",
        Kind::File(FileKind::Pem),
        G_AUTH,
        "/path/to/key.pem",
    ),
    f(
        "auth.pkcs12",
        "PKCS#12 file",
        Kind::File(FileKind::Pkcs12),
        G_AUTH,
        "/path/to/bundle.p12",
    ),
    f(
        "auth.crl",
        "CRL file",
        Kind::File(FileKind::Pem),
        G_AUTH,
        "/path/to/crl.pem",
    ),
    f(
        "ike_version",
        "IKE version",
        Kind::Choice(IKE_VERSIONS),
        G_P1,
        "",
    ),
    f(
        "phase1.proposals",
        "Proposals",
        Kind::Proposals(Phase::Ike),
        G_P1,
        "",
    ),
    f("phase1.lifetime", "Lifetime", Kind::Text, G_P1, ""),
    f(
        "phase2.proposals",
        "Proposals",
        Kind::Proposals(Phase::Esp),
        G_P2,
        "",
    ),
    f("phase2.pfs", "PFS group", Kind::Choice(PFS), G_P2, ""),
    f("phase2.lifetime", "Lifetime", Kind::Text, G_P2, ""),
    f(
        "phase2.lifetime_kb",
        "Volume lifetime (KiB)",
        Kind::Int,
        G_P2,
        "none",
    ),
    f("phase2.mode", "Mode", Kind::Choice(ENCAP), G_P2, ""),
    f(
        "phase2.local_networks",
        "Local networks",
        Kind::List,
        G_P2,
        "empty: the virtual IP",
    ),
    f(
        "phase2.remote_networks",
        "Remote networks",
        Kind::List,
        G_P2,
        "empty: what the gateway pushes, e.g. 10.77.0.0/24",
    ),
    f(
        "network.mode_config",
        "Mode Config",
        Kind::Choice(MODE_CONFIG),
        G_NET,
        "",
    ),
    f(
        "network.virtual_ip",
        "Fixed inner address",
        Kind::Text,
        G_NET,
        "none: from the gateway",
    ),
    f(
        "network.nat_traversal",
        "NAT traversal",
        Kind::Choice(NAT),
        G_NET,
        "",
    ),
    f(
        "network.dpd.interval",
        "DPD interval (\"off\": no DPD)",
        Kind::Text,
        G_NET,
        "",
    ),
    f("network.dpd.timeout", "DPD timeout", Kind::Text, G_NET, ""),
    f(
        "network.reconnect",
        "Reconnect by itself",
        Kind::Choice(ON_OFF),
        G_NET,
        "",
    ),
    f(
        "network.datapath",
        "Datapath",
        Kind::Choice(DATAPATH),
        G_NET,
        "",
    ),
    f("network.dns", "DNS", Kind::Choice(DNS), G_NET, ""),
    f(
        "network.on_suspend",
        "On suspend",
        Kind::Choice(ON_SUSPEND),
        G_NET,
        "",
    ),
    f(
        "network.nat_keepalive",
        "NAT keepalive",
        Kind::Text,
        G_NET,
        "",
    ),
    f(
        "network.check_host",
        "Check: host that answers ping",
        Kind::Text,
        G_NET,
        "the first DNS server, e.g. 10.77.0.10",
    ),
    f(
        "network.check_domain",
        "Check: DNS name to ask",
        Kind::Text,
        G_NET,
        "the gateway's domain",
    ),
    f(
        "network.portal_url",
        "Check: captive portal probe",
        Kind::Text,
        G_NET,
        "NetworkManager's check, e.g. http://…/generate_204",
    ),
    f(
        "network.kill_switch",
        "Kill switch (block traffic outside the tunnel)",
        Kind::Choice(ON_OFF),
        G_NET,
        "",
    ),
    f(
        "network.allow_lan",
        "Kill switch: allow the local network",
        Kind::Choice(ON_OFF),
        G_NET,
        "",
    ),
    f(
        "network.mobike",
        "IKEv2 roaming (MOBIKE)",
        Kind::Choice(ON_OFF),
        G_NET,
        "",
    ),
    f(
        "network.ike_fragment_size",
        "IKE fragment size (bytes)",
        Kind::Int,
        G_NET,
        "default: 1280 (400 to 65000)",
    ),
    f(
        "network.retransmit.tries",
        "Retransmissions",
        Kind::Int,
        G_NET,
        "",
    ),
    f(
        "network.retransmit.base",
        "First retransmission after",
        Kind::Text,
        G_NET,
        "",
    ),
    f(
        "network.retransmit.cap",
        "Longest wait",
        Kind::Text,
        G_NET,
        "",
    ),
];

/// The keyword lists above are the contract's (checked here rather than copied
/// blindly).
#[cfg(test)]
fn contract_words() -> Vec<(&'static [&'static str], Vec<&'static str>)> {
    vec![
        (
            EXCHANGE,
            ExchangeMode::ALL.iter().map(|x| x.as_str()).collect(),
        ),
        (
            AUTOCONNECT,
            Autoconnect::ALL.iter().map(|x| x.as_str()).collect(),
        ),
        (
            METHODS,
            AuthMethod::ALL.iter().map(|x| x.as_str()).collect(),
        ),
        (ENCAP, EncapMode::ALL.iter().map(|x| x.as_str()).collect()),
        (
            MODE_CONFIG,
            ModeConfig::ALL.iter().map(|x| x.as_str()).collect(),
        ),
        (NAT, NatTraversal::ALL.iter().map(|x| x.as_str()).collect()),
        (DATAPATH, Datapath::ALL.iter().map(|x| x.as_str()).collect()),
        (DNS, DnsMode::ALL.iter().map(|x| x.as_str()).collect()),
    ]
}

#[derive(Debug, Clone)]
pub enum Message {
    Input(usize, String),
    Psk(String),
    ToggleAdvanced(bool),
    /// The "Choose…" button of file field `i`.
    Choose(usize),
    /// Proposals field `i`, row `row`, part `part` (0 encryption, 1 integrity, 2 group)
    /// set to a value.
    Part(usize, usize, usize, String),
    /// Add a proposal row to field `i` (a copy of the last, or Postern's first default).
    AddProposal(usize),
    /// Remove row `row` of field `i`.
    RemoveProposal(usize, usize),
    /// Keyboard: the next choice of a focused pick list (field `i`; for a proposals
    /// field, row and part).
    Cycle(usize, Option<(usize, usize)>),
    /// "Edit as administrator": a system profile's form becomes editable (Save then
    /// asks polkit, through the helper).
    Unlock,
    Save,
    Cancel,
}

/// What the app does for the editor.
#[derive(Debug, Clone)]
pub enum Event {
    /// Write `text` as profile `name` (replacing `original` when it was renamed), and
    /// store `psk` in the keyring when given.
    Save {
        name: String,
        original: Option<String>,
        text: String,
        psk: Option<Secret>,
    },
    /// Write system profile `name` (the file's stem) as `text`, through the helper
    /// (`SaveSystemProfile`, an administrator's password).
    SaveSystem {
        name: String,
        text: String,
    },
    /// Open the desktop's file dialog for file field `i`.
    Choose(usize),
    Cancel,
}

/// A system profile in the editor (/etc/postern/profiles/NAME.toml): read-only until
/// "Edit as administrator".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemEdit {
    /// The file (shown; never sent: the helper takes the name).
    pub file: String,
    /// Fields shown, not editable.
    pub locked: bool,
    /// Save was pressed: the helper (and polkit's agent) has not answered yet.
    pub saving: bool,
}

/// The line that says whose a system profile is.
pub const SYSTEM_LINE: &str = "System profile, managed by your administrator";

/// What an import brought besides the profile: shown above the form, and saved with it
/// (secrets to the keyring, embedded files beside the profile).
#[derive(Debug, Clone)]
pub struct ImportNotes {
    /// "office.pcf (Cisco VPN Client .pcf)".
    pub source: String,
    /// What could not be carried over: "line 12: EnableBackup: not carried over: …".
    pub warnings: Vec<String>,
    /// Material the file only points to: "auth.cert: …".
    pub missing: Vec<String>,
    /// Secrets found, by keyring kind.
    pub secrets: std::collections::BTreeMap<String, Secret>,
    /// Secrets the profile needs that the file did not hold (keyring kinds).
    pub secrets_missing: Vec<String>,
    /// Embedded files: profile key, file name, contents.
    pub files: Vec<(String, String, Vec<u8>)>,
}

impl ImportNotes {
    pub fn from_imported(i: &postern_frontend::import::Imported, file: &str) -> ImportNotes {
        ImportNotes {
            source: format!("{file} ({})", format_label(i.format)),
            warnings: i
                .warnings
                .iter()
                .map(|w| match w.line {
                    Some(l) => format!("line {l}: {}: {}", w.key, w.message),
                    None => format!("{}: {}", w.key, w.message),
                })
                .collect(),
            missing: i
                .missing
                .iter()
                .map(|m| format!("{}: {}", m.key, m.message))
                .collect(),
            secrets: i.secrets.clone(),
            secrets_missing: i.secrets_missing.clone(),
            files: i.files.clone(),
        }
    }
}

/// A format's name as a user knows it.
pub fn format_label(f: postern_frontend::import::Format) -> &'static str {
    use postern_frontend::import::Format as F;
    match f {
        F::Pcf => "Cisco VPN Client .pcf",
        F::Shrew => "Shrew Soft .vpn",
        F::IpsecConf => "ipsec.conf",
        F::Swanctl => "strongSwan swanctl.conf",
        F::Racoon => "racoon.conf",
        F::Ifcfg => "Red Hat ifcfg-ipsec",
        F::NmConnection => "NetworkManager .nmconnection",
    }
}

/// A keyring kind in words.
pub fn secret_label(kind: &str) -> &str {
    match kind {
        "psk" => "the pre-shared key",
        "xauth-password" => "the XAuth password",
        "key-passphrase" => "the key's passphrase",
        other => other,
    }
}

/// The parser's refusal, placed on a field when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct State {
    /// The profile being edited (`None`: a new one).
    pub original: Option<String>,
    pub values: Vec<String>,
    pub psk: String,
    /// The keyring already has a PSK for it (the field may stay empty).
    pub has_stored_psk: bool,
    pub advanced: bool,
    pub invalid: Option<Invalid>,
    /// The names of existing profiles (a new profile may not take one).
    pub taken: Vec<String>,
    /// Saving failed (the file could not be written).
    pub save_error: Option<String>,
    /// What an import brought (`None`: not an import).
    pub import: Option<ImportNotes>,
    /// A system profile (`None`: one of the user's).
    pub system: Option<SystemEdit>,
    /// Why this machine's policy refuses the profile (the helper's sentence), shown
    /// above the form.
    pub refused: Option<String>,
    /// Fields the user has typed in (a new form does not scold untouched fields).
    touched: Vec<bool>,
    defaults: Vec<String>,
}

impl State {
    /// An empty form for a new profile.
    pub fn new(taken: Vec<String>) -> State {
        let mut s = State {
            original: None,
            values: vec![String::new(); FIELDS.len()],
            psk: String::new(),
            has_stored_psk: false,
            advanced: false,
            invalid: None,
            taken,
            save_error: None,
            import: None,
            system: None,
            refused: None,
            touched: vec![false; FIELDS.len()],
            defaults: defaults(),
        };
        s.validate();
        s
    }

    /// The form of an existing profile, from its file's text (only what it sets).
    pub fn edit(name: &str, text: &str, taken: Vec<String>, has_stored_psk: bool) -> State {
        let mut s = State::new(taken);
        s.original = Some(name.to_string());
        s.has_stored_psk = has_stored_psk;
        if let Ok(v) = text.parse::<toml::Table>() {
            for (i, fl) in FIELDS.iter().enumerate() {
                s.values[i] = lookup(&v, fl.key).unwrap_or_default();
            }
        }
        s.values[NAME] = name.to_string();
        s.touched = vec![true; FIELDS.len()];
        // Anything advanced set: open that part.
        s.advanced = FIELDS
            .iter()
            .zip(&s.values)
            .any(|(f, v)| f.group.is_some() && !v.is_empty());
        s.validate();
        s
    }

    /// System profile `name` (the file's stem), from the helper's text of it (no
    /// secrets), read-only.
    pub fn system(name: &str, text: &str, file: &str) -> State {
        let mut s = State::edit(name, text, Vec::new(), false);
        s.system = Some(SystemEdit {
            file: file.to_string(),
            locked: true,
            saving: false,
        });
        // The file's own `name` key, when it has one (a title may differ from the
        // file's name, and is kept).
        if let Ok(v) = text.parse::<toml::Table>()
            && let Some(n) = lookup(&v, "name")
        {
            s.values[NAME] = n;
        }
        s.validate();
        s
    }

    /// The form shows values only (a locked system profile).
    pub fn read_only(&self) -> bool {
        self.system.as_ref().is_some_and(|s| s.locked || s.saving)
    }

    /// A copy of an existing profile's form under a new, free name.
    pub fn duplicate(name: &str, text: &str, taken: Vec<String>) -> State {
        let mut s = State::edit(name, text, taken.clone(), false);
        s.original = None;
        let mut n = 2;
        let mut new = format!("{name}-copy");
        while taken.contains(&new) {
            new = format!("{name}-copy{n}");
            n += 1;
        }
        s.values[NAME] = new;
        s.validate();
        s
    }

    /// The form of an imported profile (a new one, under a free name), with what the
    /// import could not carry over shown above it. Values equal to the contract's
    /// defaults are left empty (shown as "default: …"), so "Advanced" opens only when
    /// the file set something else.
    pub fn imported(name: &str, text: &str, taken: Vec<String>, notes: ImportNotes) -> State {
        let mut s = State::edit(name, text, taken.clone(), false);
        s.original = None;
        let mut free = name.to_string();
        let mut n = 2;
        while taken.contains(&free) {
            free = format!("{name}-{n}");
            n += 1;
        }
        s.values[NAME] = free;
        for (i, f) in FIELDS.iter().enumerate() {
            if f.group.is_some() && s.values[i] == s.defaults[i] {
                s.values[i].clear();
            }
        }
        s.advanced = FIELDS
            .iter()
            .zip(&s.values)
            .any(|(f, v)| f.group.is_some() && !v.is_empty());
        s.has_stored_psk = notes.secrets.contains_key("psk");
        s.import = Some(notes);
        s.validate();
        s
    }

    /// The proposals of field `i` as rows: parts, or the text of one that does not
    /// parse (kept, shown as typed, removable).
    pub fn rows(&self, i: usize) -> Vec<Result<[String; 3], String>> {
        let Some(Kind::Proposals(phase)) = FIELDS.get(i).map(|f| f.kind) else {
            return Vec::new();
        };
        self.values[i]
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| split_proposal(phase, x).ok_or_else(|| x.to_string()))
            .collect()
    }

    fn set_rows(&mut self, i: usize, rows: &[Result<[String; 3], String>]) {
        let text: Vec<String> = rows
            .iter()
            .map(|r| match r {
                Ok(p) => join_proposal(p),
                Err(t) => t.clone(),
            })
            .collect();
        let _ = self.update(Message::Input(i, text.join(", ")));
    }

    fn set_part(&mut self, i: usize, r: usize, part: usize, v: String) {
        let mut rows = self.rows(i);
        if let Some(Ok(p)) = rows.get_mut(r)
            && part < 3
        {
            p[part] = v;
            // GCM has its own integrity; a CBC cipher needs one.
            if part == 0 {
                if p[0].contains("gcm") {
                    p[1].clear();
                } else if p[1].is_empty() {
                    p[1] = "sha256".into();
                }
            }
        }
        self.set_rows(i, &rows);
    }

    /// The form says IKEv2 (`ike_version = 2`).
    pub fn ikev2(&self) -> bool {
        self.values[index("ike_version")] == "IKEv2"
    }

    /// A field's label as the IKE version has it: IKEv2's user login is EAP.
    pub fn label(&self, i: usize) -> &'static str {
        match FIELDS[i].key {
            "xauth.username" if self.ikev2() => "User login (EAP)",
            "network.mode_config" if self.ikev2() => "Ask for an address",
            _ => FIELDS[i].label,
        }
    }

    /// The keywords a choice field offers (IKEv2 has no pushed Mode Config).
    fn words(&self, i: usize) -> &'static [&'static str] {
        match FIELDS[i].kind {
            Kind::Choice(_) if FIELDS[i].key == "network.mode_config" && self.ikev2() => {
                MODE_CONFIG_V2
            }
            Kind::Choice(w) => w,
            _ => &[],
        }
    }

    /// Shown instead of the field, with IKEv2: what does not apply.
    fn not_in_ikev2(&self, i: usize) -> Option<&'static str> {
        (self.ikev2() && FIELDS[i].key == "exchange_mode")
            .then_some("IKEv2 has no main or aggressive mode (IKE_SA_INIT, then IKE_AUTH)")
    }

    pub fn method(&self) -> &str {
        match self.values[METHOD].as_str() {
            "" => "psk",
            m => m,
        }
    }

    /// The profile's TOML as the form says (empty fields left out).
    pub fn to_toml(&self) -> String {
        let js = profiles::js;
        let mut top = String::new();
        let mut sections: Vec<(&str, String)> = Vec::new();
        for (fl, v) in FIELDS.iter().zip(&self.values) {
            let v = v.trim();
            if v.is_empty() || fl.key.is_empty() {
                continue;
            }
            let (section, key) = match fl.key.split_once('.') {
                Some((s, k)) => (s, k),
                None => ("", fl.key),
            };
            let line = if fl.key == "network.dpd.interval" && v == "off" {
                "dpd = \"off\"\n".to_string()
            } else if fl.key == "network.dpd.timeout" && self.dpd_off() {
                continue;
            } else if fl.key == "exchange_mode" && self.ikev2() {
                // IKEv2 has no exchange modes: kept in the form, left out of the file.
                continue;
            } else if fl.key == "ike_version" {
                match v.strip_prefix("IKEv") {
                    Some(n @ ("1" | "2")) => format!("ike_version = {n}\n"),
                    _ => format!("ike_version = {}\n", js(v)),
                }
            } else {
                let value = match fl.kind {
                    Kind::Text | Kind::File(_) => js(v),
                    Kind::List | Kind::Proposals(_) => {
                        let items: Vec<String> = v
                            .split(',')
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                            .map(js)
                            .collect();
                        format!("[{}]", items.join(", "))
                    }
                    Kind::Choice(_)
                        if matches!(
                            fl.key,
                            "network.reconnect"
                                | "network.kill_switch"
                                | "network.allow_lan"
                                | "network.mobike"
                        ) && ON_OFF.contains(&v) =>
                    {
                        v.to_string()
                    }
                    Kind::Choice(_) => js(v),
                    Kind::Int => match v.parse::<i64>() {
                        Ok(n) => n.to_string(),
                        Err(_) => js(v),
                    },
                };
                format!("{key} = {value}\n")
            };
            if section.is_empty() {
                top.push_str(&line);
            } else if let Some((_, body)) = sections.iter_mut().find(|(s, _)| *s == section) {
                body.push_str(&line);
            } else {
                sections.push((section, line));
            }
        }
        let mut out = top;
        for (s, body) in sections {
            out.push_str(&format!("\n[{s}]\n{body}"));
        }
        out
    }

    fn dpd_off(&self) -> bool {
        FIELDS
            .iter()
            .position(|f| f.key == "network.dpd.interval")
            .is_some_and(|i| self.values[i].trim() == "off")
    }

    /// Checks the form with the contract's parser.
    pub fn validate(&mut self) {
        self.invalid = self.check().err();
    }

    fn check(&self) -> Result<Profile, Invalid> {
        let name = self.values[NAME].trim();
        // A system profile keeps its file's name (its `name` key is only a title).
        if self.system.is_none() {
            profiles::check_name(name).map_err(|e| Invalid {
                field: Some(NAME),
                message: e.message,
            })?;
        }
        if self.system.is_none()
            && self.original.as_deref() != Some(name)
            && self.taken.iter().any(|t| t == name)
        {
            return Err(Invalid {
                field: Some(NAME),
                message: format!("a profile named {name} exists"),
            });
        }
        let p =
            Profile::from_toml_str(&self.to_toml(), name, SecretPolicy::Forbid).map_err(|e| {
                let key = e.key.as_deref().map(|k| k.split('[').next().unwrap_or(k));
                let field = key.and_then(|k| {
                    FIELDS.iter().position(|f| f.key == k).or_else(|| {
                        FIELDS
                            .iter()
                            .position(|f| f.key.starts_with(&format!("{k}.")))
                    })
                });
                Invalid {
                    field,
                    message: match &e.key {
                        Some(k) => format!("{k}: {}", e.message),
                        None => e.message.clone(),
                    },
                }
            })?;
        Ok(p)
    }

    pub fn is_valid(&self) -> bool {
        self.invalid.is_none()
    }

    pub fn update(&mut self, message: Message) -> Option<Event> {
        let edits = !matches!(
            message,
            Message::ToggleAdvanced(_) | Message::Unlock | Message::Cancel
        );
        if self.read_only() && edits {
            return None;
        }
        match message {
            Message::Unlock => {
                if let Some(s) = &mut self.system {
                    s.locked = false;
                }
                None
            }
            Message::Input(NAME, _) if self.system.is_some() => None,
            Message::Input(i, v) => {
                let to_v2 = FIELDS.get(i).is_some_and(|f| f.key == "ike_version") && v == "IKEv2";
                if let Some(slot) = self.values.get_mut(i) {
                    *slot = v;
                }
                let mc = index("network.mode_config");
                if to_v2 && self.values[mc] == "push" {
                    self.values[mc] = "pull".into();
                }
                if let Some(t) = self.touched.get_mut(i) {
                    *t = true;
                }
                self.save_error = None;
                self.validate();
                None
            }
            Message::Psk(v) => {
                self.psk = v;
                None
            }
            Message::ToggleAdvanced(on) => {
                self.advanced = on;
                None
            }
            Message::Choose(i) => Some(Event::Choose(i)),
            Message::Part(i, r, part, v) => {
                self.set_part(i, r, part, v);
                None
            }
            Message::AddProposal(i) => {
                let mut rows = self.rows(i);
                let next = match rows.last() {
                    Some(Ok(p)) => join_proposal(p),
                    _ => self.defaults[i]
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                rows.push(Err(next));
                self.set_rows(i, &rows);
                None
            }
            Message::RemoveProposal(i, r) => {
                let mut rows = self.rows(i);
                if r < rows.len() {
                    let _ = rows.remove(r);
                }
                self.set_rows(i, &rows);
                None
            }
            Message::Cycle(i, None) => {
                if let Some(Kind::Choice(_)) = FIELDS.get(i).map(|f| f.kind) {
                    let words = self.words(i);
                    let cur = words.iter().position(|w| *w == self.values[i]);
                    let next = match cur {
                        Some(c) => words[(c + 1) % words.len()],
                        None => words[0],
                    };
                    return self.update(Message::Input(i, next.to_string()));
                }
                None
            }
            Message::Cycle(i, Some((r, part))) => {
                let Some(Kind::Proposals(phase)) = FIELDS.get(i).map(|f| f.kind) else {
                    return None;
                };
                if let Some(Ok(p)) = self.rows(i).get(r) {
                    let choices = part_choices(phase, part, &p[0]);
                    if !choices.is_empty() {
                        let cur = choices.iter().position(|c| *c == p[part]);
                        let next = choices[cur.map_or(0, |c| (c + 1) % choices.len())].clone();
                        self.set_part(i, r, part, next);
                    }
                }
                None
            }
            Message::Save => {
                self.validate();
                if !self.is_valid() {
                    return None;
                }
                if let Some(sys) = &mut self.system {
                    sys.saving = true;
                    self.save_error = None;
                    return Some(Event::SaveSystem {
                        name: self.original.clone().unwrap_or_default(),
                        text: self.to_toml(),
                    });
                }
                let psk = (self.method() == "psk" && !self.psk.is_empty())
                    .then(|| Secret::new(std::mem::take(&mut self.psk)));
                Some(Event::Save {
                    name: self.values[NAME].trim().to_string(),
                    original: self.original.clone(),
                    text: self.to_toml(),
                    psk,
                })
            }
            Message::Cancel => Some(Event::Cancel),
        }
    }

    fn field<'a>(&'a self, i: usize, focused: Option<&str>) -> Element<'a, Message> {
        let fl = &FIELDS[i];
        let value = &self.values[i];
        let placeholder = match self.defaults.get(i) {
            Some(d) if !d.is_empty() => format!("default: {d}"),
            _ if fl.key == "xauth.username" && self.ikev2() => "empty: no EAP login".to_string(),
            _ => fl.hint.to_string(),
        };
        let fixed = self.read_only() || (i == NAME && self.system.is_some());
        let input: Element<'a, Message> = match fl.kind {
            _ if self.not_in_ikev2(i).is_some() => container(
                text(self.not_in_ikev2(i).unwrap_or_default())
                    .size(13)
                    .style(style::muted),
            )
            .padding([6, 0])
            .width(Length::Fill)
            .into(),
            // Shown, not editable: the value as plain text (the default, muted, when
            // unset), in line with the note of the pre-shared key.
            _ if fixed => container(if value.is_empty() {
                text(placeholder).style(style::muted)
            } else {
                text(value.clone())
            })
            .padding([6, 0])
            .width(Length::Fill)
            .into(),
            Kind::Choice(_) => {
                let options: Vec<String> = self.words(i).iter().map(|w| w.to_string()).collect();
                let selected = (!value.is_empty()).then(|| value.clone());
                let on = focused == Some(choice_key(i).as_str());
                container(
                    pick_list(options, selected, move |v| Message::Input(i, v))
                        .placeholder(placeholder)
                        .width(Length::Fill),
                )
                .padding(2)
                .style(move |t| style::focus_ring(t, on))
                .into()
            }
            Kind::Proposals(phase) => self.proposals_view(i, phase, &placeholder, focused),
            Kind::File(_) => row![
                text_input(&placeholder, value)
                    .id(field_id(i))
                    .on_input(move |v| Message::Input(i, v))
                    .on_submit(Message::Save)
                    .padding(6),
                style::focus_button(
                    text("Choose…"),
                    focused == Some(choose_key(i).as_str()),
                    button::secondary
                )
                .on_press(Message::Choose(i))
                .padding([6, 12]),
            ]
            .spacing(6)
            .align_y(iced::Alignment::Center)
            .into(),
            _ => text_input(&placeholder, value)
                .id(field_id(i))
                .on_input(move |v| Message::Input(i, v))
                .on_submit(Message::Save)
                .padding(6)
                .into(),
        };
        // Proposal rows take the whole width (three pick lists and ×), under their label.
        let mut col = if matches!(fl.kind, Kind::Proposals(_)) && !fixed {
            column![text(self.label(i)), container(input).width(Length::Fill)].spacing(6)
        } else {
            column![
                row![
                    text(self.label(i)).width(Length::Fixed(190.0)),
                    container(input).width(Length::Fill)
                ]
                .spacing(12)
                .align_y(iced::Alignment::Center)
            ]
        };
        if let Some(inv) = &self.invalid
            && inv.field == Some(i)
            && self.touched[i]
        {
            col = col.push(row![
                space().width(Length::Fixed(202.0)),
                text(inv.message.clone())
                    .size(13)
                    .style(text::danger)
                    .width(Length::Fill)
            ]);
        }
        col.spacing(4).into()
    }

    /// A proposals field: one row of pick lists per proposal, "Add a proposal".
    fn proposals_view<'a>(
        &'a self,
        i: usize,
        phase: Phase,
        placeholder: &str,
        focused: Option<&str>,
    ) -> Element<'a, Message> {
        let mut col = column![].spacing(6);
        let rows = self.rows(i);
        if rows.is_empty() {
            col = col.push(text(placeholder.to_string()).size(13).style(style::muted));
        }
        for (r, row_) in rows.into_iter().enumerate() {
            let mut line = row![].spacing(6).align_y(iced::Alignment::Center);
            match row_ {
                Ok(p) => {
                    for part in 0..3 {
                        let choices = part_choices(phase, part, &p[0]);
                        if choices.is_empty() {
                            line = line.push(
                                text("(built in)")
                                    .size(13)
                                    .style(style::muted)
                                    .width(Length::FillPortion(1)),
                            );
                            continue;
                        }
                        let shown: Vec<Pick> = choices.into_iter().map(Pick).collect();
                        let selected = Some(Pick(p[part].clone()));
                        let key = part_key(i, r, part);
                        let on = focused == Some(key.as_str());
                        line = line.push(
                            container(
                                pick_list(shown, selected, move |v: Pick| {
                                    Message::Part(i, r, part, v.0)
                                })
                                .text_size(13)
                                .width(Length::Fill),
                            )
                            .padding(2)
                            .width(Length::FillPortion(1))
                            .style(move |t| style::focus_ring(t, on)),
                        );
                    }
                }
                Err(t) => {
                    line = line.push(
                        text(format!("{t} (not one Postern offers)"))
                            .size(13)
                            .style(text::danger)
                            .width(Length::Fill),
                    );
                }
            }
            let key = remove_key(i, r);
            line = line.push(
                style::focus_button(text("×"), focused == Some(key.as_str()), button::secondary)
                    .on_press(Message::RemoveProposal(i, r))
                    .padding([2, 8]),
            );
            col = col.push(line);
        }
        let key = add_key(i);
        col.push(
            style::focus_button(
                text("Add a proposal").size(13),
                focused == Some(key.as_str()),
                button::secondary,
            )
            .on_press(Message::AddProposal(i))
            .padding([3, 10]),
        )
        .into()
    }

    /// The editor's controls in Tab order: (focus key, text input id, what
    /// Enter/Space does). Pick lists take part: Enter/Space moves to the next choice.
    pub fn controls(&self) -> Vec<(String, Option<iced::widget::Id>, Option<Message>)> {
        let mut v = Vec::new();
        if self.read_only() {
            if self.system.as_ref().is_some_and(|s| !s.saving) {
                v.push(("editor-admin".to_string(), None, Some(Message::Unlock)));
            }
            v.push((
                "advanced".to_string(),
                None,
                Some(Message::ToggleAdvanced(!self.advanced)),
            ));
            return v;
        }
        let advanced = (
            "advanced".to_string(),
            None,
            Some(Message::ToggleAdvanced(!self.advanced)),
        );
        let mut advanced_box = Some(advanced);
        for (i, f) in FIELDS.iter().enumerate() {
            if f.group.is_some()
                && let Some(a) = advanced_box.take()
            {
                v.push(a);
            }
            if f.group.is_some() && !self.advanced {
                continue;
            }
            match f.kind {
                _ if self.not_in_ikev2(i).is_some() => {}
                Kind::Choice(_) => {
                    v.push((choice_key(i), None, Some(Message::Cycle(i, None))));
                }
                Kind::Proposals(phase) => {
                    for (r, row_) in self.rows(i).iter().enumerate() {
                        if let Ok(p) = row_ {
                            for part in 0..3 {
                                if !part_choices(phase, part, &p[0]).is_empty() {
                                    v.push((
                                        part_key(i, r, part),
                                        None,
                                        Some(Message::Cycle(i, Some((r, part)))),
                                    ));
                                }
                            }
                        }
                        v.push((remove_key(i, r), None, Some(Message::RemoveProposal(i, r))));
                    }
                    v.push((add_key(i), None, Some(Message::AddProposal(i))));
                }
                Kind::File(_) => {
                    v.push((format!("field-{i}"), Some(field_id(i)), None));
                    v.push((choose_key(i), None, Some(Message::Choose(i))));
                }
                _ => v.push((format!("field-{i}"), Some(field_id(i)), None)),
            }
            if i == NAME && self.system.is_some() {
                v.pop();
            }
            if i == METHOD && self.method() == "psk" && self.system.is_none() {
                v.push(("psk".into(), Some(psk_id()), None));
            }
        }
        v
    }

    pub fn view(&self, focused: Option<&str>) -> Element<'_, Message> {
        let title = match (&self.original, &self.import, &self.system) {
            (Some(n), _, Some(_)) => n.clone(),
            (Some(n), _, None) => format!("Edit {n}"),
            (None, Some(_), _) => "Imported profile".to_string(),
            (None, None, _) => "New profile".to_string(),
        };
        let mut form = column![text(title).size(22)].spacing(10);
        if let Some(sys) = &self.system {
            form = form.push(system_box(sys, focused));
        }
        if let Some(why) = &self.refused {
            form = form.push(refused_box(why));
        }
        if let Some(notes) = &self.import {
            form = form.push(import_box(notes));
        }
        for (i, fl) in FIELDS.iter().enumerate() {
            if fl.group.is_some() {
                continue;
            }
            form = form.push(self.field(i, focused));
            if i == METHOD && self.method() == "psk" && self.system.is_some() {
                form = form.push(
                    row![
                        text("Pre-shared key").width(Length::Fixed(190.0)),
                        text("kept by the helper in the administrator's files, never shown")
                            .style(style::muted)
                    ]
                    .spacing(12)
                    .align_y(iced::Alignment::Center),
                );
            } else if i == METHOD && self.method() == "psk" {
                let ph = if self
                    .import
                    .as_ref()
                    .is_some_and(|n| n.secrets.contains_key("psk"))
                {
                    "from the imported file (type to replace)"
                } else if self.has_stored_psk {
                    "stored in your keyring (type to replace)"
                } else {
                    "from your admin; kept in your keyring"
                };
                form = form.push(
                    row![
                        text("Pre-shared key").width(Length::Fixed(190.0)),
                        text_input(ph, &self.psk)
                            .id(psk_id())
                            .secure(true)
                            .on_input(Message::Psk)
                            .on_submit(Message::Save)
                            .padding(6)
                    ]
                    .spacing(12)
                    .align_y(iced::Alignment::Center),
                );
            }
        }
        let on = focused == Some("advanced");
        form = form.push(
            container(
                checkbox(self.advanced)
                    .label("Advanced")
                    .on_toggle(Message::ToggleAdvanced),
            )
            .padding(2)
            .style(move |t| style::focus_ring(t, on)),
        );
        if self.advanced {
            let mut group = None;
            for (i, fl) in FIELDS.iter().enumerate() {
                if fl.group.is_none() {
                    continue;
                }
                if fl.group != group {
                    group = fl.group;
                    form = form.push(
                        text(fl.group.unwrap_or_default())
                            .size(16)
                            .style(style::heading),
                    );
                }
                form = form.push(self.field(i, focused));
            }
        }
        let mut status = column![].spacing(4);
        if let Some(inv) = &self.invalid
            && (inv.field.is_none() || inv.field.is_some_and(|i| !self.touched[i]))
            && self.touched.iter().any(|t| *t)
        {
            status = status.push(text(inv.message.clone()).style(text::danger));
        }
        if let Some(e) = &self.save_error {
            status = status.push(text(e.clone()).style(text::danger));
        }
        let saving = self.system.as_ref().is_some_and(|s| s.saving);
        if saving {
            status = status.push(
                text("Waiting for an administrator's password (the desktop asks for it)…")
                    .style(style::muted),
            );
        }
        let save_label = if self.system.is_some() {
            "Save as administrator"
        } else {
            "Save"
        };
        let save = button(text(save_label))
            .on_press_maybe((self.is_valid() && !self.read_only()).then_some(Message::Save))
            .style(button::primary)
            .padding([6, 16]);
        let cancel = button(text(if self.read_only() { "Close" } else { "Cancel" }))
            .on_press(Message::Cancel)
            .style(button::secondary)
            .padding([6, 16]);
        let mut actions = row![space::horizontal(), cancel].spacing(8);
        if !self.read_only() || saving {
            actions = actions.push(container(save).id(style::button_id("editor-save")));
        }
        column![
            scrollable(container(form).padding([0, 16])).height(Length::Fill),
            status,
            actions
        ]
        .spacing(10)
        .padding(16)
        .into()
    }
}

/// Whose a system profile is, its file, and "Edit as administrator" while locked.
fn system_box<'a>(sys: &'a SystemEdit, focused: Option<&str>) -> Element<'a, Message> {
    let mut c = column![
        text(SYSTEM_LINE).size(16),
        text(format!(
            "{}: the file is what counts; saving it needs an administrator's password.",
            sys.file
        ))
        .size(13)
        .style(style::muted),
    ]
    .spacing(6);
    if sys.locked {
        c = c.push(
            container(
                style::focus_button(
                    text("Edit as administrator").size(14),
                    focused == Some("editor-admin"),
                    button::primary,
                )
                .on_press(Message::Unlock)
                .padding([5, 12]),
            )
            .id(style::button_id("editor-admin")),
        );
    }
    container(c)
        .padding(12)
        .width(Length::Fill)
        .style(style::notice)
        .into()
}

/// Why the helper refuses the profile (this machine's policy; a system file's mode):
/// a mark, a headline and the helper's sentence (the editor and the connection pane).
pub fn refused_box<'a, M: 'a>(why: &'a str) -> Element<'a, M> {
    container(
        row![
            style::refused_icon(),
            column![
                text(REFUSED_LINE).size(15).style(text::danger),
                text(why).size(13),
            ]
            .spacing(4)
            .width(Length::Fill)
        ]
        .spacing(10),
    )
    .padding(12)
    .width(Length::Fill)
    .style(style::failure_box)
    .into()
}

/// The headline above a policy refusal.
pub const REFUSED_LINE: &str = "This machine's policy refuses this profile.";

/// What the import could not carry over, above the form.
fn import_box(n: &ImportNotes) -> Element<'_, Message> {
    let mut c = column![text(format!("Imported from {}", n.source)).size(16)].spacing(4);
    if n.warnings.is_empty() && n.missing.is_empty() {
        c = c.push(text("Everything in the file was carried over.").size(14));
    } else {
        c = c.push(text("What could not be carried over:").size(14));
        for w in n.warnings.iter().chain(&n.missing) {
            c = c.push(text(format!("• {w}")).size(13));
        }
    }
    if !n.secrets.is_empty() {
        let found: Vec<&str> = n.secrets.keys().map(|k| secret_label(k)).collect();
        c = c.push(
            text(format!(
                "Found in the file, kept in your keyring when you save: {}.",
                found.join(", ")
            ))
            .size(13)
            .style(style::muted),
        );
    }
    if !n.secrets_missing.is_empty() {
        let missing: Vec<&str> = n.secrets_missing.iter().map(|k| secret_label(k)).collect();
        c = c.push(
            text(format!(
                "Not in the file: {} (Postern asks when you connect).",
                missing.join(", ")
            ))
            .size(13)
            .style(style::muted),
        );
    }
    container(c)
        .padding(12)
        .width(Length::Fill)
        .style(style::notice)
        .into()
}

/// A pick list's entry (a `String` that shows "none" when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick(pub String);

impl std::fmt::Display for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "no PFS" } else { &self.0 })
    }
}

pub fn choice_key(i: usize) -> String {
    format!("choice-{i}")
}

pub fn part_key(i: usize, r: usize, part: usize) -> String {
    format!("prop-{i}-{r}-{part}")
}

pub fn remove_key(i: usize, r: usize) -> String {
    format!("prop-remove-{i}-{r}")
}

pub fn add_key(i: usize) -> String {
    format!("prop-add-{i}")
}

/// The focus key of file field `i`'s "Choose…" button.
pub fn choose_key(i: usize) -> String {
    format!("choose-{i}")
}

/// The text input of field `i` (for focus and tests).
pub fn field_id(i: usize) -> iced::widget::Id {
    iced::widget::Id::from(format!("editor-field-{i}"))
}

pub fn psk_id() -> iced::widget::Id {
    iced::widget::Id::new("editor-psk")
}

/// The contract's defaults, as placeholders.
fn defaults() -> Vec<String> {
    let text = Profile::new("x", "y").to_toml_string();
    let table = text.parse::<toml::Table>().unwrap_or_default();
    FIELDS
        .iter()
        .map(|f| {
            if f.group.is_none() && f.key != "auth.method" {
                return String::new();
            }
            lookup(&table, f.key).unwrap_or_default()
        })
        .collect()
}

/// A dotted key's value as form text.
fn lookup(t: &toml::Table, key: &str) -> Option<String> {
    let mut parts = key.split('.');
    let mut cur = toml::Value::Table(t.clone());
    for p in parts.by_ref() {
        cur = match cur {
            toml::Value::Table(mut t) => t.remove(p)?,
            // `dpd = "off"`: the interval field says "off".
            toml::Value::String(s) if key == "network.dpd.interval" => {
                return Some(s);
            }
            _ => return None,
        };
    }
    Some(match cur {
        toml::Value::Integer(n @ (1 | 2)) if key == "ike_version" => format!("IKEv{n}"),
        toml::Value::String(s) => s,
        toml::Value::Array(a) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        toml::Value::Table(_) => return None,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> State {
        let mut s = State::new(vec!["taken".into()]);
        for (k, v) in pairs {
            let i = FIELDS.iter().position(|f| f.key == *k).expect(k);
            let _ = s.update(Message::Input(i, v.to_string()));
        }
        s
    }

    #[test]
    fn the_pfs_choices_are_the_supported_groups() {
        let mut want = vec!["none"];
        want.extend(groups());
        assert_eq!(PFS.to_vec(), want);
        for g in PFS {
            let s = form(&[
                ("name", "office"),
                ("gateway", "vpn.example.com"),
                ("phase2.pfs", g),
            ]);
            assert!(s.is_valid(), "{g}: {:?}", s.invalid);
        }
    }

    #[test]
    fn every_offered_proposal_parses() {
        for c in IKE_CIPHERS {
            for h in IKE_HASHES {
                for g in groups() {
                    let p = format!("{c}-{h}-{g}");
                    assert_eq!(
                        split_proposal(Phase::Ike, &p).map(|x| join_proposal(&x)),
                        Some(p.clone()),
                        "{p}"
                    );
                }
            }
        }
        for c in ESP_CIPHERS {
            for h in part_choices(Phase::Esp, 1, c)
                .iter()
                .map(String::as_str)
                .chain([""])
            {
                if h.is_empty() != c.contains("gcm") {
                    continue;
                }
                for g in part_choices(Phase::Esp, 2, c) {
                    let p = join_proposal(&[c.to_string(), h.to_string(), g]);
                    assert_eq!(
                        split_proposal(Phase::Esp, &p).map(|x| join_proposal(&x)),
                        Some(p.clone()),
                        "{p}"
                    );
                }
            }
        }
    }

    #[test]
    fn proposals_are_picked_added_removed_and_cycled() {
        let mut s = form(&[("name", "office"), ("gateway", "vpn.example.com")]);
        let i = FIELDS
            .iter()
            .position(|f| f.key == "phase1.proposals")
            .unwrap();
        assert!(s.rows(i).is_empty(), "the defaults apply");
        let _ = s.update(Message::AddProposal(i));
        assert_eq!(s.values[i], "aes256-sha256-modp2048", "the first default");
        let _ = s.update(Message::Part(i, 0, 2, "ecp256".into()));
        let _ = s.update(Message::AddProposal(i));
        let _ = s.update(Message::Part(i, 1, 0, "aes128".into()));
        assert_eq!(s.values[i], "aes256-sha256-ecp256, aes128-sha256-ecp256");
        assert!(s.is_valid(), "{:?}", s.invalid);
        let _ = s.update(Message::Cycle(i, Some((1, 1))));
        assert_eq!(s.values[i], "aes256-sha256-ecp256, aes128-sha384-ecp256");
        let _ = s.update(Message::RemoveProposal(i, 0));
        assert_eq!(s.values[i], "aes128-sha384-ecp256");
        let p = Profile::from_toml_str(&s.to_toml(), "office", SecretPolicy::Forbid).unwrap();
        assert_eq!(p.phase1.proposals.len(), 1);
        // Phase 2: GCM drops the integrity, CBC gets one back.
        let j = FIELDS
            .iter()
            .position(|f| f.key == "phase2.proposals")
            .unwrap();
        let _ = s.update(Message::AddProposal(j));
        let _ = s.update(Message::Part(j, 0, 0, "aes128gcm16".into()));
        assert_eq!(s.values[j], "aes128gcm16");
        let _ = s.update(Message::Part(j, 0, 0, "aes256".into()));
        assert_eq!(s.values[j], "aes256-sha256");
        let _ = s.update(Message::Part(j, 0, 2, "modp2048".into()));
        assert_eq!(s.values[j], "aes256-sha256-modp2048");
        assert!(s.is_valid(), "{:?}", s.invalid);
        // A choice field cycles with the keyboard.
        let _ = s.update(Message::Cycle(METHOD, None));
        assert_eq!(s.values[METHOD], "psk");
        let _ = s.update(Message::Cycle(METHOD, None));
        assert_eq!(s.values[METHOD], "rsa-sig");
    }

    #[test]
    fn keyword_lists_are_the_contracts() {
        for (ours, theirs) in contract_words() {
            assert_eq!(ours.to_vec(), theirs);
        }
    }

    #[test]
    fn the_five_fields_make_a_profile_the_parser_accepts() {
        let s = form(&[
            ("name", "office"),
            ("gateway", "vpn.example.com"),
            ("auth.local_id", "keyid:sales"),
            ("xauth.username", "alice"),
        ]);
        assert!(s.is_valid(), "{:?}\n{}", s.invalid, s.to_toml());
        let p = Profile::from_toml_str(&s.to_toml(), "office", SecretPolicy::Forbid).unwrap();
        assert_eq!(p.gateway, "vpn.example.com");
        assert_eq!(p.xauth.unwrap().username, "alice");
        assert_eq!(p.auth.method, AuthMethod::Psk);
    }

    #[test]
    fn the_parsers_message_lands_on_the_field() {
        let mut s = form(&[("name", "office"), ("gateway", "vpn.example.com")]);
        let i = FIELDS
            .iter()
            .position(|f| f.key == "phase1.proposals")
            .unwrap();
        let _ = s.update(Message::Input(
            i,
            "aes256-sha256-modp2048, aes999-sha1".into(),
        ));
        let inv = s.invalid.clone().expect("refused");
        assert_eq!(inv.field, Some(i), "{inv:?}");
        assert!(inv.message.contains("aes999"), "{inv:?}");
        assert_eq!(
            s.update(Message::Save).map(|_| ()),
            None,
            "no save while invalid"
        );
        let _ = s.update(Message::Input(i, "aes128-sha256-modp2048".into()));
        assert!(s.is_valid(), "{:?}", s.invalid);
    }

    #[test]
    fn names_must_be_file_names_and_free() {
        let s = form(&[("name", "my office"), ("gateway", "vpn.example.com")]);
        assert_eq!(s.invalid.as_ref().and_then(|i| i.field), Some(NAME));
        let s = form(&[("name", "taken"), ("gateway", "vpn.example.com")]);
        assert!(s.invalid.unwrap().message.contains("exists"));
        let s = form(&[("name", "office"), ("gateway", "")]);
        assert_eq!(
            s.invalid.as_ref().and_then(|i| i.field),
            Some(1),
            "{:?}",
            s.invalid
        );
    }

    #[test]
    fn the_psk_goes_to_the_app_never_into_the_toml() {
        let mut s = form(&[("name", "office"), ("gateway", "192.0.2.1")]);
        let _ = s.update(Message::Psk("s3cret".into()));
        match s.update(Message::Save) {
            Some(Event::Save { text, psk, .. }) => {
                assert!(!text.contains("s3cret"), "{text}");
                assert_eq!(
                    psk.map(|p| p.expose().to_string()).as_deref(),
                    Some("s3cret")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.psk.is_empty(),
            "the form forgets the key once handed over"
        );
    }

    #[test]
    fn an_existing_profile_round_trips_through_the_form() {
        let text = "name = \"lab\"\ngateway = \"10.0.0.1\"\nexchange_mode = \"aggressive\"\n\n[auth]\nlocal_id = \"keyid:grp\"\n\n[phase2]\nremote_networks = [\"10.77.0.0/24\", \"10.78.0.0/24\"]\n\n[network]\ndpd = \"off\"\nreconnect = false\nmobike = false\nike_fragment_size = 600\n";
        let s = State::edit("lab", text, vec!["lab".into()], true);
        assert!(s.is_valid(), "{:?}", s.invalid);
        assert!(s.advanced, "advanced keys are set: the part is open");
        let a = Profile::from_toml_str(text, "lab", SecretPolicy::Forbid).unwrap();
        let b = Profile::from_toml_str(&s.to_toml(), "lab", SecretPolicy::Forbid).unwrap();
        assert_eq!(a, b, "{}", s.to_toml());
        let d = State::duplicate("lab", text, vec!["lab".into(), "lab-copy".into()]);
        assert_eq!(d.values[NAME], "lab-copy2");
        assert!(d.original.is_none() && d.is_valid());
    }

    #[test]
    fn ikev2_is_chosen_saved_and_read_back() {
        let mut s = form(&[
            ("name", "home"),
            ("gateway", "192.0.2.7"),
            ("exchange_mode", "aggressive"),
            ("network.mode_config", "push"),
        ]);
        assert!(!s.ikev2());
        assert_eq!(s.label(index("xauth.username")), "XAuth user name");
        let v = index("ike_version");
        let _ = s.update(Message::Input(v, "IKEv2".into()));
        assert!(s.ikev2() && s.is_valid(), "{:?}", s.invalid);
        let t = s.to_toml();
        assert!(t.contains("ike_version = 2\n"), "{t}");
        assert!(!t.contains("aggressive"), "no exchange mode in IKEv2: {t}");
        assert!(
            t.contains("mode_config = \"pull\""),
            "push became pull: {t}"
        );
        assert_eq!(s.label(index("xauth.username")), "User login (EAP)");
        assert_eq!(s.words(index("network.mode_config")), ["pull", "off"]);
        assert!(s.not_in_ikev2(index("exchange_mode")).is_some());
        // The exchange mode is no stop in the Tab order.
        let stop = choice_key(index("exchange_mode"));
        s.advanced = true;
        assert!(s.controls().iter().all(|(k, _, _)| *k != stop));
        let p = Profile::from_toml_str(&t, "home", SecretPolicy::Forbid).unwrap();
        assert_eq!(p.ike_version, 2);
        // The saved file opens as IKEv2 again; back to IKEv1 the exchange mode returns.
        let mut e = State::edit("home", &p.to_toml_string(), vec!["home".into()], false);
        assert!(e.ikev2() && e.is_valid());
        assert_eq!(e.values[v], "IKEv2");
        let _ = e.update(Message::Input(v, "IKEv1".into()));
        assert!(e.to_toml().contains("ike_version = 1\n"));
        let _ = e.update(Message::Cycle(v, None));
        assert!(e.ikev2(), "Enter/Space cycles to IKEv2");
        // Anything else is the parser's to refuse, on the field.
        let _ = e.update(Message::Input(v, "IKEv3".into()));
        assert_eq!(e.invalid.as_ref().and_then(|i| i.field), Some(v));
    }

    /// Every key of the contract is in the form: the profile that sets every key
    /// (the contract's own test fixture, without its secrets) survives the form.
    #[test]
    fn every_key_of_the_contract_survives_the_form() {
        let full = include_str!("../../../../dbus/tests/fixtures/everything.toml");
        let mut p = Profile::from_toml_str(full, "everything", SecretPolicy::AllowIfPrivate)
            .unwrap()
            .without_secrets();
        // The app's names are file names.
        p.name = "branch".into();
        let text = p.to_toml_string();
        let s = State::edit(&p.name, &text, vec![p.name.clone()], true);
        assert!(s.is_valid(), "{:?}", s.invalid);
        let back = Profile::from_toml_str(&s.to_toml(), "form", SecretPolicy::Forbid).unwrap();
        assert_eq!(back, p, "{}", s.to_toml());
    }
}
