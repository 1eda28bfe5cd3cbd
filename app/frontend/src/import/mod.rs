//! Import: the files users already have (from their admin or their old client) turned
//! into Postern profiles, with a list of everything that could not be carried over.
//!
//! # API (used by the CLI's `postern import` and the desktop app's "Import…")
//!
//! * [`detect`]`(text) -> Option<Format>`: which format a file is, from its content.
//! * [`import_file`]`(path, &ImportOptions) -> Result<Vec<Imported>, ImportError>`: reads
//!   the file in any encoding (UTF-8, Latin-1, UTF-16 with BOM, CRLF), finds companion
//!   files beside it (`ipsec.secrets`, `psk.txt`, `keys-ipsecN`, `setkey.conf`,
//!   `ipsec-tools.conf`) or takes them from [`ImportOptions::secrets`], and returns one
//!   [`Imported`] per connection (all of them, or the one named by
//!   [`ImportOptions::connection`]).
//! * [`import_str`]: the same on text already in memory (tests, drag and drop).
//!
//! Each [`Imported`] has the connection's own name in the file, the profile as TOML
//! that passes the contract's parser with `SecretPolicy::Forbid` (secrets are never in
//! it), the secrets found (`psk`, `xauth-password`, `key-passphrase`: store them in the
//! keyring), the secrets the profile needs but the file did not have, the material the
//! file only points to ([`Missing`], naming the profile key to fill, e.g. `auth.cert`),
//! and a [`Warning`] `{line, key, message}` for every key that was not carried over or
//! means something different in Postern. Malformed input is one [`ImportError`] naming
//! the file and the line.
//!
//! One module per format: [`pcf`] (Cisco VPN Client), [`shrew`] (Shrew Soft `.vpn`),
//! [`ipsec_conf`] (libreswan / Openswan / strongSwan `ipsec.conf` + `ipsec.secrets`),
//! [`swanctl`] (strongSwan `swanctl.conf`), [`racoon`] (`racoon.conf` + `psk.txt` +
//! `setkey` `spdadd`), [`ifcfg`] (Red Hat `ifcfg-ipsecN` + `keys-ipsecN`),
//! [`nmconnection`] (NetworkManager keyfiles of the vpnc, libreswan and strongswan
//! plugins). The reverse direction is [`crate::export`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_algs::proposal::{parse_esp, parse_ike};
use postern_dbus::profile::{
    AuthMethod, EncapMode, ExchangeMode, Identity, ModeConfig, Profile, Secret, SecretPolicy,
    Subnet, parse_duration,
};

use crate::{Fail, FailureKind};

pub mod ifcfg;
pub mod ipsec_conf;
pub mod nmconnection;
pub mod pcf;
pub mod racoon;
pub mod shrew;
pub mod swanctl;
mod text;

pub use postern_dbus::profile::Secret as SecretValue;
pub use text::decode;

/// The formats [`detect`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Cisco VPN Client profile (`.pcf`).
    Pcf,
    /// Shrew Soft VPN client site file (`.vpn`).
    Shrew,
    /// libreswan / Openswan / strongSwan `ipsec.conf`.
    IpsecConf,
    /// strongSwan `swanctl.conf`.
    Swanctl,
    /// ipsec-tools `racoon.conf`.
    Racoon,
    /// Red Hat initscripts `ifcfg-ipsecN`.
    Ifcfg,
    /// NetworkManager keyfile (`.nmconnection`) of an IPsec VPN plugin.
    NmConnection,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Pcf,
        Format::Shrew,
        Format::IpsecConf,
        Format::Swanctl,
        Format::Racoon,
        Format::Ifcfg,
        Format::NmConnection,
    ];
    /// A short name for messages and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcf => "pcf",
            Format::Shrew => "shrew",
            Format::IpsecConf => "ipsec.conf",
            Format::Swanctl => "swanctl.conf",
            Format::Racoon => "racoon.conf",
            Format::Ifcfg => "ifcfg",
            Format::NmConnection => "nmconnection",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that was not carried over, or means something else in Postern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line in the file the key came from (`None`: not tied to one line).
    pub line: Option<usize>,
    /// The key as written in the file (`EnableBackup`, `rightsubnet`, `s:ipcomp-transform`).
    pub key: String,
    pub message: String,
}

/// Material the file only points to: the profile key the user must fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Profile key, e.g. `auth.cert`, `auth.ca`, `xauth.username`.
    pub key: String,
    pub message: String,
}

/// One imported connection.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The connection's own name in the file (conn, section, description, file name).
    pub name: String,
    /// A suggested profile file name (letters, digits, `-`, `_`, `.`).
    pub profile_name: String,
    pub format: Format,
    /// Validated, without secrets.
    pub profile: Profile,
    /// `profile` as TOML; passes `Profile::from_toml_str(.., SecretPolicy::Forbid)`.
    pub toml: String,
    /// Secrets found, by keyring kind (`psk`, `xauth-password`, `key-passphrase`).
    pub secrets: BTreeMap<String, Secret>,
    /// Secrets the profile needs that the file(s) did not hold.
    pub secrets_missing: Vec<String>,
    /// Files embedded in the import (Shrew's certificates): profile key, suggested
    /// file name, contents. Whoever saves the profile writes them and sets the key.
    pub files: Vec<(String, String, Vec<u8>)>,
    pub missing: Vec<Missing>,
    pub warnings: Vec<Warning>,
}

/// What to import and with which companion files.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Only this connection (by its name in the file); `None`: all.
    pub connection: Option<String>,
    /// Companion files given explicitly (`ipsec.secrets`, `psk.txt`, `keys-ipsecN`,
    /// setkey listings); when empty they are looked for beside the main file.
    pub secrets: Vec<PathBuf>,
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
}

/// Malformed input: the file, the line and what is wrong, one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl From<ImportError> for Fail {
    fn from(e: ImportError) -> Fail {
        Fail::new(FailureKind::BadProfile, e.to_string())
    }
}

pub(crate) fn err(origin: &str, line: Option<usize>, message: impl Into<String>) -> ImportError {
    ImportError {
        origin: origin.to_string(),
        line,
        message: message.into(),
    }
}

/// A companion file's text with the name it is shown under.
#[derive(Debug, Clone)]
pub struct Companion {
    pub origin: String,
    pub text: String,
}

/// What a parser gets besides the main text.
pub struct Source<'a> {
    pub origin: &'a str,
    /// The file name without directory and extension (Shrew sites are named by it).
    pub stem: &'a str,
    pub text: &'a str,
    pub companions: &'a [Companion],
    /// Reads a file named by an `include` (relative to the main file's directory).
    pub include: &'a dyn Fn(&str) -> Option<Companion>,
}

/// The format of `text`, from its content.
pub fn detect(text: &str) -> Option<Format> {
    let lower = text.to_ascii_lowercase();
    let lines: Vec<&str> = lower
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect();
    let has = |p: &dyn Fn(&str) -> bool| lines.iter().any(|l| p(l));
    if has(&|l| l.starts_with("service-type=") || l.starts_with("service-type =")) {
        return Some(Format::NmConnection);
    }
    if has(&|l| l == "[main]") && has(&|l| l.trim_start_matches('!').starts_with("host")) {
        return Some(Format::Pcf);
    }
    if has(&|l| {
        (l.starts_with("s:") || l.starts_with("n:") || l.starts_with("b:")) && l[2..].contains(':')
    }) && has(&|l| l.starts_with("s:network-host:") || l.starts_with("n:version:"))
    {
        return Some(Format::Shrew);
    }
    if has(&|l| l.starts_with("conn ") || l.starts_with("conn\t") || l == "config setup") {
        return Some(Format::IpsecConf);
    }
    if has(&|l| l.starts_with("connections") && (l.ends_with('{') || l == "connections")) {
        return Some(Format::Swanctl);
    }
    if has(&|l| l.starts_with("remote ") || l.starts_with("sainfo ") || l.starts_with("remote{")) {
        return Some(Format::Racoon);
    }
    if has(&|l| l.starts_with("type=ipsec") || l.starts_with("type=\"ipsec\""))
        || (has(&|l| l.starts_with("dst=")) && has(&|l| l.starts_with("ike_")))
    {
        return Some(Format::Ifcfg);
    }
    None
}

/// Reads `path` and imports its connections (see the module documentation).
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Vec<Imported>, ImportError> {
    let origin = path.display().to_string();
    let bytes = read_limited(path).map_err(|m| err(&origin, None, m))?;
    let text = decode(&bytes);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let format = match opts.format {
        Some(f) => f,
        None => detect(&text).ok_or_else(|| {
            err(
                &origin,
                None,
                "not a file Postern can import (none of: Cisco .pcf, Shrew .vpn, ipsec.conf, \
                 swanctl.conf, racoon.conf, ifcfg-ipsecN, NetworkManager .nmconnection)",
            )
        })?,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut companions = Vec::new();
    if opts.secrets.is_empty() {
        for name in companion_names(format, &file_name) {
            let p = dir.join(&name);
            if p.is_file() {
                companions.push(read_companion(&p)?);
            }
        }
    } else {
        for p in &opts.secrets {
            companions.push(read_companion(p)?);
        }
    }
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name.as_str(), |(s, _)| s)
        .to_string();
    let include = move |name: &str| -> Option<Companion> {
        let p = dir.join(name);
        let p = if p.is_file() {
            p
        } else {
            // An absolute path from the original machine: look for its file name here.
            dir.join(Path::new(name).file_name()?)
        };
        read_companion(&p).ok()
    };
    let src = Source {
        origin: &origin,
        stem: &stem,
        text: &text,
        companions: &companions,
        include: &include,
    };
    import_source(format, &src, opts)
}

/// Imports text already read; `origin` names it in messages.
pub fn import_str(
    text: &str,
    origin: &str,
    companions: &[Companion],
    opts: &ImportOptions,
) -> Result<Vec<Imported>, ImportError> {
    let text = text::normalize(text);
    let format = match opts.format {
        Some(f) => f,
        None => detect(&text).ok_or_else(|| err(origin, None, "not a file Postern can import"))?,
    };
    let stem = Path::new(origin)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let none = |_: &str| None;
    let src = Source {
        origin,
        stem: &stem,
        text: &text,
        companions,
        include: &none,
    };
    import_source(format, &src, opts)
}

fn import_source(
    format: Format,
    src: &Source<'_>,
    opts: &ImportOptions,
) -> Result<Vec<Imported>, ImportError> {
    let drafts = match format {
        Format::Pcf => pcf::parse(src)?,
        Format::Shrew => shrew::parse(src)?,
        Format::IpsecConf => ipsec_conf::parse(src)?,
        Format::Swanctl => swanctl::parse(src)?,
        Format::Racoon => racoon::parse(src)?,
        Format::Ifcfg => ifcfg::parse(src)?,
        Format::NmConnection => nmconnection::parse(src)?,
    };
    if drafts.is_empty() {
        return Err(err(src.origin, None, "no connection in this file"));
    }
    let names: Vec<String> = drafts.iter().map(|d| d.conn.clone()).collect();
    let chosen: Vec<Draft> = match &opts.connection {
        Some(want) => {
            let d: Vec<Draft> = drafts.into_iter().filter(|d| &d.conn == want).collect();
            if d.is_empty() {
                return Err(err(
                    src.origin,
                    None,
                    format!(
                        "no connection named '{want}' (there are: {})",
                        names.join(", ")
                    ),
                ));
            }
            d
        }
        None => drafts,
    };
    let wanted = opts.connection.is_some();
    let results: Vec<Result<Imported, Refusal>> = chosen
        .into_iter()
        .map(|d| d.finish(src.origin, format))
        .collect();
    // A connection Postern cannot make yet (an IKEv2 combination the profile refuses)
    // is named, in one line, on the others; alone (or asked for), it is the error.
    let refused: Vec<ImportError> = results
        .iter()
        .filter_map(|r| match r {
            Err(Refusal::Unsupported(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(i) => out.push(i),
            Err(Refusal::Invalid(e)) => return Err(e),
            Err(Refusal::Unsupported(_)) => {}
        }
    }
    if (out.is_empty() || wanted)
        && let Some(e) = refused.first()
    {
        return Err(e.clone());
    }
    for i in &mut out {
        for e in &refused {
            i.warnings.push(Warning {
                line: e.line,
                key: "connection".to_string(),
                message: format!("not imported: {}", e.message),
            });
        }
    }
    Ok(out)
}

/// Why [`Draft::finish`] made no profile.
enum Refusal {
    /// The connection is malformed: the whole import fails.
    Invalid(ImportError),
    /// Postern cannot make this kind of connection yet (say so, import the others).
    Unsupported(ImportError),
}

const MAX_INPUT: u64 = 4 << 20;

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut v = Vec::new();
    f.take(MAX_INPUT + 1)
        .read_to_end(&mut v)
        .map_err(|e| format!("cannot read: {e}"))?;
    if v.len() as u64 > MAX_INPUT {
        return Err(format!(
            "bigger than {} MiB; not a VPN configuration",
            MAX_INPUT >> 20
        ));
    }
    Ok(v)
}

fn read_companion(p: &Path) -> Result<Companion, ImportError> {
    let origin = p.display().to_string();
    let bytes = read_limited(p).map_err(|m| err(&origin, None, m))?;
    Ok(Companion {
        origin,
        text: decode(&bytes),
    })
}

/// Companion files looked for beside the main file.
fn companion_names(format: Format, file_name: &str) -> Vec<String> {
    match format {
        Format::IpsecConf => vec!["ipsec.secrets".into()],
        Format::Racoon => vec![
            "psk.txt".into(),
            "setkey.conf".into(),
            "ipsec-tools.conf".into(),
        ],
        Format::Ifcfg => {
            let n = file_name.strip_prefix("ifcfg-").unwrap_or(file_name);
            vec![format!("keys-{n}")]
        }
        _ => Vec::new(),
    }
}

/// Writes the files an import carried (Shrew's embedded certificates) beside profile
/// `name` (`<profiles>/NAME.files/`, 0600 in a 0700 directory) and points the
/// profile's keys (`auth.ca`, `auth.cert`, `auth.key`) at them. A key the user already
/// filled (in the app's editor) is left as it is; the file is written anyway.
pub fn save_files(
    name: &str,
    profile: &mut Profile,
    files: &[(String, String, Vec<u8>)],
) -> Result<(), Fail> {
    for (key, file_name, bytes) in files {
        let dir = crate::profiles::dir()?.join(format!("{name}.files"));
        // The suggested name comes from the file being imported: no directories.
        let base = Path::new(file_name)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .filter(|n| !n.is_empty() && n != "..")
            .unwrap_or_else(|| "embedded.pem".to_string());
        let path = dir.join(base);
        write_private_file(&path, bytes)?;
        let p = path.display().to_string();
        let slot = match key.as_str() {
            "auth.ca" => &mut profile.auth.ca,
            "auth.cert" => &mut profile.auth.cert,
            "auth.key" => &mut profile.auth.key,
            _ => continue,
        };
        if slot.as_deref().is_none_or(str::is_empty) {
            *slot = Some(p);
        }
    }
    Ok(())
}

/// Stores an import's secrets (`psk`, `xauth-password`, `key-passphrase`) in the
/// keyring under profile `name`: each kind with how it went (a locked keyring must not
/// hang the caller: each store is bounded by [`crate::watcher::KEYRING_TIMEOUT`]).
pub async fn store_secrets(
    name: &str,
    secrets: &BTreeMap<String, Secret>,
) -> Vec<(String, Result<(), Fail>)> {
    let mut out = Vec::new();
    for (kind, secret) in secrets {
        let r = tokio::time::timeout(
            crate::watcher::KEYRING_TIMEOUT,
            crate::keyring::store(name, kind, secret.expose()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Fail::new(
                FailureKind::Keyring,
                "keyring: no answer (locked, waiting for a password?)",
            ))
        });
        out.push((kind.clone(), r));
    }
    out
}

/// Writes `bytes` to `path` readable by the user only, creating its directory (0700).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), Fail> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io =
        |e: std::io::Error| Fail::new(FailureKind::Internal, format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// A connection being imported; parsers fill it, [`Draft::finish`] validates it.
pub(crate) struct Draft {
    pub conn: String,
    /// Where the connection starts (for errors about it as a whole).
    pub line: Option<usize>,
    pub p: Profile,
    pub secrets: BTreeMap<String, Secret>,
    pub files: Vec<(String, String, Vec<u8>)>,
    pub missing: Vec<Missing>,
    pub warnings: Vec<Warning>,
    /// The connection is one Postern cannot make yet (EAP-TLS, say): why, one sentence.
    pub refused: Option<String>,
}

pub(crate) const PSK: &str = "psk";
pub(crate) const XAUTH_PASSWORD: &str = "xauth-password";
pub(crate) const KEY_PASSPHRASE: &str = "key-passphrase";

impl Draft {
    pub fn new(conn: impl Into<String>, line: Option<usize>) -> Draft {
        let conn = conn.into();
        Draft {
            p: Profile::new(conn.clone(), String::new()),
            conn,
            line,
            secrets: BTreeMap::new(),
            files: Vec::new(),
            missing: Vec::new(),
            warnings: Vec::new(),
            refused: None,
        }
    }

    /// The connection speaks IKEv2 (`ike_version = 2`); IKEv1-only settings already
    /// read are put back to what IKEv2 does.
    pub fn ikev2(&mut self) {
        self.p.ike_version = 2;
    }

    /// Refuses the connection (one sentence, shown with its name).
    pub fn refuse(&mut self, why: impl Into<String>) {
        if self.refused.is_none() {
            self.refused = Some(why.into());
        }
    }

    pub fn warn(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// "Not carried over" with the reason.
    pub fn drop_key(&mut self, line: Option<usize>, key: &str, why: &str) {
        self.warn(line, key, format!("not carried over: {why}"));
    }

    pub fn unknown(&mut self, line: Option<usize>, key: &str) {
        self.warn(
            line,
            key,
            "not carried over: a key this importer does not know",
        );
    }

    pub fn missing(&mut self, key: &str, message: impl Into<String>) {
        if self.missing.iter().all(|m| m.key != key) {
            self.missing.push(Missing {
                key: key.to_string(),
                message: message.into(),
            });
        }
    }

    pub fn secret(&mut self, kind: &str, value: &str) {
        if !value.is_empty() {
            self.secrets
                .insert(kind.to_string(), Secret::new(value.to_string()));
        }
    }

    /// Phase 1 proposals in strongSwan syntax (already translated by the parser); the
    /// ones Postern cannot do are warned about; none left: the defaults stay.
    pub fn ike(&mut self, line: Option<usize>, key: &str, proposals: &[String]) {
        let mut ok = Vec::new();
        for s in proposals {
            match parse_ike(s) {
                Ok(p) if !ok.contains(&p) => ok.push(p),
                Ok(_) => {}
                Err(e) => self.warn(line, key, format!("proposal left out: {e}")),
            }
        }
        ok.truncate(postern_dbus::profile::MAX_PROPOSALS);
        if ok.is_empty() {
            if !proposals.is_empty() {
                self.warn(
                    line,
                    key,
                    "no phase 1 proposal Postern can do: Postern's defaults are used",
                );
            }
        } else {
            self.p.phase1.proposals = ok;
        }
    }

    /// Phase 2 proposals (strongSwan syntax; a trailing group is that proposal's PFS).
    pub fn esp(&mut self, line: Option<usize>, key: &str, proposals: &[String]) {
        let mut ok = Vec::new();
        for s in proposals {
            match parse_esp(s) {
                Ok(p) if !ok.contains(&p) => ok.push(p),
                Ok(_) => {}
                Err(e) => self.warn(line, key, format!("proposal left out: {e}")),
            }
        }
        ok.truncate(postern_dbus::profile::MAX_PROPOSALS);
        if ok.is_empty() {
            if !proposals.is_empty() {
                self.warn(
                    line,
                    key,
                    "no phase 2 proposal Postern can do: Postern's defaults are used",
                );
            }
        } else {
            self.p.phase2.proposals = ok;
        }
    }

    /// A duration (`8h`, `3600`, `60m`, `1d`, `3600s`) or a warning.
    pub fn duration(&mut self, line: Option<usize>, key: &str, v: &str) -> Option<Duration> {
        let t = v.trim().to_ascii_lowercase();
        let t = t.strip_suffix("ec").map_or(t.clone(), |s| s.to_string()); // "sec"
        match parse_duration(&t) {
            Ok(d) => Some(d),
            Err(_) => {
                self.warn(
                    line,
                    key,
                    format!("not carried over: '{v}' is not a duration"),
                );
                None
            }
        }
    }

    pub fn lifetime1(&mut self, line: Option<usize>, key: &str, d: Duration) {
        self.p.phase1.lifetime = self.clamp(line, key, d, 60, 24 * 3600);
    }

    pub fn lifetime2(&mut self, line: Option<usize>, key: &str, d: Duration) {
        self.p.phase2.lifetime = self.clamp(line, key, d, 20, 8 * 3600);
    }

    fn clamp(&mut self, line: Option<usize>, key: &str, d: Duration, lo: u64, hi: u64) -> Duration {
        let c = d.clamp(Duration::from_secs(lo), Duration::from_secs(hi));
        if c != d {
            self.warn(
                line,
                key,
                format!(
                    "{}s is outside what Postern allows ({lo}s ..= {hi}s): {}s used",
                    d.as_secs(),
                    c.as_secs()
                ),
            );
        }
        c
    }

    /// An identity in Postern's syntax (`fqdn:...`, or untyped); `None` + warning.
    pub fn identity(&mut self, line: Option<usize>, key: &str, v: &str) -> Option<Identity> {
        match v.parse::<Identity>() {
            Ok(id) => Some(id),
            Err(e) => {
                self.warn(line, key, format!("not carried over: {e}"));
                None
            }
        }
    }

    /// Subnets (`10.0.0.0/24`, `10.0.0.0/255.255.255.0`, a bare address); bad ones warned.
    pub fn subnets(&mut self, line: Option<usize>, key: &str, items: &[&str]) -> Vec<Subnet> {
        let mut v = Vec::new();
        for it in items {
            let it = it.trim();
            if it.is_empty() {
                continue;
            }
            match parse_subnet(it) {
                Some(s) if !v.contains(&s) => v.push(s),
                Some(_) => {}
                None => self.warn(
                    line,
                    key,
                    format!("not carried over: '{it}' is not an address or network"),
                ),
            }
        }
        v
    }

    pub fn dh_group(
        &mut self,
        line: Option<usize>,
        key: &str,
        v: &str,
    ) -> Option<postern_algs::algs::DhGroup> {
        use postern_algs::algs::DhGroup;
        let l = v.trim().to_ascii_lowercase();
        let l = l
            .trim_start_matches("dh")
            .trim_start_matches("group")
            .trim_start_matches("modp")
            .trim();
        let by_num = l.parse::<u16>().ok().and_then(|n| match n {
            768 | 1024 | 1536 | 2048 | 3072 | 4096 | 6144 | 8192 => DhGroup::ALL
                .into_iter()
                .find(|g| g.name() == format!("modp{n}")),
            n => DhGroup::from_ike(n),
        });
        let g = by_num.or_else(|| DhGroup::ALL.into_iter().find(|g| g.name() == v.trim()));
        if g.is_none() {
            self.warn(
                line,
                key,
                format!("not carried over: DH group '{v}' is not one Postern has"),
            );
        }
        g
    }

    /// Every phase 1 proposal gets `group` (a file that names only a group).
    pub fn set_ike_group(&mut self, g: postern_algs::algs::DhGroup) {
        let mut v: Vec<_> = Vec::new();
        for mut p in self.p.phase1.proposals.clone() {
            p.group = g;
            if !v.contains(&p) {
                v.push(p);
            }
        }
        self.p.phase1.proposals = v;
    }

    /// IKEv1-only settings in an IKEv2 connection: aggressive mode and pushed Mode
    /// Config do not exist in IKEv2 (a warning says what was changed).
    fn ikev2_settings(&mut self) {
        // The proposal parser speaks of IKEv1's phase 1; here it is the IKE SA.
        for w in &mut self.warnings {
            w.message = w
                .message
                .replace("in IKEv1 phase 1", "for Postern's IKEv2 IKE SA yet");
        }
        if self.p.exchange_mode == ExchangeMode::Aggressive {
            self.p.exchange_mode = ExchangeMode::Main;
            self.warn(
                None,
                "aggressive",
                "IKEv2 has no aggressive mode: not carried over",
            );
        }
        if self.p.network.mode_config == ModeConfig::Push {
            self.p.network.mode_config = ModeConfig::Pull;
            self.warn(
                None,
                "mode config",
                "IKEv2 asks for the address in IKE_AUTH (no push): mode_config = \"pull\"",
            );
        }
    }

    /// An IKEv1 connection leaves out the IKEv2-only proposals (AES-GCM or
    /// ChaCha20-Poly1305 for the IKE SA, curve25519), each named in a warning; none
    /// left: Postern's defaults.
    fn ikev1_proposals(&mut self) {
        let (v1, v2): (Vec<_>, Vec<_>) = self
            .p
            .phase1
            .proposals
            .iter()
            .partition(|p| !p.ikev2_only());
        for p in &v2 {
            self.warn(
                None,
                "proposals",
                format!("proposal left out: '{p}' is an IKEv2-only proposal"),
            );
        }
        if !v2.is_empty() {
            self.p.phase1.proposals = if v1.is_empty() {
                postern_dbus::profile::Phase1::default().proposals
            } else {
                v1
            };
        }
        let (v1, v2): (Vec<_>, Vec<_>) = self
            .p
            .phase2
            .proposals
            .iter()
            .partition(|p| !p.ikev2_only());
        for p in &v2 {
            self.warn(
                None,
                "esp_proposals",
                format!("proposal left out: '{p}' is an IKEv2-only proposal"),
            );
        }
        if !v2.is_empty() {
            self.p.phase2.proposals = if v1.is_empty() {
                postern_dbus::profile::Phase2::default().proposals
            } else {
                v1
            };
        }
        if self.p.phase2.pfs.is_some_and(|g| g.ikev2_only()) {
            self.p.phase2.pfs = None;
            self.warn(None, "pfs", "curve25519 is an IKEv2-only DH group: no PFS");
        }
    }

    /// "EAP user login with a gateway certificate", for the one-line refusal.
    fn ikev2_summary(&self) -> String {
        let auth = match self.p.auth.method {
            AuthMethod::Psk => "pre-shared key",
            AuthMethod::RsaSig => "certificates",
            AuthMethod::Hybrid => "gateway certificate",
            AuthMethod::EapTls => "EAP-TLS",
        };
        let mut s = auth.to_string();
        if self.p.xauth.is_some() {
            s.push_str(" + EAP user login");
        }
        if self.p.phase2.mode == EncapMode::Transport {
            s.push_str(", transport mode");
        }
        s
    }

    fn finish(mut self, origin: &str, format: Format) -> Result<Imported, Refusal> {
        if let Some(why) = &self.refused {
            return Err(Refusal::Unsupported(err(
                origin,
                self.line,
                format!("connection '{}': {why}", self.conn),
            )));
        }
        if self.p.gateway.trim().is_empty() {
            return Err(Refusal::Invalid(err(
                origin,
                self.line,
                format!("connection '{}' names no gateway", self.conn),
            )));
        }
        if self.p.ike_version == 2 {
            self.ikev2_settings();
        } else {
            self.ikev1_proposals();
        }
        self.p.gateway = self.p.gateway.trim().to_string();
        // A display name the contract accepts.
        let mut name: String = self
            .conn
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        if name.trim().is_empty() {
            name = "Imported".to_string();
        }
        if self.p.name.trim().is_empty() || self.p.name.chars().count() > 64 {
            self.p.name = name.clone();
        }
        self.p.name = self
            .p
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        let mut needed = Vec::new();
        match self.p.auth.method {
            AuthMethod::Psk => needed.push(PSK),
            AuthMethod::RsaSig | AuthMethod::EapTls => {
                if self.p.auth.cert.is_none() && self.p.auth.pkcs12.is_none() {
                    self.missing(
                        "auth.cert",
                        "the file does not hold our certificate: give its PEM file (or a PKCS#12 bundle as auth.pkcs12)",
                    );
                }
                if self.p.auth.key.is_none() && self.p.auth.pkcs12.is_none() {
                    self.missing(
                        "auth.key",
                        "the file does not hold our private key: give its PEM file",
                    );
                }
            }
            AuthMethod::Hybrid => {}
        }
        if self.p.auth.method != AuthMethod::Psk && self.p.auth.ca.is_none() {
            self.missing(
                "auth.ca",
                "the CA certificate that signed the gateway's certificate is not in the file",
            );
        }
        if self.p.auth.method != AuthMethod::Psk
            && let Some(psk) = self.secrets.remove(PSK)
        {
            drop(psk);
            self.warn(
                None,
                "psk",
                "a pre-shared key was found but the connection does not use one: not kept",
            );
        }
        if self.p.xauth.is_some() {
            needed.push(XAUTH_PASSWORD);
        } else if self.secrets.remove(XAUTH_PASSWORD).is_some() {
            self.warn(
                None,
                "xauth password",
                "an XAuth password was found but the connection has no XAuth user: not kept",
            );
        }
        // A single /32 as our side with no Mode Config: the inner ("secondary") address
        // the tunnel's traffic comes from, as in the seed article.
        if self.p.network.mode_config == ModeConfig::Off
            && self.p.network.virtual_ip.is_none()
            && self.p.phase2.mode == EncapMode::Tunnel
            && let [
                Subnet {
                    addr: std::net::IpAddr::V4(a),
                    prefix: 32,
                },
            ] = self.p.phase2.local_networks[..]
        {
            self.p.network.virtual_ip = Some(a);
            self.p.phase2.local_networks.clear();
            self.warn(None, "local networks", format!("the single host {a}/32 is used as the tunnel's inner address (network.virtual_ip)"));
        }
        let files = &self.files;
        self.missing.retain(|m| !files.iter().any(|f| f.0 == m.key));
        let secrets_missing = needed
            .into_iter()
            .filter(|k| !self.secrets.contains_key(*k))
            .map(str::to_string)
            .collect();
        let toml = self.p.to_toml_string();
        let profile = Profile::from_toml_str(&toml, origin, SecretPolicy::Forbid).map_err(|e| {
            // The profile's own check says which IKEv2 combinations work today (at
            // `ike_version`, or at the key an IKEv2 method needs).
            if self.p.ike_version == 2 {
                let key = match e.key.as_deref() {
                    None | Some("ike_version") => String::new(),
                    Some(k) => format!("{k}: "),
                };
                return Refusal::Unsupported(err(
                    origin,
                    self.line,
                    format!(
                        "connection '{}' is IKEv2 ({}), which Postern cannot do yet: {key}{}",
                        self.conn,
                        self.ikev2_summary(),
                        e.message
                    ),
                ));
            }
            Refusal::Invalid(err(
                origin,
                self.line,
                format!(
                    "connection '{}' does not make a valid profile: {}{}",
                    self.conn,
                    e.key.map(|k| format!("{k}: ")).unwrap_or_default(),
                    e.message
                ),
            ))
        })?;
        Ok(Imported {
            profile_name: file_name_for(&self.conn),
            name: self.conn,
            format,
            profile,
            toml,
            secrets: self.secrets,
            secrets_missing,
            files: self.files,
            missing: self.missing,
            warnings: self.warnings,
        })
    }
}

/// `{"connections": [{"name", "profile", "secrets", "warnings"}]}`: `profile` is the
/// TOML as JSON (same keys and nesting), `secrets` maps each secret the connection has
/// or needs to `true`/`false` (its value with `show_secrets`), `warnings` is a list of
/// `{"line", "key", "message"}`; material the file only points to is listed there too,
/// with `line` null and `key` the profile key to fill (`auth.cert`).
pub fn to_json(v: &[Imported], show_secrets: bool) -> String {
    use crate::profiles::js;
    let mut out = String::from("{\"connections\":[");
    for (n, i) in v.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let profile = i
            .toml
            .parse::<toml::Table>()
            .map(|t| toml_json(&toml::Value::Table(t)))
            .unwrap_or_else(|_| "null".into());
        let mut secrets: Vec<String> = i
            .secrets
            .iter()
            .map(|(k, s)| {
                let v = if show_secrets {
                    js(s.expose())
                } else {
                    "true".into()
                };
                format!("{}:{v}", js(k))
            })
            .collect();
        secrets.extend(i.secrets_missing.iter().map(|k| format!("{}:false", js(k))));
        let mut warnings: Vec<String> = i
            .warnings
            .iter()
            .map(|w| {
                format!(
                    "{{\"line\":{},\"key\":{},\"message\":{}}}",
                    w.line.map_or("null".into(), |l| l.to_string()),
                    js(&w.key),
                    js(&w.message)
                )
            })
            .collect();
        warnings.extend(i.missing.iter().map(|m| {
            format!(
                "{{\"line\":null,\"key\":{},\"message\":{}}}",
                js(&m.key),
                js(&format!("missing: {}", m.message))
            )
        }));
        out.push_str(&format!(
            "{{\"name\":{},\"profile\":{profile},\"secrets\":{{{}}},\"warnings\":[{}]}}",
            js(&i.name),
            secrets.join(","),
            warnings.join(",")
        ));
    }
    out.push_str("]}");
    out
}

fn toml_json(v: &toml::Value) -> String {
    use crate::profiles::js;
    match v {
        toml::Value::String(s) => js(s),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => js(&d.to_string()),
        toml::Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_json).collect::<Vec<_>>().join(",")
        ),
        toml::Value::Table(t) => format!(
            "{{{}}}",
            t.iter()
                .map(|(k, v)| format!("{}:{}", js(k), toml_json(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A profile file name from a connection name: letters, digits, `-`, `_`, `.`.
pub fn file_name_for(conn: &str) -> String {
    let mut s: String = conn
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.starts_with('.') || s.starts_with('-') {
        s.remove(0);
    }
    s.truncate(64);
    if s.is_empty() {
        "imported".to_string()
    } else {
        s
    }
}

/// `10.0.0.0/24`, `10.0.0.0/255.255.255.0`, `10.0.0.0 / 255.255.255.0`, `10.0.0.1`.
pub(crate) fn parse_subnet(s: &str) -> Option<Subnet> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some((a, m)) = s.split_once('/')
        && let Ok(mask) = m.parse::<std::net::Ipv4Addr>()
    {
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return None;
        }
        return format!("{a}/{}", bits.leading_ones()).parse().ok();
    }
    s.parse().ok()
}

/// Splits a value list on commas and/or blanks.
pub(crate) fn list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// yes/true/1/on.
pub(crate) fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "1" | "on" | "y"
    )
}

/// Finds the companion whose origin ends with one of `names` (or, failing that, whose
/// content `looks` right).
pub(crate) fn companion<'a>(
    src: &'a Source<'_>,
    names: &[&str],
    looks: impl Fn(&str) -> bool,
) -> Vec<&'a Companion> {
    src.companions
        .iter()
        .filter(|c| {
            let file = Path::new(&c.origin)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            names.iter().any(|n| file.starts_with(n)) || looks(&c.text)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/import")
            .join(name)
    }

    pub fn import(name: &str) -> Vec<Imported> {
        import_file(&fixture(name), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub fn one(name: &str) -> Imported {
        let mut v = import(name);
        assert_eq!(v.len(), 1, "{name}: {} connections", v.len());
        v.remove(0)
    }

    pub fn warned(i: &Imported, key: &str) -> bool {
        i.warnings.iter().any(|w| w.key.eq_ignore_ascii_case(key))
    }

    pub fn secret<'a>(i: &'a Imported, k: &str) -> Option<&'a str> {
        i.secrets.get(k).map(Secret::expose)
    }

    pub fn ike(i: &Imported) -> Vec<String> {
        i.profile
            .phase1
            .proposals
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    pub fn esp(i: &Imported) -> Vec<String> {
        i.profile
            .phase2
            .proposals
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    pub fn nets(v: &[Subnet]) -> Vec<String> {
        v.iter().map(Subnet::to_string).collect()
    }

    /// Whether the profile contract takes an IKEv2 profile with `method` (and a user
    /// login, EAP in IKEv2) today: the importers produce such profiles and let the
    /// contract decide, so their tests ask it too.
    pub fn ikev2_allows(method: &str, login: bool) -> bool {
        let mut t = format!(
            "name = \"t\"\ngateway = \"192.0.2.1\"\nike_version = 2\n[auth]\nmethod = \"{method}\"\n"
        );
        if login {
            t.push_str("[xauth]\nusername = \"u\"\n");
        }
        Profile::from_toml_str(&t, "t", SecretPolicy::Forbid).is_ok()
    }

    /// `conn` of `all` when the contract takes its kind of profile (`allowed`); else
    /// `None`, after checking that it was left out and named, in one line that says
    /// IKEv2, on the connections that were imported.
    pub fn v2_or_refused<'a>(
        all: &'a [Imported],
        conn: &str,
        allowed: bool,
    ) -> Option<&'a Imported> {
        let found = all.iter().find(|i| i.name == conn);
        if allowed {
            assert!(found.is_some(), "{conn} not imported");
            return found;
        }
        assert!(
            found.is_none(),
            "{conn} imported although the contract refuses it"
        );
        for i in all {
            let w = i
                .warnings
                .iter()
                .find(|w| w.key == "connection" && w.message.contains(&format!("'{conn}'")))
                .unwrap_or_else(|| panic!("{}: no warning about {conn}: {:?}", i.name, i.warnings));
            assert!(
                w.message.contains("IKEv2") && !w.message.contains('\n'),
                "{}",
                w.message
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn every_fixture_is_detected_as_its_format() {
        let dir = fixture("");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let want = [
                ("pcf_", Format::Pcf),
                ("shrew_", Format::Shrew),
                ("ipsecconf_", Format::IpsecConf),
                ("swanctl_", Format::Swanctl),
                ("racoon_", Format::Racoon),
                ("ifcfg-", Format::Ifcfg),
                ("nm_", Format::NmConnection),
            ]
            .into_iter()
            .find(|(p, _)| name.starts_with(p));
            let Some((_, want)) = want else { continue };
            if p.is_dir() {
                continue;
            }
            let text = decode(&std::fs::read(&p).unwrap());
            assert_eq!(detect(&text), Some(want), "{name}");
            n += 1;
        }
        assert!(n >= 21, "only {n} fixtures");
    }

    #[test]
    fn unknown_files_are_refused_with_a_sentence() {
        let e =
            import_str("hello world\n", "notes.txt", &[], &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with("notes.txt: not a file"), "{e}");
    }

    #[test]
    fn json_has_the_four_keys_and_hides_secrets() {
        let v = import("pcf_group_crlf_latin1.pcf");
        let j = to_json(&v, false);
        assert!(
            j.starts_with("{\"connections\":[{\"name\":\"Si\u{e8}ge Lyon\",\"profile\":{"),
            "{j}"
        );
        assert!(
            j.contains("\"secrets\":{\"psk\":true,\"xauth-password\":false}"),
            "{j}"
        );
        assert!(j.contains("\"gateway\":\"vpn.lyon.example.com\""), "{j}");
        assert!(
            j.contains("\"auth\":{\"local_id\":\"keyid:ventes\",\"method\":\"psk\"}"),
            "{j}"
        );
        assert!(
            !j.contains("auth.cert"),
            "a PSK profile needs no certificate: {j}"
        );
        assert!(j.contains("{\"line\":17,\"key\":\"EnableBackup\""), "{j}");
        assert!(!j.contains("Th!s"), "{j}");
        assert!(to_json(&v, true).contains("\"psk\":\"Th!sIsMyK3y#\""));
    }

    #[test]
    fn subnets_in_every_spelling() {
        for (s, want) in [
            ("10.1.0.0/16", "10.1.0.0/16"),
            ("10.1.0.0/255.255.0.0", "10.1.0.0/16"),
            ("10.1.0.0 / 255.255.0.0", "10.1.0.0/16"),
            ("10.1.2.3", "10.1.2.3/32"),
        ] {
            assert_eq!(
                parse_subnet(s).map(|s| s.to_string()).as_deref(),
                Some(want),
                "{s}"
            );
        }
        assert!(parse_subnet("10.1.0.0/255.0.255.0").is_none());
        assert!(parse_subnet("any").is_none());
    }

    #[test]
    fn file_names_from_connection_names() {
        assert_eq!(file_name_for("Head Office (Paris)"), "Head-Office--Paris-");
        assert_eq!(file_name_for("../x"), "x");
        assert_eq!(file_name_for("ééé"), "imported");
    }
}
