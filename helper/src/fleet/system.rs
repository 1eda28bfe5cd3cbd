//! System profiles: `/etc/postern/profiles/NAME.toml`, written by an admin (or their
//! configuration management), read by the helper itself at each `SystemProfiles`,
//! `ConnectSystem` and at start (so a change on disk needs no restart). A front end
//! names one by NAME (the file's stem) and never sends a path.
//!
//! A file is used only when it is owned by root and writable by no one else (the
//! refusal names the file). Its secrets are inline (the file then mode 0600) or in
//! `NAME.secrets` beside it (root, 0600: `psk`, `xauth_password`, `key_passphrase`),
//! never in a user's keyring. Certificate files it names are read by the helper (an
//! admin named them, not a caller).

use std::path::{Path, PathBuf};

use postern_dbus::profile::{Autoconnect, Profile, Secret, SecretPolicy};
use serde::Deserialize;

use super::policy::Policy;

/// The directory this helper reads: [`super::SYSTEM_PROFILES`], or
/// `$POSTERN_PROFILES_DIR` when root started the helper with it (the lab). Never a
/// path a caller names.
pub fn dir() -> PathBuf {
    std::env::var_os("POSTERN_PROFILES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(super::SYSTEM_PROFILES))
}

/// Whether `name` can be a system profile's name: 1..=64 of letters, digits, `.`,
/// `_`, `-`, not starting with a dot (so it is one file name in the directory).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a file cannot be a system profile (owner, mode), or `None` when it can. Shared
/// with `postern-helper check`.
pub fn ownership_problem(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != 0 {
        Some(format!(
            "owned by uid {}: a system profile must be owned by root",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "mode {:04o}: group or others may change it; chmod go-w it",
            meta.mode() & 0o7777
        ))
    } else {
        None
    }
}

/// One system profile as `SystemProfiles` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file's stem: what `ConnectSystem` takes.
    pub name: String,
    /// The profile's `name` key (the stem when the file does not parse).
    pub title: String,
    pub gateway: String,
    pub autoconnect: Autoconnect,
    pub file: PathBuf,
    /// Why it cannot be connected (one line naming the file), or `None`.
    pub refused: Option<String>,
}

/// The secrets file beside a profile (`NAME.secrets`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    psk: Option<String>,
    xauth_password: Option<String>,
    key_passphrase: Option<String>,
}

fn secrets_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.secrets"))
}

/// Fills the profile's missing secrets from `NAME.secrets` (root, 0600) if there is one.
pub fn merge_secrets(p: &mut Profile, path: &Path) -> Result<(), String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{shown}: cannot open: {e}")),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("{shown}: cannot stat: {e}"))?;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: a secrets file must be a regular file owned by root with mode 0600 (it is uid {}, mode {:04o})",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    f.by_ref()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    // toml's own message may quote the text: say only where it went wrong.
    let raw: RawSecrets = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => format!(
                "{shown}:{l}: not a valid secrets file (psk, xauth_password, key_passphrase)"
            ),
            None => {
                format!("{shown}: not a valid secrets file (psk, xauth_password, key_passphrase)")
            }
        }
    })?;
    if p.auth.psk.is_none() {
        p.auth.psk = raw.psk.map(Secret::new);
    }
    if p.auth.key_passphrase.is_none() {
        p.auth.key_passphrase = raw.key_passphrase.map(Secret::new);
    }
    if let Some(x) = p.xauth.as_mut()
        && x.password.is_none()
    {
        x.password = raw.xauth_password.map(Secret::new);
    }
    Ok(())
}

/// Why a profile with `autoconnect = "boot"` cannot come up with no one there, as
/// (key, one sentence), or `None`. At boot no user answers a prompt, so every secret the
/// connect asks for must be on disk.
pub fn boot_problem(p: &Profile) -> Option<(&'static str, String)> {
    if p.autoconnect != Autoconnect::Boot {
        return None;
    }
    if p.xauth.as_ref().is_some_and(|x| x.password.is_none()) {
        return Some((
            "xauth.password",
            "autoconnect = \"boot\" with XAuth needs the XAuth password on disk (xauth.password in the profile, mode 0600, or xauth_password in NAME.secrets): at boot no one is there to type it".into(),
        ));
    }
    None
}

/// What `autoconnect = "boot"` does on a user profile: nothing; said in one line.
pub const USER_BOOT: &str = "autoconnect = \"boot\" applies to system profiles only (/etc/postern/profiles): a user profile is never started at boot; use \"login\"";

/// Reads system profile `name` from `dir` for a connect: ownership, syntax, secrets,
/// certificate files, the site policy. The error is one line naming the file.
pub fn load(dir: &Path, name: &str, policy: &Policy) -> Result<Profile, String> {
    if !valid_name(name) {
        return Err(format!(
            "'{}' is not a system profile name (letters, digits, '.', '_', '-')",
            name.escape_debug()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no system profile {name} in {}", dir.display()));
        }
        Err(e) => return Err(format!("{}: cannot stat: {e}", path.display())),
    };
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if let Some(why) = ownership_problem(&meta) {
        return Err(format!("{}: {why}", path.display()));
    }
    let mut p = Profile::load(&path, SecretPolicy::AllowIfPrivate).map_err(|e| e.to_string())?;
    merge_secrets(&mut p, &secrets_path(dir, name))?;
    crate::up::load_cert_files(&mut p).map_err(|f| format!("{}: {}", path.display(), f.message))?;
    if let Err((key, why)) = policy.apply(&mut p) {
        return Err(format!("{}: {key}: {why}", path.display()));
    }
    Ok(p)
}

/// Every `*.toml` in `dir`, sorted by name, each with why it is refused (if it is).
/// A missing directory is no system profiles.
pub fn list(dir: &Path, policy: &Policy) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let f = e.file_name().to_str()?.to_string();
            let stem = f.strip_suffix(".toml")?.to_string();
            valid_name(&stem).then_some(stem)
        })
        .collect();
    names.sort();
    names.truncate(256);
    names
        .into_iter()
        .map(|name| {
            let file = dir.join(format!("{name}.toml"));
            match load(dir, &name, policy) {
                Ok(p) => Entry {
                    title: p.name.clone(),
                    gateway: p.gateway.clone(),
                    autoconnect: p.autoconnect,
                    name,
                    file,
                    refused: None,
                },
                Err(why) => {
                    // What can still be shown of a refused file (the check above said why).
                    let shown = Profile::load(&file, SecretPolicy::AllowIfPrivate).ok();
                    Entry {
                        title: shown.as_ref().map_or(name.clone(), |p| p.name.clone()),
                        gateway: shown
                            .as_ref()
                            .map(|p| p.gateway.clone())
                            .unwrap_or_default(),
                        autoconnect: shown.map(|p| p.autoconnect).unwrap_or_default(),
                        name,
                        file,
                        refused: Some(why),
                    }
                }
            }
        })
        .collect()
}

/// The profile's text as a front end may see it: no secrets (`to_toml_string`).
pub fn shown_text(dir: &Path, name: &str) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!(
            "'{}' is not a system profile name",
            name.escape_debug()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    Profile::load(&path, SecretPolicy::AllowIfPrivate)
        .map(|p| p.to_toml_string())
        .map_err(|e| e.to_string())
}

/// Writes system profile `name` (an admin's save from the app): the text must parse;
/// the file is written as root, mode 0600, through a temporary file and a rename. When
/// the new text carries no secrets but the old file had some inline, they move to
/// `NAME.secrets` so a save from the app (which never sees them) keeps them.
pub fn save(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !valid_name(name) {
        return Err(format!(
            "'{}' is not a system profile name (letters, digits, '.', '_', '-')",
            name.escape_debug()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    let new = Profile::from_toml_str(
        text,
        &path.display().to_string(),
        SecretPolicy::AllowIfPrivate,
    )
    .map_err(|e| e.to_string())?;
    if !new.has_secrets()
        && let Ok(old) = Profile::load(&path, SecretPolicy::AllowIfPrivate)
        && old.has_secrets()
    {
        let sp = secrets_path(dir, name);
        let mut s = String::new();
        let q = |v: &Secret| toml::Value::String(v.expose().to_string()).to_string();
        if let Some(v) = &old.auth.psk {
            s.push_str(&format!("psk = {}\n", q(v)));
        }
        if let Some(v) = old.xauth.as_ref().and_then(|x| x.password.as_ref()) {
            s.push_str(&format!("xauth_password = {}\n", q(v)));
        }
        if let Some(v) = &old.auth.key_passphrase {
            s.push_str(&format!("key_passphrase = {}\n", q(v)));
        }
        let s = zeroize::Zeroizing::new(s);
        write_private(&sp, s.as_bytes())?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("secrets.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-system-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(d: &Path, f: &str, text: &str, mode: u32) {
        let p = d.join(f);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const OFFICE: &str = "name = \"Office\"\ngateway = \"192.0.2.1\"\nautoconnect = \"boot\"\n[auth]\nmethod = \"psk\"\n";

    #[test]
    fn names() {
        assert!(valid_name("office"));
        assert!(valid_name("branch-2.lab_x"));
        for bad in ["", ".hidden", "a/b", "..", "x y", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    // The ownership checks need root to create root-owned files; the unit tests run as
    // whoever builds, so they look at what does not depend on it.
    #[test]
    fn list_load_and_secrets_beside() {
        let d = tmpdir("list");
        write(&d, "office.toml", OFFICE, 0o644);
        write(&d, "office.secrets", "psk = \"s3cret\"\n", 0o600);
        write(&d, "broken.toml", "name = \"b\"\ngatway = \"x\"\n", 0o644);
        write(&d, "README", "not a profile", 0o644);
        let root = std::fs::metadata(&d)
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap();
        let pol = Policy::open();
        let l = list(&d, &pol);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].name, "broken");
        let broken = l[0].refused.as_deref().unwrap();
        assert!(broken.contains("broken.toml"), "{broken}");
        assert_eq!(l[1].name, "office");
        assert_eq!(l[1].autoconnect, Autoconnect::Boot);
        assert_eq!(l[1].gateway, "192.0.2.1");
        if root {
            assert_eq!(l[1].refused, None);
            let p = load(&d, "office", &pol).unwrap();
            assert_eq!(p.auth.psk.as_ref().map(Secret::expose), Some("s3cret"));
            // Group-writable: refused with the file named.
            std::fs::set_permissions(
                d.join("office.toml"),
                std::fs::Permissions::from_mode(0o664),
            )
            .unwrap();
            let e = load(&d, "office", &pol).unwrap_err();
            assert!(
                e.contains("office.toml: mode 0664: group or others may change it"),
                "{e}"
            );
        } else {
            let e = l[1].refused.as_deref().unwrap();
            assert!(e.contains("office.toml: owned by uid"), "{e}");
        }
        assert!(
            load(&d, "../etc/passwd", &pol)
                .unwrap_err()
                .contains("not a system profile name")
        );
        assert!(
            load(&d, "nope", &pol)
                .unwrap_err()
                .contains("no system profile nope")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_boot_profile_needs_its_xauth_password_on_disk() {
        let text = format!("{OFFICE}[xauth]\nusername = \"alice\"\n");
        let mut p =
            Profile::from_toml_str(&text, "office.toml", SecretPolicy::AllowIfPrivate).unwrap();
        let (key, why) = boot_problem(&p).unwrap();
        assert_eq!(key, "xauth.password");
        assert!(why.contains("no one is there to type it"), "{why}");
        assert!(why.contains("NAME.secrets"), "{why}");
        // With the password (from NAME.secrets or inline) it can come up alone.
        p.xauth.as_mut().unwrap().password = Some(Secret::new("pw".into()));
        assert_eq!(boot_problem(&p), None);
        // Not a boot profile: a user connecting it may answer the prompt.
        p.xauth.as_mut().unwrap().password = None;
        p.autoconnect = Autoconnect::No;
        assert_eq!(boot_problem(&p), None);
        // No XAuth at all: nothing to ask.
        let plain =
            Profile::from_toml_str(OFFICE, "office.toml", SecretPolicy::AllowIfPrivate).unwrap();
        assert_eq!(boot_problem(&plain), None);
    }

    #[test]
    fn save_moves_inline_secrets_beside() {
        let d = tmpdir("save");
        let with = OFFICE.replace("[auth]\n", "[auth]\npsk = \"s3cret\"\n");
        write(&d, "office.toml", &with, 0o600);
        let edited = OFFICE.replace("192.0.2.1", "192.0.2.9");
        save(&d, "office", &edited).unwrap();
        let text = std::fs::read_to_string(d.join("office.toml")).unwrap();
        assert!(text.contains("192.0.2.9") && !text.contains("s3cret"));
        let sec = std::fs::read_to_string(d.join("office.secrets")).unwrap();
        assert_eq!(sec, "psk = \"s3cret\"\n");
        use std::os::unix::fs::MetadataExt;
        for f in ["office.toml", "office.secrets"] {
            assert_eq!(
                std::fs::metadata(d.join(f)).unwrap().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
        let e = save(&d, "office", "name = \"x\"\n").unwrap_err();
        assert!(e.contains("gateway"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
