//! The user's profiles: `$XDG_CONFIG_HOME/postern/profiles/NAME.toml` (else
//! `~/.config/...`), checked with the profile parser under `SecretPolicy::Forbid`
//! whenever they are written or read: a profile never holds a secret.

use std::fs;
use std::path::PathBuf;

use postern_dbus::interface::secret_key;
use postern_dbus::profile::{Profile, SecretPolicy};
use zeroize::Zeroizing;

use crate::{Fail, FailureKind};

pub fn dir() -> Result<PathBuf, Fail> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                Fail::new(
                    FailureKind::BadProfile,
                    "neither XDG_CONFIG_HOME nor HOME is set",
                )
            })?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("postern").join("profiles"))
}

/// Profile names are file names: letters, digits, `.`, `_`, `-`; at most 64.
pub fn check_name(name: &str) -> Result<(), Fail> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Fail::new(
            FailureKind::BadProfile,
            format!("{name:?} is not a profile name (letters, digits, '.', '_', '-'; at most 64)"),
        ))
    }
}

fn path(name: &str) -> Result<PathBuf, Fail> {
    check_name(name)?;
    Ok(dir()?.join(format!("{name}.toml")))
}

pub fn names() -> Result<Vec<String>, Fail> {
    let d = dir()?;
    let mut v: Vec<String> = match fs::read_dir(&d) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".toml").map(str::to_string)
            })
            .filter(|n| check_name(n).is_ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    Ok(v)
}

pub fn load(name: &str) -> Result<Profile, Fail> {
    let p = path(name)?;
    if !p.exists() {
        return Err(Fail::new(
            FailureKind::BadProfile,
            format!("no profile {name} (in {})", dir()?.display()),
        ));
    }
    Profile::load(&p, SecretPolicy::Forbid)
        .map_err(|e| Fail::new(FailureKind::BadProfile, e.to_string()))
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), Fail> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io =
        |e: std::io::Error| Fail::new(FailureKind::Internal, format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    let tmp = path.with_extension("toml.new");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Checks `text` as a profile (no secrets allowed) and saves it as `name`.
pub fn add(name: &str, text: &str) -> Result<PathBuf, Fail> {
    let p = path(name)?;
    if p.exists() {
        return Err(Fail::new(
            FailureKind::BadProfile,
            format!("{name} exists; use `postern edit {name}` or delete it first"),
        ));
    }
    Profile::from_toml_str(text, name, SecretPolicy::Forbid)
        .map_err(|e| Fail::new(FailureKind::BadProfile, e.to_string()))?;
    write_private(&p, text)?;
    Ok(p)
}

/// Checks `text` as a profile (no secrets allowed) and saves it as `name`, replacing
/// the file when it exists (the desktop app's editor).
pub fn save(name: &str, text: &str) -> Result<PathBuf, Fail> {
    let p = path(name)?;
    Profile::from_toml_str(text, name, SecretPolicy::Forbid)
        .map_err(|e| Fail::new(FailureKind::BadProfile, e.to_string()))?;
    write_private(&p, text)?;
    Ok(p)
}

/// The profile file's text as written (for an editor: only the keys the user set).
pub fn text(name: &str) -> Result<String, Fail> {
    let p = path(name)?;
    fs::read_to_string(&p).map_err(|e| Fail::new(FailureKind::BadProfile, format!("{name}: {e}")))
}

/// Renames profile `from` to `to` (the file; its `name` key is left as it is).
pub fn rename(from: &str, to: &str) -> Result<(), Fail> {
    let src = path(from)?;
    let dst = path(to)?;
    if dst.exists() {
        return Err(Fail::new(
            FailureKind::BadProfile,
            format!("{to} exists; choose another name"),
        ));
    }
    fs::rename(&src, &dst).map_err(|e| Fail::new(FailureKind::BadProfile, format!("{from}: {e}")))
}

pub fn delete(name: &str) -> Result<(), Fail> {
    let p = path(name)?;
    fs::remove_file(&p).map_err(|e| Fail::new(FailureKind::BadProfile, format!("{name}: {e}")))
}

/// `$EDITOR` on a copy; the profile is replaced only if the copy still checks out.
pub fn edit(name: &str) -> Result<(), Fail> {
    let p = path(name)?;
    let old = fs::read_to_string(&p)
        .map_err(|e| Fail::new(FailureKind::BadProfile, format!("{name}: {e}")))?;
    let tmp = p.with_extension("toml.edit");
    write_private(&tmp, &old)?;
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&tmp)
        .status()
        .map_err(|e| Fail::new(FailureKind::Internal, format!("{editor}: {e}")))?;
    let new = fs::read_to_string(&tmp).unwrap_or_default();
    let _ = fs::remove_file(&tmp);
    if !st.success() {
        return Err(Fail::new(
            FailureKind::Internal,
            format!("{editor} failed; {name} unchanged"),
        ));
    }
    Profile::from_toml_str(&new, name, SecretPolicy::Forbid)
        .map_err(|e| Fail::new(FailureKind::BadProfile, format!("{e}; {name} unchanged")))?;
    write_private(&p, &new)?;
    println!("saved {name}");
    Ok(())
}

/// The profile as the helper gets it: file paths taken out (their contents travel in
/// the secrets map).
pub fn text_for_helper(p: &Profile) -> String {
    let mut q = p.without_secrets();
    q.auth.ca = None;
    q.auth.cert = None;
    q.auth.key = None;
    q.auth.pkcs12 = None;
    q.auth.crl = None;
    q.to_toml_string()
}

/// The certificate files the profile names, read as the user: PEM as text, a PKCS#12
/// bundle as base64.
pub fn cert_contents(p: &Profile) -> Result<Vec<(&'static str, Zeroizing<String>)>, Fail> {
    let mut out = Vec::new();
    for (key, path) in [
        (secret_key::CA, &p.auth.ca),
        (secret_key::CERT, &p.auth.cert),
        (secret_key::KEY, &p.auth.key),
        (secret_key::CRL, &p.auth.crl),
    ] {
        if let Some(path) = path {
            let text = fs::read_to_string(path).map_err(|e| {
                Fail::new(
                    FailureKind::BadProfile,
                    format!("{path}: {e} (PEM expected)"),
                )
            })?;
            out.push((key, Zeroizing::new(text)));
        }
    }
    if let Some(path) = &p.auth.pkcs12 {
        let bytes = Zeroizing::new(
            fs::read(path)
                .map_err(|e| Fail::new(FailureKind::BadProfile, format!("{path}: {e}")))?,
        );
        let b64 = <base64ct::Base64 as base64ct::Encoding>::encode_string(&bytes);
        out.push((secret_key::PKCS12, Zeroizing::new(b64)));
    }
    Ok(out)
}

/// `postern add NAME` from flags: the common fields of an admin's parameter sheet;
/// everything else keeps its default (see the profile documentation) or is set with
/// `postern edit`.
#[derive(Default, Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AddFlags {
    /// Gateway address or name (required without --from).
    #[cfg_attr(feature = "clap", arg(long))]
    pub gateway: Option<String>,
    /// Aggressive mode (default: main mode).
    #[cfg_attr(feature = "clap", arg(long))]
    pub aggressive: bool,
    /// psk, rsa-sig or hybrid (default psk).
    #[cfg_attr(feature = "clap", arg(long))]
    pub auth: Option<String>,
    /// Our ID, e.g. `keyid:sales` or `fqdn:laptop.example.com`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub local_id: Option<String>,
    /// The gateway's ID, checked when given.
    #[cfg_attr(feature = "clap", arg(long))]
    pub remote_id: Option<String>,
    /// CA, certificate, key, PKCS#12 bundle files (certificate profiles).
    #[cfg_attr(feature = "clap", arg(long))]
    pub ca: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub cert: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub key: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub pkcs12: Option<String>,
    /// Phase 1 proposals in strongSwan syntax (repeatable): aes256-sha256-modp2048.
    #[cfg_attr(feature = "clap", arg(long = "ike"))]
    pub ike: Vec<String>,
    /// Phase 2 proposals (repeatable): aes256-sha256, aes128gcm16.
    #[cfg_attr(feature = "clap", arg(long = "esp"))]
    pub esp: Vec<String>,
    /// PFS group for phase 2 (`none` for none).
    #[cfg_attr(feature = "clap", arg(long))]
    pub pfs: Option<String>,
    /// A remote network (repeatable); none: what the gateway's split-include says.
    #[cfg_attr(feature = "clap", arg(long = "remote-network"))]
    pub remote_networks: Vec<String>,
    /// Our fixed inner address (no Mode Config).
    #[cfg_attr(feature = "clap", arg(long))]
    pub virtual_ip: Option<String>,
    /// pull, push or off.
    #[cfg_attr(feature = "clap", arg(long))]
    pub mode_config: Option<String>,
    /// XAuth user name (the password goes into the keyring: `postern secret set --xauth`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub xauth_user: Option<String>,
}

impl AddFlags {
    pub fn to_toml(&self, name: &str) -> Result<String, Fail> {
        let gateway = self
            .gateway
            .as_deref()
            .ok_or_else(|| Fail::new(FailureKind::BadProfile, "give --gateway (or --from FILE)"))?;
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|x| js(x)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut t = format!("name = {}\ngateway = {}\n", js(name), js(gateway));
        if self.aggressive {
            t.push_str("exchange_mode = \"aggressive\"\n");
        }
        t.push_str("\n[auth]\n");
        t.push_str(&format!(
            "method = {}\n",
            js(self.auth.as_deref().unwrap_or("psk"))
        ));
        for (k, v) in [
            ("local_id", &self.local_id),
            ("remote_id", &self.remote_id),
            ("ca", &self.ca),
            ("cert", &self.cert),
            ("key", &self.key),
            ("pkcs12", &self.pkcs12),
        ] {
            if let Some(v) = v {
                t.push_str(&format!("{k} = {}\n", js(v)));
            }
        }
        if let Some(u) = &self.xauth_user {
            t.push_str(&format!("\n[xauth]\nusername = {}\n", js(u)));
        }
        if !self.ike.is_empty() {
            t.push_str(&format!("\n[phase1]\nproposals = {}\n", list(&self.ike)));
        }
        if !self.esp.is_empty() || self.pfs.is_some() || !self.remote_networks.is_empty() {
            t.push_str("\n[phase2]\n");
            if !self.esp.is_empty() {
                t.push_str(&format!("proposals = {}\n", list(&self.esp)));
            }
            if let Some(p) = &self.pfs {
                t.push_str(&format!("pfs = {}\n", js(p)));
            }
            if !self.remote_networks.is_empty() {
                t.push_str(&format!(
                    "remote_networks = {}\n",
                    list(&self.remote_networks)
                ));
            }
        }
        if self.virtual_ip.is_some() || self.mode_config.is_some() {
            t.push_str("\n[network]\n");
            if let Some(m) = &self.mode_config {
                t.push_str(&format!("mode_config = {}\n", js(m)));
            }
            if let Some(v) = &self.virtual_ip {
                t.push_str(&format!("virtual_ip = {}\n", js(v)));
            }
        }
        Ok(t)
    }
}

/// A JSON string literal (also a valid TOML basic string).
pub fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn summary_json(name: &str, p: &Profile, state: Option<&str>) -> String {
    format!(
        "{{\"name\":{},\"gateway\":{},\"ike_version\":{},\"exchange_mode\":{},\"auth\":{}{}}}",
        js(name),
        js(&p.gateway),
        p.ike_version,
        js(p.exchange_mode.as_str()),
        js(p.auth.method.as_str()),
        state
            .map(|s| format!(",\"state\":{}", js(s)))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "name = \"Office\"\ngateway = \"192.0.2.1\"\n";

    #[test]
    fn names_are_file_names() {
        for ok in ["office", "Office-2", "a.b_c"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_refused_in_profiles() {
        let e = Profile::from_toml_str(
            &format!("{PROFILE}[auth]\npsk = \"s3cret\"\n"),
            "x",
            SecretPolicy::Forbid,
        );
        assert!(e.is_err());
    }

    #[test]
    fn the_helper_gets_no_paths() {
        let p = Profile::from_toml_str(
            &format!(
                "{PROFILE}[auth]\nmethod = \"rsa-sig\"\nca = \"/home/a/ca.pem\"\ncert = \"/home/a/c.pem\"\nkey = \"/home/a/k.pem\"\n"
            ),
            "x",
            SecretPolicy::Forbid,
        )
        .unwrap();
        let t = text_for_helper(&p);
        assert!(!t.contains("/home/a"), "{t}");
        postern_dbus::request::connect(&t, std::collections::HashMap::new())
            .map(|_| ())
            .unwrap_or_else(|e| assert!(!e.to_string().contains("path"), "{e}"));
    }

    #[test]
    fn flags_make_a_profile_that_checks_out() {
        let f = AddFlags {
            gateway: Some("vpn.example.com".into()),
            aggressive: true,
            local_id: Some("keyid:sales".into()),
            ike: vec!["aes256-sha256-modp2048".into()],
            esp: vec!["aes256-sha256".into()],
            pfs: Some("none".into()),
            mode_config: Some("pull".into()),
            xauth_user: Some("alice".into()),
            ..AddFlags::default()
        };
        let t = f.to_toml("office").unwrap();
        let p = Profile::from_toml_str(&t, "office", SecretPolicy::Forbid).unwrap();
        assert_eq!(p.gateway, "vpn.example.com");
        assert_eq!(p.xauth.as_ref().map(|x| x.username.as_str()), Some("alice"));
        assert!(
            AddFlags::default().to_toml("x").is_err(),
            "--gateway is required"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(js("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
